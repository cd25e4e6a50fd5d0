"""Collection: deterministic across worker counts, and a killed run is completed by the same command."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np

from conftest import ROOT, run_stage
from data.store import RolloutStore, read_episode
from pipeline.collect import episode_seed


def episodes(data):
    return {r.id: read_episode(r) for r in RolloutStore(data).index()}


def test_same_seed_same_rollouts_with_one_or_two_workers(tmp_path):
    for w in (1, 2):
        run_stage("01_collect.py", "--data", tmp_path / f"w{w}", "--run", tmp_path / "run",
                  "--episodes", "3", "--steps", "25", "--workers", str(w), "--seed", "5")
    one, two = episodes(tmp_path / "w1"), episodes(tmp_path / "w2")
    assert one.keys() == two.keys() == {0, 1, 2}
    for i in one:
        assert one[i].seed == episode_seed(5, i)
        for name in ("observations", "actions", "rewards", "terminations", "truncations"):
            np.testing.assert_array_equal(getattr(one[i], name), getattr(two[i], name))
    assert not np.array_equal(one[0].observations, one[1].observations)


def test_random_policy_and_episode_replay(tmp_path):
    run_stage("01_collect.py", "--data", tmp_path, "--run", tmp_path / "run", "--episodes", "1",
              "--steps", "15", "--workers", "1", "--policy", "random")
    ep = episodes(tmp_path)[0]
    import envs
    source = envs.get("carracing")
    env = source.make(15)
    obs, _ = env.reset(seed=ep.seed)
    np.testing.assert_array_equal(source.preprocess(obs), ep.observations[0])
    for t, action in enumerate(ep.actions):
        obs, reward, *_ = env.step(action)
        np.testing.assert_array_equal(source.preprocess(obs), ep.observations[t + 1])
        assert np.float32(reward) == ep.rewards[t]
    assert ep.truncations[-1] and len(ep.actions) == 15


def test_sigkill_then_rerun_completes_without_loss_or_duplicates(tmp_path):
    data = tmp_path / "d"
    args = [sys.executable, str(ROOT / "01_collect.py"), "--data", str(data), "--run", str(tmp_path / "r"),
            "--episodes", "24", "--steps", "40", "--workers", "2", "--shard-size", "2", "--verbose", "0"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1"}
    proc = subprocess.Popen(args, cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(list(data.rglob("episode_*.h5"))) + len(list(data.glob("shard_*.h5"))) < 3:
        assert time.monotonic() < deadline and proc.poll() is None, "collection never got going"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the main process and its workers, mid-collection
    proc.wait()
    before = {r.id for r in RolloutStore(data).index()}
    assert 0 < len(before) < 24, "the kill did not land mid-collection"
    subprocess.run(args, cwd=ROOT, env=env, check=True, capture_output=True)
    after = episodes(data)
    assert sorted(after) == list(range(24))
    reference = tmp_path / "ref"
    run_stage("01_collect.py", "--data", reference, "--run", tmp_path / "r2", "--episodes", "3", "--steps", "40",
              "--workers", "1")
    for i, ep in episodes(reference).items():
        np.testing.assert_array_equal(ep.observations, after[i].observations)
