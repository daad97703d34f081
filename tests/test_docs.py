"""README.md, BENCHMARKS.md, every page under docs/ and the config comments name only code, files, commands and
config options that exist."""

import importlib
import importlib.util
import re

import pytest

from tests.conftest import REPO

DOCS = sorted([REPO / "README.md", REPO / "BENCHMARKS.md", *(REPO / "docs").rglob("*.md")])
DOTTED = re.compile(r"`(rlhf(?:\.[A-Za-z_][A-Za-z0-9_]*)+)(?:\(\))?`")
PATH = re.compile(r"`((?:rlhf|conf|tests|bench|docs)/[\w./-]+\.(?:py|yaml|md|sh|json|txt))`")
LINK = re.compile(r"\]\(([^)\s]+)\)")
CODE = re.compile(r"```.*?```|`[^`\n]+`", re.DOTALL)
MAKE = re.compile(r"(?<![\w/.-])make ([a-z][\w-]*)")
MODULE = re.compile(r"python -m ([A-Za-z_][\w.]*)")
GROUP = re.compile(r"(?<![\w.+/])(algo|model|lora|dataset|hardware|logger|experiment|sweep|debug)=([\w,]+)")
TARGET = re.compile(r"^([a-zA-Z_-]+):", re.MULTILINE)
# Options the docs name on purpose although they do not exist (the error an unknown option gives).
NOT_OPTIONS = {("algo", "nope")}
# A study's own outputs (evaluate.py's results.md, the tournament's report.md) are kept as the run wrote them; their
# plots are not committed, so their links are not checked. Every other page's are.
WRITTEN = [doc for doc in DOCS if doc.parent.parent != REPO / "docs" / "results" or doc.name == "README.md"]


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


def code_of(text: str) -> str:
    """The text of every code span and fenced block, one per line."""
    return "\n".join(match.group(0).strip("`") for match in CODE.finditer(text))


def module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_cited_name_and_path_exists(doc):
    text = doc.read_text(encoding="utf-8")
    missing = []
    for name in sorted(set(DOTTED.findall(text))):
        try:
            resolve(name)
        except (ModuleNotFoundError, AttributeError):
            missing.append(name)
    missing += [path for path in sorted(set(PATH.findall(text))) if not (REPO / path).exists()]
    assert not missing, f"{doc.relative_to(REPO)} cites names that do not exist: {missing}"


@pytest.mark.parametrize("doc", WRITTEN, ids=lambda p: str(p.relative_to(REPO)))
def test_every_link_resolves(doc):
    text = CODE.sub("", doc.read_text(encoding="utf-8"))
    targets = {link.split("#")[0] for link in LINK.findall(text) if not link.startswith(("http://", "https://", "#"))}
    missing = sorted(target for target in targets if not (doc.parent / target).exists())
    assert not missing, f"{doc.relative_to(REPO)} links to files that do not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_command_names_a_target_module_and_option_that_exist(doc):
    code = code_of(doc.read_text(encoding="utf-8"))
    targets = set(TARGET.findall((REPO / "Makefile").read_text(encoding="utf-8")))
    missing = [f"make {target}" for target in sorted(set(MAKE.findall(code)) - targets)]
    missing += [f"python -m {name}" for name in sorted(set(MODULE.findall(code))) if not module_exists(name)]
    for group, values in sorted(set(GROUP.findall(code))):
        for value in values.split(","):
            if value and (group, value) not in NOT_OPTIONS and not (REPO / "conf" / group / f"{value}.yaml").exists():
                missing.append(f"{group}={value}")
    assert not missing, f"{doc.relative_to(REPO)} names commands or options that do not exist: {missing}"


def test_every_page_a_config_comment_cites_exists():
    cited = {
        (path.relative_to(REPO), match.rstrip(".,;:)"))
        for path in sorted((REPO / "conf").rglob("*.yaml"))
        for line in path.read_text(encoding="utf-8").splitlines()
        if "#" in line
        for match in re.findall(r"docs/[\w./-]+", line.split("#", 1)[1])
    }
    missing = [f"{path}: {target}" for path, target in sorted(cited) if not (REPO / target).exists()]
    assert not missing, f"config comments cite docs that do not exist: {missing}"
