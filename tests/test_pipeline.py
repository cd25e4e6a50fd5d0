"""The four stage scripts end to end at tiny scale, and what they wrote."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from conftest import TINY, copy_run, rows, run_stage
from data.store import RolloutStore
from pipeline.contract import evaluations


def test_collect_wrote_complete_episodes(tiny_run):
    refs = RolloutStore(tiny_run["data"]).require()
    assert [r.id for r in refs] == [0, 1, 2, 3]
    assert all(1 <= r.length <= 40 for r in refs)
    assert not list((tiny_run["data"] / ".staging").glob("*.h5"))
    config = json.loads((tiny_run["run"] / "config.json").read_text())
    assert config["collect"]["episodes"] == 4 and config["collect"]["policy"] == "brownian"


def test_collect_rerun_completes_the_dataset_without_rewriting(tiny_run, tmp_path):
    data = tmp_path / "data"
    args = ["--data", data, "--run", tmp_path / "run", "--steps", "20", "--workers", "2"]
    run_stage("01_collect.py", *args, "--episodes", "2")
    first = {p.name: p.read_bytes() for p in data.glob("*.h5")}
    out = run_stage("01_collect.py", *args, "--episodes", "5")
    assert "2 already there, 3 collected" in out.stdout
    assert all(data.joinpath(name).read_bytes() == blob for name, blob in first.items())
    assert [r.id for r in RolloutStore(data).index()] == [0, 1, 2, 3, 4]
    assert "0 collected" in run_stage("01_collect.py", *args, "--episodes", "5").stdout


def test_vae_stage_outputs(tiny_run):
    run = tiny_run["run"]
    state = torch.load(run / "vae.pt", weights_only=True)
    assert state["progress"]["epoch"] == 1 and "optimizer" in state
    assert (run / "plots" / "vae_recon_epoch_001.png").stat().st_size > 1000
    assert (run / "plots" / "vae_loss.png").exists()
    log = rows(run / "metrics" / "vae.csv")
    assert log and np.isfinite(float(log[-1]["val_loss"]))


def test_vae_trains_the_same_on_frames_in_memory_as_on_streamed_frames(tiny_run, tmp_path):
    """--frames-in-memory yes (decoded once, batches cut on the device) against no (HDF5 read every epoch by a
    loader process): the same batches in the same order, so the same weights bit for bit and the same metrics."""
    out = {}
    for mode in ("yes", "no"):
        run = tmp_path / mode
        run_stage("02_train_vae.py", "--data", tiny_run["data"], "--run", run, *TINY["vae"], "--epochs", "2",
                  "--frames-in-memory", mode)
        out[mode] = (torch.load(run / "vae.pt", weights_only=True)["model"], (run / "metrics" / "vae.csv").read_text())
    (weights, metrics), (streamed, streamed_metrics) = out["yes"], out["no"]
    assert metrics == streamed_metrics and len(metrics.splitlines()) > 2
    assert all(torch.equal(weights[k], streamed[k]) for k in streamed)


def test_vae_resumes_and_continues_metrics_without_duplicates(tiny_run, tmp_path):
    run = tmp_path / "run"
    folders = ["--data", tiny_run["data"], "--run", run]
    run_stage("02_train_vae.py", *folders, *TINY["vae"])
    out = run_stage("02_train_vae.py", *folders, *TINY["vae"][2:], "--epochs", "2")
    assert "resuming" in out.stdout
    steps = [int(r["step"]) for r in rows(run / "metrics" / "vae.csv")]
    assert steps == sorted(set(steps))
    assert torch.load(run / "vae.pt", weights_only=True)["progress"]["epoch"] == 2


def test_mdnrnn_stage_outputs(tiny_run):
    run = tiny_run["run"]
    with h5py.File(run / "latents.h5") as f:
        g = f["episode_0"]
        assert g["mu"].shape[0] == g["actions"].shape[0] + 1 and g["mu"].shape[1] == 32
    state = torch.load(run / "mdnrnn.pt", weights_only=True)
    assert state["config"]["core"] == "lstm" and state["progress"]["epoch"] == 2
    log = rows(run / "metrics" / "mdnrnn.csv")
    assert [r["epoch"] for r in log] == ["1", "2"]
    assert all(np.isfinite(float(r["val_nll"])) for r in log)
    assert (run / "plots" / "mdnrnn_loss.png").exists()


def test_controller_stage_outputs(tiny_run):
    run = tiny_run["run"]
    ctrl = torch.load(run / "controller.pt", weights_only=True)
    assert ctrl["params"].shape == ((32 + 32 + 1) * 3,)  # [z (32), h (--hidden 32), bias] → 3 actions
    assert ctrl["mean"].shape == ctrl["best_candidate"].shape == ctrl["params"].shape
    assert ctrl["generation"] == 2 and ctrl["params_from"].startswith("CMA mean at generation")
    log = rows(run / "metrics" / "controller.csv")
    assert [r["generation"] for r in log] == ["1", "2"]
    for r in log:
        assert float(r["worst"]) <= float(r["mean"]) <= float(r["best"])
        assert r["eval_mean"] != ""
    assert (run / "es_state.pkl").exists() and (run / "plots" / "controller_fitness.png").exists()
    result = evaluations.latest(run)
    assert result["episodes"] == 3 and len(result["returns"]) == 3
    assert f"{result['mean']:.1f} ± {result['std']:.1f}" in tiny_run["evaluate"].stdout


@pytest.mark.parametrize("script", ["01_collect.py", "02_train_vae.py", "03_train_mdnrnn.py", "04_train_controller.py",
                                    "05_dream.py", "compare_cores.py"])
def test_help_documents_every_flag(script):
    import re

    out = run_stage(script, "--help").stdout
    flags = set(re.findall(r"(--[a-z][a-z-]+)", out)) - {"--help"}
    assert {"--env", "--data", "--run", "--seed", "--preset"} <= flags
    for flag in flags:  # every flag's entry carries a description, not just its name
        entry = re.search(rf"^\s+{flag}\b.*?(?=^\s+-|\Z)", out, re.M | re.S)
        assert entry and len(entry.group(0).split()) > 2, flag


def test_controller_resumes_after_the_last_generation(tiny_run, tmp_path):
    folders = copy_run(tiny_run, tmp_path / "run")
    out = run_stage("04_train_controller.py", *folders, *TINY["controller"][:-6],
                    "--generations", "3", "--eval-every", "5", "--eval-episodes", "2")
    assert "resuming" in out.stdout and "generation 2" in out.stdout
    log = rows(tmp_path / "run" / "metrics" / "controller.csv")
    assert [r["generation"] for r in log] == ["1", "2", "3"]


def test_evaluation_is_reproducible_and_independent_of_workers(tiny_run, tmp_path):
    folders = copy_run(tiny_run, tmp_path / "run")  # --evaluate writes controller_eval.json into the run
    a = run_stage("04_train_controller.py", *folders, "--steps", "30", "--workers", "1", "--evaluate", "3")
    assert a.stdout.strip().splitlines()[-1] == tiny_run["evaluate"].stdout.strip().splitlines()[-1]


def test_reselect_scores_the_archived_means_again_and_keeps_the_best(tiny_run, tmp_path):
    """The tiny run scored its CMA mean at generations 1 and 2 (--eval-every 1): --reselect scores both again on
    the same fresh selection episodes and keeps the better; --evaluate then scores the one kept."""

    from pipeline.evolution import ESState

    run = tmp_path / "run"
    folders = copy_run(tiny_run, run)
    out = run_stage("04_train_controller.py", *folders, *TINY["controller"], "--reselect", "3")
    lines = [line for line in out.stdout.splitlines() if line.startswith("CMA mean of generation")]
    assert [line.split(":")[0] for line in lines] == ["CMA mean of generation 1", "CMA mean of generation 2"]
    chosen = json.loads((run / "controller_reselect.json").read_text())
    means = {int(g): s["mean"] for g, s in chosen["scores"].items()}
    assert chosen["kept"] == max(means, key=means.get) and chosen["episodes"] == 3
    ctrl = torch.load(run / "controller.pt", weights_only=True)
    assert ctrl["params_from"] == (f"CMA mean at generation {chosen['kept']}, the best of 2 CMA means re-scored "
                                   "on 3 selection episodes")
    assert ctrl["score_mean"] == pytest.approx(means[chosen["kept"]])
    state = ESState.load(run / "es_state.pkl", ctrl["params"].numel())
    archived = {g: p for _, g, p in state.archive}
    np.testing.assert_array_equal(ctrl["params"].numpy(), archived[chosen["kept"]].astype(np.float32))
    proc = run_stage("04_train_controller.py", *folders, "--reselect", "2", "--evaluate", "2", check=False)
    assert proc.returncode == 2 and "choose the controller first" in proc.stderr
