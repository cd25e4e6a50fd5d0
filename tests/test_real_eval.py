"""RealEvaluator: real episodes of V, M and C; with --patience, training episodes stop early and are charged exactly."""
from __future__ import annotations

import dataclasses

import numpy as np

from envs.carracing import CarRacing
from envs.fast_carracing_vector import FastCarRacingVector
from pipeline.real_eval import RealEvaluator
from pipeline.world_model import WorldModel


def full_rewards(world: WorldModel, seed: int, steps: int) -> list[float]:
    """The per-step rewards of one episode of C with all-zero parameters, whose action never depends on z or
    h (steer 0, gas 0.5, brake 0), played without V or M."""
    env = world.source.make(steps)
    env.reset(seed=seed)
    action = world.source.controller_action(np.zeros(world.controller_out, dtype=np.float32))
    rewards = []
    while True:
        _, reward, terminated, truncated, _ = env.step(action)
        rewards.append(float(reward))
        if terminated or truncated:
            return rewards


def expected_with_patience(rewards: list[float], steps: int, patience: int) -> tuple[float, int]:
    quiet, total = 0, 0.0
    for t, reward in enumerate(rewards, start=1):
        total += reward
        quiet = 0 if reward > 0 else quiet + 1
        if quiet >= patience and t < len(rewards):
            return total + reward * (steps - t), t
    return total, len(rewards)


def test_patience_stops_quiet_episodes_and_charges_the_steps_left(tiny_run):
    world = WorldModel.load(tiny_run["run"], "carracing")
    steps, patience, seeds = 250, 25, [3, 4]
    params = np.zeros((len(seeds), world.num_params), dtype=np.float32)
    player = RealEvaluator(world, steps)
    full, full_steps = player.play(params, seeds)
    cut, cut_steps = player.play(params, seeds, patience=patience)
    expected = [expected_with_patience(full_rewards(world, s, steps), steps, patience) for s in seeds]
    np.testing.assert_allclose(full, [sum(full_rewards(world, s, steps)) for s in seeds], rtol=1e-9)
    np.testing.assert_allclose(cut, [e for e, _ in expected], rtol=1e-9)
    assert cut_steps == sum(n for _, n in expected) < full_steps  # the straight-driving car left the track
    # A patience longer than the episode changes nothing.
    again, again_steps = player.play(params, seeds, patience=steps + 1)
    np.testing.assert_array_equal(again, full)
    assert again_steps == full_steps


def test_episodes_on_the_vector_env_are_those_of_single_envs(tiny_run):
    """The RealEvaluator plays CarRacing's episodes on FastCarRacingVector, stepping only the running cars: returns and
    step counts equal those of single envs, with patience ending episodes at different steps, a smaller batch
    after a larger one and a larger one after that (the vector env made again)."""
    world = WorldModel.load(tiny_run["run"], "carracing")
    single = dataclasses.replace(world, source=CarRacing())
    single.source.vector = False  # single envs side by side
    params = np.random.default_rng(1).normal(0, 0.5, (4, world.num_params)).astype(np.float32)
    vector_player, single_player = RealEvaluator(world, 120), RealEvaluator(single, 120)
    for rows, seeds, patience in ((3, [5, 6, 7], 15), (2, [8, 9], 0), (4, [1, 2, 3, 4], 20)):
        got = vector_player.play(params[:rows], seeds, patience=patience)
        want = single_player.play(params[:rows], seeds, patience=patience)
        np.testing.assert_array_equal(got[0], want[0])
        assert got[1] == want[1]
    assert isinstance(vector_player.lockstep.vector, FastCarRacingVector) and vector_player.lockstep.capacity == 4
    assert single_player.lockstep.vector is None and len(single_player.lockstep.envs) == 4
