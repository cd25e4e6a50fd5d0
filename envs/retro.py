"""Genesis games through stable-retro: Sonic the Hedgehog (ROM imported by the user) and Airstriker (ships
with stable-retro), played with a small discrete action set and an action repeat of 4 frames.

stable-retro runs one emulator per process, so these sources set ``max_envs_per_process = 1``.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np
from PIL import Image

from envs.base import EnvSource, EnvUnavailable

FRAME = 64
ACTION_REPEAT = 4  # emulator frames per agent step (60 fps → 15 decisions per second)


class DiscreteRetro(gym.Wrapper):
    """Action index → a button combination held for ``repeat`` frames (rewards summed). Buttons in ``tap``
    are pressed on the first frame only: games that fire on a press, not a hold, then fire every step."""

    def __init__(self, env: gym.Env, combos: list[list[str]], repeat: int, tap: frozenset[str] = frozenset()):
        super().__init__(env)
        buttons = env.unwrapped.buttons
        self.held = np.zeros((len(combos), len(buttons)), np.int8)
        self.first = np.zeros_like(self.held)
        for i, combo in enumerate(combos):
            for b in combo:
                self.first[i, buttons.index(b)] = 1
                self.held[i, buttons.index(b)] = b not in tap
        self.repeat = repeat
        self.action_space = gym.spaces.Discrete(len(combos))

    def step(self, action: int):
        total = 0.0
        for k in range(self.repeat):
            obs, reward, terminated, truncated, info = self.env.step(self.first[action] if k == 0 else self.held[action])
            total += float(reward)
            if terminated or truncated:
                break
        return obs, total, terminated, truncated, info


class RetroGame(EnvSource):
    """One stable-retro game with a named action set; subclasses fill in the game's facts."""

    game: str
    state: str
    combos: list[list[str]]
    tap: frozenset[str] = frozenset()
    max_envs_per_process = 1

    def __init__(self, state: str | None = None):
        self.state = state or self.state
        self.action_space = gym.spaces.Discrete(len(self.combos))

    @property
    def preprocessing(self) -> str:
        return f"full {self.game} frame, bilinear resize to 64x64, uint8; action repeat {ACTION_REPEAT}"

    def check_available(self) -> None:
        """Raise EnvUnavailable naming the fix if stable-retro or the game's ROM is missing."""
        try:
            import stable_retro
        except ImportError:
            raise EnvUnavailable(f"--env {self.name} needs stable-retro: pip install stable-retro") from None
        try:
            stable_retro.data.get_romfile_path(self.game)
        except FileNotFoundError:
            raise EnvUnavailable(
                f"--env {self.name}: the ROM of {self.game} is not imported; put your ROM file in a folder DIR and "
                f"run: python -m stable_retro.import DIR"
            ) from None

    def make(self, max_steps: int) -> gym.Env:
        self.check_available()
        import stable_retro

        env = stable_retro.make(self.game, state=self.state, render_mode=None)
        # stable-retro never sets truncation: the time limit does.
        return gym.wrappers.TimeLimit(DiscreteRetro(env, self.combos, ACTION_REPEAT, self.tap), max_steps)

    def preprocess(self, obs: np.ndarray) -> np.ndarray:
        return np.asarray(Image.fromarray(obs).resize((FRAME, FRAME), Image.BILINEAR), dtype=np.uint8)


class Sonic(RetroGame):
    name = "sonic"
    game = "SonicTheHedgehog-Genesis-v0"
    state = "GreenHillZone.Act1"
    default_max_steps = 4500  # the Retro Contest's 18,000 frames
    # The OpenAI Retro Contest's usual discretisation (B jumps; DOWN while moving rolls).
    combos = [["LEFT"], ["RIGHT"], ["LEFT", "DOWN"], ["RIGHT", "DOWN"], ["DOWN"], ["DOWN", "B"], ["B"]]


class Airstriker(RetroGame):
    name = "airstriker"
    game = "Airstriker-Genesis-v0"
    state = "Level1"
    default_max_steps = 2000
    # The ship moves sideways and fires with B, which shoots on a press only: B is tapped each step.
    combos = [[], ["LEFT"], ["RIGHT"], ["B"], ["LEFT", "B"], ["RIGHT", "B"]]
    tap = frozenset({"B"})
