"""The language a post is written in, detected when it is written (as the seed does)."""

import threading

from py3langid.langid import MODEL_FILE, LanguageIdentifier

# Below this probability a guess is noise ("ok", "lol", a lone emoji): no language is stored.
MIN_CONFIDENCE = 0.5
# The detector's code for text with no linguistic content (digits, symbols).
NO_LANGUAGE = "zxx"

_identifier: LanguageIdentifier | None = None
_loading = threading.Lock()


def _loaded() -> LanguageIdentifier:
    """Return the detector, loading its model on first use (about a second, once a process)."""
    global _identifier
    if _identifier is None:
        with _loading:
            if _identifier is None:
                _identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    return _identifier


def detect_language(text: str) -> str | None:
    """Return the ISO 639-1 code of the language ``text`` is most likely in, or None when the
    text is too short or too ambiguous to tell."""
    language, probability = _loaded().classify(text)
    if language == NO_LANGUAGE or probability < MIN_CONFIDENCE:
        return None
    return language


def warm_up() -> None:
    """Load the detector now, so that the first post a process takes does not wait for it."""
    _loaded()
