"""Faults done for real: SIGKILL at random moments, workers killed or frozen, losses and fitness that blow up,
a disk that fills up. Each test does the damage to a real stage process and compares the outcome with an
undisturbed run of the same command."""
from __future__ import annotations

import os
import pickle
import random
import re
import shutil
import signal
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import torch

from conftest import (
    CONTROLLER,
    EPISODE_FIELDS,
    NOT_04,
    ROOT,
    assert_one_line_error,
    copy_run,
    kill_group,
    rows,
    run_stage,
    snapshot,
    stage_env,
    started,
    trajectory,
    workers_of,
)
from data.store import RolloutStore, read_episode
from pipeline.contract import checkpoint
from pipeline.world_model import WorldModel


def wait_for(condition, stage, what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if stage.proc.poll() is not None:
            raise AssertionError(f"the stage ended (exit {stage.proc.returncode}) before {what}:\n{stage.stderr()[-3000:]}")
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.05)


# -- 01: collection ------------------------------------------------------------------------------------
COLLECT = ["--episodes", "24", "--steps", "30", "--workers", "2", "--shard-size", "2", "--seed", "3", "--verbose", "0"]


@pytest.fixture(scope="module")
def reference_collection(tmp_path_factory) -> dict:
    data = tmp_path_factory.mktemp("reference") / "data"
    run_stage("01_collect.py", "--data", data, "--run", data.parent / "run", *COLLECT)
    return {r.id: read_episode(r) for r in RolloutStore(data).index()}


def stored_files(data: Path) -> int:
    return len(list(data.rglob("*.h5"))) if data.exists() else 0


def episodes_on_disk(data: Path) -> int:
    """About how many episodes are stored (a shard holds two), without opening files being written."""
    staged = len(list((data / ".staging").glob("*.h5"))) if data.exists() else 0
    return staged + 2 * (stored_files(data) - staged)


def assert_intact(data: Path) -> None:
    """Every file under its final name opens and every array of it reads in full."""
    for path in data.rglob("*.h5"):
        with h5py.File(path, "r") as f:
            for group in f.values():
                for array in group.values():
                    array[()]


def stored_ids(data: Path) -> Counter:
    """How often each episode id is stored, over every shard and staged file."""
    counts = Counter()
    for path in data.rglob("*.h5"):
        with h5py.File(path, "r") as f:
            counts.update(int(g.attrs["id"]) for g in f.values())
    return counts


def assert_same_dataset(data: Path, reference: dict) -> None:
    """Each episode stored exactly once, byte for byte that of the undisturbed collection; nothing left over."""
    assert stored_ids(data) == Counter(list(reference))
    assert not list(data.rglob("*.tmp")) and not list((data / ".staging").glob("*"))
    for ref in RolloutStore(data).index():
        ep, want = read_episode(ref), reference[ref.id]
        assert ep.seed == want.seed
        for name in EPISODE_FIELDS:
            a, b = getattr(ep, name), getattr(want, name)
            assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), (ref.id, name)


def test_collection_killed_at_random_moments_is_completed_by_the_same_command(tmp_path, reference_collection):
    data = tmp_path / "data"
    command = ["--data", data, "--run", tmp_path / "run", *COLLECT]
    rng = random.Random(7)
    for trial, (low, high) in enumerate([(2, 6), (9, 13), (16, 20)]):  # early, middle and late in the dataset
        target = rng.randint(low, high)
        with started("01_collect.py", *command, logs=tmp_path / f"logs{trial}") as stage:
            wait_for(lambda n=target: episodes_on_disk(data) >= n, stage, f"{target} episodes on disk")
            time.sleep(rng.uniform(0, 0.2))  # anywhere: mid-episode, mid-write, mid-pack
            kill_group(stage.proc)
        assert_intact(data)
        have = {r.id for r in RolloutStore(data).index()}
        assert 0 < len(have) < 24, f"trial {trial}: the kill did not land mid-collection ({len(have)} episodes)"
    out = run_stage("01_collect.py", *command)
    assert "24 episodes" in out.stdout
    assert_same_dataset(data, reference_collection)


def test_a_killed_collection_worker_is_replaced_and_the_run_completes(tmp_path, reference_collection):
    data = tmp_path / "data"
    with started("01_collect.py", "--data", data, "--run", tmp_path / "run", *COLLECT, logs=tmp_path) as stage:
        wait_for(lambda: stored_files(data) >= 2, stage, "episodes on disk")
        os.kill(workers_of(stage.pid)[0], signal.SIGKILL)
        assert stage.wait(240) == 0, stage.stderr()
        err = stage.stderr()
    assert "a collection worker died (exit code -9)" in err and "Traceback" not in err
    assert_same_dataset(data, reference_collection)


def test_a_hung_collection_worker_is_detected_within_the_timeout(tmp_path, reference_collection):
    data, timeout = tmp_path / "data", 10
    command = ["--data", data, "--run", tmp_path / "run", *COLLECT, "--task-timeout", str(timeout)]
    with started("01_collect.py", *command, logs=tmp_path) as stage:
        wait_for(lambda: stored_files(data) >= 2, stage, "episodes on disk")
        os.kill(busy_worker(stage), signal.SIGSTOP)  # alive but frozen mid-episode: no exit code, no error, no result
        stopped = time.monotonic()
        wait_for(lambda: "a worker hung" in stage.stderr(), stage, "the hang to be noticed", timeout=timeout + 60)
        noticed = time.monotonic() - stopped
        assert stage.wait(240) == 0, stage.stderr()
    assert noticed < timeout + 30, noticed
    assert_same_dataset(data, reference_collection)


# -- 02 and 03: training ------------------------------------------------------------------------------
def adam_steps(state: dict) -> float:
    return float(state["optimizer"]["state"][0]["step"])


def test_vae_killed_mid_epoch_resumes_with_its_optimiser_and_metrics(tiny_run, tmp_path):
    run = tmp_path / "run"
    command = ["--data", tiny_run["data"], "--run", run, "--epochs", "3", "--batch", "16", "--log-every", "1",
               "--block-episodes", "1", "--checkpoint-minutes", "0.001", "--loader-workers", "0", "--device", "cpu"]
    with started("02_train_vae.py", *command, logs=tmp_path) as stage:
        # Epoch 1 has 8 steps: kill inside epoch 2, after at least one mid-epoch checkpoint.
        wait_for(lambda: (run / "vae.pt").exists() and len(rows(run / "metrics" / "vae.csv")) >= 11, stage, "step 11")
        time.sleep(random.Random(2).uniform(0, 0.3))
        kill_group(stage.proc)
    killed = checkpoint.load(run / "vae.pt", "02_train_vae.py")  # never half-written
    assert 0 < killed["progress"]["step"] < 24 and killed["progress"]["epoch"] < 3
    out = run_stage("02_train_vae.py", *command)
    assert f"resuming from {run / 'vae.pt'}: epoch {killed['progress']['epoch']}, step {killed['progress']['step']}" in out.stdout
    final = torch.load(run / "vae.pt", weights_only=True)
    log = rows(run / "metrics" / "vae.csv")
    assert [int(r["step"]) for r in log] == list(range(1, final["progress"]["step"] + 1))  # no gap, no duplicate
    assert [int(r["epoch"]) for r in log if r["val_loss"]] == [1, 2, 3]
    assert adam_steps(final) == final["progress"]["step"]  # Adam's moments came through the kill


def test_mdnrnn_killed_mid_training_resumes_to_the_same_weights(tiny_run, tmp_path):
    flags = ["--epochs", "6", "--seq-len", "16", "--batch", "4", "--hidden", "32", "--core", "svsg", "--device", "cpu"]
    drop = ("mdnrnn.pt", "mdnrnn.csv", "mdnrnn_*")
    killed_run, straight_run = tmp_path / "killed", tmp_path / "straight"
    command = copy_run(tiny_run, killed_run, drop) + flags
    with started("03_train_mdnrnn.py", *command, logs=tmp_path) as stage:
        wait_for(lambda: len(rows(killed_run / "metrics" / "mdnrnn.csv")) >= 2, stage, "epoch 2")
        time.sleep(random.Random(3).uniform(0, 0.3))
        kill_group(stage.proc)
    epoch = checkpoint.load(killed_run / "mdnrnn.pt", "03_train_mdnrnn.py")["progress"]["epoch"]
    assert 1 <= epoch < 6  # 1: killed between the CSV row of epoch 2 and its checkpoint
    assert f"resuming from {killed_run / 'mdnrnn.pt'}: epoch {epoch}" in run_stage("03_train_mdnrnn.py", *command).stdout
    run_stage("03_train_mdnrnn.py", *copy_run(tiny_run, straight_run, drop), *flags)
    killed, straight = (torch.load(r / "mdnrnn.pt", weights_only=True) for r in (killed_run, straight_run))
    for name, tensor in straight["model"].items():
        assert torch.equal(killed["model"][name], tensor), name
    assert adam_steps(killed) == killed["progress"]["step"] == straight["progress"]["step"]
    log, want = (rows(r / "metrics" / "mdnrnn.csv") for r in (killed_run, straight_run))
    assert [r["epoch"] for r in log] == [str(e) for e in range(1, 7)]
    assert [{**r, "train_seconds": ""} for r in log] == [{**r, "train_seconds": ""} for r in want]


def test_a_failed_or_killed_checkpoint_write_never_replaces_the_last_good_one(tmp_path, monkeypatch):
    import builtins
    import errno

    from data import atomic

    path = tmp_path / "vae.pt"
    checkpoint.save(path, {"config": {}, "model": {"w": torch.ones(3)}})
    good = path.read_bytes()

    class DiesMidWrite:
        """A file whose write puts half the bytes on disk and then fails, as a crash inside ``save`` would."""

        def __init__(self, file, mode="r", *args, **kwargs):
            self.fh = builtins.open(file, mode, *args, **kwargs)

        def write(self, data):
            self.fh.write(bytes(data)[: len(data) // 2])
            self.fh.flush()
            raise OSError(errno.EIO, "Input/output error")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    monkeypatch.setattr(atomic, "open", DiesMidWrite, raising=False)
    with pytest.raises(OSError):
        checkpoint.save(path, {"config": {}, "model": {"w": torch.zeros(3)}})
    monkeypatch.undo()
    assert path.read_bytes() == good and not atomic.temporary(path).exists()

    atomic.temporary(path).write_bytes(good[: len(good) // 2])  # what SIGKILL inside save leaves behind
    assert torch.equal(checkpoint.load(path, "02_train_vae.py")["model"]["w"], torch.ones(3))
    checkpoint.save(path, {"config": {}, "model": {"w": torch.zeros(3)}})
    assert torch.equal(checkpoint.load(path, "02_train_vae.py")["model"]["w"], torch.zeros(3))
    assert not atomic.temporary(path).exists()


def test_a_diverging_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tiny_run, tmp_path):
    """--lr 1 really diverges: Adam moves every weight by about 1 per step. V (resumed after epoch 1) turns NaN
    in epoch 2, before any checkpoint of that epoch; M a few epochs in, after the earlier ones were checkpointed.
    Re-run, each stops at the same step again and leaves its checkpoint as it was."""
    run = tmp_path / "run"
    folders = copy_run(tiny_run, run)
    (run / "vae.pt").unlink()
    shutil.copy2(tiny_run["run"] / "vae.pt", run / "vae.pt")
    vae_before = snapshot(run)[run / "vae.pt"]
    stopped = {}
    for command in (["02_train_vae.py", "--epochs", "2", "--batch", "16"],
                    ["03_train_mdnrnn.py", "--epochs", "12", "--seq-len", "16", "--batch", "4", "--hidden", "32"]):
        before, message = None, None
        for _ in range(2):
            proc = run_stage(command[0], *folders, *command[1:], "--device", "cpu", "--lr", "1", check=False)
            assert_one_line_error(proc, "the last good checkpoint is kept", code=1)
            found = re.search(r"loss became nan at step (\d+) \(epoch (\d+)\)", proc.stderr)
            assert found and proc.stderr == (message or proc.stderr), proc.stderr  # the same step both times
            message, stopped[command[0]] = proc.stderr, int(found[2])
            after = {p: h for p, h in snapshot(run).items() if p.suffix in (".pt", ".h5")}
            assert before is None or after == before
            before = after
    assert stopped["02_train_vae.py"] == 2 and before[run / "vae.pt"] == vae_before
    assert stopped["03_train_mdnrnn.py"] >= 2, "M should diverge after at least one checkpointed epoch"
    m = checkpoint.load(run / "mdnrnn.pt", "03_train_mdnrnn.py")
    assert m["progress"]["epoch"] == stopped["03_train_mdnrnn.py"] - 1


def test_non_finite_weights_are_never_checkpointed(tiny_run, tmp_path, monkeypatch, capsys):
    """A step whose loss was finite but whose update made a weight NaN (as a NaN gradient would), right before
    a checkpoint: the checkpoint is refused. In-process, with V's training step patched to poison one weight."""
    import runpy
    import sys

    from pipeline import training

    real_step = training.vae_step

    def poisoned_step(vae, *args):
        terms = real_step(vae, *args)
        with torch.no_grad():
            next(vae.parameters())[0].fill_(float("nan"))
        return terms

    from pipeline.stages import stage02_vae

    run = tmp_path / "run"
    shutil.copytree(tiny_run["run"], run)
    (run / "vae.pt").unlink()  # V from scratch, one batch per one-episode block, a checkpoint after each block
    monkeypatch.setattr(training, "vae_step", poisoned_step)
    monkeypatch.setattr(stage02_vae, "vae_step", poisoned_step)
    monkeypatch.setattr(sys, "argv", ["02_train_vae.py", "--data", str(tiny_run["data"]), "--run", str(run), "--epochs", "1",
                                      "--batch", "64", "--block-episodes", "1", "--checkpoint-minutes", "1e-6",
                                      "--loader-workers", "0", "--device", "cpu"])
    with pytest.raises(SystemExit) as stopped:
        runpy.run_path(str(ROOT / "02_train_vae.py"), run_name="__main__")
    assert stopped.value.code == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert errors == ["02_train_vae.py: error: weights became NaN or infinite by step 1; the last good checkpoint is "
                      "kept. Lower --lr or check the data"]
    assert not (run / "vae.pt").exists()


def test_metrics_resume_drops_rows_past_the_checkpoint_and_a_row_cut_short(tmp_path):
    from pipeline.reporting.metrics import CsvLog

    path = tmp_path / "m.csv"
    log = CsvLog(path, ["step", "loss"], key="step")
    for step in range(1, 7):
        log.write(step=step, loss=step / 10)
    text = path.read_text().splitlines()
    path.write_text("\n".join(text[:4] + ["4"]))  # row 4 cut short (a disk that filled up mid-append)
    log = CsvLog(path, ["step", "loss"], key="step", resume_after=5)
    assert path.read_text().splitlines() == text[:4]  # the header and steps 1-3
    log.write(step=4, loss=0.4)
    assert [r["step"] for r in rows(path)] == ["1", "2", "3", "4"]
    CsvLog(path, ["step", "loss"], key="step", resume_after=2)
    assert [r["step"] for r in rows(path)] == ["1", "2"]


# -- 04: the controller --------------------------------------------------------------------------------
def es_generation(run: Path) -> int:
    return pickle.loads((run / "es_state.pkl").read_bytes()).generation


@pytest.fixture(scope="module")
def reference_trajectory(tiny_run, tmp_path_factory) -> tuple[list, dict]:
    run = tmp_path_factory.mktemp("controller") / "run"
    run_stage("04_train_controller.py", *copy_run(tiny_run, run, NOT_04), *CONTROLLER, "--workers", "2")
    return trajectory(run)


def test_controller_killed_between_and_during_generations_reaches_the_same_es_state(tiny_run, tmp_path,
                                                                                      reference_trajectory):
    run = tmp_path / "run"
    command = copy_run(tiny_run, run, NOT_04) + CONTROLLER + ["--workers", "2"]
    with started("04_train_controller.py", *command, logs=tmp_path / "1") as stage:  # between: as generation 1 lands
        wait_for((run / "es_state.pkl").exists, stage, "generation 1")
        kill_group(stage.proc)
    first = es_generation(run)
    with started("04_train_controller.py", *command, logs=tmp_path / "2") as stage:  # during a later generation
        wait_for(lambda: len(rows(run / "metrics" / "controller.csv")) > first, stage, f"generation {first + 1}")
        time.sleep(random.Random(4).uniform(0, 0.5))
        kill_group(stage.proc)
    assert first <= es_generation(run) < 5
    assert (run / ".lock").exists()  # left by the killed stage: not in the way of the next one
    out = run_stage("04_train_controller.py", *command)
    assert f"resuming from {run / 'es_state.pkl'}" in out.stdout
    assert trajectory(run) == reference_trajectory


def test_a_killed_evaluation_worker_is_replaced_and_changes_nothing(tiny_run, tmp_path, reference_trajectory):
    """The popular PyTorch port hangs forever here."""
    run = tmp_path / "run"
    command = copy_run(tiny_run, run, NOT_04) + CONTROLLER + ["--workers", "2"]
    with started("04_train_controller.py", *command, logs=tmp_path) as stage:
        wait_for(lambda: len(rows(run / "metrics" / "controller.csv")) >= 1, stage, "generation 1")
        os.kill(workers_of(stage.pid)[0], signal.SIGKILL)
        assert stage.wait(240) == 0, stage.stderr()
        err = stage.stderr()
    assert "an evaluation worker died (exit code -9); starting a fresh worker" in err and "Traceback" not in err
    assert trajectory(run) == reference_trajectory


def busy_worker(stage) -> int:
    """A worker that is running (process state R), so playing a task: stopping it freezes that task."""
    found: list[int] = []

    def running() -> bool:
        for pid in workers_of(stage.pid):
            try:
                if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "R":
                    found.append(pid)
                    return True
            except OSError:
                pass
        return False

    wait_for(running, stage, "a busy worker", timeout=60)
    return found[0]


def test_a_hung_evaluation_worker_is_detected_within_the_timeout(tiny_run, tmp_path, reference_trajectory):
    run, timeout = tmp_path / "run", 10
    command = copy_run(tiny_run, run, NOT_04) + CONTROLLER + ["--workers", "2", "--task-timeout", str(timeout)]
    with started("04_train_controller.py", *command, logs=tmp_path) as stage:
        wait_for(lambda: len(rows(run / "metrics" / "controller.csv")) >= 1, stage, "generation 1")
        os.kill(busy_worker(stage), signal.SIGSTOP)  # alive but frozen mid-task: no exit code, no error, no result
        stopped = time.monotonic()
        wait_for(lambda: "a worker hung" in stage.stderr(), stage, "the hang to be noticed", timeout=timeout + 60)
        noticed = time.monotonic() - stopped
        assert stage.wait(240) == 0, stage.stderr()
    assert noticed < timeout + 30, noticed
    assert trajectory(run) == reference_trajectory


def test_controller_trajectory_is_the_same_with_one_worker_or_two(tiny_run, tmp_path, reference_trajectory):
    run = tmp_path / "run"
    run_stage("04_train_controller.py", *copy_run(tiny_run, run, NOT_04), *CONTROLLER, "--workers", "1")
    assert trajectory(run) == reference_trajectory


def test_workers_that_keep_dying_stop_the_stage_with_a_message(tmp_path):
    """Workers that cannot even start (here: V and M that do not load) are replaced ``retries`` times, then it
    gives up."""
    from pipeline.contract.errors import WorkerError
    from pipeline.evolution import Evaluator

    for name in ("vae.pt", "mdnrnn.pt"):
        (tmp_path / name).write_bytes(b"not a checkpoint")
    evaluator = Evaluator(tmp_path, "carracing", None, 10, workers=2, retries=1)
    try:
        with pytest.raises(WorkerError, match="an evaluation worker died, 2 times in one batch.*re-run the same command"):
            evaluator.run([(np.zeros((1, 867)), [1])])
    finally:
        evaluator.close()


def test_non_finite_fitness_stops_naming_the_generation_and_keeps_the_es_state(tiny_run, tmp_path):
    """An M whose reward prediction overflows float32 (saturated LSTM, huge reward weights): in its dream
    every step is worth +inf. The tiny run's ES state (generation 2) must survive, however often it is tried."""
    run = tmp_path / "run"
    folders = copy_run(tiny_run, run)
    m = torch.load(run / "mdnrnn.pt", weights_only=True)
    for name in ("core.lstm.bias_ih_l0", "core.lstm.bias_hh_l0"):
        m["model"][name].fill_(1e3)  # every gate open, h = tanh(c) > 0.7
    m["model"]["head.weight"][-2] = 3e38  # the reward row: a sum of 32 such terms overflows
    checkpoint.save(run / "mdnrnn.pt", m)
    # The ES state is tied to the V and M it evolved on: make it this M's, as if it had evolved on it.
    state = pickle.loads((run / "es_state.pkl").read_bytes())
    state.world = WorldModel.load(run, "carracing").fingerprint()
    (run / "es_state.pkl").write_bytes(pickle.dumps(state))
    command = [*folders, "--in", "dream", "--pop", "4", "--trials", "2", "--generations", "4", "--steps", "30",
               "--workers", "1"]
    before = snapshot(run)
    for _ in range(2):
        proc = run_stage("04_train_controller.py", *command, check=False)
        assert_one_line_error(proc, "non-finite fitness at generation 3", "the last good ES state is kept", code=1)
    assert {p: h for p, h in snapshot(run).items() if p.name != "config.json"} == \
           {p: h for p, h in before.items() if p.name != "config.json"}
    assert es_generation(run) == 2


# -- two processes on one folder; SIGTERM ------------------------------------------------------------------
def alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in "ZX"
    except OSError:
        return False


def generations(run: Path) -> list[int]:
    return [int(r["generation"]) for r in rows(run / "metrics" / "controller.csv")]


def beside(first, script: str, *command):
    """Run ``script`` to its end while ``first`` is alive mid-run: stopped (SIGSTOP), so it cannot finish meanwhile,
    whatever the machine's load; it goes on afterwards."""
    os.kill(first.pid, signal.SIGSTOP)
    try:
        return run_stage(script, *command, check=False)
    finally:
        os.kill(first.pid, signal.SIGCONT)


def test_a_second_collection_into_the_same_folder_is_refused_and_a_killed_ones_lock_is_not_in_the_way(
        tmp_path, reference_collection):
    data = tmp_path / "data"
    command = ["--data", data, "--run", tmp_path / "run", *COLLECT]
    with started("01_collect.py", *command, logs=tmp_path / "first") as first:
        wait_for(lambda: len(list((data / ".staging").glob("*.h5"))) >= 1, first, "a staged episode")
        second = beside(first, "01_collect.py", *command)
        assert_one_line_error(second, f"{data} is in use by process {first.pid}", "01_collect.py")
        # Its staged and half-written files were left alone: the first completes the very same dataset.
        assert first.wait(240) == 0, first.stderr()
    assert_same_dataset(data, reference_collection)
    assert not (data / ".lock").exists()

    data = tmp_path / "data2"
    command = ["--data", data, "--run", tmp_path / "run", *COLLECT]
    with started("01_collect.py", *command, logs=tmp_path / "killed") as killed:
        wait_for(lambda: episodes_on_disk(data) >= 4, killed, "4 episodes on disk")
        os.kill(killed.pid, signal.SIGKILL)  # the stage's process alone: its workers may live on a moment
        killed.wait()
        assert (data / ".lock").exists()  # left behind, and no obstacle: the kernel released the lock
        out = run_stage("01_collect.py", *command)
    assert "24 episodes" in out.stdout
    assert_same_dataset(data, reference_collection)


def test_a_second_controller_on_the_same_run_is_refused(
        tiny_run, tmp_path, reference_trajectory):
    run = tmp_path / "run"
    command = copy_run(tiny_run, run, NOT_04) + CONTROLLER + ["--workers", "2"]
    with started("04_train_controller.py", *command, logs=tmp_path / "first") as first:
        wait_for(lambda: len(generations(run)) >= 1, first, "generation 1")
        before = generations(run)
        second = beside(first, "04_train_controller.py", *command)
        assert_one_line_error(second, f"{run} is in use by process {first.pid}", "04_train_controller.py")
        assert generations(run)[: len(before)] == before  # nothing the second did shows in the metrics
        assert first.wait(240) == 0, first.stderr()
    assert generations(run) == [1, 2, 3, 4, 5]  # each generation once
    assert trajectory(run) == reference_trajectory
    # A killed stage's lock file is left behind, and is not in the way: see the test above, which resumes one.


def assert_terminated_like_ctrl_c(stage, workers: list[int], folder: Path) -> None:
    """SIGTERM to the stage's process alone: exit 130 with the one line of an interrupt, every worker ended by
    the stage, no temporary file left, the folder's lock released and its file removed."""
    os.kill(stage.pid, signal.SIGTERM)
    assert stage.wait(60) == 130, stage.stderr()
    assert_one_line_error(SimpleNamespace(returncode=130, stderr=stage.stderr()),
                          "interrupted; re-run the same command to resume", code=130)
    assert len(workers) == 2 and not [pid for pid in workers if alive(pid)]
    assert not list(folder.rglob("*.tmp")) and not (folder / ".lock").exists()


def test_sigterm_stops_collection_like_ctrl_c_and_the_same_command_completes_it(tmp_path, reference_collection):
    data = tmp_path / "data"
    command = ["--data", data, "--run", tmp_path / "run", *COLLECT]
    with started("01_collect.py", *command, logs=tmp_path) as stage:
        wait_for(lambda: episodes_on_disk(data) >= 6, stage, "6 episodes on disk")
        assert_terminated_like_ctrl_c(stage, workers_of(stage.pid), data)
    assert_intact(data)
    assert 0 < len(RolloutStore(data).index()) < 24
    out = run_stage("01_collect.py", *command)
    assert "24 episodes" in out.stdout
    assert_same_dataset(data, reference_collection)


def test_sigterm_stops_the_controller_like_ctrl_c_and_the_same_command_resumes_it(tiny_run, tmp_path,
                                                                                  reference_trajectory):
    run = tmp_path / "run"
    command = copy_run(tiny_run, run, NOT_04) + CONTROLLER + ["--workers", "2"]
    with started("04_train_controller.py", *command, logs=tmp_path) as stage:
        # A generation's metrics row is written just before its ES state: wait for both.
        wait_for(lambda: len(generations(run)) >= 1 and (run / "es_state.pkl").exists(), stage, "generation 1")
        assert_terminated_like_ctrl_c(stage, workers_of(stage.pid), run)
    assert 1 <= es_generation(run) < 5
    out = run_stage("04_train_controller.py", *command)
    assert f"resuming from {run / 'es_state.pkl'}" in out.stdout
    assert generations(run) == [1, 2, 3, 4, 5]
    assert trajectory(run) == reference_trajectory


# -- a full disk -------------------------------------------------------------------------------------------
SITECUSTOMIZE = '''
"""Loaded by Python at start-up (tests only): a write to a file whose name ends with $FULL_DISK_SUFFIX puts
half its bytes on disk and then fails with ENOSPC, like a disk that fills up mid-write."""
import builtins, errno, os

_open, _suffix = builtins.open, os.environ["FULL_DISK_SUFFIX"]


class _FillsUp:
    def __init__(self, fh):
        self.fh = fh

    def write(self, data):
        self.fh.write(bytes(data)[: len(data) // 2])
        self.fh.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self.fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()


def _open_on_a_full_disk(file, mode="r", *args, **kwargs):
    fh = _open(file, mode, *args, **kwargs)
    return _FillsUp(fh) if "w" in mode and str(file).endswith(_suffix) else fh


builtins.open = _open_on_a_full_disk
'''


def assert_untouched(before: dict, after: dict) -> None:
    """Every file of ``before`` is byte for byte the same, except what a stage may rewrite or extend: its
    config.json entry, and metrics that only grew (rows past the last checkpoint are dropped on resume)."""
    for path, digest in before.items():
        if path.name != "config.json" and path.suffix != ".csv":
            assert after.get(path) == digest, path


@pytest.mark.parametrize("script,flags,target", [
    ("01_collect.py", ["--episodes", "5", "--steps", "40", "--workers", "2"], "data/.staging/episode_4.h5"),
    ("02_train_vae.py", ["--epochs", "2", "--batch", "16", "--device", "cpu"], "run/vae.pt"),
    ("03_train_mdnrnn.py", ["--epochs", "3", "--seq-len", "16", "--batch", "4", "--hidden", "32", "--device", "cpu"],
     "run/mdnrnn.pt"),
    ("04_train_controller.py", ["--pop", "4", "--trials", "2", "--generations", "3", "--steps", "30", "--workers", "2",
                                "--eval-every", "5", "--eval-episodes", "2"], "run/es_state.pkl"),
])
def test_a_full_disk_stops_with_one_line_and_damages_nothing(tiny_run, tmp_path, script, flags, target):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    data, run = tmp_path / "data", tmp_path / "run"
    shutil.copytree(tiny_run["data"], data)
    copy_run(tiny_run, run)
    before = snapshot(data, run)
    csvs = {p: p.read_bytes() for p in before if p.suffix == ".csv"}
    env = stage_env(PYTHONPATH=f"{hook}{os.pathsep}{ROOT}", FULL_DISK_SUFFIX=f"{target}.tmp")
    proc = run_stage(script, "--data", data, "--run", run, *flags, check=False, env=env)
    assert_one_line_error(proc, f"disk full while writing {tmp_path / target}: free space and re-run the same command")
    assert_untouched(before, snapshot(data, run))
    assert all(p.read_bytes().startswith(blob) for p, blob in csvs.items())
    assert not (tmp_path / f"{target}.tmp").exists()


def test_a_real_file_size_limit_mid_write_stops_collection_cleanly(tiny_run, tmp_path):
    """A real kernel refusal mid-write (RLIMIT_FSIZE: EFBIG past 40 KiB). HDF5 writing to disk itself crashes
    the process (SIGSEGV) here, which is why shards are built in memory and written by Python."""
    import resource

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (40 * 1024, 40 * 1024))

    data = tmp_path / "data"
    shutil.copytree(tiny_run["data"], data)
    before = snapshot(data)
    proc = run_stage("01_collect.py", "--data", data, "--run", tmp_path / "run", "--episodes", "6", "--steps", "40",
                     "--workers", "2", check=False, preexec_fn=limit)
    assert_one_line_error(proc, "file size limit reached while writing", ".staging/episode_", "free space")
    assert_untouched(before, snapshot(data))


@pytest.mark.parametrize("sigint", ["handled", "ignored"])
def test_an_interrupt_that_lands_in_a_finalizer_still_stops_the_stage(capsys, sigint):
    """Python runs a signal's handler wherever the main thread is; inside a weakref callback or a finalizer the
    KeyboardInterrupt it raises is swallowed ("Exception ignored") and the stage would run on. It is delivered
    again: the stage stops with exit 130 and its one line. Also when SIGINT is ignored, as in a stage a shell
    started in the background (``nohup … &``), where only SIGTERM can stop it."""
    import gc
    import weakref

    from pipeline.contract.cli import run_main

    class Thing:
        pass

    def interrupted(_):
        raise KeyboardInterrupt

    def stage():
        thing = Thing()
        ref = weakref.ref(thing, interrupted)  # noqa: F841 (the callback fires when the object goes)
        del thing
        gc.collect()
        for _ in range(600):  # 30 s in short sleeps, between which Python checks for a pending interrupt
            time.sleep(0.05)
        raise AssertionError("the interrupt was lost")

    before = signal.signal(signal.SIGINT, signal.SIG_IGN if sigint == "ignored" else signal.default_int_handler)
    try:
        with pytest.raises(SystemExit) as stopped:
            run_main(stage)
    finally:
        signal.signal(signal.SIGINT, before)
    assert stopped.value.code == 130
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith(": interrupted; re-run the same command to resume"), lines
