"""Keyboard play in the dream: each source maps held keys to its own actions, and the dream window
(pipeline/reporting/dream_window.py) knows no env."""
from __future__ import annotations

import ast
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import envs
from envs.base import EnvSource

DREAM_WINDOW = Path(__file__).resolve().parents[1] / "pipeline" / "reporting" / "dream_window.py"


class BoxSource(EnvSource):
    """A source with no bindings of its own: the base class's defaults apply."""

    name = "box"
    default_max_steps = 10
    preprocessing = "none"
    action_space = gym.spaces.Box(np.array([-2, 0, -1], np.float32), np.array([2, 1, 1], np.float32))

    def make(self, max_steps):
        raise NotImplementedError

    def preprocess(self, obs):
        return obs


class DigitsSource(BoxSource):
    action_space = gym.spaces.Discrete(4)


def keys(*names: str) -> frozenset[str]:
    return frozenset(names)


def test_carracing_arrows_steer_gas_and_brake():
    source = envs.get("carracing")
    left = source.keyboard_action(keys("left"))
    assert left.dtype == np.float32 and left.tolist() == [-1, 0, 0]  # steer left
    assert source.keyboard_action(keys("right")).tolist() == [1, 0, 0]
    assert source.keyboard_action(keys("up")).tolist() == [0, 1, 0]  # gas
    np.testing.assert_allclose(source.keyboard_action(keys("down")), [0, 0, 0.8])  # brake short of locking
    assert source.keyboard_action(keys("left", "right", "up")).tolist() == [0, 1, 0]
    assert source.keyboard_action(keys()).tolist() == [0, 0, 0]
    for held in (keys(), keys("left", "up"), keys("right", "down")):
        assert source.action_space.contains(source.keyboard_action(held))


@pytest.mark.parametrize("held, theta", [
    (("right",), 0.0), (("down",), np.pi / 2), (("left",), np.pi), (("up",), 3 * np.pi / 2),
    (("right", "down"), np.pi / 4), (("left", "up"), 5 * np.pi / 4),
])
def test_shapeherd_arrows_push_that_way_at_full_force(held, theta):
    source = envs.get("shapeherd")
    action = source.keyboard_action(keys(*held))
    assert action.dtype == np.float32
    np.testing.assert_allclose(action, [theta, source.action_space.high[1]], rtol=1e-6)
    assert source.action_space.contains(action)


def test_shapeherd_no_arrow_no_push():
    source = envs.get("shapeherd")
    assert source.keyboard_action(keys()).tolist() == [0, 0]
    assert source.keyboard_action(keys("left", "right")).tolist() == [0, 0]


def test_retro_games_match_button_combinations():
    airstriker = envs.get("airstriker")  # [], LEFT, RIGHT, B, LEFT+B, RIGHT+B
    assert airstriker.keyboard_action(keys()) == 0
    assert airstriker.keyboard_action(keys("left")) == 1
    assert airstriker.keyboard_action(keys("right", "space")) == 5
    assert airstriker.keyboard_action(keys("3")) == 2  # a digit picks that action, 1 = the first
    assert airstriker.keyboard_action(keys("3", "5")) == 4  # the highest digit held
    assert airstriker.keyboard_action(keys("9")) == 0  # beyond the action set: ignored
    sonic = envs.get("sonic")  # LEFT, RIGHT, LEFT+DOWN, RIGHT+DOWN, DOWN, DOWN+B, B
    assert sonic.keyboard_action(keys("right", "down")) == 3
    assert sonic.keyboard_action(keys("space")) == 6
    assert sonic.keyboard_action(keys()) == 0  # no combination matches: the first action at the start
    assert sonic.keyboard_action(keys("up"), last=5) == 5  # ...and the last one after it


def test_base_class_defaults():
    box = BoxSource()
    assert box.keyboard_action(keys()).tolist() == [0, 0.5, 0]  # mid-range
    assert box.keyboard_action(keys("left", "up")).tolist() == [-2, 1, 0]
    assert box.keyboard_action(keys("right", "down")).tolist() == [2, 0, 0]
    digits = DigitsSource()
    assert digits.combos == () and digits.keyboard_action(keys("2")) == 1
    assert digits.keyboard_action(keys("left")) == 0 and digits.keyboard_action(keys("left"), last=3) == 3


@pytest.mark.parametrize("source", [envs.get(n) for n in ("carracing", "shapeherd", "airstriker", "sonic")]
                         + [BoxSource(), DigitsSource()], ids=lambda s: type(s).__name__)
def test_every_source_says_what_its_keys_do(source):
    assert isinstance(source.keyboard_help, str) and source.keyboard_help


def test_play_has_no_env_specific_branches():
    text = DREAM_WINDOW.read_text(encoding="utf-8")
    for name in envs.names() + ["combos", "CarRacing", "ShapeHerd"]:
        assert name.split(":")[0] not in text, name
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Compare):
            names = [n.attr for side in (node.left, *node.comparators) for n in ast.walk(side)
                     if isinstance(n, ast.Attribute)]
            assert "name" not in names, ast.unparse(node)
