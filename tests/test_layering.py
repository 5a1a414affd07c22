"""The dependency rule of the code base, checked on every module's imports (lazy ones included).

    schemas (data contract) <- components (Beam data path)
    schemas                 <- model_keras (model, training, evaluation, export)
    components, model_keras <- pipeline (orchestration: Kubeflow, blessing, push, cache)
    components, model_keras <- experiments (the paper's tables)
    serving and synthetic stand alone.
Nothing imports upward, so a package can be read, tested and shipped with only what is below it.
"""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ALLOWED = {
    "schemas": set(),
    "synthetic": set(),
    "serving": set(),
    "components": {"schemas"},
    "model_keras": {"schemas"},
    "pipeline": {"schemas", "components", "model_keras"},
    "experiments": {"schemas", "components", "model_keras"},
    "benchmarks": {"schemas", "components", "model_keras", "pipeline", "serving", "synthetic"},
}


def project_imports(path: Path) -> set[str]:
    """Top-level project packages imported anywhere in one file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {name.split(".")[0] for name in names} & set(ALLOWED)
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_is_below_it(package):
    bad = {}
    for path in sorted((REPO / package).rglob("*.py")):
        wrong = project_imports(path) - ALLOWED[package] - {package}
        if wrong:
            bad[str(path.relative_to(REPO))] = sorted(wrong)
    assert not bad, f"imports against the dependency rule (see tests/test_layering.py): {bad}"


def test_every_top_level_package_has_a_rule():
    packages = {p.parent.name for p in REPO.glob("*/__init__.py")} - {"tests"}
    assert packages <= set(ALLOWED), f"add a rule for {packages - set(ALLOWED)}"


def test_keras_backend_is_chosen_in_one_place():
    setters = [
        str(p.relative_to(REPO))
        for p in REPO.rglob("*.py")
        if ".venv" not in p.parts
        and "TF_USE_LEGACY_KERAS" in p.read_text(encoding="utf-8")
        and p.parts[len(REPO.parts)] != "tests"
    ]
    assert setters == ["model_keras/__init__.py"]
