"""Bad input: one line on stderr naming the file or flag, exit code 2, and nothing already written touched."""
from __future__ import annotations

import hashlib

import pytest

from conftest import run_stage


def snapshot(*folders) -> dict:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest()
            for folder in folders for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_one_line_error(proc, *needles):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize("script,args,needles", [
    ("01_collect.py", ["--workers", "0"], ["--workers", "positive"]),
    ("01_collect.py", ["--episodes", "-3"], ["--episodes"]),
    ("01_collect.py", ["--env", "pong"], ["--env", "carracing"]),
    ("02_train_vae.py", ["--batch", "zero"], ["--batch"]),
    ("03_train_mdnrnn.py", ["--core", "transformer"], ["--core"]),
    ("04_train_controller.py", ["--pop", "0"], ["--pop"]),
])
def test_nonsensical_flags(script, args, needles, tmp_path):
    assert_one_line_error(run_stage(script, "--data", tmp_path, "--run", tmp_path, *args, check=False), *needles)


def test_missing_and_empty_data_folder(tmp_path):
    missing = run_stage("02_train_vae.py", "--data", tmp_path / "nope", "--run", tmp_path / "run", check=False)
    assert_one_line_error(missing, "nope", "01_collect.py")
    (tmp_path / "empty").mkdir()
    empty = run_stage("02_train_vae.py", "--data", tmp_path / "empty", "--run", tmp_path / "run", check=False)
    assert_one_line_error(empty, "empty", "01_collect.py")
    assert not (tmp_path / "run" / "vae.pt").exists()


def test_missing_checkpoints_name_the_stage_to_run(tiny_run, tmp_path):
    folders = ["--data", tiny_run["data"], "--run", tmp_path / "fresh"]
    assert_one_line_error(run_stage("03_train_mdnrnn.py", *folders, check=False), "vae.pt", "02_train_vae.py")
    assert_one_line_error(run_stage("04_train_controller.py", *folders, check=False), "vae.pt", "02_train_vae.py")


@pytest.mark.parametrize("damage", ["truncate", "text", "foreign"])
def test_damaged_or_foreign_h5_stops_every_reader(tiny_run, tmp_path, damage):
    import shutil

    import h5py

    data = tmp_path / "data"
    shutil.copytree(tiny_run["data"], data)
    bad = data / "zz_bad.h5"
    if damage == "truncate":
        blob = next(data.glob("shard_*.h5")).read_bytes()
        bad.write_bytes(blob[: len(blob) // 3])
    elif damage == "text":
        bad.write_text("hello")
    else:
        with h5py.File(bad, "w") as f:
            f["x"] = [1, 2, 3]
    run = tmp_path / "run"
    shutil.copytree(tiny_run["run"], run)
    before = snapshot(data, run)
    for script, more in (("01_collect.py", "--episodes"), ("02_train_vae.py", "--epochs"),
                         ("03_train_mdnrnn.py", "--epochs")):
        proc = run_stage(script, "--data", data, "--run", run, more, "9", check=False)
        assert_one_line_error(proc, "zz_bad.h5")
    assert snapshot(data, run) == before


def test_corrupted_checkpoint(tiny_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run["run"], run)
    (run / "mdnrnn.pt").write_bytes(b"\x00garbage")
    before = snapshot(run)
    proc = run_stage("04_train_controller.py", "--data", tiny_run["data"], "--run", run, "--evaluate", "1", check=False)
    assert_one_line_error(proc, "mdnrnn.pt", "corrupted")
    assert snapshot(run) == before


def test_mismatched_checkpoint_settings(tiny_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run["run"], run)
    before = snapshot(run)
    proc = run_stage("02_train_vae.py", "--data", tiny_run["data"], "--run", run, "--z-dim", "8", check=False)
    assert_one_line_error(proc, "vae.pt", "--z-dim")
    proc = run_stage("03_train_mdnrnn.py", "--data", tiny_run["data"], "--run", run, "--hidden", "64", check=False)
    assert_one_line_error(proc, "mdnrnn.pt", "hidden")
    assert snapshot(run) == before
