"""Collection: deterministic across worker counts, and every episode replayable from its seed. (Kills: test_faults.py.)"""
from __future__ import annotations

import json

import h5py
import numpy as np

from conftest import run_stage
from data.store import RolloutStore, read_episode
from pipeline.contract.seeding import episode_seed


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
            a, b = getattr(one[i], name), getattr(two[i], name)
            assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), (i, name)
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


def test_a_folder_begun_by_an_older_version_is_completed_as_one_collection(tmp_path):
    """Older versions recorded the env's observation space (96×96 for CarRacing) in `spaces`; completing such a
    folder writes the same record into its new shards, so every reader still takes the folder as one."""
    data = tmp_path / "data"
    flags = ["--data", data, "--run", tmp_path / "run", "--episodes", "2", "--steps", "15", "--workers", "1",
             "--shard-size", "2"]
    run_stage("01_collect.py", *flags)
    old = {"observation": "Box(0, 255, (96, 96, 3), uint8)", "action": "Box([-1.  0.  0.], 1.0, (3,), float32)"}
    for path in data.glob("*.h5"):
        with h5py.File(path, "a") as f:
            f.attrs["spaces"] = json.dumps(old)
    flags[flags.index("--episodes") + 1] = "4"
    run_stage("01_collect.py", *flags)
    store = RolloutStore(data)
    assert len(store.require()) == 4 and json.loads(store.attrs()["spaces"]) == old
