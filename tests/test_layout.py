"""The module map stays easy to follow: no two modules share a name, the lower layers never import the
pipeline (models/, data/ and envs/ are used by it, not the other way round), and docs/layout.md lists every module
and nothing that is gone."""
from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import pytest

from conftest import ROOT

SKIPPED_DIRS = {".venv", ".git", "tests", "__pycache__"}
SHARED_STEMS = {"__init__", "conftest"}  # a package's own file, pytest's helpers: the same name by design
LOWER_LAYERS = ("models", "data", "envs")
LAYOUT_PAGE = ROOT / "docs" / "layout.md"
TREE_LINE = re.compile(r"^( *)(\S+)(?: +\S.*)?$")  # indentation, a name (no spaces), its description


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


def layout_paths(text: str) -> list[str]:
    """The paths named by the first code block of a layout page: one entry a line, two spaces deeper under its
    folder (a name ending in "/"); a name may itself hold slashes (``pretrained/carracing/``)."""
    tree = re.search(r"^```\n(.*?)^```", text, re.S | re.M)
    assert tree, "docs/layout.md: the tree's code block is missing"
    folders: list[str] = []
    paths = []
    for number, line in enumerate(tree.group(1).splitlines(), 1):
        m = TREE_LINE.match(line)
        depth, odd = divmod(len(m.group(1)), 2) if m else (0, 1)
        assert m and not odd and depth <= len(folders), \
            f"docs/layout.md, line {number} of the tree: not a name indented two spaces under a folder: {line!r}"
        del folders[depth:]
        paths.append("".join(folders) + m.group(2))
        if m.group(2).endswith("/"):
            folders.append(m.group(2))
    return paths


def test_the_layout_page_lists_every_module_and_only_what_exists():
    listed = layout_paths(LAYOUT_PAGE.read_text(encoding="utf-8"))
    assert len(listed) == len(set(listed)), "docs/layout.md names a path twice"
    gone = [path for path in listed if not (ROOT / path).exists()]
    assert not gone, f"docs/layout.md names paths that do not exist: {gone}"
    unlisted = sorted({path.relative_to(ROOT).as_posix() for path in modules(ROOT) if path.name != "__init__.py"}
                      - set(listed))
    assert not unlisted, f"docs/layout.md does not list these modules (one line each, under their folder): {unlisted}"


def test_the_layout_tree_is_read_folder_by_folder():
    text = "Intro.\n\n```\nrun.py   top\na/b/     nested\n  c.py     in a/b\n  d/\n    e.py   deep\n  f.py\ng.py\n```\n"
    assert layout_paths(text) == ["run.py", "a/b/", "a/b/c.py", "a/b/d/", "a/b/d/e.py", "a/b/f.py", "g.py"]
    with pytest.raises(AssertionError, match="line 2 of the tree"):
        layout_paths("```\nrun.py\n    too_deep.py\n```\n")


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
