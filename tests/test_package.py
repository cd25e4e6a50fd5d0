"""A packaged run scores and dreams straight away, with weights only and no rollouts."""
from __future__ import annotations

import json

import torch

from conftest import run_stage
from pipeline.contract.runconfig import latents_path
from pipeline.dream_env import StartFrames
from pipeline.world_model import WorldModel


def test_a_packaged_run_scores_as_the_run_did_and_can_dream(tiny_run, tmp_path):
    dest = tmp_path / "pretrained" / "carracing"
    out = run_stage("package_run.py", "--run", tiny_run["run"], "--to", dest, "--data", "data/none", "--episodes", "2")
    assert str(dest) in out.stdout
    for name in ("vae.pt", "mdnrnn.pt"):
        state = torch.load(dest / name, weights_only=True)
        assert "optimizer" not in state and state["model"].keys() == torch.load(tiny_run["run"] / name,
                                                                               weights_only=True)["model"].keys()
    assert not list(dest.rglob("shard_*.h5"))
    config = json.loads((dest / "config.json").read_text())
    assert config["collect"]["data"] == "data/none" and config["controller"]["run"] == str(dest)
    # --evaluate needs only the package (the data folder it names does not exist), and gives the run's score.
    score = run_stage("04_train_controller.py", "--run", dest, "--steps", "30", "--workers", "2", "--evaluate", "3")
    assert score.stdout.strip().splitlines()[-1] == tiny_run["evaluate"].stdout.strip().splitlines()[-1]
    world = WorldModel.load(dest, "carracing")
    starts = StartFrames(latents_path(dest), 0, world.vae_fingerprint)  # what 05 --play starts its dreams from
    assert len(starts.keys) == 2
    proc = run_stage("package_run.py", "--run", tiny_run["run"], "--to", dest, check=False)
    assert proc.returncode == 2 and "already exists" in proc.stderr
