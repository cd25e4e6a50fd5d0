"""FastCarRacingVector steps N cars exactly as Gymnasium's SyncVectorEnv steps N FastCarRacing envs.

The vector env and ``gym.make_vec(..., vectorization_mode="sync")`` are driven side by side with the same seeds
and actions, and every observation (byte for byte), reward, termination, truncation and info must match, across
terminations, time-limit truncations and the next-step autoresets after them. No timings here: see bench/.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs.fast_carracing as fast_module
from envs.fast_carracing_vector import FastCarRacingVector
from tests.test_fast_carracing import brownian_driver, off_the_field


def assert_same_infos(got: dict, want: dict, where: str) -> None:
    assert got.keys() == want.keys(), f"{where}: info keys {sorted(got)} != {sorted(want)}"
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=f"{where}: info[{key!r}]")


def assert_same_step(got, want, where: str) -> None:
    obs, rewards, terminations, truncations, infos = got
    assert obs.dtype == want[0].dtype and obs.shape == want[0].shape
    np.testing.assert_array_equal(obs, want[0], err_msg=f"{where}: observations")
    np.testing.assert_array_equal(rewards, want[1], err_msg=f"{where}: rewards")
    assert rewards.dtype == want[1].dtype
    np.testing.assert_array_equal(terminations, want[2], err_msg=f"{where}: terminations")
    np.testing.assert_array_equal(truncations, want[3], err_msg=f"{where}: truncations")
    assert_same_infos(infos, want[4], where)


def test_matches_sync_vector_env_across_terminations_and_time_limits():
    """Car 0 leaves the playfield (terminated, reward -100) before the time limit, the others are truncated by
    it; all of them autoreset on the next step and drive on."""
    steps, limit = 215, 200
    actions = np.stack(
        [np.stack(off_the_field(steps)), np.stack(brownian_driver(1, steps)), np.stack(brownian_driver(2, steps))],
        axis=1,
    )
    vector = gym.make_vec(fast_module.FAST_ID, num_envs=3, max_episode_steps=limit)
    sync = gym.make_vec(fast_module.FAST_ID, num_envs=3, vectorization_mode="sync", max_episode_steps=limit)
    assert isinstance(vector.unwrapped, FastCarRacingVector) and isinstance(sync, gym.vector.SyncVectorEnv)
    assert vector.observation_space == sync.observation_space and vector.action_space == sync.action_space
    assert vector.single_observation_space == sync.single_observation_space
    assert vector.metadata["autoreset_mode"] == sync.metadata["autoreset_mode"]
    got, want = vector.reset(seed=7), sync.reset(seed=7)
    np.testing.assert_array_equal(got[0], want[0], err_msg="reset observations")
    assert_same_infos(got[1], want[1], "reset")
    ended = np.zeros((steps, 3), np.bool_)
    for t, action in enumerate(actions):
        got, want = vector.step(action), sync.step(action)
        assert_same_step(got, want, f"step {t}")
        ended[t] = want[2] | want[3]
    terminated_at = np.flatnonzero(ended[:, 0])
    assert len(terminated_at) == 1 and terminated_at[0] < limit - 1, "car 0 should leave the field before the limit"
    assert ended[limit - 1, 1:].all() and not ended[limit:, 1:].any()
    vector.close()
    sync.close()


def test_seeds_reset_mask_copies_and_render():
    """Seeds as a list, a masked reset, the returned arrays being copies, and ``render()`` in ``rgb_array`` mode
    (whose full-canvas path shares the cars' working buffers with their observations') matching too."""
    vector = FastCarRacingVector(2, max_episode_steps=3, render_mode="rgb_array")
    sync = gym.make_vec(fast_module.FAST_ID, num_envs=2, vectorization_mode="sync", max_episode_steps=3,
                        render_mode="rgb_array")
    with pytest.raises(gym.error.ResetNeeded):
        vector.step(np.zeros((2, 3), np.float32))
    obs, _ = vector.reset(seed=[5, None])
    np.testing.assert_array_equal(obs[0], sync.reset(seed=[5, 6])[0][0])
    assert vector.np_random_seed[0] == 5
    obs, _ = vector.reset(seed=[11, 12])
    np.testing.assert_array_equal(obs, sync.reset(seed=[11, 12])[0])
    action = np.array([[0.3, 0.5, 0.0], [-0.2, 0.8, 0.1]], np.float32)
    for t in range(5):  # through the time limit and the autoreset after it
        got = vector.step(action)
        assert_same_step(got, sync.step(action), f"step {t}")
        got[0][:] = 0  # the returned arrays are copies
        for i, (frame, want) in enumerate(zip(vector.render(), sync.render())):
            np.testing.assert_array_equal(frame, want, err_msg=f"step {t}: env {i}'s render()")
    mask = np.array([False, True])
    got = vector.reset(seed=[0, 3], options={"reset_mask": mask})
    want = sync.reset(seed=[0, 3], options={"reset_mask": mask.copy()})
    np.testing.assert_array_equal(got[0], want[0])
    assert_same_step(vector.step(action), sync.step(action), "after a masked reset")
    with pytest.raises(ValueError):
        vector.reset(seed=[1, 2, 3])
    vector.close()
    sync.close()


def test_env_id_steps_only_the_chosen_envs_each_as_a_single_env_would_step():
    """``step(actions, env_id=...)`` (EnvPool's keyword) drives a changing subset of the cars each step: every car
    must match a single ``FastCarRacing`` stepped only when chosen (its own time limit counting only its steps,
    and the next-step autoreset after its end), and the results come back in ``env_id``'s order."""
    steps, limit = 400, 200
    drivers = [off_the_field(steps), brownian_driver(3, steps), brownian_driver(4, steps)]
    vector = FastCarRacingVector(3, max_episode_steps=limit)
    singles = [gym.make(fast_module.FAST_ID, max_episode_steps=limit) for _ in range(3)]
    vector.reset(seed=[21, 22, 23])
    for env, seed in zip(singles, (21, 22, 23)):
        env.reset(seed=seed)
    rng = np.random.default_rng(0)
    taken, ended_after, ends = [0, 0, 0], [False] * 3, []
    for t in range(steps):
        ids = rng.permutation(3)[: rng.integers(1, 4)]
        got = vector.step(np.stack([drivers[i][taken[i]] for i in ids]), env_id=ids)
        for row, i in enumerate(ids.tolist()):
            if ended_after[i]:
                want = (singles[i].reset()[0], 0.0, False, False)
            else:
                want = singles[i].step(drivers[i][taken[i]])[:4]
            np.testing.assert_array_equal(got[0][row], want[0], err_msg=f"step {t}: car {i}'s observation")
            assert (got[1][row], got[2][row], got[3][row]) == tuple(want[1:]), f"step {t}: car {i}"
            ended_after[i] = bool(want[2] or want[3])
            ends += [(i, "terminated" if want[2] else "truncated")] if ended_after[i] else []
            taken[i] += 1
    assert (0, "terminated") in ends and any(kind == "truncated" for _, kind in ends), ends
    with pytest.raises(ValueError):
        vector.step(np.zeros((2, 3), np.float32), env_id=[1, 1])
    with pytest.raises(ValueError):
        vector.step(np.zeros((1, 3), np.float32), env_id=[0, 2])
    vector.close()
    for env in singles:
        env.close()
