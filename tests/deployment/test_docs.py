"""The README and docs/ name files and functions of this tree: each one they cite exists."""

import re
import subprocess
import tomllib

from tests.support import ROOT

# `path/to/file.py`, `file.py:name`, `jobs/models.py:tasks_to_show`: a file of the tree,
# cited by its path from the root, from the package, or by its name alone.
CITED = re.compile(
    r"`((?:[\w.-]+/)*[\w.-]+\.(?:py|md|js|html|css|toml|yml|yaml|txt|cfg|conf|sh))"
    r"(?::([A-Za-z_][\w.]*))?`"
)
DOCS = ["README.md", *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))]


def tracked_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                            check=True, timeout=30)  # fmt: skip
    return listed.stdout.splitlines()


def defines(path: str, name: str) -> bool:
    """Say whether the file defines ``name`` (a function, class or assignment; for a dotted
    name, its last part)."""
    last = name.rsplit(".", 1)[-1]
    text = (ROOT / path).read_text(encoding="utf-8")
    return bool(re.search(rf"^\s*(?:async\s+)?(?:def|class)\s+{last}\b|^\s*{last}\s*[:=]",
                          text, re.MULTILINE))  # fmt: skip


def test_every_file_and_name_the_docs_cite_exists():
    files = tracked_files()
    missing = []
    for doc in DOCS:
        for cited, name in CITED.findall((ROOT / doc).read_text(encoding="utf-8")):
            found = [f for f in files if f == cited or f.endswith("/" + cited)]
            if not found:
                missing.append(f"{doc}: {cited}")
            elif name and not any(defines(f, name) for f in found):
                missing.append(f"{doc}: {cited}:{name}")
    assert missing == []


def test_the_readmes_layers_are_the_contracts():
    # The README's numbered layers, each named by its packages in backticks, down to the base
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("The package is in layers", 1)[1].split("\n\n", 2)[1]
    items = re.findall(r"^\d+\. \*\*(.+?)\*\*", section, re.MULTILINE)
    named = [set(re.findall(r"`(\w+)`", item)) for item in items]
    with open(ROOT / "pyproject.toml", "rb") as file:
        contracts = tomllib.load(file)["tool"]["importlinter"]["contracts"]
    layers = next(c["layers"] for c in contracts if c.get("containers") == ["microblog"])
    layers = [{name.strip() for name in layer.split("|")} for layer in layers]
    # Then each named layer is the contract's, in the same order; the base is the rest
    assert named[:-1] == layers[: len(named) - 1]
    assert named[-1] == set() and items[-1] == "the base"
