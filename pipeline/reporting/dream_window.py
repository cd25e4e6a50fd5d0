"""Drive inside the dream with the keyboard, as in the World Models paper's interactive demo.

The window shows V's decoding of M's current z. Each frame the held keys become an env action, M takes one
step at the given temperature and the next z is sampled from it; when M's done probability passes 0.5 (or on
R) a new dream starts from another real frame. Keys are tracked from KEYDOWN/KEYUP events, so a test can drive
the loop with scripted events under SDL's dummy video driver (``SDL_VIDEODRIVER=dummy``).
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

import envs
from pipeline.contract.errors import UsageError
from pipeline.contract.seeding import Purpose, episode_seeds
from pipeline.dream_env import DONE_THRESHOLD, StartFrames, begin, decode, step
from pipeline.world_model import WorldModel

HEADLESS_DRIVERS = ("dummy", "offscreen")  # SDL video drivers that draw nowhere: no window, no keys
HELP = ("dream controls: the arrow keys (and space, 1–9 where the env binds them) drive; the env's own bindings "
        "are printed when the window opens; R: a new dream; Esc or closing the window: quit")


def keyboard_action(source: envs.EnvSource, held: frozenset[str], last=None):
    """Held key names ("left", "right", "up", "down", "space", "1"…"9") → an action in the env's own space: the
    source's own ``keyboard_action``."""
    return source.keyboard_action(held, last)


class DreamSession:
    """One dream a person drives (a batch of one); V and M run where their parameters are."""

    def __init__(self, world: WorldModel, starts: StartFrames, temperature: float, seed: int):
        self.world, self.starts, self.temperature, self.seed = world, starts, temperature, seed
        self.device = next(world.vae.parameters()).device
        self.generator = torch.Generator(self.device).manual_seed(seed)
        self.dreams = 0
        self.reset()

    def reset(self) -> None:
        """A new dream from another real frame."""
        self.dreams += 1
        start = self.starts.draw(episode_seeds(self.seed, Purpose.DREAMS, self.dreams, 1))
        self.z, self.state = begin(self.world.mdnrnn, start, self.device)
        self.t, self.total = 0, 0.0

    @torch.no_grad()
    def step(self, action) -> tuple[float, float]:
        """Advance the dream by one step under ``action``; returns M's reward and done probability."""
        out, self.z, self.state = step(self.world.mdnrnn, self.world.source, self.z, self.state, [action],
                                       self.temperature, self.generator, observed=self.t == 0)
        self.t += 1
        reward = float(out.reward[0])
        self.total += reward
        return reward, float(torch.sigmoid(out.done_logit[0]))

    @torch.no_grad()
    def frame(self) -> np.ndarray:
        """The current dream frame, (64, 64, 3) uint8."""
        return decode(self.world.vae, self.z)[0]


@dataclass
class PlayLog:
    """What happened: one entry per step taken (actions, rewards, done probabilities, the z after it)."""

    actions: list = field(default_factory=list)
    rewards: list = field(default_factory=list)
    done_probs: list = field(default_factory=list)
    z: list = field(default_factory=list)
    dreams: int = 0  # dreams started


def run(world: WorldModel, starts: StartFrames, temperature: float, seed: int, scale: int = 6, fps: int = 25,
        events: Callable[[int], list] | None = None, max_frames: int | None = None) -> PlayLog:
    """Open the window and play until Esc, the window is closed, or ``max_frames`` frames.

    ``events(frame)``, if given, returns pygame events to post before frame ``frame`` is handled: scripted input
    for tests. ``fps`` 0 runs as fast as it can.
    """
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    import pygame

    names = {pygame.K_LEFT: "left", pygame.K_RIGHT: "right", pygame.K_UP: "up", pygame.K_DOWN: "down",
             pygame.K_SPACE: "space", **{getattr(pygame, f"K_{d}"): str(d) for d in range(1, 10)}}
    session = DreamSession(world, starts, temperature, seed)
    log = PlayLog()
    size = 64 * scale
    try:
        try:
            pygame.display.init()  # not pygame.init(): no sound is needed, and opening an audio device can fail noisily
            pygame.font.init()
            screen = pygame.display.set_mode((size, size + 28))
        except pygame.error as e:
            raise UsageError(f"--play cannot open a window ({e}): run it where there is a display") from None
        if events is None and pygame.display.get_driver() in HEADLESS_DRIVERS:
            # Nobody can press a key in a window nobody sees: the loop would wait for Esc forever.
            raise UsageError(f"--play needs a window to watch and type into, but SDL's video driver here is "
                             f"{pygame.display.get_driver()!r}, which shows none (no display?): run it in a desktop "
                             "session, or drop --play to write the dreams as files")
        pygame.display.set_caption(f"World Models dream: {world.source.name} (τ = {temperature:g})")
        print(f"{world.source.name} keys: {world.source.keyboard_help}")
        font = pygame.font.Font(None, 22)
        clock = pygame.time.Clock()
        held: set[str] = set()
        action = None
        frame = 0
        while max_frames is None or frame < max_frames:
            for event in events(frame) if events else []:
                pygame.event.post(event)
            quit_now = False
            for event in pygame.event.get():
                if event.type == pygame.QUIT or (event.type == pygame.KEYDOWN and event.key == pygame.K_ESCAPE):
                    quit_now = True
                elif event.type == pygame.KEYDOWN and event.key == pygame.K_r:
                    session.reset()
                elif event.type == pygame.KEYDOWN and event.key in names:
                    held.add(names[event.key])
                elif event.type == pygame.KEYUP and event.key in names:
                    held.discard(names[event.key])
            if quit_now:
                break
            action = keyboard_action(world.source, frozenset(held), action)
            reward, done_prob = session.step(action)
            log.actions.append(action)
            log.rewards.append(reward)
            log.done_probs.append(done_prob)
            log.z.append(session.z[0].cpu().numpy())
            image = np.ascontiguousarray(session.frame().transpose(1, 0, 2))  # pygame surfaces are (W, H, 3)
            screen.fill((20, 20, 20))
            screen.blit(pygame.transform.scale(pygame.surfarray.make_surface(image), (size, size)), (0, 0))
            hud = f"t {session.t}   return {session.total:+.1f}   done {done_prob:.2f}   dream {session.dreams}"
            screen.blit(font.render(hud, True, (230, 230, 230)), (6, size + 6))
            pygame.display.flip()
            if done_prob > DONE_THRESHOLD:
                session.reset()
            clock.tick(fps)
            frame += 1
    finally:
        pygame.quit()
    log.dreams = session.dreams
    return log
