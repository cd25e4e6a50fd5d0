"""FastCarRacing renders byte-for-byte what Gymnasium's CarRacing-v3 renders, and the pipeline builds it.

Each test drives the stock env and the fast one side by side with the same seed and actions and compares every
observation (reset included), reward, termination, truncation and info. No timings here: see bench/.
"""
from __future__ import annotations

import inspect

import gymnasium as gym
import numpy as np
import pygame
import pytest
from gymnasium.envs.box2d.car_racing import CarRacing as StockCarRacing

import envs
import envs.fast_carracing as fast_module
from envs.fast_carracing import FastCarRacing


def brownian_driver(seed: int, steps: int) -> list[np.ndarray]:
    """Brownian driving: wandering (mean-reverting) steering, moderate gas, a little brake. The car runs along the
    road turning tiles visited, drifts onto the grass and back, and skids."""
    rng = np.random.default_rng(1000 + seed)
    action = np.array([0.0, 0.5, 0.0])
    actions = []
    for _ in range(steps):
        action = action * [0.9, 1, 1] + rng.normal(0.0, [0.15, 0.1, 0.05])
        action = np.clip(action, [-1, 0.1, 0], [1, 1, 0.3])
        actions.append(action.astype(np.float32))
    return actions


def off_the_field(steps: int = 400) -> list[np.ndarray]:
    """A nudge to the right, then full speed straight ahead: off the road, across the grass, out of the field."""
    return [np.array([0.15 if t < 20 else 0.0, 1.0 if t % 3 else 0.6, 0.0], np.float32) for t in range(steps)]


def assert_same_run(seed, actions, render=False, **kwargs) -> dict:
    """Step both envs through ``actions``; every output must match. Returns a few facts about the run."""
    options = kwargs.pop("_options", None)
    stock, fast = StockCarRacing(**kwargs), FastCarRacing(**kwargs)
    if options is not None:  # a seeded episode first, then the reset under test continues the same RNG
        stock.reset(seed=seed)
        fast.reset(seed=seed)
        seed = None
    obs_s, info_s = stock.reset(seed=seed, options=options)
    obs_f, info_f = fast.reset(seed=seed, options=options)
    assert obs_f.dtype == obs_s.dtype == np.uint8 and obs_f.shape == obs_s.shape == (96, 96, 3)
    np.testing.assert_array_equal(obs_f, obs_s, err_msg=f"seed {seed}: reset observation")
    assert info_f == info_s
    if render:
        np.testing.assert_array_equal(fast.render(), stock.render(), err_msg=f"seed {seed}: render after reset")
    facts = {"steps": 0, "terminated": False, "last_reward": None, "visited": 0}
    for t, action in enumerate(actions):
        out_s, out_f = stock.step(action), fast.step(action)
        np.testing.assert_array_equal(out_f[0], out_s[0], err_msg=f"seed {seed}, step {t}: observation")
        assert out_f[1:] == out_s[1:], f"seed {seed}, step {t}: reward/terminated/truncated/info differ"
        if render:
            np.testing.assert_array_equal(fast.render(), stock.render(), err_msg=f"seed {seed}, step {t}: render")
        facts.update(steps=t + 1, terminated=out_s[2], last_reward=out_s[1], visited=stock.tile_visited_count)
        if out_s[2] or out_s[3]:
            break
    stock.close()
    fast.close()
    return facts


@pytest.mark.parametrize("seed", range(6))
def test_brownian_driving_is_byte_identical(seed):
    facts = assert_same_run(seed, brownian_driver(seed, 250))
    assert facts["steps"] == 250
    assert facts["visited"] >= 5, "the car should have turned road tiles visited"


def test_driving_off_the_field_terminates_identically():
    facts = assert_same_run(1, off_the_field())
    assert facts["terminated"] and facts["last_reward"] == -100


def test_rgb_array_frames_are_byte_identical():
    # rgb_array frames (600×400) include the skid-mark particles that state_pixels leaves out
    facts = assert_same_run(3, brownian_driver(3, 90), render=True, render_mode="rgb_array")
    assert facts["steps"] == 90


@pytest.mark.parametrize(
    "kwargs, actions",
    [
        ({"domain_randomize": True}, brownian_driver(7, 90)),
        ({"domain_randomize": True, "_options": {"randomize": False}}, brownian_driver(8, 60)),
        ({"continuous": False}, [int(a) for a in np.random.default_rng(9).choice(5, 90, p=[.1, .2, .2, .4, .1])]),
        ({"lap_complete_percent": 0.01, "verbose": False}, brownian_driver(10, 90)),
    ],
    ids=["domain_randomize", "domain_randomize_keep_colours", "discrete", "lap_complete_percent"],
)
def test_constructor_arguments_stay_identical(kwargs, actions):
    assert_same_run(11, actions, **kwargs)


def test_dashboard_fallback_is_byte_identical(monkeypatch):
    # A dashboard bar that reaches above the dashboard (a wheel spinning past 390 rad/s) makes the fast env
    # compose the whole window as the parent does; force that path and check it too.
    monkeypatch.setattr(fast_module, "_BAR_VALUE_LIMIT", -1.0)
    assert_same_run(4, brownian_driver(4, 60))


def test_rotation_matches_pygame_vector2():
    rng = np.random.default_rng(0)
    quarter = np.pi / 2
    angles = list(rng.uniform(-20, 20, 200))
    for k in range(-8, 9):  # exact and nearly exact quarter turns, inside and outside Vector2's epsilon
        angles += [k * quarter + d for d in (0.0, 1e-9, -1e-9, 5e-7, -5e-7, 2e-6, -2e-6)]
    xs, ys = rng.uniform(-400, 400, 64), rng.uniform(-400, 400, 64)
    for angle in angles:
        rx, ry = fast_module._rotate(xs, ys, float(angle))
        expected = [pygame.math.Vector2(x, y).rotate_rad(float(angle)) for x, y in zip(xs, ys)]
        assert rx.tolist() == [v[0] for v in expected] and ry.tolist() == [v[1] for v in expected], angle


def test_same_constructor_as_gymnasium():
    ours, theirs = inspect.signature(FastCarRacing.__init__), inspect.signature(StockCarRacing.__init__)
    assert [(p.name, p.kind, p.default) for p in ours.parameters.values()] == [
        (p.name, p.kind, p.default) for p in theirs.parameters.values()
    ]
    env = FastCarRacing(None, False, 0.5, True, False)
    assert (env.lap_complete_percent, env.domain_randomize, env.continuous) == (0.5, True, False)
    assert isinstance(env.action_space, gym.spaces.Discrete)


def test_pipeline_builds_the_fast_env_with_its_time_limit():
    source = envs.get("carracing")
    env = source.make(30)
    assert isinstance(env.unwrapped, FastCarRacing)
    assert env.spec.max_episode_steps == 30
    stock = gym.make("CarRacing-v3", max_episode_steps=30)
    obs, _ = env.reset(seed=5)
    obs_s, _ = stock.reset(seed=5)
    np.testing.assert_array_equal(obs, obs_s)
    actions = brownian_driver(5, 40)
    for t in range(30):
        out, out_s = env.step(actions[t]), stock.step(actions[t])
        np.testing.assert_array_equal(out[0], out_s[0])
        assert out[1:] == out_s[1:]
        assert out[3] == (t == 29), "episodes truncate after max_steps"
    env.close()
    stock.close()
