"""ShapeHerd: the Gymnasium contract, exact seeding, and the physics and rules of docs/shapeherd.md.

Tests move bodies directly between steps (``env.agent.body.position = ...``): the env exposes its pymunk
bodies for that. Coordinates are image coordinates (y down), so θ = π/2 pushes the agent down the image.
"""
from __future__ import annotations

import math
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from envs.shapeherd import AGENT_RADIUS, COLOURS, TINTED, WALL, ShapeHerd, ShapeHerdEnv

FULL = 400.0


def push(theta: float, force: float = FULL) -> np.ndarray:
    return np.array([theta, force], dtype=np.float32)


STILL = push(0.0, 0.0)


def clear_stage(env: ShapeHerdEnv, agent_at: tuple[float, float]) -> None:
    """Agent at ``agent_at``, at rest; every object parked at rest in the top-left corner, out of the way."""
    env.agent.body.position, env.agent.body.velocity = agent_at, (0.0, 0.0)
    for i, e in enumerate(env.objects):
        e.body.position, e.body.velocity, e.body.angular_velocity = (WALL + 30 + 60 * i, WALL + 30), (0.0, 0.0), 0.0


def mid_y(env: ShapeHerdEnv) -> float:
    return env.goal_y + env.goal_height / 2


def count_colour(img: np.ndarray, rgb: tuple[int, int, int]) -> int:
    return int(np.all(img == np.array(rgb, np.uint8), axis=-1).sum())


def colour_centroid(img: np.ndarray, rgb: tuple[int, int, int]) -> np.ndarray:
    """(column, row) centre of the pixels of exactly this colour."""
    rows, cols = np.nonzero(np.all(img == np.array(rgb, np.uint8), axis=-1))
    return np.array([cols.mean(), rows.mean()])


# --- the Gymnasium contract ---------------------------------------------------------------------


def test_check_env_passes_with_only_trivial_warnings():
    trivial = ("symmetric and normalized", "not having a spec")  # (θ, F) is the paper's action space on purpose
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(ShapeHerdEnv())
        check_env(ShapeHerdEnv(render_mode="rgb_array", distractors=2))
    serious = [str(w.message) for w in caught if not any(t in str(w.message) for t in trivial)]
    assert not serious, serious


def test_spaces_and_info():
    env = ShapeHerdEnv(num_objects=3)
    assert env.observation_space == gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    np.testing.assert_allclose(env.action_space.low, [0, 0])
    np.testing.assert_allclose(env.action_space.high, [2 * np.pi, 400], rtol=1e-6)
    obs, info = env.reset(seed=3)
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8 and obs.flags.writeable
    assert info["objects_left"] == 3 and info["scored"] == 0 and len(env.objects) == 3
    with pytest.raises(ValueError, match="options"):
        env.reset(seed=3, options={"distractors": 2})  # options are never silently ignored
    assert env.render() is None  # render_mode None


def test_spawn_positions_are_inside_the_playable_area_and_do_not_overlap():
    env = ShapeHerdEnv()
    for seed in range(10):
        env.reset(seed=seed)
        bodies = [env.agent, *env.objects]
        for e in bodies:
            x, y = e.body.position
            assert WALL + e.radius <= x <= env.goal_x - e.radius and WALL + e.radius <= y <= env.height - WALL - e.radius
        for i, a in enumerate(bodies):
            for b in bodies[i + 1:]:
                assert a.body.position.get_distance(b.body.position) > a.radius + b.radius
        assert {e.kind for e in env.objects} <= {"triangle", "square", "rectangle", "pentagon", "hexagon"}
        assert {e.colour for e in env.objects} <= {"orange", "blue", "green", "red", "purple"}


# --- seeding -------------------------------------------------------------------------------------


def rollout(env: ShapeHerdEnv, seed: int, actions: np.ndarray) -> tuple[list[bytes], list[float], list[tuple]]:
    obs, _ = env.reset(seed=seed)
    frames, rewards, flags = [obs.tobytes()], [], []
    for a in actions:
        obs, r, term, trunc, info = env.step(a)
        frames.append(obs.tobytes())
        rewards.append(r)
        flags.append((term, trunc, info["objects_left"], info["physics_steps"]))
    return frames, rewards, flags


def test_same_seed_reproduces_an_episode_exactly():
    actions = np.random.default_rng(0).uniform([0, 0], [2 * np.pi, 400], size=(100, 2)).astype(np.float32)
    a, b = ShapeHerdEnv(distractors=2), ShapeHerdEnv(distractors=2)
    first = rollout(a, 7, actions)
    assert first == rollout(b, 7, actions)  # a fresh env
    rollout(a, 8, actions[:30])
    assert first == rollout(a, 7, actions)  # the same env after another episode: nothing carries over
    assert len(set(first[0])) > 10, "the episode should show movement"


def test_different_seeds_give_different_starts():
    a, b = ShapeHerdEnv(render_mode="rgb_array"), ShapeHerdEnv(render_mode="rgb_array")
    obs_a, _ = a.reset(seed=0)
    obs_b, _ = b.reset(seed=1)
    assert not np.array_equal(obs_a, obs_b)
    assert not np.array_equal(a.render(), b.render())


# --- rules ---------------------------------------------------------------------------------------


def test_object_rolling_into_the_goal_scores_once_and_disappears():
    env = ShapeHerdEnv(num_objects=2)
    env.reset(seed=0)
    clear_stage(env, (WALL + 40, env.height - WALL - 40))
    ball = env.objects[0]
    ball.body.position, ball.body.velocity = (env.goal_x - 30, mid_y(env)), (150.0, 0.0)
    rewards, scored = [], []
    for _ in range(30):
        _, r, term, trunc, info = env.step(STILL)
        rewards.append(r)
        scored.append(info["scored"])
    assert sorted(rewards)[-1] == 1.0 and sum(rewards) == 1.0 and sum(scored) == 1  # +1, exactly once
    assert info["objects_left"] == 1 and not term and not trunc
    assert ball not in env.objects and ball.body not in env.space.bodies and ball.shape not in env.space.shapes


def test_dense_reward_adds_the_time_bonus():
    env = ShapeHerdEnv(num_objects=3, dense_reward=True)
    env.reset(seed=0)
    env.objects[0].body.position = (env.score_x + 5, mid_y(env))  # scores on the episode's first physics step: t = 1
    _, r, *_ = env.step(STILL)
    assert r == pytest.approx(1 + 1.5 - 1 / 1000, abs=1e-12)
    env.physics_steps = 1199  # test hook: pretend the episode is older; the next physics step is t = 1200
    env.objects[0].body.position = (env.score_x + 5, mid_y(env))
    _, r, *_ = env.step(STILL)
    assert r == pytest.approx(1 + 0.3, abs=1e-12)
    env.physics_steps = 2000  # past t = 1500 the bonus is 0
    env.objects[0].body.position = (env.score_x + 5, mid_y(env))
    _, r, *_ = env.step(STILL)
    assert r == 1.0


def test_episode_terminates_when_the_last_object_scores():
    env = ShapeHerdEnv(num_objects=2)
    env.reset(seed=1)
    env.objects[0].body.position = (env.score_x + 5, mid_y(env) - 40)
    _, r, term, trunc, info = env.step(STILL)
    assert (r, term, trunc, info["objects_left"]) == (1.0, False, False, 1)
    env.step(STILL)
    env.objects[0].body.position = (env.score_x + 5, mid_y(env))
    before = env.physics_steps
    _, r, term, trunc, info = env.step(STILL)
    assert (r, term, trunc, info["objects_left"]) == (1.0, True, False, 0)
    assert env.physics_steps == before + 1  # the step stops at the physics step that ended the episode


def test_agent_pushes_an_object_into_the_goal():
    env = ShapeHerdEnv(num_objects=1)
    env.reset(seed=1)
    y = mid_y(env)
    env.agent.body.position = (env.goal_x - 150, y)
    box = env.objects[0]
    box.body.position, box.body.angle = (env.goal_x - 100, y), 0.0
    total = 0.0
    for _ in range(150):
        _, r, term, _, _ = env.step(push(0.0))
        total += r
        if term:
            break
    assert term and total == 1.0


def test_agent_cannot_enter_the_goal_column():
    env = ShapeHerdEnv(num_objects=1)
    env.reset(seed=2)
    for y in (mid_y(env), env.goal_y + 10, env.goal_y + env.goal_height - 10):  # the opening and its edges
        clear_stage(env, (env.goal_x - 60, y))
        xs, vxs = [], []
        for _ in range(100):
            env.step(push(0.0))  # full force to the right, into the opening
            xs.append(env.agent.body.position.x)
            vxs.append(env.agent.body.velocity.x)
        assert max(xs) + AGENT_RADIUS < env.goal_x, "the agent entered the goal column"
        assert max(xs) + AGENT_RADIUS > env.goal_x - 4, "the agent should reach the goal column's edge"
        assert min(vxs) < 0, "the agent should bounce off the goal column"


@pytest.mark.parametrize("theta", [0.0, np.pi / 2, np.pi, 3 * np.pi / 2])
def test_force_moves_the_agent_in_the_commanded_direction(theta):
    env = ShapeHerdEnv(num_objects=1, render_mode="rgb_array")
    env.reset(seed=0)
    start = ((WALL + env.goal_x) / 2, env.height / 2)  # the middle of the playable area: free space all round
    clear_stage(env, start)
    env.objects[0].body.position = (WALL + 30, env.height - WALL - 30)  # a corner away from every path
    seen = colour_centroid(env.render(), TINTED["agent"])
    for _ in range(20):
        env.step(push(theta))
    moved = np.array(env.agent.body.position) - np.array(start)
    assert np.hypot(*moved) > 20
    want = np.array([math.cos(theta), math.sin(theta)])
    assert moved @ want / np.hypot(*moved) > math.cos(0.02)  # within 0.02 rad
    on_screen = colour_centroid(env.render(), TINTED["agent"]) - seen  # (column, row): y grows downwards
    assert on_screen @ want / np.hypot(*on_screen) > math.cos(0.05)


# --- options -------------------------------------------------------------------------------------


def test_distractors_move_appear_and_do_not_touch_the_agent():
    plain = ShapeHerdEnv(render_mode="rgb_array")
    plain.reset(seed=4)
    assert count_colour(plain.render(), COLOURS["distractor"]) + count_colour(plain.render(), TINTED["distractor"]) == 0

    env = ShapeHerdEnv(distractors=3, render_mode="rgb_array")
    env.reset(seed=4)
    assert len(env.distractors) == 3
    frame = env.render()
    assert count_colour(frame, COLOURS["distractor"]) + count_colour(frame, TINTED["distractor"]) > 100
    start = [tuple(d.body.position) for d in env.distractors]
    for _ in range(40):
        _, r, *_ = env.step(STILL)
    assert all(np.hypot(*np.subtract(d.body.position, s)) > 1 for d, s in zip(env.distractors, start))
    assert all(d.body.position.x < env.goal_x for d in env.distractors)

    # A distractor sitting on the agent passes through it: the resting agent is not pushed.
    clear_stage(env, ((WALL + env.goal_x) / 2, env.height / 2))
    env.distractors[0].body.position = env.agent.body.position
    env.step(STILL)
    assert env.agent.body.velocity.length == 0.0


def test_arena_scale_moves_the_walls():
    env = ShapeHerdEnv(arena_scale=1.5, num_objects=1, render_mode="rgb_array")
    env.reset(seed=0)
    assert (env.width, env.height, env.goal_x) == (1200, 1050, 1200 - 225)
    assert env.render().shape == (1050, 1200, 3)
    xs = []
    for seed in range(10):
        env.reset(seed=seed)
        xs.append(env.agent.body.position.x)
    assert max(xs) > ShapeHerdEnv().goal_x  # spawns use the bigger floor
    clear_stage(env, (600.0, 525.0))
    for _ in range(200):
        env.step(push(np.pi / 2))  # down, into the scaled bottom wall
    assert env.agent.body.position.y == pytest.approx(env.height - WALL - AGENT_RADIUS, abs=1.0)
    assert ShapeHerdEnv(arena_scale=0.8).reset(seed=0)[0].shape == (64, 64, 3)


def test_view_size_changes_what_the_view_covers():
    shown = {}
    for view in (250, 500):
        env = ShapeHerdEnv(num_objects=1, view_size=view)
        env.reset(seed=0)
        clear_stage(env, (300.0, 350.0))
        obj = env.objects[0]
        obj.body.position, obj.body.angle = (480.0, 350.0), 0.0  # 180 px right of the agent
        obs = env.observe()
        shown[view] = count_colour(obs, TINTED[obj.colour])
        assert env.view_rect()[2] - env.view_rect()[0] == view
    assert shown[250] == 0 and shown[500] > 5
    with pytest.raises(ValueError):
        ShapeHerdEnv(view_size=800)  # taller than the 700 px arena


@pytest.mark.parametrize(("max_physics", "repeat", "steps"), [(40, 4, 10), (10, 3, 4), (7, 1, 7)])
def test_truncation_after_max_physics_steps(max_physics, repeat, steps):
    env = ShapeHerdEnv(max_physics_steps=max_physics, action_repeat=repeat)
    env.reset(seed=0)
    for t in range(1, steps + 1):
        _, _, term, trunc, info = env.step(STILL)
        assert trunc == (t == steps) and not term
        assert info["physics_steps"] == min(t * repeat, max_physics)


# --- the pipeline's source -----------------------------------------------------------------------


def test_source_controller_action_mapping():
    src = ShapeHerd()
    assert (src.name, src.action_dim, src.default_max_steps) == ("shapeherd", 2, 750)
    lo, hi, mid = (src.controller_action(np.array(v, np.float32)) for v in ([-1, -1], [1, 1], [0, 0]))
    assert lo.dtype == hi.dtype == np.float32 and lo.shape == (2,)
    np.testing.assert_array_equal(lo, [0, 0])
    np.testing.assert_allclose(hi, [2 * np.pi, 400], rtol=1e-6)
    np.testing.assert_allclose(mid, [np.pi, 200], rtol=1e-6)
    assert src.action_space.contains(hi) and src.action_space.contains(lo)


def test_source_policies_stay_in_the_action_space_and_wander():
    src = ShapeHerd()
    for kind in ("brownian", "random"):
        policy = src.exploration_policy(kind, np.random.default_rng(0))
        policy.reset()
        acts = np.stack([policy.act() for _ in range(2000)])
        assert all(src.action_space.contains(a) for a in acts)
        assert np.ptp(acts[:, 0]) > 1.0 and np.ptp(acts[:, 1]) > 100, kind  # both the angle and the force vary


def test_source_make_and_preprocess():
    src = ShapeHerd()
    env = src.make(12)
    assert env.unwrapped.max_physics_steps == 48
    assert src.make(src.default_max_steps).unwrapped.max_physics_steps == 3000
    policy = src.exploration_policy("brownian", np.random.default_rng(1))
    obs, _ = env.reset(seed=5)
    for t in range(1, 13):
        obs, _, term, trunc, _ = env.step(policy.act())
        frame = src.preprocess(obs)
        assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8 and frame is not obs
        np.testing.assert_array_equal(frame, obs)
        assert trunc == (t == 12) and not term
