"""The module map stays easy to follow: no two modules share a name, and the lower layers never import the
pipeline (models/, data/ and envs/ are used by it, not the other way round)."""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from conftest import ROOT

SKIPPED_DIRS = {".venv", ".git", "tests", "__pycache__"}
SHARED_STEMS = {"__init__", "conftest"}  # a package's own file, pytest's helpers: the same name by design
LOWER_LAYERS = ("models", "data", "envs")


def modules(root: Path) -> list[Path]:
    """Every .py file of the repository, outside the venv, git's folder, tests/ and hidden folders."""
    found = []
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).parts[:-1]
        if not any(part in SKIPPED_DIRS or part.startswith(".") for part in parts):
            found.append(path)
    return found


def stem_clashes(paths: list[Path], root: Path) -> dict[str, list[str]]:
    by_stem = defaultdict(list)
    for path in paths:
        if path.stem not in SHARED_STEMS:
            by_stem[path.stem].append(str(path.relative_to(root)))
    return {stem: sorted(where) for stem, where in by_stem.items() if len(where) > 1}


def pipeline_imports(path: Path) -> list[str]:
    """The ``pipeline`` modules a file imports (at any depth: inside functions too)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return [n for n in names if n == "pipeline" or n.startswith("pipeline.")]


def test_no_two_modules_share_a_name():
    paths = modules(ROOT)
    assert len(paths) > 50  # the walk found the repository
    assert stem_clashes(paths, ROOT) == {}


def test_the_checks_see_a_clash_and_an_upward_import(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "pipeline" / "stages").mkdir(parents=True)
    (tmp_path / "models" / "vae.py").write_text("def f():\n    from pipeline.contract import cli\n")
    (tmp_path / "pipeline" / "stages" / "vae.py").write_text("import models.vae\n")
    (tmp_path / "pipeline" / "__init__.py").write_text("")
    (tmp_path / "models" / "__init__.py").write_text("")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "vae.py").write_text("")
    assert stem_clashes(modules(tmp_path), tmp_path) == {"vae": ["models/vae.py", "pipeline/stages/vae.py"]}
    assert pipeline_imports(tmp_path / "models" / "vae.py") == ["pipeline.contract"]


def test_models_data_and_envs_import_nothing_from_pipeline():
    upward = {str(path.relative_to(ROOT)): pipeline_imports(path)
              for layer in LOWER_LAYERS for path in (ROOT / layer).rglob("*.py")}
    assert len(upward) > 20
    assert {path: names for path, names in upward.items() if names} == {}


def test_the_es_state_class_keeps_the_module_path_saved_states_name():
    """es_state.pkl files pickle ``ESState`` by its module path: moving the class would make every saved
    evolution unloadable, so the path is pinned here."""
    from pipeline.evolution import ESState

    assert f"{ESState.__module__}.{ESState.__qualname__}" == "pipeline.evolution.ESState"
