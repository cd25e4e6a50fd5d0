"""The figures README.md, docs/driver.md and the Makefile quote from the shipped driver run agree with the run's own
files in pretrained/carracing: metrics/*.csv, config.json, controller_eval.json and controller_reselect.json.

Each quote is found in its page by the words around it (whitespace folded, so reflowing a paragraph changes
nothing) and compared, as printed, with the figure computed from the files. A page that no longer holds a quote
fails as well, so a figure cannot be edited, or dropped, without its check. Where a page states the range a
figure is taken over ("generations 56–65"), the range is read from the page and the figure recomputed over it.
Wall times of the stages the metrics do not time (01, 02, 03, 05, --reselect, --evaluate) are read from
docs/driver.md's table, and every total built on them is checked against them and the controller's own timings.
Figures the files cannot give (the paper's scores, runs that were not shipped) are not checked here.
"""
from __future__ import annotations

import csv
import json
import re
import statistics
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from pipeline.contract import evaluations  # noqa: E402

RUN = ROOT / "pretrained" / "carracing"
FASTEST = 5  # the continuation's fastest generations, taken as the idle per-step cost


# ---- the run's files --------------------------------------------------------------------------------------------

def _json(name: str) -> dict:
    return json.loads((RUN / name).read_text(encoding="utf-8"))


def _csv(name: str) -> list[dict]:
    with open(RUN / "metrics" / f"{name}.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@cache
def config() -> dict:
    return _json("config.json")


@cache
def evaluation() -> dict:
    """The published score: 3 blocks of fresh episodes (``04 --evaluate 100 --publish``)."""
    return evaluations.latest(RUN, published=True)


def development_evaluation() -> dict:
    """The first evaluation, on block 0 of the evaluation seeds, which was scored while the recipe was decided."""
    return evaluations.load(RUN)[0]


@cache
def reselection() -> dict:
    return _json("controller_reselect.json")


@cache
def generations() -> dict[int, dict]:
    """controller.csv by generation: every column a float, empty cells None."""
    return {int(r["generation"]): {k: float(v) if v else None for k, v in r.items()} for r in _csv("controller")}


def between(first: int, last: int) -> list[dict]:
    return [generations()[g] for g in range(first, last + 1)]


def env_steps(first: int, last: int) -> int:
    return int(sum(r["env_steps"] for r in between(first, last)))


def seconds(first: int, last: int) -> float:
    return sum(r["seconds"] for r in between(first, last))


def last_generation() -> int:
    return max(generations())


def phase_two_start() -> int:
    """The first generation of the continuation on 4 episodes a candidate: the first that cost more env steps than
    a generation of 2 episodes a candidate can (its full episodes and a periodic scoring)."""
    c = config()["controller"]
    most = (c["pop"] * 2 + c["eval_episodes"]) * c["steps"]
    over = [g for g, r in generations().items() if r["env_steps"] > most]
    assert over and over == list(range(over[0], last_generation() + 1)), \
        f"controller.csv: the generations above {most:,} env steps are not one run to the end: {over}"
    return over[0]


def best_scored_generation() -> int:
    """The generation whose periodic scoring was best: the mean kept before --reselect."""
    scored = {g: r["eval_mean"] for g, r in generations().items() if r["eval_mean"] is not None}
    return max(scored, key=scored.get)


def idle_ms_per_step() -> list[float]:
    """The continuation's generations, ms an env step, fastest first."""
    return sorted(1000 * r["seconds"] / r["env_steps"] for r in between(phase_two_start(), last_generation()))


def idle_ms() -> float:
    return statistics.median(idle_ms_per_step()[:FASTEST])


def frames_per_episode() -> int:
    """Frames a collected episode holds, from V's first epoch: its frames over the training episodes."""
    first_epoch_end = [r for r in _csv("vae") if r["val_loss"]][0]
    frames, episodes = int(first_epoch_end["frames"]), config()["vae"]["train_episodes"]
    assert frames % episodes == 0, f"vae.csv: {frames} frames in epoch 1 are not a whole number per episode"
    return frames // episodes


def reselect_bound() -> int:
    r = reselection()
    return len(r["scores"]) * r["episodes"] * r["steps"]


def evaluate_bound() -> int:
    """The env steps of the recipe's own score as the measured run played it (100 episodes on block 0)."""
    return development_evaluation()["episodes"] * development_evaluation()["steps"]


# ---- the wall times docs/driver.md states for the stages the metrics do not time ---------------------------------

DURATION = re.compile(r"^(?:(\d+) h)? ?(?:(\d+) min)? ?(?:(\d+) s)?$")


def parse_duration(text: str) -> int:
    m = DURATION.match(text.strip())
    assert m and any(m.groups()), f"not a duration: {text!r}"
    h, mins, s = (int(x or 0) for x in m.groups())
    return 3600 * h + 60 * mins + s


@cache
def stage_seconds() -> dict[str, int]:
    """The shipped run's wall time per untimed stage, from the driver row of docs/driver.md's table."""
    m = re.search(r"\| 01 (.+?), 02 (.+?), 03 (.+?), C generations .+?, `--reselect 32` (.+?), "
                  r"`--evaluate 100` (.+?), 05 (.+?): \*\*", page("docs/driver.md"))
    assert m, "docs/driver.md: the driver row of 'Every run tried' with each stage's wall time is missing"
    return dict(zip(("01", "02", "03", "reselect", "evaluate", "05"), map(parse_duration, m.groups())))


def idle_estimate_s() -> float:
    """The whole recipe on an idle machine: C, --reselect and --evaluate at the idle per-step cost, the other stages
    as measured."""
    s = stage_seconds()
    steps = env_steps(1, last_generation()) + reselect_bound() + evaluate_bound()
    return steps * idle_ms() / 1000 + s["01"] + s["02"] + s["03"] + s["05"]


def measured_total_s() -> float:
    s = stage_seconds()
    return sum(s.values()) + seconds(1, last_generation())


# ---- how the pages print figures --------------------------------------------------------------------------------

def f1(x: float) -> str:
    return f"{x:.1f}"


def f2(x: float) -> str:
    return f"{x:.2f}"


def f3(x: float) -> str:
    return f"{x:.3f}"


def thousands(x: float) -> str:
    return f"{round(x):,}"


def hours_minutes(s: float) -> str:
    h, m = divmod(round(s / 60), 60)
    return f"{h} h {m} min"


def minutes_seconds(s: float) -> str:
    m, s = divmod(round(s), 60)
    return f"{m} min {s} s"


def half_hours(s: float) -> str:
    return f"{round(s / 1800) / 2:g}"


@cache
def page(name: str) -> str:
    """The page with every run of whitespace folded to one space."""
    return " ".join((ROOT / name).read_text(encoding="utf-8").split())


def found(name: str, pattern: str) -> re.Match:
    m = re.search(pattern, page(name))
    assert m, f"{name}: the quote matching {pattern!r} is gone; quote the figure again or update its check here"
    return m


# ---- the quotes -------------------------------------------------------------------------------------------------

class Quote(NamedTuple):
    """``pattern``'s groups on ``page`` must read ``expected(match)``, the same figures computed from the run."""

    page: str
    name: str
    pattern: str
    expected: Callable[[re.Match], tuple[str, ...]]


def _score(m):
    e = evaluation()
    r = e["returns"]
    return (str(e["episodes"]), str(len(e["blocks"])), str(e["episodes"] // len(e["blocks"])), str(e["steps"]),
            f1(e["mean"]), f1(e["std"]), f1(e["ci95"][0]), f1(e["ci95"][1]), *(f1(b) for b in e["block_means"]),
            f1(statistics.median(r)), f1(e["min"]), f1(e["max"]), str(sum(x >= 700 for x in r)), str(len(r)),
            str(sum(x < 500 for x in r)))


def _development_score(m):
    e = development_evaluation()
    return str(e["episodes"]), f1(e["mean"]), f1(e["std"])


def _kept(m):
    r, before = reselection(), best_scored_generation()
    assert set(r["scores"]) == {str(r["kept"]), str(before)}, \
        f"controller_reselect.json re-scored {sorted(r['scores'])}; the page names {r['kept']} and {before}"
    kept, other = r["scores"][str(r["kept"])], r["scores"][str(before)]
    return (str(r["kept"]), str(r["episodes"]), str(r["episodes"]), f1(kept["mean"]), f1(kept["std"]), str(before),
            f1(other["mean"]), f1(other["std"]))


def _vae(m):
    end = _csv("vae")[-1]
    v = config()["vae"]
    assert int(end["epoch"]) == v["epochs"], f"vae.csv ends at epoch {end['epoch']}, config.json says {v['epochs']}"
    floor = v["kl_tolerance"] * v["z_dim"]
    return (str(v["epochs"]), f1(float(end["val_loss"])), f1(float(end["val_recon"])), f1(float(end["val_kl"])),
            f"{floor:g}", f"{v['kl_tolerance']:g}")


def _mdnrnn(m):
    end = _csv("mdnrnn")[-1]
    assert int(end["epoch"]) == config()["mdnrnn"]["epochs"]
    return str(config()["mdnrnn"]["epochs"]), f3(float(end["val_nll"])), f3(float(end["val_loss"]))


def _phases(m):
    two, last = phase_two_start(), last_generation()
    return (str(two - 1), str(two), str(last), thousands(env_steps(1, two - 1)), thousands(env_steps(two, last)))


def _over_scored(m):
    g = best_scored_generation()
    return str(g), f1(generations()[g]["eval_mean"]), str(config()["controller"]["eval_episodes"])


def _patience(m):
    c = config()["controller"]
    first, late_a, late_b = int(m.group(2)), int(m.group(6)), int(m.group(7))
    assert late_b == phase_two_start() - 1, f"docs/driver.md: {late_a}–{late_b} is not the end of the first phase"
    return (thousands(statistics.mean(r["env_steps"] for r in between(1, first))), str(first),
            thousands(c["pop"] * 2 * c["steps"]), str(c["pop"]),
            thousands(statistics.mean(r["env_steps"] for r in between(late_a, late_b))), str(late_a), str(late_b))


def _schedule(m):
    two, last = phase_two_start(), last_generation()
    scored = [g for g, r in generations().items() if r["eval_mean"] is not None]
    every = []
    for first, end in ((1, two - 1), (two, last)):
        gens = [g for g in scored if first <= g <= end]
        step = gens[1] - gens[0]
        assert gens == [g for g in range(first, end + 1) if g % step == 0], \
            f"controller.csv: generations {first}–{end} were scored at {gens}, not every {step}"
        every.append(step)
    assert every[1] == config()["controller"]["eval_every"]
    return str(every[0]), str(every[1]), str(two), str(config()["controller"]["eval_episodes"])


def _late_fitness(m):
    a1, b1, a2, b2 = (int(m.group(i)) for i in (2, 3, 5, 6))
    assert (b1, b2) == (phase_two_start() - 1, last_generation()), "the ranges should end each phase"
    mean = lambda a, b: f1(statistics.mean(r["mean"] for r in between(a, b)))  # noqa: E731
    sigma = lambda g: f3(generations()[g]["sigma"])  # noqa: E731
    return mean(a1, b1), str(a1), str(b1), mean(a2, b2), str(a2), str(b2), sigma(b1), sigma(b2)


def _reselected(m):
    r = reselection()
    before = best_scored_generation()
    return str(r["kept"]), f1(r["scores"][str(r["kept"])]["mean"]), str(before), f1(r["scores"][str(before)]["mean"])


def _batches(m):
    trials = str(config()["controller"]["trials"])
    return f1(development_evaluation()["mean"]), trials, trials, f1(development_evaluation()["mean"])


def _c_times(m):
    two, last = phase_two_start(), last_generation()
    return str(two - 1), hours_minutes(seconds(1, two - 1)), str(two), str(last), hours_minutes(seconds(two, last))


def _total(m):
    return (hours_minutes(measured_total_s()),)


def _steps_row(m):
    c = config()["collect"]
    return (thousands(c["episodes"] * frames_per_episode()), thousands(env_steps(1, last_generation())),
            thousands(reselect_bound()), thousands(evaluate_bound()))


def _first_phase_row(m):
    s, one = stage_seconds(), phase_two_start() - 1
    return (str(one), hours_minutes(s["01"] + s["02"] + s["03"] + seconds(1, one)),
            thousands(config()["collect"]["episodes"] * frames_per_episode()), thousands(env_steps(1, one)),
            thousands(evaluate_bound()))


def _fastest(m):
    ms = idle_ms_per_step()
    return (f2(ms[0]), f2(ms[FASTEST - 1]), str(config()["controller"]["workers"]), f2(idle_ms()), f2(ms[-1]))


def _idle_estimate(m):
    s, ms = stage_seconds(), idle_ms()
    steps, extra = env_steps(1, last_generation()), reselect_bound() + evaluate_bound()
    return (f2(ms), thousands(steps), hours_minutes(steps * ms / 1000), thousands(extra),
            str(round(extra * ms / 1000 / 60)), minutes_seconds(s["01"] + s["02"] + s["03"] + s["05"]),
            half_hours(idle_estimate_s()))


def _per_generation(m):
    one = phase_two_start() - 1
    mean = statistics.mean(r["env_steps"] for r in between(1, one))
    workers = config()["controller"]["workers"]
    return (str(config()["controller"]["pop"]), str(config()["controller"]["patience"]), thousands(mean), str(one),
            f2(idle_ms()), str(workers), f2(idle_ms() * workers), str(round(mean * idle_ms() / 1000)))


@cache
def scaling() -> tuple[float, float, float, float]:
    """The projection's assumptions, as docs/driver.md states them: evaluation at lo–hi of linear across cores, and
    Ray at ray_lo–ray_hi × the local pool."""
    text = found("docs/driver.md", r"scales with `--workers` at (\S+) to (\S+) of linear").groups()
    ray = found("docs/driver.md", r"`--backend ray` at (\S+)–(\S+) × the local pool").groups()
    return float(text[0]), float(text[1]), float(ray[0]), float(ray[1])


def _on_cores(steps: float, cores: int, ray: bool = False) -> tuple[float, float]:
    """Minutes for ``steps`` env steps on ``cores`` cores, fastest and slowest under the stated assumptions."""
    lo, hi, ray_lo, ray_hi = scaling()
    core_s = steps * idle_ms() * config()["controller"]["workers"] / 1000 / cores / 60
    return (core_s / hi / (ray_hi if ray else 1), core_s / lo / (ray_lo if ray else 1))


def _row_640(m):
    g = best_scored_generation()
    fast, slow = _on_cores(env_steps(1, g), 16)
    return str(g), f2(env_steps(1, g) / 1e6), f1(seconds(1, g) / 3600), str(round(fast)), str(round(slow))


def _row_700(m):
    steps = env_steps(1, last_generation()) + reselect_bound()
    fast, slow = _on_cores(steps, 16)
    return (str(last_generation()), str(reselection()["episodes"]), f2(steps / 1e6),
            hours_minutes(steps * idle_ms() / 1000), f2(idle_ms()),
            hours_minutes(seconds(1, last_generation()) + stage_seconds()["reselect"]), str(round(fast)),
            str(round(slow)))


def _row_hs18(m):
    steps = float(m.group(1)) * 1e6  # the page's round figure for one generation of [HS18]'s budget
    fast, slow = _on_cores(steps, 16)
    ray_fast, ray_slow = _on_cores(steps, 64, ray=True)
    return (m.group(1), str(round(steps * idle_ms() / 1000 / 60)), str(round(fast)), str(round(slow)),
            f"{ray_fast:.2g}", f"{ray_slow:.2g}")


def _readme_results(m):
    e = evaluation()
    return (f1(env_steps(1, last_generation()) / 1e6), half_hours(idle_estimate_s()), hours_minutes(measured_total_s()),
            str(e["episodes"]), f1(e["mean"]), f1(e["std"]), f1(e["ci95"][0]), f1(e["ci95"][1]))


def _idle_hours(m):
    return (half_hours(idle_estimate_s()),)


DRIVER = "docs/driver.md"
QUOTES = [
    Quote(DRIVER, "the score", r"\*\*published score: (\d+) fresh episodes \((\d+) blocks of (\d+)\) of up to (\d+) "
          r"steps\*\* \(`--evaluate 100 --publish`\) \| \*\*(\S+) ± (\S+)\*\* \(95 % CI of the mean (\S+) – (\S+); block "
          r"means (\S+), (\S+), (\S+); median (\S+), min (\S+), max (\S+); (\d+) of (\d+) at 700 or more, (\d+) below "
          r"500\)", _score),
    Quote(DRIVER, "the development score", r"on block 0 of the evaluation seeds, (\d+) episodes, it printed "
          r"(\d+\.\d) ± (\d+\.\d)", _development_score),
    Quote(DRIVER, "the kept controller", r"the CMA mean of generation (\d+), chosen by `--reselect (\d+)`: on (\d+) "
          r"fresh selection episodes it scored (\S+) ± (\S+), the mean kept before \(generation (\d+)\) (\S+) ± (\S+) \|",
          _kept),
    Quote(DRIVER, "V's validation loss", r"V after (\d+) epochs \(validation loss per frame: summed squared error \+ "
          r"KL\) \| (\S+) \(reconstruction (\S+), KL (\S+); the loss counts a batch's KL as no less than (\S+), (\S+) "
          r"per latent dimension\)", _vae),
    Quote(DRIVER, "M's validation NLL", r"M after (\d+) epochs \(validation NLL of the next z, per latent dimension\) "
          r"\| (\S+) \(the whole validation loss, the reward and done terms included: (\S+)\)", _mdnrnn),
    Quote(DRIVER, "C's env steps by phase", r"C's real env steps: generations 1–(\d+) / (\d+)–(\d+) \(training and "
          r"periodic scorings\) \| ([\d,]+) / ([\d,]+)", _phases),
    Quote(DRIVER, "the over-stated scoring", r"the generation-(\d+) mean had scored (\S+) on its (\d+) episodes",
          _over_scored),
    Quote(DRIVER, "--patience's env steps", r"took ([\d,]+) env steps on average \(generations 1–(\d+)\) instead of the "
          r"([\d,]+) that (\d+) × 2 full episodes cost; late in the first phase, when most candidates finish the lap, "
          r"([\d,]+) \(generations (\d+)–(\d+), periodic scorings included\)", _patience),
    Quote(DRIVER, "the scoring schedule", r"Every (\d+) generations \(every (\d+) from (\d+) on\) the CMA mean plays "
          r"(\d+) fresh episodes", _schedule),
    Quote(DRIVER, "fitness and σ late", r"rose from (\S+) \(generations (\d+)–(\d+)\) to (\S+) \((\d+)–(\d+)\) while σ "
          r"fell from (\S+) to (\S+)\.", _late_fitness),
    Quote(DRIVER, "the reselection", r"here generation (\d+) at (\S+) against generation (\d+) at (\S+);", _reselected),
    Quote(DRIVER, "the batches scored in", r"scored \S+ in batches of 2 and (\S+) in batches of (\d+)\. The shipped run "
          r"records (\d+), and (\S+) is what", _batches),
    Quote(DRIVER, "C's wall time by phase", r"C generations 1–(\d+) (\d+ h \d+ min), (\d+)–(\d+) (\d+ h \d+ min),",
          _c_times),
    Quote(DRIVER, "the measured total", r"05 [^:|]+: \*\*(\d+ h \d+ min)\*\* with other work", _total),
    Quote(DRIVER, "the measured total, again", r"which is why its measured total is (\d+ h \d+ min)\.", _total),
    Quote(DRIVER, "the driver's env steps", r"([\d,]+) \(01\) \+ ([\d,]+) \(C\) \+ ([\d,]+) at most \(reselect\) \+ "
          r"([\d,]+) at most \(score\)", _steps_row),
    Quote(DRIVER, "the first phase's row", r"01, 02, 03 and C to generation (\d+) as above: (\d+ h \d+ min) \| "
          r"([\d,]+) \+ ([\d,]+) \+ ([\d,]+) at most", _first_phase_row),
    Quote(DRIVER, "the idle per-step cost", r"the five fastest generations of the continuation took (\S+)–(\S+) ms an "
          r"env step with (\d+) workers \((\S+) ms the middle one\), the slowest (\S+) ms", _fastest),
    Quote(DRIVER, "the idle estimate", r"At (\S+) ms a step the recipe's ([\d,]+) env steps of C take (\d+ h \d+ min), "
          r"and `--reselect 32` with `--evaluate 100` \(([\d,]+) env steps at most\) (\d+) min; with 01, 02, 03 and 05 "
          r"as measured above \((.+?)\), the whole recipe takes about (\S+) h on an idle machine", _idle_estimate),
    Quote(DRIVER, "a generation's cost", r"Per generation of the first phase \(population (\d+) × 2 episodes, "
          r"`--patience (\d+)`\): ([\d,]+) env steps on average \(generations 1–(\d+)\), scorings included\. At the "
          r"run's idle cost of (\S+) ms an env step with (\d+) workers \(see Wall time above\), that is one core's time "
          r"for (\S+) ms a step, and a generation costs about (\d+) s on this 2-core CPU", _per_generation),
    Quote(DRIVER, "the projection to ≈ 640", r"\| ≈ 640 over 100 episodes \| (\d+) \| (\S+) M \| (\S+) h \(measured, "
          r"shared CPU\) \| ≈ (\d+)–(\d+) min \(estimate\)", _row_640),
    Quote(DRIVER, "the projection to ≈ 700", r"\| (\d+), then `--reselect (\d+)` \| (\S+) M \| (\d+ h \d+ min) for C "
          r"and the reselection \(estimate at (\S+) ms a step; (\d+ h \d+ min) measured on the shared CPU\) \| "
          r"≈ (\d+)–(\d+) min \(estimate\)", _row_700),
    Quote(DRIVER, "a generation of [HS18]'s budget", r"\| ≈ (\S+) M a generation \| ≈ (\d+) min a generation \| "
          r"≈ (\d+)–(\d+) min a generation \| ≈ (\S+)–(\S+) min a generation \|", _row_hs18),
    Quote("README.md", "the driver in Results", r"\(`make driver`: (\S+) M env steps of C; about (\S+) hours on an "
          r"idle machine by the measured per-step cost, (\d+ h \d+ min) as measured while other work shared the "
          r"cores\), shipped in `pretrained/carracing/`\. Over (\d+) fresh episodes of up to 1000 steps it scores "
          r"\*\*(\S+) ± (\S+)\*\* \(95 % CI of the mean (\d+\.\d) – (\d+\.\d);", _readme_results),
    Quote("README.md", "the driver's time in the commands", r"`make driver` runs the full CarRacing driver recipe "
          r"\(about (\S+) hours on an idle 2-core machine", _idle_hours),
    Quote("Makefile", "the driver target's comment", r"# The CarRacing driver recipe from nothing \(about (\S+) h on an "
          r"idle 2-core CPU\)", _idle_hours),
]


@pytest.mark.parametrize("quote", QUOTES, ids=lambda q: f"{q.page}: {q.name}")
def test_the_figure_agrees_with_the_shipped_run(quote):
    m = found(quote.page, quote.pattern)
    expected = quote.expected(m)
    assert len(expected) == len(m.groups()), f"{quote.name}: the check computes {len(expected)} figures, the " \
                                             f"pattern reads {len(m.groups())}"
    wrong = [f"{got!r} where the run's files give {want!r}" for got, want in zip(m.groups(), expected) if got != want]
    assert not wrong, f"{quote.page}, {quote.name}: " + "; ".join(wrong)


def test_a_changed_figure_is_caught(monkeypatch):
    """The check compares figures, not only the words around them: one digit changed in the page fails it."""
    quote = next(q for q in QUOTES if q.name == "M's validation NLL")
    real = page
    monkeypatch.setattr(sys.modules[__name__], "page",
                        lambda name: real(name).replace("| 0.991 (", "| 0.992 (") if name == quote.page else real(name))
    with pytest.raises(AssertionError, match="'0.992' where the run's files give '0.991'"):
        test_the_figure_agrees_with_the_shipped_run(quote)


def test_config_records_the_generations_the_run_evolved():
    """config.json's --generations is the count the evolution was started with; the shipped one states what the run
    did, which controller.csv and controller.pt's scored generations must match."""
    c = config()["controller"]
    assert c["generations"] == last_generation() == len(generations())
    assert evaluation()["params_from"].startswith(f"CMA mean at generation {reselection()['kept']},")


BASE64 = re.compile(rb"base64,[A-Za-z0-9+/=]+")
MACHINE_PATH = re.compile(rb"(?<![\w.+/-])/(?:root|home|work|tmp)/")


def test_no_shipped_file_names_a_path_of_the_training_machine():
    found_in = []
    for path in sorted((ROOT / "pretrained").rglob("*")):  # every shipped run, not only the driver
        if path.is_file():
            data = BASE64.sub(b"", path.read_bytes())  # embedded images are data, not paths
            if m := MACHINE_PATH.search(data):
                found_in.append(f"{path.relative_to(ROOT)}: {data[m.start(): m.start() + 40]!r}")
    assert not found_in, "absolute paths of the machine the run was trained on: " + "; ".join(found_in)
