"""The scoring protocol: every evaluation kept, its 95 % interval, seed blocks, and a published score on fresh blocks."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import assert_one_line_error, copy_run, run_stage
from pipeline.contract import evaluations


def test_the_interval_is_the_normal_one_of_the_mean():
    r = np.array([1.0, 2.0, 3.0, 4.0])
    low, high = evaluations.interval95(r)
    half = 1.959963984540054 * np.std(r, ddof=1) / 2
    assert (low, high) == pytest.approx((2.5 - half, 2.5 + half))


def test_records_accumulate_and_an_old_single_record_reads_as_block_0(tmp_path):
    (tmp_path / "controller_eval.json").write_text(json.dumps({"episodes": 2, "mean": 5.0, "std": 1.0,
                                                                 "returns": [4.0, 6.0]}))
    assert evaluations.load(tmp_path)[0]["block"] == 0
    evaluations.record(tmp_path, {1: np.array([1.0, 3.0])}, "abc")
    evaluations.record(tmp_path, {2: np.array([10.0]), 3: np.array([20.0])}, "abc", published=True)
    history = evaluations.load(tmp_path)
    assert [e["mean"] for e in history] == [5.0, 2.0, 15.0]
    assert history[2]["block_means"] == [10.0, 20.0] and history[2]["blocks"] == [2, 3]
    assert evaluations.latest(tmp_path, published=True)["mean"] == 15.0
    assert evaluations.fresh_blocks(tmp_path, 3) == [4, 5, 6]
    assert evaluations.used_blocks(tmp_path)[0] == {""}


def test_evaluate_keeps_every_score_and_publish_takes_fresh_blocks(tiny_run, tmp_path):
    flags = copy_run(tiny_run, tmp_path / "run")
    run = tmp_path / "run"
    before = len(evaluations.load(run))
    out = run_stage("04_train_controller.py", *flags, "--steps", "10", "--workers", "2", "--evaluate", "2",
                    "--block", "1")
    assert "95 % CI of the mean" in out.stdout and "block 1" in out.stdout
    published = run_stage("04_train_controller.py", *flags, "--steps", "5", "--workers", "2", "--evaluate", "100",
                          "--publish")
    history = evaluations.load(run)
    assert len(history) == before + 2  # nothing replaced
    entry = history[-1]
    assert entry["published"] and entry["episodes"] == 300 and entry["blocks"] == [2, 3, 4]
    assert entry["mean"] == pytest.approx(np.mean(entry["block_means"]))
    assert evaluations.describe(entry) in published.stdout
    # The three blocks are disjoint episodes: no two returns lists are the same block's.
    assert len({tuple(np.round(entry["returns"][i * 100:(i + 1) * 100], 6)) for i in range(3)}) == 3


@pytest.mark.parametrize("args, message", [
    (["--evaluate", "50", "--publish"], "at least 100 episodes"),
    (["--block", "3"], "--block"),
    (["--evaluate", "100", "--publish", "--block", "2"], "--publish chooses fresh blocks"),
])
def test_protocol_misuse_is_one_line(tmp_path, args, message, capsys):
    from types import SimpleNamespace

    from pipeline.stages import stage04_controller

    with pytest.raises(SystemExit) as stopped:
        stage04_controller.parse_args(["--run", str(tmp_path / "run"), *args])
    assert_one_line_error(SimpleNamespace(returncode=stopped.value.code, stderr=capsys.readouterr().err), message)
