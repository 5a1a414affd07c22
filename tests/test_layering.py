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


# Top-level folders that hold no Python package, each with the reason it needs no rule.
NOT_PACKAGES = {
    "data": "the embedded sample",
    "deploy": "Kubernetes manifests",
    "docs": "documentation and figures",
    "tests": "the suite itself: may import anything",
}
# Files allowed an import of a computed name, each with where the names point and what checks it.
COMPUTED_IMPORTS = {
    "model_keras/registry.py": "the modules named in MODELS, all inside model_keras (tests/model_keras/test_registry.py)",
}
DYNAMIC_IMPORTERS = {("importlib", "import_module"), ("", "__import__"), ("importlib", "__import__")}


def _dynamic_import_name(node: ast.Call) -> str | None:
    """The module a call to importlib.import_module / __import__ names with a literal, if it is one."""
    func = node.func
    owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else ""
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    if (owner, name) not in DYNAMIC_IMPORTERS and not (name == "import_module" and owner == ""):
        return None
    if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
        return node.args[0].value
    return "<computed>"


def project_imports(path: Path) -> set[str]:
    """Top-level project packages imported anywhere in one file, dynamic imports included; a dynamic import
    of a name computed at run time counts as '<computed>', which no rule allows."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and (dynamic := _dynamic_import_name(node)) is not None:
            if dynamic == "<computed>":
                found.add(dynamic)
                continue
            names = [dynamic]
        else:
            continue
        found |= {name.split(".")[0] for name in names} & set(ALLOWED)
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_is_below_it(package):
    bad = {}
    for path in sorted((REPO / package).rglob("*.py")):
        wrong = project_imports(path) - ALLOWED[package] - {package}
        if str(path.relative_to(REPO)) in COMPUTED_IMPORTS:
            wrong.discard("<computed>")
        if wrong:
            bad[str(path.relative_to(REPO))] = sorted(wrong)
    assert not bad, f"imports against the dependency rule (see tests/test_layering.py): {bad}"


def test_every_top_level_folder_has_a_rule():
    """A new folder, with or without __init__.py, needs a rule here (or a reason it holds no package)."""
    folders = {p.name for p in REPO.iterdir() if p.is_dir() and not p.name.startswith((".", "_")) and p.name != "runs"}
    missing = folders - set(ALLOWED) - set(NOT_PACKAGES)
    assert not missing, f"add a rule for {sorted(missing)} to ALLOWED (or NOT_PACKAGES, with the reason)"
    holding_code = {p.parent.name for p in REPO.glob("*/*.py")} - {"tests"}
    assert holding_code <= set(ALLOWED), f"{sorted(holding_code - set(ALLOWED))} hold Python code: give them a rule"


def test_dynamic_imports_are_caught(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import importlib\nimportlib.import_module('pipeline.config')\n__import__('serving.client')\n"
        "importlib.import_module(name)\n"
    )
    assert project_imports(sample) == {"pipeline", "serving", "<computed>"}


def test_keras_backend_is_chosen_in_one_place():
    setters = [
        str(p.relative_to(REPO))
        for p in REPO.rglob("*.py")
        if ".venv" not in p.parts
        and "TF_USE_LEGACY_KERAS" in p.read_text(encoding="utf-8")
        and p.parts[len(REPO.parts)] != "tests"
    ]
    assert setters == ["model_keras/__init__.py"]


# Rules inside a package: these modules may be imported only by the ones named (the orchestration sits on top
# of the stages: a stage never reaches up into the KFP definition, the Kubeflow client or the command line), and
# model_keras/layers/ only imports other layers (models are built from layers, never the reverse).
IMPORTED_ONLY_BY = {
    "pipeline.kfp_pipeline": {"pipeline.kubeflow", "pipeline.__main__"},
    "pipeline.kubeflow": {"pipeline.__main__"},
    "pipeline.__main__": set(),
    "experiments.__main__": set(),
}


def module_imports(path: Path) -> set[str]:
    """Full dotted names of the project modules a file imports (from X import Y counts X and X.Y)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.split(".")[0] in ALLOWED}


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts)


def test_rules_inside_packages():
    bad = []
    for package in ALLOWED:
        for path in sorted((REPO / package).rglob("*.py")):
            importer, imported = module_name(path), module_imports(path)
            for target, importers in IMPORTED_ONLY_BY.items():
                if target in imported and importer not in importers | {target}:
                    bad.append(f"{importer} imports {target} (only {sorted(importers) or 'nothing'} may)")
            if importer.startswith("model_keras.layers."):
                bad += [
                    f"{importer} imports {name}: layers import only layers"
                    for name in imported
                    if name.startswith("model_keras.") and not name.startswith("model_keras.layers")
                ]
    assert not bad, bad


def test_inside_rules_see_from_imports(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("from pipeline import kfp_pipeline\nimport pipeline.kubeflow\n")
    assert {"pipeline.kfp_pipeline", "pipeline.kubeflow"} <= module_imports(sample)
