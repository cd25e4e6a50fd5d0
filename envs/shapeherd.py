"""ShapeHerd (a.k.a. BringBackShapes): push shapes into a goal through a small, agent-centred view.

A Gymnasium env on pymunk, rebuilt from the task of Jain et al., "Learning Robust Dynamics through Variational
Sparse Gating" (NeurIPS 2022, arXiv:2210.11698, §5.1) and its reference code ("the original" below,
https://github.com/arnavkj1995/BBS), seeded end to end: ``reset(seed=s)`` followed by the same actions
reproduces an episode byte for byte. docs/shapeherd.md states the rules and where they differ from the original.

Conventions (the paper is silent on these; each choice is deliberate):

* Coordinates are image coordinates: x to the right, **y down**, in arena pixels; ``render()`` and the
  observation draw the arena with that orientation (pymunk itself has no "up"; gravity is 0).
  The action angle θ is measured from +x towards +y, so on screen θ = 0 pushes right, π/2 **down**,
  π left and 3π/2 up. θ is used modulo 2π; the force F is clipped to [0, 400].
* The force is applied at the agent's centre every physics step (pymunk clears forces after a step).
  The agent has mass 10 (the original's body mass) and infinite moment, so it never spins; with
  ``damping = 0.7`` its top speed is about F/m / −ln(0.7) ≈ 112 px/s: about 7.5 px per env step.
* Objects have mass 20 and the physical moment of their polygon (they turn when pushed off-centre).
  Their vertices are centred on the centroid, so "an object's x" (the scoring test) is its centroid's x.
  Shapes: triangle with base 50 and height 25, 50×50 square, 50×25 rectangle, regular pentagon and hexagon of
  circumradius 25. Colours are pygame's orange, blue, green, red and purple.
* The goal column is x ∈ [W − 225, W − 125]: two static wall blocks with the green opening between them.
  An invisible static box covers the column (its face 2 px left of it, which absorbs pymunk's soft-contact
  sinking) and collides only with the agent and the distractors, so the agent bounces off it physically
  (elasticity 1.0 · 0.7) and its edge never enters the column; objects pass through the opening and
  score (+1, and are removed) once their centroid reaches x ≥ goal_x + 5, checked after every physics step.
  With ``dense_reward`` each score also earns max(0, 1.5 − t/1000), t = the physics steps taken so far in
  the episode (the one that scored included).
* Distractors are rosy-brown kites of mass 10 that pick a random force (uniform angle, F ∈ [0, 400]) for
  a random 2–9 env steps, drawn from the env's own generator. They collide only with the walls and the
  goal barrier: they can never push an object into the goal or block the agent, and they are drawn
  beneath the objects and the agent, so they distract the eye without changing the task.
* The agent and the objects spawn at uniform, non-overlapping positions (gap ≥ 4 px) in the playable
  area left of the goal column; distractors anywhere in that area. Walls stay 125 px thick and the goal
  100 px wide whatever ``arena_scale``.
* The view is a ``view_size`` square centred on the agent, shifted to stay inside the arena near the
  walls (as the original camera does), grey-tinted (grey 128 at alpha 100/255, as the original overlay),
  drawn directly at 128×128 and box-averaged to 64×64 (anti-aliased, no full-arena raster per step).
* An env step is ``action_repeat`` physics steps with the same action; it stops early when the last object
  scores. Episodes terminate when every object has scored and truncate once ``max_physics_steps`` physics
  steps have run (ceil(max_physics_steps / action_repeat) env steps). ``reset`` accepts no options
  (an unknown option raises instead of being silently ignored).
* Every reset builds a fresh pymunk Space, so the collision solver's caches and shape ids never carry
  over from a previous episode: that is what makes a seed reproduce an episode exactly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import pymunk
from PIL import Image, ImageDraw

from envs.base import EnvSource, arrows

FRAME = 64
SUPERSAMPLE = 2  # the view is drawn at 128×128 then box-averaged: smooth edges at almost no cost
DT = 1.0 / 60.0
DAMPING = 0.7  # pymunk: bodies keep 70 % of their velocity per second
BASE_WIDTH, BASE_HEIGHT = 800, 700
WALL = 125
GOAL_WIDTH = 100
GOAL_HEIGHT_FACTOR = 0.5
SCORE_MARGIN = 5
MAX_FORCE = 400.0
AGENT_RADIUS = 15.0
AGENT_MASS = 10.0
OBJECT_MASS = 20.0
DISTRACTOR_MASS = 10.0
WALL_FRICTION, WALL_ELASTICITY = 1.0, 0.7
BODY_FRICTION, BODY_ELASTICITY = 0.5, 1.0
DISTRACTOR_HOLD = (2, 10)  # a distractor keeps its force for rng.integers(2, 10) env steps
TIME_BONUS, TIME_BONUS_SCALE = 1.5, 1000.0
TINT_ALPHA, TINT_GREY = 100 / 255, 128
SPAWN_GAP = 4.0
# The agent's barrier starts this far left of the goal column: pymunk contacts are soft (a body sinks up to one
# physics step of travel, ≤ 1.9 px at the agent's top speed, before it is pushed out), so the agent's edge
# stays strictly outside the column.
BARRIER_MARGIN = 2.0
SPAWN_TRIES = 2000

# Collision categories: a pair collides when each one's category is in the other's mask.
CAT_WALL, CAT_AGENT, CAT_OBJECT, CAT_DISTRACTOR, CAT_BARRIER = 1, 2, 4, 8, 16
FILTERS = {
    "wall": pymunk.ShapeFilter(categories=CAT_WALL, mask=CAT_AGENT | CAT_OBJECT | CAT_DISTRACTOR),
    "barrier": pymunk.ShapeFilter(categories=CAT_BARRIER, mask=CAT_AGENT | CAT_DISTRACTOR),
    "agent": pymunk.ShapeFilter(categories=CAT_AGENT, mask=CAT_WALL | CAT_OBJECT | CAT_BARRIER),
    "object": pymunk.ShapeFilter(categories=CAT_OBJECT, mask=CAT_WALL | CAT_AGENT | CAT_OBJECT),
    "distractor": pymunk.ShapeFilter(categories=CAT_DISTRACTOR, mask=CAT_WALL | CAT_BARRIER),
}

OBJECT_COLOURS = {"orange": (255, 165, 0), "blue": (0, 0, 255), "green": (0, 255, 0), "red": (255, 0, 0),
                  "purple": (160, 32, 240)}
COLOURS = {**OBJECT_COLOURS, "agent": (70, 130, 180), "distractor": (188, 143, 143), "wall": (149, 165, 166),
           "goal": (0, 130, 65), "background": (0, 0, 0)}  # agent steelblue, distractor rosybrown (pygame names)


def tint(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """A colour as seen through the grey view overlay (the original's alpha-blended grey box)."""
    return tuple(int(round(c * (1 - TINT_ALPHA) + TINT_GREY * TINT_ALPHA)) for c in rgb)


TINTED = {name: tint(rgb) for name, rgb in COLOURS.items()}

Verts = tuple[tuple[float, float], ...]


def _centred(points: list[tuple[float, float]]) -> Verts:
    """Polygon vertices shifted so the area centroid is at the origin (the body's position is the centroid)."""
    a = cx = cy = 0.0
    for (x0, y0), (x1, y1) in zip(points, points[1:] + points[:1]):
        cross = x0 * y1 - x1 * y0
        a += cross
        cx += (x0 + x1) * cross
        cy += (y0 + y1) * cross
    cx, cy = cx / (3 * a), cy / (3 * a)
    return tuple((x - cx, y - cy) for x, y in points)


def _regular(n: int, radius: float) -> Verts:
    return _centred([(radius * math.cos(2 * math.pi * i / n - math.pi / 2), radius * math.sin(2 * math.pi * i / n - math.pi / 2))
                     for i in range(n)])


def _box(w: float, h: float) -> Verts:
    return _centred([(0, 0), (w, 0), (w, h), (0, h)])


SHAPES: dict[str, Verts] = {
    "triangle": _centred([(0, 0), (50, 0), (25, 25)]),
    "square": _box(50, 50),
    "rectangle": _box(50, 25),
    "pentagon": _regular(5, 25),
    "hexagon": _regular(6, 25),
}
KITE = _centred([(-30, 0), (0, 15), (10, 0), (0, -15)])
SHAPE_NAMES, COLOUR_NAMES = tuple(SHAPES), tuple(OBJECT_COLOURS)


def _bound(verts: Verts) -> float:
    return max(math.hypot(x, y) for x, y in verts)


@dataclass(slots=True, eq=False)  # identity equality: two red squares are still two objects
class Entity:
    """One moving body: the agent (``verts`` empty, a circle), an object, or a distractor kite."""

    kind: str  # "agent", "distractor", or the object's shape name
    colour: str  # key into COLOURS / TINTED
    body: pymunk.Body
    shape: pymunk.Shape
    verts: Verts  # local polygon vertices around the body's centre; () for the agent
    radius: float  # bounding radius around the body's centre


class ShapeHerdEnv(gym.Env):
    """Push every shape into the green goal, seeing only a grey-tinted square around the agent.

    Observation: (64, 64, 3) uint8, the agent's view. Action: float32 (θ, F), θ ∈ [0, 2π] (image axes,
    y down: π/2 pushes down), F ∈ [0, 400]. Reward: +1 per object scored (plus the time bonus with
    ``dense_reward``). ``info``: ``objects_left``, ``scored`` (this step) and ``physics_steps`` (so far).

    The bodies are public for tests and tools: ``agent``, ``objects`` and ``distractors`` (``Entity``s whose
    ``body`` may be moved between steps), ``space``, and the geometry ``width``, ``height``, ``goal_x``,
    ``goal_y``, ``goal_height`` and ``score_x``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}

    def __init__(
        self,
        distractors: int = 0,
        arena_scale: float = 1.0,
        view_size: int = 250,
        dense_reward: bool = False,
        num_objects: int = 5,
        max_physics_steps: int = 3000,
        action_repeat: int = 4,
        render_mode: str | None = None,
    ):
        super().__init__()
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or 'rgb_array', not {render_mode!r}")
        if distractors < 0 or num_objects < 1 or max_physics_steps < 1 or action_repeat < 1:
            raise ValueError("need distractors >= 0, num_objects >= 1, max_physics_steps >= 1, action_repeat >= 1")
        self.width, self.height = int(BASE_WIDTH * arena_scale), int(BASE_HEIGHT * arena_scale)
        self.goal_x = self.width - WALL - GOAL_WIDTH
        self.goal_height = GOAL_HEIGHT_FACTOR * (self.height - 2 * WALL)
        self.goal_y = (self.height - self.goal_height) / 2  # the opening is vertically centred
        self.score_x = self.goal_x + SCORE_MARGIN
        largest = 2 * (_bound(KITE) + SPAWN_GAP)
        if self.goal_x - WALL < largest or self.height - 2 * WALL < largest:
            raise ValueError(f"arena_scale {arena_scale} leaves no room to play: the arena would be {self.width}×{self.height}")
        if not 0 < view_size <= min(self.width, self.height):
            raise ValueError(f"view_size must be in (0, {min(self.width, self.height)}] for this arena, not {view_size}")
        self.num_distractors, self.arena_scale, self.view_size = int(distractors), float(arena_scale), int(view_size)
        self.dense_reward, self.num_objects = bool(dense_reward), int(num_objects)
        self.max_physics_steps, self.action_repeat = int(max_physics_steps), int(action_repeat)
        self.render_mode = render_mode

        self.observation_space = gym.spaces.Box(0, 255, (FRAME, FRAME, 3), np.uint8)
        self.action_space = gym.spaces.Box(np.array([0.0, 0.0], np.float32), np.array([2 * np.pi, MAX_FORCE], np.float32),
                                           dtype=np.float32)

        w, h, gx, gy, gh = self.width, self.height, self.goal_x, self.goal_y, self.goal_height
        # Static rectangles (x0, y0, x1, y1): the four walls and the goal column's blocks above and below the opening.
        self._walls = [(0, 0, WALL, h), (w - WALL, 0, w, h), (0, 0, w, WALL), (0, h - WALL, w, h),
                       (gx, WALL, w - WALL, gy), (gx, gy + gh, w - WALL, h - WALL)]
        self._opening = (gx, gy, w - WALL, gy + gh)
        self._barrier = (gx - BARRIER_MARGIN, WALL, w - WALL, h - WALL)  # the agent's (and distractors') wall
        self._scale = FRAME * SUPERSAMPLE / self.view_size  # arena px → supersampled view px

        self.space: pymunk.Space | None = None
        self.agent: Entity | None = None
        self.objects: list[Entity] = []
        self.distractors: list[Entity] = []
        self._distractor_force: list[tuple[float, float]] = []
        self._distractor_hold: list[int] = []
        self.physics_steps = 0

    # --- episode -----------------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        """A new arena: random shapes, colours, angles and non-overlapping positions, all from ``np_random``."""
        super().reset(seed=seed)
        if options:
            raise ValueError(f"ShapeHerdEnv.reset takes no options; got {sorted(options)} (set them in the constructor)")
        rng = self.np_random
        self.space = self._build_space()
        placed: list[tuple[float, float, float]] = []

        body = pymunk.Body(AGENT_MASS, math.inf)
        body.position = self._spawn(AGENT_RADIUS, placed)
        shape = pymunk.Circle(body, AGENT_RADIUS)
        self.agent = self._add(Entity("agent", "agent", body, shape, (), AGENT_RADIUS), "agent")

        self.objects = []
        for _ in range(self.num_objects):
            kind = SHAPE_NAMES[int(rng.integers(len(SHAPE_NAMES)))]
            colour = COLOUR_NAMES[int(rng.integers(len(COLOUR_NAMES)))]
            verts = SHAPES[kind]
            body = pymunk.Body(OBJECT_MASS, pymunk.moment_for_poly(OBJECT_MASS, verts))
            body.angle = float(rng.uniform(0, 2 * np.pi))
            body.position = self._spawn(_bound(verts), placed)
            self.objects.append(self._add(Entity(kind, colour, body, pymunk.Poly(body, verts), verts, _bound(verts)), "object"))

        self.distractors = []
        for _ in range(self.num_distractors):
            body = pymunk.Body(DISTRACTOR_MASS, math.inf)
            body.angle = float(rng.uniform(0, 2 * np.pi))
            body.position = self._spawn(_bound(KITE), None)
            entity = Entity("distractor", "distractor", body, pymunk.Poly(body, KITE), KITE, _bound(KITE))
            self.distractors.append(self._add(entity, "distractor"))
        self._distractor_force = [(0.0, 0.0)] * self.num_distractors
        self._distractor_hold = [0] * self.num_distractors

        self.physics_steps = 0
        return self.observe(), self._info(0)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        """``action_repeat`` physics steps pushing the agent with (θ, F); returns (obs, reward, terminated, truncated, info)."""
        if self.space is None:
            raise RuntimeError("call reset() before step()")
        theta, force = (float(x) for x in np.asarray(action, dtype=np.float64).reshape(2))
        if not (math.isfinite(theta) and math.isfinite(force)):
            raise ValueError(f"non-finite action {action!r}")
        force = min(max(force, 0.0), MAX_FORCE)
        push = (force * math.cos(theta), force * math.sin(theta))
        self._update_distractors()

        reward, scored = 0.0, 0
        agent = self.agent.body
        for _ in range(self.action_repeat):
            if self.physics_steps >= self.max_physics_steps or not self.objects:
                break
            agent.force = push  # at the centre of gravity; pymunk zeroes forces after every step
            for d, f in zip(self.distractors, self._distractor_force):
                d.body.force = f
            self.space.step(DT)
            self.physics_steps += 1
            n = self._remove_scored()
            if n:
                scored += n
                bonus = max(0.0, TIME_BONUS - self.physics_steps / TIME_BONUS_SCALE) if self.dense_reward else 0.0
                reward += n * (1.0 + bonus)
        terminated = not self.objects
        truncated = not terminated and self.physics_steps >= self.max_physics_steps
        return self.observe(), reward, terminated, truncated, self._info(scored)

    def _info(self, scored: int) -> dict:
        return {"objects_left": len(self.objects), "scored": scored, "physics_steps": self.physics_steps}

    # --- physics -----------------------------------------------------------------------------------

    def _build_space(self) -> pymunk.Space:
        """Walls, the goal column's blocks and the agent-only barrier in front of the column, in a fresh Space."""
        space = pymunk.Space()
        space.gravity = (0.0, 0.0)
        space.damping = DAMPING
        statics = [(rect, "wall") for rect in self._walls] + [(self._barrier, "barrier")]
        for (x0, y0, x1, y1), kind in statics:
            shape = pymunk.Poly.create_box_bb(space.static_body, pymunk.BB(x0, y0, x1, y1))
            shape.friction, shape.elasticity, shape.filter = WALL_FRICTION, WALL_ELASTICITY, FILTERS[kind]
            space.add(shape)
        return space

    def _add(self, entity: Entity, kind: str) -> Entity:
        entity.shape.friction, entity.shape.elasticity, entity.shape.filter = BODY_FRICTION, BODY_ELASTICITY, FILTERS[kind]
        self.space.add(entity.body, entity.shape)
        return entity

    def _spawn(self, radius: float, placed: list[tuple[float, float, float]] | None) -> tuple[float, float]:
        """A uniform position left of the goal column, clear of the walls and (if ``placed``) of placed bodies."""
        lo_x, hi_x = WALL + radius + SPAWN_GAP, self.goal_x - radius - SPAWN_GAP
        lo_y, hi_y = WALL + radius + SPAWN_GAP, self.height - WALL - radius - SPAWN_GAP
        for _ in range(SPAWN_TRIES):
            x, y = float(self.np_random.uniform(lo_x, hi_x)), float(self.np_random.uniform(lo_y, hi_y))
            if placed is None:
                return x, y
            if all((x - px) ** 2 + (y - py) ** 2 > (radius + pr + SPAWN_GAP) ** 2 for px, py, pr in placed):
                placed.append((x, y, radius))
                return x, y
        raise RuntimeError(f"no room for {self.num_objects} objects and the agent in a {self.width}×{self.height} arena")

    def _remove_scored(self) -> int:
        """Remove the objects whose centroid crossed ``score_x``; returns how many."""
        gone = [e for e in self.objects if e.body.position.x >= self.score_x]
        for e in gone:
            self.space.remove(e.body, e.shape)
        if gone:
            self.objects = [e for e in self.objects if e not in gone]  # identity (eq=False)
        return len(gone)

    def _update_distractors(self) -> None:
        """Each distractor keeps a random force for a random 2–9 env steps, then draws a new one."""
        rng = self.np_random
        for i in range(self.num_distractors):
            if self._distractor_hold[i] == 0:
                angle, force = float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0, MAX_FORCE))
                self._distractor_force[i] = (force * math.cos(angle), force * math.sin(angle))
                self._distractor_hold[i] = int(rng.integers(*DISTRACTOR_HOLD))
            self._distractor_hold[i] -= 1

    # --- drawing -----------------------------------------------------------------------------------

    def view_rect(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) in arena px: the ``view_size`` square around the agent, kept inside the arena."""
        v = self.view_size
        ax, ay = self.agent.body.position
        x0 = min(max(ax - v / 2, 0.0), self.width - v)
        y0 = min(max(ay - v / 2, 0.0), self.height - v)
        return x0, y0, x0 + v, y0 + v

    def observe(self) -> np.ndarray:
        """The current observation, (64, 64, 3) uint8: the tinted view, drawn at 128×128 and box-averaged."""
        x0, y0, x1, y1 = self.view_rect()
        size = FRAME * SUPERSAMPLE
        img = Image.new("RGB", (size, size), TINTED["background"])
        self._paint(ImageDraw.Draw(img), (x0, y0, x1, y1), self._scale, TINTED)
        if SUPERSAMPLE > 1:
            img = img.reduce(SUPERSAMPLE)
        return np.array(img, dtype=np.uint8)  # a fresh, writable array: callers may keep it

    def render(self) -> np.ndarray | None:
        """With ``render_mode="rgb_array"``: the whole arena, (H, W, 3) uint8, the agent's view tinted grey."""
        if self.render_mode != "rgb_array" or self.agent is None:
            return None
        img = Image.new("RGB", (self.width, self.height), COLOURS["background"])
        self._paint(ImageDraw.Draw(img), (0.0, 0.0, float(self.width), float(self.height)), 1.0, COLOURS)
        arr = np.array(img, dtype=np.uint8)
        x0, y0, x1, y1 = (int(round(c)) for c in self.view_rect())
        view = arr[y0:y1, x0:x1].astype(np.float32)
        arr[y0:y1, x0:x1] = np.rint(view * (1 - TINT_ALPHA) + TINT_GREY * TINT_ALPHA).astype(np.uint8)
        return arr

    def _paint(self, draw: ImageDraw.ImageDraw, window: tuple[float, float, float, float], k: float,
               palette: dict[str, tuple[int, int, int]]) -> None:
        """Draw the arena window (x0, y0, x1, y1) at ``k`` image px per arena px; bottom to top: walls, goal,
        distractors, objects, agent. Bodies outside the window are skipped."""
        wx0, wy0, wx1, wy1 = window
        ox, oy = wx0 * k + 0.5, wy0 * k + 0.5  # PIL puts pixel centres on integers: shift by half a pixel

        for (x0, y0, x1, y1), colour in [*((r, "wall") for r in self._walls), (self._opening, "goal")]:
            if x1 > wx0 and x0 < wx1 and y1 > wy0 and y0 < wy1:
                a, b, c, d = x0 * k - ox, y0 * k - oy, x1 * k - ox, y1 * k - oy
                draw.polygon([(a, b), (c, b), (c, d), (a, d)], fill=palette[colour])

        for e in (*self.distractors, *self.objects):
            px, py = e.body.position
            if px + e.radius < wx0 or px - e.radius > wx1 or py + e.radius < wy0 or py - e.radius > wy1:
                continue
            c, s = math.cos(e.body.angle) * k, math.sin(e.body.angle) * k
            cx, cy = px * k - ox, py * k - oy
            draw.polygon([(cx + c * vx - s * vy, cy + s * vx + c * vy) for vx, vy in e.verts], fill=palette[e.colour])

        px, py = self.agent.body.position
        cx, cy, r = px * k - ox, py * k - oy, AGENT_RADIUS * k
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=palette["agent"])


class ShapeHerd(EnvSource):
    """ShapeHerd for the World Models pipeline: frames are already 64×64×3, actions are (θ, F)."""

    name = "shapeherd"
    default_max_steps = 750  # 3000 physics steps / action repeat 4
    preprocessing = ("agent-centred 250 px view, grey-tinted, drawn at 128x128 and box-averaged to 64x64 by the env, "
                     "uint8; preprocess is the identity")
    action_space = gym.spaces.Box(np.array([0, 0], np.float32), np.array([2 * np.pi, MAX_FORCE], np.float32), dtype=np.float32)
    # Brownian steps: sqrt(1/50) rad for θ, so the heading turns over ~50 steps (about the agent's velocity
    # time constant, ~42 env steps), and the same fraction of the half-range for F (sqrt(1/50) · 200), so the
    # push strength wanders too instead of staying at its first draw.
    brownian_scale = np.sqrt(1 / 50) * np.array([1.0, MAX_FORCE / 2])
    action_repeat = 4
    keyboard_help = "arrows push the agent that way (diagonals too) at full force"

    def make(self, max_steps: int) -> gym.Env:
        """Episodes of ``max_steps`` env steps: the env's own physics limit is set to match, and a TimeLimit says so."""
        env = ShapeHerdEnv(max_physics_steps=max_steps * self.action_repeat, action_repeat=self.action_repeat)
        return gym.wrappers.TimeLimit(env, max_steps)

    def preprocess(self, obs: np.ndarray) -> np.ndarray:
        """Already (64, 64, 3) uint8: a copy, so the caller owns it."""
        obs = np.array(obs, dtype=np.uint8)
        if obs.shape != (FRAME, FRAME, 3):
            raise ValueError(f"ShapeHerd frames are ({FRAME}, {FRAME}, 3), got {obs.shape}")
        return obs

    def controller_action(self, out: np.ndarray) -> np.ndarray:
        """tanh outputs (2,) in [-1, 1] → θ = (out0 + 1)·π, F = (out1 + 1)/2 · 400 (float32)."""
        out = np.clip(np.asarray(out, dtype=np.float32), -1.0, 1.0)
        return np.array([(out[0] + 1.0) * np.pi, (out[1] + 1.0) / 2.0 * MAX_FORCE], dtype=np.float32)

    def keyboard_action(self, held: frozenset[str], last=None) -> np.ndarray:
        """Arrows → θ pointing that way on screen (θ = π/2 pushes down), F at its maximum; no arrow: (0, 0)."""
        left, right, up, down = arrows(held)
        dx, dy = right - left, down - up
        if dx == dy == 0:
            return np.zeros(2, dtype=np.float32)
        return np.array([math.atan2(dy, dx) % (2 * math.pi), self.action_space.high[1]], dtype=np.float32)
