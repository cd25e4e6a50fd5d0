"""Bad input: one line on stderr naming the file or flag and what to do, exit code 2, no traceback, and no file
that existed before changed. (A missing Sonic ROM: tests/test_sources.py.)"""
from __future__ import annotations

import shutil
import sys
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import torch

from conftest import ROOT, TINY, assert_one_line_error, run_stage, snapshot, stage_env


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
    # above the range: every seed must work in numpy, torch and HDF5 alike (numpy's RandomState(seed + 1))
    ("01_collect.py", ["--seed", "2147483647"], ["--seed", "up to 2147483646"]),
    ("04_train_controller.py", ["--seed", "4294967295"], ["--seed", "up to 2147483646"]),
    ("01_collect.py", ["--episodes", "1000001"], ["--episodes", "up to 1000000"]),
    ("04_train_controller.py", ["--task-timeout", "1e7"], ["--task-timeout", "up to 2000000"]),
    ("04_train_controller.py", ["--sigma", "1e300"], ["--sigma", "up to 1000000"]),
    ("02_train_vae.py", ["--batch", "2147483648"], ["--batch", "up to 2147483647"]),
    ("compare_cores.py", ["--horizons", "1,2000000"], ["--horizons", "up to 1000000"]),
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
def test_nonsensical_flags(copied, script, args, needles):
    """In this process, as ``python script args`` runs it (the flags are refused before anything is read)."""
    assert_refused(copied, script, *args, needles=needles)


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
    from pipeline.contract import checkpoint

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


# -- numbers: every numeric flag has a range ---------------------------------------------------------------
@pytest.mark.parametrize("stage", ["stage01_collect", "stage02_vae", "stage03_mdnrnn", "stage04_controller",
                                   "stage05_dream", "cores_comparison"])
def test_every_numeric_flag_has_a_range_and_a_value_past_it_is_one_line(stage, capsys):
    """Not a sample: every flag of every stage whose value is a number."""
    from importlib import import_module
    from pathlib import Path

    parser = import_module(f"pipeline.stages.{stage}").parser()
    numeric = [a for a in parser._actions if a.option_strings and a.type not in (None, Path, str)]
    assert numeric
    for action in numeric:
        flag = action.option_strings[0]
        assert hasattr(action.type, "low") and hasattr(action.type, "high"), f"{flag} has no range"
        for value in (str(int(action.type.high) + 1), str(int(action.type.low) - 1)):
            with pytest.raises(SystemExit) as stopped:
                parser.parse_args([flag, value])
            assert_one_line_error(SimpleNamespace(returncode=stopped.value.code, stderr=capsys.readouterr().err),
                                  flag, value)


def test_the_largest_seed_works_in_every_library(tiny_run, tmp_path):
    """--seed 2**31 - 2 through HDF5 and numpy (01), torch (03), CMA-ES's RandomState(seed + 1) (04), torch's
    generators and the env's reset (05)."""
    from conftest import NOT_04, copy_run
    from pipeline.contract.cli import SEED_MAX

    seed = str(SEED_MAX)
    run_stage("01_collect.py", "--data", tmp_path / "data", "--run", tmp_path / "r01", "--episodes", "1",
              "--steps", "10", "--workers", "1", "--seed", seed)
    with h5py.File(next((tmp_path / "data").glob("shard_*.h5")), "r") as f:
        assert int(f.attrs["collect_seed"]) == SEED_MAX
    folders = copy_run(tiny_run, tmp_path / "run", NOT_04 + ("mdnrnn.pt", "mdnrnn.csv"))
    run_stage("03_train_mdnrnn.py", *folders, "--epochs", "1", "--seq-len", "16", "--batch", "4", "--hidden", "32",
              "--device", "cpu", "--seed", seed)
    run_stage("04_train_controller.py", *folders, "--pop", "4", "--trials", "1", "--generations", "1", "--steps", "10",
              "--workers", "1", "--eval-every", "1", "--eval-episodes", "1", "--seed", seed)
    run_stage("05_dream.py", "--run", tmp_path / "run", "--steps", "5", "--dreams", "1", "--device", "cpu",
              "--seed", seed)


# -- folders: a file where a folder belongs, a folder that cannot be written ---------------------------------
@pytest.mark.parametrize("script,flag", [
    ("01_collect.py", "--data"), ("01_collect.py", "--run"), ("02_train_vae.py", "--data"), ("02_train_vae.py", "--run"),
    ("03_train_mdnrnn.py", "--run"), ("04_train_controller.py", "--run"), ("05_dream.py", "--run"),
    ("compare_cores.py", "--run"),
])
def test_a_file_where_a_folder_belongs(copied, tmp_path, script, flag):
    file = tmp_path / "notes.txt"
    file.write_text("not a folder")
    folders = list(map(str, copied["folders"]))
    folders[folders.index(flag) + 1] = str(file)
    before = snapshot(copied["data"], copied["run"], tmp_path)
    assert_one_line_error(run_stage(script, *folders, check=False), flag, str(file), "is a file, not a folder")
    assert snapshot(copied["data"], copied["run"], tmp_path) == before


@pytest.fixture(scope="module")
def unwritable(tiny_run):
    """The tiny run's folders, readable but not writable by the user the stages run as: as root, a copy owned by
    root with mode 755 and the stages run as the unprivileged user nobody (through setpriv, which drops every
    privilege, capabilities included, as it starts the interpreter); otherwise a copy of mode 555 (the owner's
    write bit off) and the stages run as this user. ``home``: a folder that user may write."""
    import os
    import pwd
    import tempfile
    from pathlib import Path

    root = os.geteuid() == 0
    if root:
        try:
            user = pwd.getpwnam("nobody")
        except KeyError:
            pytest.skip("no unprivileged user 'nobody' to run the stages as")
        if not shutil.which("setpriv"):
            pytest.skip("no setpriv to run the stages as the unprivileged user nobody")
    base = Path(tempfile.mkdtemp(prefix="unwritable-"))
    shutil.copytree(tiny_run["data"], base / "data")
    shutil.copytree(tiny_run["run"], base / "run")
    home = base / "home"
    home.mkdir()
    for folder, _, files in os.walk(base):
        for name in files:
            os.chmod(os.path.join(folder, name), 0o644 if root else 0o444)
        os.chmod(folder, 0o755 if root else 0o555)
    os.chmod(home, 0o777)
    prefix = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"] if root else []
    yield {"base": base, "data": base / "data", "run": base / "run", "home": home, "as_user": prefix}
    for folder, _, _ in os.walk(base):
        os.chmod(folder, 0o755)
    shutil.rmtree(base)


@pytest.mark.parametrize("script,flags,needle", [
    ("01_collect.py", ["--data", "{data}", "--run", "{home}/run", "--episodes", "6"], "--data {data} cannot be written"),
    ("01_collect.py", ["--data", "{data}/more", "--run", "{home}/run", "--episodes", "6"],
     "--data {data}/more cannot be written"),
    ("01_collect.py", ["--data", "{home}/data", "--run", "{run}", "--episodes", "6"], "--run {run} cannot be written"),
    ("02_train_vae.py", ["--data", "{data}", "--run", "{run}", "--epochs", "2"], "--run {run} cannot be written"),
    ("03_train_mdnrnn.py", ["--data", "{data}", "--run", "{run}", "--epochs", "3"], "--run {run} cannot be written"),
    ("04_train_controller.py", ["--data", "{data}", "--run", "{run}", "--generations", "3"],
     "--run {run} cannot be written"),
    ("04_train_controller.py", ["--data", "{data}", "--run", "{run}", "--evaluate", "4", "--workers", "2"],
     "--run {run} cannot be written"),
    ("05_dream.py", ["--data", "{data}", "--run", "{run}", "--device", "cpu"], "--run {run} cannot be written"),
    ("compare_cores.py", ["--data", "{data}", "--run", "{run}"], "--run {run} cannot be written"),
])
def test_a_folder_that_cannot_be_written_is_refused_before_any_work(unwritable, script, flags, needle):
    """For real: the stage runs as a user without write permission. Refused at once, whatever it would have done
    first (04 --evaluate plays no episode, 01 collects none), and nothing changes."""
    import subprocess

    places = {k: unwritable[k] for k in ("data", "run", "home")}
    before = snapshot(unwritable["data"], unwritable["run"])
    home = str(unwritable["home"])
    proc = subprocess.run([*unwritable["as_user"], sys.executable, str(ROOT / script), *(f.format(**places) for f in flags)],
                          cwd=ROOT, env=stage_env(HOME=home, MPLCONFIGDIR=home), capture_output=True, text=True,
                          timeout=300)
    assert_one_line_error(proc, needle.format(**places), "pass a folder you can write to")
    assert snapshot(unwritable["data"], unwritable["run"]) == before
    assert not (unwritable["home"] / "run").exists() and not (unwritable["home"] / "data").exists()


# -- state files that parse but hold the wrong thing -------------------------------------------------------
@pytest.mark.parametrize("damage", ["text", "columns"])
@pytest.mark.parametrize("script,name,flags", [("02_train_vae.py", "vae.csv", TINY["vae"]),
                                               ("03_train_mdnrnn.py", "mdnrnn.csv", TINY["mdnrnn"]),
                                               ("04_train_controller.py", "controller.csv", TINY["controller"])])
def test_a_malformed_metrics_row_is_one_line_and_nothing_is_rewritten(tiny_run, tmp_path, script, name, flags, damage):
    """The row a resumed run would keep building on: text where a number belongs, or one value too many."""
    from conftest import copy_run

    run = tmp_path / "run"
    folders = copy_run(tiny_run, run)
    path = run / "metrics" / name
    lines = path.read_bytes().decode().splitlines(keepends=True)
    cells = lines[1].rstrip("\r\n").split(",")
    if damage == "text":
        cells[1] = "n/a"
    else:
        cells.append("7")
    lines[1] = ",".join(cells) + "\r\n"
    path.write_bytes("".join(lines).encode())
    before = snapshot(run)
    proc = run_stage(script, *folders, *flags, check=False)
    assert_one_line_error(proc, f"{path}, line 2", "'n/a', not a number" if damage == "text" else "values for",
                          "fix or delete")
    assert snapshot(run) == before


def test_an_unknown_collection_policy_in_config_json_is_one_line(tiny_run, tmp_path):
    """Without a controller, 05's dreams are driven by the policy the data was collected with, as config.json says."""
    import json

    from conftest import copy_run

    run = tmp_path / "run"
    copy_run(tiny_run, run, ("controller*",))
    config = json.loads((run / "config.json").read_text())
    config["collect"]["policy"] = "zigzag"
    (run / "config.json").write_text(json.dumps(config))
    before = snapshot(run)
    proc = run_stage("05_dream.py", "--run", run, "--steps", "10", "--dreams", "1", "--device", "cpu", check=False)
    assert_one_line_error(proc, str(run / "config.json"), "'zigzag'", "brownian, random")
    assert snapshot(run) == before


def test_a_shard_collected_with_another_seed_is_named_by_every_reader(tiny_run, tmp_path):
    """Every shard's settings are checked, not the first one's: a shard of another collection copied in beside the
    others (same env and steps, --seed 5) is named by 01 and by every stage that reads the folder."""
    from conftest import copy_run

    run_stage("01_collect.py", "--data", tmp_path / "odd", "--run", tmp_path / "r", "--episodes", "2", "--steps", "40",
              "--workers", "1", "--seed", "5")
    data, run = tmp_path / "data", tmp_path / "run"
    shutil.copytree(tiny_run["data"], data)
    shutil.copy2(next((tmp_path / "odd").glob("shard_*.h5")), data / "shard_000004-000005.h5")
    folders = ["--data", data, *copy_run(tiny_run, run)[2:]]
    before = snapshot(data, run)
    for script, flags in (("01_collect.py", TINY["collect"][:1] + ["6"] + TINY["collect"][2:]),
                          ("02_train_vae.py", TINY["vae"]), ("03_train_mdnrnn.py", TINY["mdnrnn"]),
                          ("05_dream.py", ["--steps", "10", "--dreams", "1", "--device", "cpu"])):
        proc = run_stage(script, *folders, *flags, check=False)
        assert_one_line_error(proc, f"{data / 'shard_000004-000005.h5'} was collected with --seed 5",
                              "shard_000000-000003.h5 with --seed 0", "move shard_000004-000005.h5 out of")
    assert snapshot(data, run) == before
