"""The figures docs/dreams.md and README.md quote from the shipped dream-trained run agree with its own files in
pretrained/carracing-dream: every row of the rounds table against metrics/rounds.csv, and the published score, its
interval and the run's totals against controller_eval.json. A quote that is edited, or dropped, fails."""
from __future__ import annotations

import csv
import math
import re
import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT))
from pipeline.contract import evaluations  # noqa: E402

RUN = ROOT / "pretrained" / "carracing-dream"
PAGE = ROOT / "docs" / "dreams.md"
SECTION = "#### The shipped run"


def folded(text: str) -> str:
    """Whitespace folded, so reflowing a paragraph changes nothing."""
    return " ".join(text.split())


def rounds() -> list[dict]:
    with open(RUN / "metrics" / "rounds.csv", newline="", encoding="utf-8") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def section() -> str:
    text = PAGE.read_text(encoding="utf-8")
    assert SECTION in text, f"docs/dreams.md: the section {SECTION!r} is missing"
    return text[text.index(SECTION):].split("\n#### ", 1)[0]


def row(r: dict) -> str:
    """A round as the page's table prints it."""
    nll = "– → –" if math.isnan(r["nll_new_before"]) else f"{r['nll_new_before']:.3f} → {r['nll_new_after']:.3f}"
    return (f"| {int(r['round'])} | {int(r['real_env_steps']):,} | {int(r['dream_steps']):,} | {nll} | "
            f"{r['calibration_dream']:.1f} / {r['calibration_real']:.1f} | {r['c_dream_return']:.1f} | "
            f"**{r['c_real_return']:.1f} ± {r['c_real_std']:.1f}** | {r['seconds'] / 60:.1f} |")


def score(entry: dict) -> str:
    low, high = entry["ci95"]
    return (f"{entry['mean']:.1f} ± {entry['std']:.1f} over {entry['episodes']} fresh episodes** (3 blocks of 100 "
            f"never scored before; 95 % CI of the mean {low:.1f} – {high:.1f}; block means "
            + ", ".join(f"{m:.1f}" for m in entry["block_means"]) + f"; min {entry['min']:.1f}, max {entry['max']:.1f})")


def test_the_rounds_table_is_the_runs_rounds_csv():
    table = [line for line in section().splitlines() if re.match(r"^\| \d+ \|", line)]
    assert table == [row(r) for r in rounds()]


def test_the_published_score_and_the_runs_totals():
    entry = evaluations.latest(RUN, published=True)
    assert entry and entry["episodes"] == 300 and entry["blocks"] == [1, 2, 3]
    assert f"Score of the last round's C (not chosen by its selection scores): **{score(entry)}" in folded(section())
    last = rounds()[-1]
    summary = folded(PAGE.read_text(encoding="utf-8"))
    runs_row = (f"| {len(rounds())} (0–{int(last['round'])}) | {int(last['real_env_steps']):,} | "
                f"{last['dream_steps'] / 1e6:.1f} M |")
    assert runs_row in summary
    assert f"**{entry['mean']:.1f} ± {entry['std']:.1f}** over 300 fresh episodes" in summary
    readme = folded(ROOT.joinpath("README.md").read_text(encoding="utf-8"))
    assert f"{entry['mean']:.1f} ± {entry['std']:.1f} over 300 fresh CarRacing episodes" in readme
