"""--backend ray: the same rollouts as the local backend on a local Ray instance with 2 CPUs and on a cluster
started with `ray start` (token authentication on and off), and there the same fitness values; a missing Ray or
a cluster that does not answer is one line. Dead and hung actors: tests/test_pool.py."""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import (
    CONTROLLER,
    EPISODE_FIELDS,
    ROOT,
    assert_one_line_error,
    copy_run,
    import_or_missing,
    run_stage,
    stage_env,
    trajectory,
)
from data.store import RolloutStore, read_episode

COLLECT = ["--env", "shapeherd", "--episodes", "6", "--steps", "25", "--workers", "2", "--shard-size", "4",
           "--seed", "5", "--verbose", "0"]


def test_backend_ray_without_ray_says_how_to_install_it(tmp_path):
    """A `ray` package that fails to import, first on the path: what a machine without Ray sees."""
    (tmp_path / "shadow" / "ray").mkdir(parents=True)
    (tmp_path / "shadow" / "ray" / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    env = stage_env(PYTHONPATH=f"{tmp_path / 'shadow'}{os.pathsep}{ROOT}")
    folders = ["--data", tmp_path / "data", "--run", tmp_path / "run"]
    proc = run_stage("01_collect.py", *folders, *COLLECT, "--backend", "ray", check=False, env=env)
    assert_one_line_error(proc, "--backend ray needs Ray", "pip install 'ray>=2.9'")
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").rglob("*.h5"))


def test_address_needs_the_ray_backend_and_an_answering_cluster(tmp_path):
    folders = ["--data", tmp_path / "data", "--run", tmp_path / "run"]
    proc = run_stage("01_collect.py", *folders, *COLLECT, "--address", "127.0.0.1:6379", check=False)
    assert_one_line_error(proc, "--address", "only with --backend ray")
    import_or_missing("ray")
    proc = run_stage("01_collect.py", *folders, *COLLECT, "--backend", "ray", "--address", "127.0.0.1:1", check=False)
    assert_one_line_error(proc, "--address 127.0.0.1:1", "ray start --head")


def episodes(data) -> dict:
    return {ref.id: read_episode(ref) for ref in RolloutStore(data).index()}


@pytest.fixture(scope="module")
def local_rollouts(tmp_path_factory) -> dict:
    """COLLECT's episodes collected by the local backend: what every Ray collection here must reproduce."""
    base = tmp_path_factory.mktemp("local")
    run_stage("01_collect.py", "--data", base / "data", "--run", base / "run", *COLLECT)
    return episodes(base / "data")


def test_collection_on_ray_writes_the_local_backends_rollouts(tmp_path, local_rollouts):
    import_or_missing("ray")
    on_ray = tmp_path / "ray"
    run_stage("01_collect.py", "--data", on_ray, "--run", tmp_path / "run2", *COLLECT, "--backend", "ray")
    a, b = local_rollouts, episodes(on_ray)
    assert sorted(a) == sorted(b) == list(range(6))
    for i in a:
        for field in EPISODE_FIELDS:
            np.testing.assert_array_equal(getattr(a[i], field), getattr(b[i], field), err_msg=f"episode {i} {field}")
        assert a[i].seed == b[i].seed
    assert len(list(on_ray.glob("*.h5"))) == 2  # packed 4 + 2 by this process


class Cluster:
    """A Ray cluster as a user starts one: `ray start --head` in its own process group, on 127.0.0.1, with token
    authentication on or off; stopped with its process group."""

    def __init__(self, token: Path | None):
        self.dir = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: Ray's socket paths have a length limit
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.address = f"127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
        env.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)} if token else
                   {"RAY_AUTH_MODE": "disabled"})
        env["RAY_worker_niceness"] = "0"  # as docs/ray.md advises: actors at the stage's priority
        ray = Path(sys.executable).parent / "ray"
        self.proc = subprocess.Popen([ray, "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
                                      "--port", str(port), "--num-cpus", "2", "--include-dashboard", "false",
                                      "--temp-dir", self.dir], env=env, start_new_session=True,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not any(self.dir.glob("session_latest/logs/raylet.out")) and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(2)

    def stop(self):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def token(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("auth") / "token"
    path.write_text(secrets.token_hex(32))
    return path


def _driver_env(**extra) -> dict:
    """A stage's environment with RAY_AUTH_MODE unset, as in a user's shell."""
    return {k: v for k, v in stage_env(**extra).items() if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}


@pytest.mark.parametrize("auth", ["token", "off"])
def test_a_stage_joins_a_cluster_started_with_ray_start(tiny_run, tmp_path, token, auth, local_rollouts):
    """RAY_AUTH_MODE unset in the driver, as in the README's instructions; the token in a file, as `ray start`
    keeps it. The rollouts are the local backend's. With token authentication on, a wrong token is first
    refused in one line that says what to set, and nothing is written. Without it, a generation of 04 evolved on
    the cluster has the local backend's fitness values and ES state."""
    import_or_missing("ray")
    cluster = Cluster(token if auth == "token" else None)
    on_ray = ["--backend", "ray", "--address", cluster.address]
    flags = [*COLLECT, "--episodes", "3", *on_ray]
    generation = [*CONTROLLER, "--generations", "1", "--workers", "2"]
    not_04 = ("es_state.pkl", "controller*", "metrics")
    try:
        if auth == "token":
            proc = run_stage("01_collect.py", "--data", tmp_path / "ray", "--run", tmp_path / "run", *flags,
                             check=False, env=_driver_env(RAY_AUTH_TOKEN="not-the-token"))
            assert_one_line_error(proc, f"--address {cluster.address}", "requires an authentication token and "
                                  "refused this process's", "RAY_AUTH_TOKEN", "RAY_AUTH_MODE=token")
            assert not any((tmp_path / "ray").rglob("*.h5"))
        run_stage("01_collect.py", "--data", tmp_path / "ray", "--run", tmp_path / "run", *flags,
                  env=_driver_env(RAY_AUTH_TOKEN_PATH=str(token)))
        if auth == "off":
            run_stage("04_train_controller.py", *copy_run(tiny_run, tmp_path / "c-ray", not_04), *generation,
                      *on_ray, env=_driver_env(), timeout=900)  # Ray's start: minutes on a loaded 2-core machine
    finally:
        cluster.stop()
    b = episodes(tmp_path / "ray")  # the first 3 of the local backend's 6: an episode's seed is its index's
    assert sorted(b) == [0, 1, 2]
    for i in b:
        np.testing.assert_array_equal(local_rollouts[i].observations, b[i].observations)
    if auth == "off":
        run_stage("04_train_controller.py", *copy_run(tiny_run, tmp_path / "c-local", not_04), *generation)
        rows, state = trajectory(tmp_path / "c-ray")
        assert [r[0] for r in rows] == ["1"] and rows[0][5]  # scored at the last generation
        assert (rows, state) == trajectory(tmp_path / "c-local")
