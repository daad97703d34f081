"""The package's layers (rlhf/__init__.py): each imports only the layers below it; PPO and evaluation stay TRL-free."""

import ast
import subprocess
import sys

from tests.conftest import REPO

PACKAGE = REPO / "rlhf"
# Bottom to top; a module may import its own layer's package and any layer below.
LAYERS = [
    ("rlhf.errors",),
    ("rlhf.config",),
    ("rlhf.data",),
    ("rlhf.modeling",),
    ("rlhf.plan",),
    ("rlhf.run",),
    ("rlhf.algos",),
    ("rlhf.evaluation",),
    ("rlhf.experiment", "rlhf.report", "rlhf.tournament"),
]
ALGORITHMS = (
    "rlhf.algos.rm",
    "rlhf.algos.sft",
    "rlhf.algos.dpo",
    "rlhf.algos.ppo",
    "rlhf.algos.grpo",
    "rlhf.algos.rloo",
)


def entry_point(module: str) -> bool:
    """A package's ``__main__`` (``python -m rlhf.plan``) is an entry point, like train.py: above every layer."""
    return module.endswith(".__main__")


def module_name(path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    for index, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return index
    raise AssertionError(f"{module} belongs to no layer: add it to rlhf/__init__.py's list and to LAYERS here")


def rlhf_imports(path) -> set[str]:
    """Every rlhf module a file imports (``from rlhf.run import stopping`` counts as rlhf.run.stopping)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("rlhf")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rlhf"):
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def own_algorithm(module: str) -> str | None:
    return next((a for a in ALGORITHMS if module == a or module.startswith(a + ".")), None)


def test_every_module_imports_only_its_layer_and_below():
    upward, across = [], []
    for path in sorted(PACKAGE.rglob("*.py")):
        importer = module_name(path)
        if entry_point(importer):
            continue
        for imported in rlhf_imports(path):
            if layer_of(imported) > layer_of(importer):
                upward.append(f"{importer} -> {imported}")
            theirs, mine = own_algorithm(imported), own_algorithm(importer)
            if theirs and theirs != mine:
                across.append(f"{importer} -> {imported}")
    assert not upward, f"imports that reach up a layer: {upward}"
    assert not across, (
        f"algorithms importing another algorithm (share code through hf_trainer or a lower layer): {across}"
    )


def test_only_the_experiment_imports_the_planner():
    # train.py asks rlhf.plan.check_fits before the weights load; nothing else depends on the planner
    importers = sorted(
        module_name(path)
        for path in PACKAGE.rglob("*.py")
        if not module_name(path).startswith("rlhf.plan")
        and any(m == "rlhf.plan" or m.startswith("rlhf.plan.") for m in rlhf_imports(path))
    )
    assert set(importers) <= {"rlhf.experiment"}, importers


def test_the_layer_check_sees_an_upward_import(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("from rlhf.run import stopping\nimport rlhf.algos.ppo.math\n")
    assert rlhf_imports(probe) == {"rlhf.run.stopping", "rlhf.algos.ppo.math"}
    assert layer_of("rlhf.algos.ppo.math") > layer_of("rlhf.modeling.generation")


def test_ppo_and_evaluation_leave_trl_and_datasets_unimported():
    # ~110 MB of resident memory both PPO layouts and evaluate.py would pay.
    code = (
        "import sys, rlhf.algos.ppo, rlhf.evaluation.run; "
        "print(sorted(m for m in ('trl', 'datasets') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
