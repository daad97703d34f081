"""The implementation guide and README name only code that exists."""

import importlib
import re

import pytest

from tests.conftest import REPO

DOCS = [REPO / "docs" / "IMPLEMENTATION_GUIDE.md", REPO / "README.md"]
DOTTED = re.compile(r"`(rlhf(?:\.[A-Za-z_][A-Za-z0-9_]*)+)(?:\(\))?`")
PATH = re.compile(r"`((?:rlhf|conf|tests|bench|docs)/[\w./-]+\.(?:py|yaml|md))`")


def resolve(dotted: str):
    """Import the longest module prefix of ``dotted`` and walk the rest as attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_cited_name_and_path_exists(doc):
    if not doc.is_file():
        pytest.skip(f"{doc.name} not written yet")
    text = doc.read_text(encoding="utf-8")
    missing = []
    for name in sorted(set(DOTTED.findall(text))):
        try:
            resolve(name)
        except (ModuleNotFoundError, AttributeError):
            missing.append(name)
    missing += [path for path in sorted(set(PATH.findall(text))) if not (REPO / path).exists()]
    assert not missing, f"{doc.name} cites names that do not exist: {missing}"
