"""One writer per folder (pipeline/contract/lock.py), with real second processes: refused while the owner lives, free again
the moment it dies (SIGKILL included), never held by a forked child; every stage holds the folder it writes. Two
real stages on one folder mid-run, and a SIGKILLed one: test_faults.py."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, TINY, assert_one_line_error, copy_run, held_by_another_process, run_stage, snapshot, stage_env
from pipeline.contract import lock
from pipeline.contract.errors import UsageError

HOLD = """
import os, sys, time
from pathlib import Path
from pipeline.contract import lock
from pipeline.contract.cli import run_main

def main():
    with lock.hold(Path(sys.argv[1]), "--run"):
        if sys.argv[2] == "fork" and os.fork() == 0:
            time.sleep(60)  # a forked child (a DataLoader worker) living on after its parent is killed
            os._exit(0)
        Path(sys.argv[1], "held").write_text(str(os.getpid()))
        time.sleep(float(sys.argv[3]))

run_main(main)
"""


def hold_in_another_process(folder: Path, seconds: float = 60, fork: bool = False) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), "fork" if fork else "-", str(seconds)],
                            cwd=ROOT, env=stage_env(), stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 30
    while not (folder / "held").exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "the other process never took the lock"
        time.sleep(0.02)
    return proc


def second_process(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", HOLD, str(folder), "-", "0"], cwd=ROOT, env=stage_env(),
                          capture_output=True, text=True, timeout=60)


def test_a_second_process_is_refused_with_one_line_naming_the_owner(tmp_path):
    folder = tmp_path / "run"
    owner = hold_in_another_process(folder)
    try:
        before = sorted(p.name for p in folder.iterdir())
        proc = second_process(folder)
        assert_one_line_error(proc, str(folder), f"is in use by process {owner.pid}", "-c", "pass another --run")
        assert sorted(p.name for p in folder.iterdir()) == before
    finally:
        os.killpg(owner.pid, signal.SIGKILL)
        owner.wait()


def test_a_killed_owner_leaves_its_lock_file_but_not_its_lock(tmp_path):
    folder = tmp_path / "run"
    owner = hold_in_another_process(folder)
    os.kill(owner.pid, signal.SIGKILL)
    owner.wait()
    assert (folder / lock.NAME).exists()  # what a killed run leaves behind
    (folder / "held").unlink()
    assert second_process(folder).returncode == 0


def test_a_forked_child_does_not_keep_the_lock_after_its_parent_is_killed(tmp_path):
    folder = tmp_path / "run"
    owner = hold_in_another_process(folder, fork=True)
    try:
        os.kill(owner.pid, signal.SIGKILL)  # the parent only: its forked child sleeps on
        owner.wait()
        (folder / "held").unlink()
        assert second_process(folder).returncode == 0
    finally:
        os.killpg(owner.pid, signal.SIGKILL)


def test_held_and_released_in_this_process(tmp_path):
    folder = tmp_path / "new" / "run"
    with lock.hold(folder, "--run"):
        assert (folder / lock.NAME).read_text().split()[0] == str(os.getpid())
        with lock.hold(folder, "--run"):  # re-entrant: compare_cores runs stage 03 in its own process
            pass
        assert (folder / lock.NAME).exists()
        assert second_process(folder).returncode == 2
    assert not (tmp_path / "new").exists()  # folders it made and nobody wrote into are removed again
    with lock.hold(folder, "--run"):
        (folder / "kept").write_text("x")
    assert sorted(p.name for p in folder.iterdir()) == ["kept"]


def test_a_file_or_a_folder_inside_one_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    for folder, needle in ((tmp_path / "file", "is a file"), (tmp_path / "file" / "run", "which is a file")):
        with pytest.raises(UsageError, match=needle), lock.hold(folder, "--data"):
            pass


def test_every_stage_holds_the_folder_it_writes(tiny_run, tmp_path):
    """While another process holds the folder, each stage that writes it is refused before touching it."""
    import shutil

    data, run = tmp_path / "data", tmp_path / "run"
    shutil.copytree(tiny_run["data"], data)
    folders = ["--data", data, *copy_run(tiny_run, run)[2:]]
    with held_by_another_process(data, "--data") as owner:
        before = snapshot(data, run)
        proc = run_stage("01_collect.py", *folders, "--episodes", "6", "--steps", "40", check=False)
        assert_one_line_error(proc, f"{data} is in use by process {owner}", "pass another --data")
        assert snapshot(data, run) == before
    with held_by_another_process(run, "--run") as owner:
        before = snapshot(data, run)
        for script, flags in (("02_train_vae.py", TINY["vae"]), ("03_train_mdnrnn.py", TINY["mdnrnn"]),
                              ("04_train_controller.py", TINY["controller"]),
                              ("04_train_controller.py", ["--evaluate", "2", "--steps", "30", "--workers", "1"]),
                              ("05_dream.py", ["--steps", "10", "--dreams", "1", "--device", "cpu"]),
                              ("compare_cores.py", ["--cores", "lstm", "--epochs", "1", "--device", "cpu"])):
            proc = run_stage(script, *folders, *flags, check=False)
            assert_one_line_error(proc, f"{run} is in use by process {owner}", "pass another --run")
        assert snapshot(data, run) == before
