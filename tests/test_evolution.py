"""The CMA-ES loop: it solves a small objective, and a pickled state resumes the same trajectory."""
from __future__ import annotations

import pickle

import numpy as np

from pipeline.contract.seeding import episode_seeds
from pipeline.evolution import ESState


def rosen_fitness(x: np.ndarray) -> np.ndarray:
    """Higher is better, like a return: −(shifted sphere), optimum at x = 0.3."""
    return -((x - 0.3) ** 2).sum(axis=1)


def run(state: ESState, generations: int) -> list[np.ndarray]:
    means = []
    for _ in range(generations):
        c = np.asarray(state.es.ask())
        state.es.tell(list(c), list(-rosen_fitness(c)))
        state.generation += 1
        means.append(np.asarray(state.es.mean).copy())
    return means


def test_cma_es_solves_a_small_objective():
    state = ESState(dim=10, sigma=0.1, pop=16, seed=0)
    means = run(state, 150)
    assert np.abs(means[-1] - 0.3).max() < 1e-3


def test_resumed_state_follows_the_same_trajectory(tmp_path):
    straight = run(ESState(dim=6, sigma=0.1, pop=8, seed=3), 20)
    state = ESState(dim=6, sigma=0.1, pop=8, seed=3)
    first = run(state, 8)
    state.save(tmp_path / "es.pkl")
    np.random.seed(12345)  # a fresh process would not share numpy's random state
    resumed = ESState.load(tmp_path / "es.pkl", dim=6)
    rest = run(resumed, 12)
    np.testing.assert_array_equal(np.array(first + rest), np.array(straight))
    assert pickle.loads((tmp_path / "es.pkl").read_bytes()).generation == 8


def test_episode_seeds_are_deterministic_and_distinct_per_purpose():
    assert episode_seeds(0, 0, 1, 4) == episode_seeds(0, 0, 1, 4)
    seen = {s for purpose in range(3) for g in range(5) for s in episode_seeds(0, purpose, g, 8)}
    assert len(seen) == 3 * 5 * 8


def test_cma_es_draws_from_its_own_generator_not_numpys_global_one():
    """Whatever else draws from numpy's global generator between generations, the ES samples the same."""
    straight = run(ESState(dim=6, sigma=0.1, pop=8, seed=3), 10)
    state = ESState(dim=6, sigma=0.1, pop=8, seed=3)
    disturbed = []
    for g in range(10):
        np.random.seed(1000 + g)
        np.random.standard_normal(50)
        disturbed += run(state, 1)
    np.testing.assert_array_equal(np.array(disturbed), np.array(straight))


def test_seed_purposes_are_named_and_disjoint():
    from pipeline.contract.seeding import Purpose
    assert [p.name for p in Purpose] == ["TRIALS", "SELECTION", "EVALUATE", "DREAMS"]
    selection = set(episode_seeds(0, Purpose.SELECTION, 0, 100))
    scoring = set(episode_seeds(0, Purpose.EVALUATE, 0, 100))
    assert not selection & scoring  # a reported score is never on seeds a choice was made on
