"""A packaged run scores and dreams straight away, with weights only and no rollouts; the training machine's paths
are moved to the package's, in config.json and in report.html (whose tables show the config as the run had it)."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from conftest import run_stage
from pipeline.contract.runconfig import latents_path
from pipeline.dream_env import StartFrames
from pipeline.package import relocation
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


def test_paths_move_to_the_package_and_a_longer_name_is_its_own():
    run, dest = Path("/root/runs/dream"), Path("pretrained/carracing-dream")
    config = {"collect": {"data": "/root/runs/dream-data", "run": "/root/runs/dream"},
              "mdnrnn": {"data": "/root/runs/dream-data", "vae": "/root/runs/dream/vae.pt"}}
    move = relocation(run, dest, "data/dream-carracing", config)
    assert move("/root/runs/dream") == "pretrained/carracing-dream"
    assert move("/root/runs/dream/vae.pt") == "pretrained/carracing-dream/vae.pt"
    assert move("/root/runs/dream-data") == "data/dream-carracing"  # not the run folder with "-data" after it
    assert move("<td>/root/runs/dream-data</td><td>/root/runs/dream</td>") == \
        "<td>data/dream-carracing</td><td>pretrained/carracing-dream</td>"
    assert move("/root/runs/dreamer and /root/runs/dream.old") == "/root/runs/dreamer and /root/runs/dream.old"
