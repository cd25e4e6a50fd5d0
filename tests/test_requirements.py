"""The requirement files resolve from the public package index as they are.

A local version label (``torch==2.13.0+cpu``) or a path names a build that only one machine's pip configuration
can find; on any other machine the lock then fails to resolve, and neither of the README's commands runs.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FILES = sorted(ROOT.glob("requirements*.txt")) + [ROOT / "requirements.lock"]

# A requirement line's version part: `name[extras]==1.2.3; marker  # comment`.
LOCAL_LABEL = re.compile(r"[=<>!~]=?\s*[0-9][^\s;,#]*\+")
PATHLIKE = re.compile(r"(file:|://|\s@\s|^-e\b|^--?(find-links|index-url|extra-index-url|f)\b|^\.{0,2}/|\.whl\b)")


def requirement_lines(path: Path) -> list[tuple[int, str]]:
    lines = []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if line:
            lines.append((number, line))
    return lines


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_no_line_names_a_local_build_or_a_path(path):
    bad = [f"{path.name}:{n}: {line}" for n, line in requirement_lines(path)
           if LOCAL_LABEL.search(line) or PATHLIKE.search(line)]
    assert not bad, "lines that only this machine can resolve:\n" + "\n".join(bad)


def test_the_checks_catch_what_they_are_for():
    assert LOCAL_LABEL.search("torch==2.13.0+cpu")
    assert LOCAL_LABEL.search("torch == 2.13.0+cu128 ; sys_platform == 'linux'")
    assert not LOCAL_LABEL.search("torch==2.13.0")
    assert not LOCAL_LABEL.search("gymnasium[box2d]==1.4.0")
    for line in ("torch @ file:///opt/wheels/torch.whl", "-e .", "--find-links /opt/wheels", "./wheels/x.whl",
                 "pkg @ https://example.org/pkg.tar.gz"):
        assert PATHLIKE.search(line), line
    assert not PATHLIKE.search("box2d==2.3.10; python_version < \"3.14\"")


def test_the_lock_pins_the_torch_the_requirements_name():
    pins = dict(line.split("==", 1) for _, line in requirement_lines(ROOT / "requirements.lock") if "==" in line)
    wanted = [line for _, line in requirement_lines(ROOT / "requirements.txt") if line.startswith("torch")]
    assert wanted == [f"torch=={pins['torch']}"]
