"""Shared helpers: run the real stage scripts as subprocesses, and one tiny pipeline run per session."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TINY = {
    "collect": ["--episodes", "4", "--steps", "40", "--workers", "2"],
    "vae": ["--epochs", "1", "--batch", "16", "--log-every", "2", "--device", "cpu"],
    "mdnrnn": ["--epochs", "2", "--seq-len", "16", "--batch", "4", "--hidden", "32", "--device", "cpu"],
    "controller": ["--pop", "4", "--trials", "2", "--generations", "2", "--steps", "30", "--workers", "2",
                   "--eval-every", "1", "--eval-episodes", "2"],
}


def run_stage(script: str, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} {' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> dict:
    """The four stages, end to end at tiny scale on CarRacing; returns the folders and each stage's output."""
    base = tmp_path_factory.mktemp("pipeline")
    folders = ["--data", str(base / "data"), "--run", str(base / "run")]
    out = {"data": base / "data", "run": base / "run", "folders": folders}
    out["collect"] = run_stage("01_collect.py", *folders, *TINY["collect"])
    out["vae"] = run_stage("02_train_vae.py", *folders, *TINY["vae"])
    out["mdnrnn"] = run_stage("03_train_mdnrnn.py", *folders, *TINY["mdnrnn"])
    out["controller"] = run_stage("04_train_controller.py", *folders, *TINY["controller"])
    out["evaluate"] = run_stage("04_train_controller.py", *folders, "--steps", "30", "--workers", "2",
                                "--evaluate", "3")
    return out
