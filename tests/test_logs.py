"""What a run writes besides its CSVs: plain lines when its output is a log file, live curves with --log."""
import csv
import importlib.util
import io
import re

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import TINY, copy_run, run_stage
from pipeline.reporting.progress import LOG_EVERY, bar


def test_a_bar_in_a_log_file_writes_its_first_and_last_state_as_plain_lines():
    log = io.StringIO()
    # disable=False: the suite's own process has TQDM_DISABLE set for the stages it runs in it (conftest.py)
    for _ in bar(range(20_000), file=log, desc="steps", disable=False):
        pass
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert LOG_EVERY >= 30  # a fast loop writes no line in between
    assert len(lines) == 2 and lines[0].startswith("steps:   0%") and lines[1].startswith("steps: 100%")
    assert "20000/20000" in lines[1]


def logged_states(lines: list[str], desc: str) -> list[str]:
    """The plain lines of one bar named ``desc`` in a log, checked: its first state (0 %), its last (100 %), and in
    between at most one line per LOG_EVERY seconds of the elapsed time its last line shows."""
    states = [line for line in lines if line.startswith(desc + ":")]
    assert states[0].startswith(f"{desc}:   0%") and states[-1].startswith(f"{desc}: 100%"), states
    minutes, seconds = map(int, re.search(r"\[(\d+):(\d+)<", states[-1]).groups())
    assert len(states) <= 2 + (60 * minutes + seconds) // LOG_EVERY, states
    return states


def test_without_a_terminal_bars_are_plain_lines_and_each_generation_has_a_summary(tiny_run):
    for stage in ("collect", "vae", "mdnrnn", "controller"):
        proc = tiny_run[stage]
        assert "\r" not in proc.stdout + proc.stderr, stage
    logged_states(tiny_run["collect"].stderr.splitlines(), "collect")
    mdnrnn = tiny_run["mdnrnn"].stderr.splitlines()
    for epoch in (1, 2):  # each epoch's bar: its first and last state (more only for an epoch longer than LOG_EVERY)
        logged_states(mdnrnn, f"mdnrnn epoch {epoch}/2")
    generations = [line for line in tiny_run["controller"].stdout.splitlines() if line.startswith("generation ")]
    assert [line.split(":")[0] for line in generations] == ["generation 1/2", "generation 2/2"]
    assert "CMA mean scored" in generations[0] and "σ" in generations[0]
    assert "epoch 2: nll" in tiny_run["mdnrnn"].stdout and "epoch 1: val loss" in tiny_run["vae"].stdout


@pytest.mark.parametrize("stage,key", [("vae", "step"), ("mdnrnn", "epoch"), ("controller", "generation")])
def test_tensorboard_holds_the_same_scalars_as_the_metrics_csv(tiny_run, stage, key):
    events = EventAccumulator(str(tiny_run["run"] / "tb" / stage), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    with open(tiny_run["run"] / "metrics" / f"{stage}.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    tags = events.Tags()["scalars"]
    for column in rows[0]:
        values = [(int(float(r[key])), float(r[column])) for r in rows if r[column] != ""]
        if not values:
            continue
        logged = [(e.step, e.value) for e in events.Scalars(f"{stage}/{column}")]
        assert [s for s, _ in logged] == [s for s, _ in values], column
        assert [v for _, v in logged] == pytest.approx([v for _, v in values], rel=1e-6), column
    assert f"{stage}/steps_per_s" in tags or stage == "vae"
    if stage == "vae":  # V's reconstruction grid, once an epoch
        images = events.Images("vae/reconstruction")
        assert len(images) == 1 and images[0].width > 100 and images[0].height > 100


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed here")
def test_log_wandb_without_wandb_is_one_line_and_writes_nothing(tiny_run, tmp_path):
    folders = copy_run(tiny_run, tmp_path / "run")
    metrics = (tmp_path / "run" / "metrics" / "controller.csv").read_bytes()
    proc = run_stage("04_train_controller.py", *folders, *TINY["controller"], "--generations", "3",
                     "--log", "wandb", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].endswith("--log wandb needs the wandb package: pip install wandb "
                                                         "(and wandb login), or drop the flag")
    assert (tmp_path / "run" / "metrics" / "controller.csv").read_bytes() == metrics
