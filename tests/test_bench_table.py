"""bench/doc_table.py: the bench's markdown table, and its replacement between the markers of a docs page.

Loaded from its file (bench/ is a folder of scripts, not a package); it imports neither torch nor the project.
"""
from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("doc_table", ROOT / "bench" / "doc_table.py")
doc_table = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(doc_table)

ROWS = [("stock env, 1 process", "149 env-steps/s", "1.00 (baseline)"),
        ("fast env | pixel-identical", "585 env-steps/s", "3.92 × stock")]
BEFORE = "# Page\n\nText above, kept.\n\n"
AFTER = "\n\nText below,\nkept too.\n"


def page(inner: str) -> str:
    return f"{BEFORE}{doc_table.BEGIN}\n{inner}\n{doc_table.END}{AFTER}"


def test_render_table_is_a_markdown_table_with_escaped_cells():
    assert doc_table.render_table(ROWS).splitlines() == [
        "| figure | rate | ratio |",
        "|---|---|---|",
        "| stock env, 1 process | 149 env-steps/s | 1.00 (baseline) |",
        "| fast env \\| pixel-identical | 585 env-steps/s | 3.92 × stock |",
    ]
    assert doc_table.render_table([("a\nb", 1, 2.5)], header=("x", "y", "z")).splitlines()[-1] == "| a b | 1 | 2.5 |"
    with pytest.raises(ValueError, match="2 cells"):
        doc_table.render_table([("only", "two")])


def test_the_table_replaces_what_was_between_the_markers_and_nothing_else(tmp_path):
    path = tmp_path / "benchmarks.md"
    path.write_text(page("| old | table |\nstale note"), encoding="utf-8")
    block = "Measured by `python bench/bench.py`.\n\n" + doc_table.render_table(ROWS)
    doc_table.write_between_markers(path, block)
    text = path.read_text(encoding="utf-8")
    assert text == page(block)
    assert text.startswith(BEFORE) and text.endswith(doc_table.END + AFTER)
    assert "stale note" not in text and "| old | table |" not in text
    doc_table.write_between_markers(path, block)  # a second run with the same figures changes nothing
    assert path.read_text(encoding="utf-8") == text
    assert not list(tmp_path.glob("*.tmp"))


def test_the_docs_page_has_one_marker_pair_and_keeps_the_rest(tmp_path):
    copy = tmp_path / "benchmarks.md"
    shutil.copy(ROOT / "docs" / "benchmarks.md", copy)
    original = copy.read_text(encoding="utf-8")
    doc_table.write_between_markers(copy, doc_table.render_table(ROWS))
    new = copy.read_text(encoding="utf-8")
    head, tail = original.index(doc_table.BEGIN), original.index(doc_table.END)
    assert new[: head + len(doc_table.BEGIN)] == original[: head + len(doc_table.BEGIN)]
    assert new.endswith(original[tail:])
    assert doc_table.render_table(ROWS) in new


@pytest.mark.parametrize("text, found", [
    ("# A page without markers\n", "found 0 and 0"),
    (f"{doc_table.BEGIN}\nonly the beginning\n", "found 1 and 0"),
    (f"{doc_table.BEGIN}\n{doc_table.END}\n{doc_table.BEGIN}\n{doc_table.END}\n", "found 2 and 2"),
])
def test_a_page_without_one_marker_pair_is_refused_and_left_alone(tmp_path, text, found):
    path = tmp_path / "page.md"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(doc_table.MarkerError, match=found) as error:
        doc_table.write_between_markers(path, "| a | b | c |")
    assert str(path) in str(error.value) and doc_table.BEGIN in str(error.value)
    assert path.read_text(encoding="utf-8") == text


def test_markers_in_the_wrong_order_are_refused(tmp_path):
    path = tmp_path / "page.md"
    path.write_text(f"{doc_table.END}\n{doc_table.BEGIN}\n", encoding="utf-8")
    with pytest.raises(doc_table.MarkerError, match="comes before"):
        doc_table.write_between_markers(path, "x")


def test_each_target_is_one_line_saying_whether_it_is_met():
    lines = doc_table.render_targets([
        doc_table.Target("fast env / EnvPool, 1 env", 1.0, 0.354),
        doc_table.Target("batched envs / EnvPool, 8 envs", 1.0, None, "no vectorised env exists yet"),
        doc_table.Target("dream / real-env evaluation", 100.0, 104.4, "2 processes"),
    ]).splitlines()
    assert lines == [
        "Targets:",
        "",
        "- fast env / EnvPool, 1 env: 0.35× (target ≥ 1×: not met)",
        "- batched envs / EnvPool, 8 envs: not measured, no vectorised env exists yet (target ≥ 1×)",
        "- dream / real-env evaluation: 104× (target ≥ 100×: met); 2 processes",
    ]


def _published(page: str) -> str:
    text = (ROOT / page).read_text(encoding="utf-8")
    return text[text.index(doc_table.BEGIN): text.index(doc_table.END)]


# The README's speed summary: each quote (whitespace folded) and the line of the published block it comes from.
README_RATIOS = [
    (r"steps \*\*(\S+)×\*\* stock CarRacing-v3",
     r"\| FastCarRacing \(pixel-identical\), 1 env, the same turns \| [^|]+ \| (\S+) × stock \|"),
    (r"and \*\*(\S+)×\*\* EnvPool's C\+\+ CarRacing-v3 with one env",
     r"- FastCarRacing / EnvPool CarRacing-v3, 1 env: (\S+)×"),
    (r"at par \(\*\*(\S+)×\*\*\) with EnvPool's batch of 8 envs",
     r"- FastCarRacingVector / EnvPool CarRacing-v3, 8 envs batched: (\S+)×"),
    (r"runs \*\*(\S+)×\*\* real-env evaluation on the same 2 cores",
     r"- dream on 2 threads / real-env evaluation \(FastCarRacing, 2 processes\): (\S+)×"),
    (r"controller evaluation runs at \*\*(\S+)\*\* of the bare env",
     r"- evaluation / bare env \(2 processes\), V's encoder in int8 \(the fastest precision\): (\S+)×"),
]


def test_the_readme_quotes_the_published_run_and_holds_no_table_of_its_own():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert doc_table.BEGIN not in readme and doc_table.END not in readme  # one table, in docs/benchmarks.md
    readme, block = " ".join(readme.split()), _published("docs/benchmarks.md")
    for quote, source in README_RATIOS:
        said, published = re.search(quote, readme), re.search(source, block)
        assert said, f"README.md: the speed summary no longer quotes {quote!r}; quote it again or update this check"
        assert published, f"docs/benchmarks.md: the published run has no line matching {source!r}"
        assert said.group(1) == published.group(1), \
            f"README.md quotes {said.group(1)}× where docs/benchmarks.md's run gives {published.group(1)}×"


def test_the_docs_block_holds_the_envpool_rows_and_a_line_per_target():
    """The published block is the bench's last full run (with envpool installed): its EnvPool rows and its three
    target lines, and the line of the evaluation target at V's fastest precision."""
    block = _published("docs/benchmarks.md")
    assert "| EnvPool CarRacing-v3 (C++), 1 env, 1 thread, the same turns |" in block
    assert "| EnvPool CarRacing-v3 (C++), 8 envs batched, 1 thread, the same turns |" in block
    targets = [line for line in block.splitlines() if line.startswith("- ") and "(target ≥" in line]
    assert [line.split(":")[0].split(" (")[0] for line in targets] == [
        "- FastCarRacing / EnvPool CarRacing-v3, 1 env",
        "- FastCarRacingVector / EnvPool CarRacing-v3, 8 envs batched",
        "- dream on 2 threads / real-env evaluation",
        "- evaluation / bare env",
    ]
