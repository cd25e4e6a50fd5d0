"""--backend ray: the same rollouts and the same fitness values as the local backend, on a local Ray instance
with 2 CPUs; dead and hung actors are replaced; a missing Ray or a cluster that does not answer is one line."""
from __future__ import annotations

import os

import numpy as np
import pytest
from test_faults import CONTROLLER, FIELDS, copy_run, trajectory

from conftest import ROOT, assert_one_line_error, run_stage, stage_env
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
    pytest.importorskip("ray")
    proc = run_stage("01_collect.py", *folders, *COLLECT, "--backend", "ray", "--address", "127.0.0.1:1", check=False)
    assert_one_line_error(proc, "--address 127.0.0.1:1", "ray start --head")


def episodes(data) -> dict:
    return {ref.id: read_episode(ref) for ref in RolloutStore(data).index()}


def test_collection_on_ray_writes_the_local_backends_rollouts(tmp_path):
    pytest.importorskip("ray")
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    run_stage("01_collect.py", "--data", local, "--run", tmp_path / "run1", *COLLECT)
    run_stage("01_collect.py", "--data", on_ray, "--run", tmp_path / "run2", *COLLECT, "--backend", "ray")
    a, b = episodes(local), episodes(on_ray)
    assert sorted(a) == sorted(b) == list(range(6))
    for i in a:
        for field in FIELDS:
            np.testing.assert_array_equal(getattr(a[i], field), getattr(b[i], field), err_msg=f"episode {i} {field}")
        assert a[i].seed == b[i].seed
    assert len(list(on_ray.glob("*.h5"))) == 2  # packed 4 + 2 by this process


def test_a_generation_on_ray_has_the_local_backends_fitness(tiny_run, tmp_path):
    pytest.importorskip("ray")
    flags = [*CONTROLLER, "--generations", "1", "--workers", "2"]
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    run_stage("04_train_controller.py", *copy_run(tiny_run, local, ("es_state.pkl", "controller*", "metrics")), *flags)
    run_stage("04_train_controller.py", *copy_run(tiny_run, on_ray, ("es_state.pkl", "controller*", "metrics")), *flags,
              "--backend", "ray")
    rows, state = trajectory(on_ray)
    assert [r[0] for r in rows] == ["1"] and rows[0][5]  # scored at the last generation
    assert (rows, state) == trajectory(local)
