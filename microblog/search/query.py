"""What a reader types in the search box, read the way web search engines read it.

``"a phrase"`` in quotes, ``or`` between alternatives, ``-word`` to leave a word out; every
other character is text to find, never syntax. PostgreSQL reads the same language itself
(``websearch_to_tsquery``); for SQLite's FTS5 the query is rebuilt here from quoted strings
only, so no input can reach FTS5 as an operator, a column filter or a prefix.
"""

import re
from dataclasses import dataclass, field

MAX_QUERY_LENGTH = 200  # characters; a longer query is refused with a message

# A term is found only if it has something a tokenizer keeps: a letter or a digit.
_WORDLIKE = re.compile(r"[^\W_]")
# A quoted phrase (an unbalanced quote runs to the end), or a run of anything but space.
_TOKEN = re.compile(r'(-?)"([^"]*)"?|(\S+)')


@dataclass
class Alternative:
    """Terms that must all be in a post, and terms that must not be."""

    required: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)


@dataclass
class Query:
    text: str
    alternatives: list[Alternative]  # each with a term to find (see parse)

    @property
    def finds_anything(self) -> bool:
        """False for a query with no term to look for (only exclusions, or only punctuation):
        it finds nothing, rather than every post."""
        return bool(self.alternatives)

    def fts5(self) -> str:
        """Return the query in FTS5's syntax, every term a quoted string."""
        groups = []
        for alternative in self.alternatives:
            group = " AND ".join(map(_quoted, alternative.required))
            if alternative.excluded:
                group = f"({group}) NOT ({' OR '.join(map(_quoted, alternative.excluded))})"
            groups.append(f"({group})")
        return " OR ".join(groups)


def parse(text: str) -> Query:
    """Read a search query; never fails, whatever the text."""
    alternatives = [Alternative()]
    for match in _TOKEN.finditer(text):
        negated, phrase, word = match.group(1), match.group(2), match.group(3)
        if word is not None and word.lower() == "or":
            if alternatives[-1].required or alternatives[-1].excluded:
                alternatives.append(Alternative())
            continue
        if word is not None:
            negated, term = ("-", word[1:]) if word.startswith("-") else ("", word)
        else:
            term = phrase
        if not _WORDLIKE.search(term):
            continue
        terms = alternatives[-1].excluded if negated else alternatives[-1].required
        terms.append(term)
    return Query(text, [alternative for alternative in alternatives if alternative.required])


def _quoted(term: str) -> str:
    return '"' + term.replace('"', '""') + '"'
