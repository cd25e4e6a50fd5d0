"""Bad input: one line on stderr naming the file or flag and what to do, exit code 2, no traceback, and no file
that existed before changed. (A missing Sonic ROM: tests/test_sources.py.)"""
from __future__ import annotations

import runpy
import shutil
import sys
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import torch

from conftest import ROOT, assert_one_line_error, run_stage, snapshot


@pytest.fixture(scope="module")
def copied(tiny_run, tmp_path_factory) -> dict:
    """A copy of the tiny run's data and run folders, for the commands that must leave them alone."""
    base = tmp_path_factory.mktemp("bad_input")
    shutil.copytree(tiny_run["data"], base / "data")
    shutil.copytree(tiny_run["run"], base / "run")
    return {"data": base / "data", "run": base / "run", "folders": ["--data", base / "data", "--run", base / "run"]}


def assert_refused(copied, script, *args, needles=()):
    before = snapshot(copied["data"], copied["run"])
    assert_one_line_error(run_stage(script, *copied["folders"], *args, check=False), *needles)
    assert snapshot(copied["data"], copied["run"]) == before


@pytest.mark.parametrize("script,args,needles", [
    # out of range or not a value at all
    ("01_collect.py", ["--workers", "0"], ["--workers", "positive"]),
    ("01_collect.py", ["--episodes", "-3"], ["--episodes"]),
    ("02_train_vae.py", ["--batch", "zero"], ["--batch"]),
    ("02_train_vae.py", ["--val-fraction", "1.5"], ["--val-fraction", "[0, 1)"]),
    ("02_train_vae.py", ["--lr", "nan"], ["--lr", "(0, 1]"]),
    ("02_train_vae.py", ["--lr", "1e30"], ["--lr", "(0, 1]"]),
    ("02_train_vae.py", ["--kl-tolerance", "-1"], ["--kl-tolerance", "non-negative"]),
    ("02_train_vae.py", ["--checkpoint-minutes", "0"], ["--checkpoint-minutes"]),
    ("03_train_mdnrnn.py", ["--lr", "inf"], ["--lr", "(0, 1]"]),
    ("03_train_mdnrnn.py", ["--core", "vsg", "--kappa", "1.5"], ["--kappa", "(0, 1)"]),
    ("04_train_controller.py", ["--pop", "0"], ["--pop"]),
    ("04_train_controller.py", ["--in", "dream", "--temperature", "0"], ["--temperature", "positive"]),
    ("04_train_controller.py", ["--task-timeout", "0"], ["--task-timeout"]),
    ("05_dream.py", ["--temperature", "0"], ["--temperature", "positive"]),
    # unknown names
    ("01_collect.py", ["--env", "pong"], ["--env", "carracing"]),
    ("04_train_controller.py", ["--env", "pong"], ["--env", "carracing"]),
    ("03_train_mdnrnn.py", ["--core", "transformer"], ["--core"]),
    ("compare_cores.py", ["--cores", "lstm,transformer"], ["--cores", "transformer"]),
    # contradictory: a flag that does not apply to what the others ask for
    ("03_train_mdnrnn.py", ["--core", "lstm", "--window", "8"], ["--window", "--core attention"]),
    ("03_train_mdnrnn.py", ["--kappa", "0.3"], ["--kappa", "--core svsg or vsg"]),
    ("04_train_controller.py", ["--evaluate", "3", "--in", "dream"], ["--in", "--evaluate"]),
    ("04_train_controller.py", ["--temperature", "2"], ["--temperature", "--in dream"]),
    ("04_train_controller.py", ["--real-every", "2"], ["--real-every", "--in dream"]),
])
def test_nonsensical_flags(copied, script, args, needles, monkeypatch, capsys):
    """In this process, as ``python script args`` runs it (the flags are refused before anything is read)."""
    before = snapshot(copied["data"], copied["run"])
    monkeypatch.setattr(sys, "argv", [script, *map(str, copied["folders"]), *args])
    with pytest.raises(SystemExit) as stopped:
        runpy.run_path(str(ROOT / script), run_name="__main__")
    assert_one_line_error(SimpleNamespace(returncode=stopped.value.code, stderr=capsys.readouterr().err), *needles)
    assert snapshot(copied["data"], copied["run"]) == before


def test_missing_and_empty_data_folder(copied, tmp_path):
    (tmp_path / "empty").mkdir()
    for script in ("02_train_vae.py", "03_train_mdnrnn.py"):
        for folder in (tmp_path / "nope", tmp_path / "empty"):
            assert_refused(copied, script, "--data", folder, needles=[str(folder), "01_collect.py"])
    missing = run_stage("02_train_vae.py", "--data", tmp_path / "nope", "--run", tmp_path / "run", check=False)
    assert_one_line_error(missing, "nope", "01_collect.py")
    assert not (tmp_path / "run" / "vae.pt").exists()


def test_missing_checkpoints_name_the_stage_to_run(tiny_run, tmp_path):
    folders = ["--data", tiny_run["data"], "--run", tmp_path / "fresh"]
    assert_one_line_error(run_stage("03_train_mdnrnn.py", *folders, check=False), "vae.pt", "02_train_vae.py")
    assert_one_line_error(run_stage("04_train_controller.py", *folders, check=False), "vae.pt", "02_train_vae.py")


def write_bad_h5(data, damage: str) -> None:
    """zz_bad.h5 in ``data``: cut short, plain text, another program's HDF5, or a shard whose frames have the
    wrong shape or dtype (file attributes copied from a real shard, so only the frames are wrong)."""
    bad = data / "zz_bad.h5"
    shard = next(data.glob("shard_*.h5"))
    if damage == "truncate":
        blob = shard.read_bytes()
        bad.write_bytes(blob[: len(blob) // 3])
    elif damage == "text":
        bad.write_text("hello")
    elif damage == "foreign":
        with h5py.File(bad, "w") as f:
            f["x"] = [1, 2, 3]
    else:
        frames = np.zeros((6, 32, 32, 3), np.uint8) if damage == "shape" else np.zeros((6, 64, 64, 3), np.float32)
        with h5py.File(shard, "r") as src, h5py.File(bad, "w") as f:
            f.attrs.update(dict(src.attrs))
            g = f.create_group("episode_99")
            g["observations"] = frames
            g["actions"] = np.zeros((5, 3), np.float32)
            g.attrs.update({"id": 99, "total_steps": 5, "seed": 0, "policy": "brownian"})


@pytest.mark.parametrize("damage", ["truncate", "text", "foreign", "shape", "dtype"])
def test_damaged_foreign_or_malformed_h5_stops_every_reader(tiny_run, tmp_path, damage):
    data, run = tmp_path / "data", tmp_path / "run"
    shutil.copytree(tiny_run["data"], data)
    write_bad_h5(data, damage)
    shutil.copytree(tiny_run["run"], run)
    before = snapshot(data, run)
    needles = ["zz_bad.h5", "(T+1, 64, 64, 3) uint8"] if damage in ("shape", "dtype") else ["zz_bad.h5"]
    for script, more in (("01_collect.py", "--episodes"), ("02_train_vae.py", "--epochs"),
                         ("03_train_mdnrnn.py", "--epochs")):
        proc = run_stage(script, "--data", data, "--run", run, more, "9", check=False)
        assert_one_line_error(proc, *needles, "move")
    assert snapshot(data, run) == before


def nan_weights(path) -> None:
    state = torch.load(path, weights_only=True)
    next(iter(state["model"].values())).fill_(float("nan"))
    torch.save(state, path)


@pytest.mark.parametrize("name,damage,script,args,needles", [
    ("mdnrnn.pt", lambda p: p.write_bytes(b"\x00garbage"), "04_train_controller.py", ["--evaluate", "1"],
     ["mdnrnn.pt", "corrupted", "03_train_mdnrnn.py"]),
    ("vae.pt", lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "03_train_mdnrnn.py", [],
     ["vae.pt", "corrupted", "02_train_vae.py"]),
    ("controller.pt", lambda p: p.write_bytes(p.read_bytes()[:100]), "04_train_controller.py", ["--evaluate", "1"],
     ["controller.pt", "corrupted", "04_train_controller.py"]),
    ("es_state.pkl", lambda p: p.write_bytes(p.read_bytes()[:1000]), "04_train_controller.py", [],
     ["es_state.pkl", "corrupted", "delete it"]),
    ("mdnrnn.pt", nan_weights, "04_train_controller.py", ["--evaluate", "1"],
     ["mdnrnn.pt", "NaN or infinite weights", "03_train_mdnrnn.py"]),
    ("config.json", lambda p: p.write_text("{not json"), "02_train_vae.py", [], ["config.json", "not valid JSON"]),
])
def test_corrupted_checkpoint(tiny_run, tmp_path, name, damage, script, args, needles):
    run = tmp_path / "run"
    shutil.copytree(tiny_run["run"], run)
    damage(run / name)
    before = snapshot(run)
    proc = run_stage(script, "--data", tiny_run["data"], "--run", run, *args, check=False)
    assert_one_line_error(proc, *needles)
    assert snapshot(run) == before


def test_mismatched_checkpoint_settings(copied):
    assert_refused(copied, "02_train_vae.py", "--z-dim", "8", needles=["vae.pt", "--z-dim"])
    assert_refused(copied, "03_train_mdnrnn.py", "--hidden", "64", needles=["mdnrnn.pt", "hidden"])
    assert_refused(copied, "03_train_mdnrnn.py", "--core", "vsg", needles=["mdnrnn.pt", "core lstm (not vsg)"])
    assert_refused(copied, "04_train_controller.py", "--pop", "6", "--steps", "30",
                   needles=["es_state.pkl has --pop 4, not 6", "pass --pop 4"])


def test_checkpoints_that_do_not_fit_together_or_the_env(tiny_run, tmp_path):
    """M trained on another V's z size, or on another env's actions: refused before anything runs."""
    from models.vae import ConvVAE, VAEConfig
    from pipeline import checkpoint

    run = tmp_path / "run"
    shutil.copytree(tiny_run["run"], run, ignore=shutil.ignore_patterns("vae.pt"))
    folders = ["--data", tiny_run["data"], "--run", run]
    checkpoint.save(run / "vae.pt", ConvVAE(VAEConfig(z_dim=8)).state())  # M reads z of size 32
    before = snapshot(run)
    for script, args in (("04_train_controller.py", ["--evaluate", "1"]), ("04_train_controller.py", []),
                         ("05_dream.py", [])):
        proc = run_stage(script, *folders, *args, check=False)
        assert_one_line_error(proc, "mdnrnn.pt reads z of size 32", "vae.pt encodes to 8", "03_train_mdnrnn.py")
    assert snapshot(run) == before
    shutil.copy2(tiny_run["run"] / "vae.pt", run / "vae.pt")
    before = snapshot(run)
    proc = run_stage("04_train_controller.py", *folders, "--env", "shapeherd", "--evaluate", "1", check=False)
    assert_one_line_error(proc, "mdnrnn.pt was trained on 3 action inputs", "--env shapeherd has 2")
    proc = run_stage("03_train_mdnrnn.py", *folders, "--env", "shapeherd", check=False)
    assert_one_line_error(proc, "holds rollouts of --env carracing, not shapeherd")
    assert snapshot(run) == before
