"""``FastCarRacing``: Gymnasium's CarRacing-v3 rendered several times faster, byte for byte the same frames.

A drop-in subclass of Gymnasium's ``CarRacing``: same seed, same actions → same observations, rewards and
terminations as the stock env. Importing this module registers it as ``FastCarRacing-v3`` (``FAST_ID``), which
``envs.carracing.CarRacing.make`` builds. See the class docstring for how, ``tests/test_fast_carracing.py`` for the
check against the stock env, and ``bench/carracing_speed.py`` for the speed-up.
"""
from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pygame
from gymnasium.envs.box2d import car_racing as _stock
from pygame import gfxdraw

_W, _H = _stock.WINDOW_W, _stock.WINDOW_H
_MARGIN = _stock.MAX_SHAPE_DIM  # the stock renderer's culling margin around the window
# The dashboard: a black rectangle drawn over the bottom 5/40 of the (flipped) window, i.e. over rows 0.._BAR-1 of
# the canvas before the flip. Nothing drawn there survives, so canvas rows 0.._BAR-1 are never looked at.
_BAR = int(5 * _H / 40.0)
_TWO_PI = 2.0 * math.pi
_HALF_PI = math.pi / 2.0
_VECTOR_EPSILON = pygame.math.Vector2().epsilon
# A vertical dashboard bar of value v reaches up to row _H - (1 + v) * _H / 40; below this value it stays inside the
# dashboard (v = 4 would touch its top edge).
_BAR_VALUE_LIMIT = 3.9


def _rotate(x, y, angle: float):
    """(x, y) rotated by ``angle`` radians, bit-for-bit as ``pygame.math.Vector2.rotate_rad`` computes it
    (angle reduced into [0, 2π) with fmod; quarter turns within the vector epsilon are exact swaps), for floats
    or float64 arrays alike."""
    a = math.fmod(angle, _TWO_PI)
    if a < 0:
        a += _TWO_PI
    if math.fmod(a + _VECTOR_EPSILON, _HALF_PI) < 2 * _VECTOR_EPSILON:
        quarter = int((a + _VECTOR_EPSILON) / _HALF_PI) % 4
        if quarter == 0:
            return x, y
        if quarter == 1:
            return -y, x
        if quarter == 2:
            return -x, -y
        return y, -x
    sin, cos = math.sin(a), math.cos(a)
    return cos * x - sin * y, sin * x + cos * y


def _grass_quads() -> np.ndarray:
    """The 400 grass squares of the stock renderer, in its order, as a (400, 4, 2) float64 array."""
    d = _stock.GRASS_DIM
    quads = []
    for gx in range(-20, 20, 2):
        for gy in range(-20, 20, 2):
            x0, y0 = d * gx, d * gy
            quads.append([(x0 + d, y0 + 0), (x0 + 0, y0 + 0), (x0 + 0, y0 + d), (x0 + d, y0 + d)])
    return np.array(quads, dtype=np.float64)


_GRASS = _grass_quads()
_FIELD = np.array([(1, 1), (1, -1), (-1, -1), (-1, 1)], dtype=np.float64) * _stock.PLAYFIELD


def _covers_window(quad: list[list[int]]) -> bool:
    """Whether gfxdraw.filled_polygon of this integer quadrilateral paints every pixel of the window.

    True only with room to spare: the quad is convex and contains the window grown by 3 px on every side, and its
    coordinates are small enough that SDL_gfx's 16.16 fixed-point scanline arithmetic cannot overflow. Then every
    row 0.._H-1 lies strictly between the quad's lowest and highest vertex and has exactly two edge crossings,
    each computed to within 0.75 px, so the row's span [xa, xb] reaches past both sides of the window."""
    xs = [p[0] for p in quad]
    ys = [p[1] for p in quad]
    if max(map(abs, xs + ys)) > 16000:
        return False
    cross = []
    for i in range(4):
        (x0, y0), (x1, y1), (x2, y2) = quad[i], quad[(i + 1) % 4], quad[(i + 2) % 4]
        cross.append((x1 - x0) * (y2 - y1) - (y1 - y0) * (x2 - x1))
    if not (all(c > 0 for c in cross) or all(c < 0 for c in cross)):
        return False
    sign = 1 if cross[0] > 0 else -1
    for cx, cy in ((-3, -3), (_W + 3, -3), (_W + 3, _H + 3), (-3, _H + 3)):
        for i in range(4):
            (x0, y0), (x1, y1) = quad[i], quad[(i + 1) % 4]
            if sign * ((x1 - x0) * (cy - y0) - (y1 - y0) * (cx - x0)) <= 0:
                return False
    return True


class FastCarRacing(_stock.CarRacing):
    """Gymnasium's ``CarRacing`` (v3) with a faster renderer that produces byte-identical frames.

    Same constructor, physics, rewards and termination as the parent; only ``_render`` for the ``state_pixels``
    and ``rgb_array`` modes is replaced (``human`` keeps the parent's). The frame is drawn with the same pygame
    primitives, in the same order, with the same integer vertices, so every pixel matches; what changes is the
    work around them:

    - The vertices of the 400 grass squares and of the road polygons are rotated, zoomed, translated and culled
      as numpy arrays (cached per episode) instead of one ``Vector2`` at a time. The arithmetic is the one
      ``Vector2.rotate_rad`` and the parent do, in the same order, in float64, so the coordinates are equal.
      Tile colours are read at draw time (contact recolours them in place).
    - Polygons that pass the parent's generous culling test but whose integer vertices lie wholly off the window,
      or wholly in the rows the dashboard covers, are not drawn: gfxdraw would touch no visible pixel.
    - When the playfield polygon covers the window (after the first second's zoom, away from the field's edge),
      its fill is a ``Surface.fill`` instead of a scanline fill over ~15,000 rows; its anti-aliased outline is
      still drawn (off-window, so it draws nothing).
    - The canvas, the font and each distinct reward text are reused instead of rebuilt every frame.
    - ``smoothscale`` shrinks x and y in two separable passes; the window is shrunk in x from the unflipped canvas
      (only the rows the dashboard does not cover), flipped at the reduced width, stacked with the x-shrunk
      dashboard, then shrunk in y. This equals flipping the full window, drawing the dashboard and shrinking it,
      because the dashboard covers its rows completely and each pass works on rows or columns independently.
      If a dashboard bar would reach above the dashboard, the frame is composed exactly as the parent does.

    ``self.surf`` is the unflipped canvas (not the finished window) after a ``state_pixels``/``rgb_array`` render.
    """

    def __init__(
        self,
        render_mode: str | None = None,
        verbose: bool = False,
        lap_complete_percent: float = 0.95,
        domain_randomize: bool = False,
        continuous: bool = True,
    ):
        super().__init__(
            render_mode=render_mode,
            verbose=verbose,
            lap_complete_percent=lap_complete_percent,
            domain_randomize=domain_randomize,
            continuous=continuous,
        )
        self._scene_of = None  # the road_poly list the cached scene was built from
        self._scene_x = self._scene_y = None
        self._scene_colors: list = []
        self._canvas: pygame.Surface | None = None
        self._dash: pygame.Surface | None = None
        self._font = None
        self._texts: dict[str, tuple[pygame.Surface, pygame.Rect]] = {}
        self._shrink: dict[tuple[int, int], tuple[pygame.Surface, pygame.Surface, pygame.Surface]] = {}
        self._probe: pygame.Surface | None = None

    # -- per-episode and persistent state ------------------------------------------------------------------------

    def _scene(self):
        """Grass then road polygons as (P, 4) x and y arrays, and the colour source of each (None: grass)."""
        if self._scene_of is not self.road_poly or len(self._scene_colors) != len(_GRASS) + len(self.road_poly):
            road = np.array([poly for poly, _ in self.road_poly], dtype=np.float64).reshape(len(self.road_poly), 4, 2)
            verts = np.concatenate([_GRASS, road])
            self._scene_x = np.ascontiguousarray(verts[..., 0])
            self._scene_y = np.ascontiguousarray(verts[..., 1])
            self._scene_colors = [None] * len(_GRASS) + [color for _, color in self.road_poly]
            self._scene_of = self.road_poly
        return self._scene_x, self._scene_y, self._scene_colors

    def _text(self) -> tuple[pygame.Surface, pygame.Rect]:
        label = f"{self.reward:04.0f}"
        cached = self._texts.get(label)
        if cached is None:
            if self._font is None or not pygame.font.get_init():  # (pygame.quit() elsewhere kills fonts)
                pygame.font.init()
                self._font = pygame.font.Font(pygame.font.get_default_font(), 42)
            if len(self._texts) > 512:
                self._texts.clear()
            text = self._font.render(label, True, (255, 255, 255), (0, 0, 0))
            rect = text.get_rect()
            rect.center = (60, _H - _H * 2.5 / 40.0)
            cached = self._texts[label] = (text, rect)
        return cached

    def _mapped(self, color) -> pygame.Color:
        """The colour gfxdraw would paint for ``color`` (whatever its type), read back from a probe pixel."""
        if self._probe is None:
            self._probe = pygame.Surface((1, 1))
        gfxdraw.pixel(self._probe, 0, 0, color)
        return self._probe.get_at((0, 0))

    def _shrink_surfaces(self, size):
        if size not in self._shrink:
            w, h = size
            self._shrink[size] = (pygame.Surface((w, _H - _BAR)), pygame.Surface((w, _H)), pygame.Surface((w, h)))
        return self._shrink[size]

    # -- rendering -----------------------------------------------------------------------------------------------

    def _render(self, mode: str):
        if mode not in ("state_pixels", "rgb_array"):
            return super()._render(mode)
        if self.clock is None:
            self.clock = pygame.time.Clock()
        if "t" not in self.__dict__:
            return None  # reset() not called yet
        assert self.car is not None

        if self._canvas is None:
            self._canvas = pygame.Surface((_W, _H))
        canvas = self._canvas

        angle = -self.car.hull.angle
        zoom = 0.1 * _stock.SCALE * max(1 - self.t, 0) + _stock.ZOOM * _stock.SCALE * min(self.t, 1)
        scroll_x = -(self.car.hull.position[0]) * zoom
        scroll_y = -(self.car.hull.position[1]) * zoom
        trans = pygame.math.Vector2((scroll_x, scroll_y)).rotate_rad(angle)
        trans = (_W / 2 + trans[0], _H / 4 + trans[1])

        self._draw_road(canvas, zoom, trans, angle)
        self.car.draw(canvas, zoom, trans, angle, mode not in ["state_pixels_list", "state_pixels"])

        size = (_stock.VIDEO_W, _stock.VIDEO_H) if mode == "rgb_array" else (_stock.STATE_W, _stock.STATE_H)
        text, text_rect = self._text()
        car = self.car
        v = car.hull.linearVelocity
        bars_fit = 0.02 * math.hypot(v[0], v[1]) < _BAR_VALUE_LIMIT and all(
            0.01 * w.omega < _BAR_VALUE_LIMIT for w in car.wheels
        )
        if bars_fit and text_rect.top >= _H - _BAR and text_rect.bottom <= _H:
            out = self._compose_split(canvas, text, text_rect, size)
        else:
            out = self._compose_full(canvas, text, text_rect, size)
        self.surf = canvas
        return np.transpose(np.array(pygame.surfarray.pixels3d(out)), axes=(1, 0, 2))

    def _draw_road(self, canvas: pygame.Surface, zoom: float, trans, angle: float) -> None:
        tx, ty = trans
        # the playfield (never culled)
        fx, fy = _rotate(_FIELD[:, 0], _FIELD[:, 1], angle)
        field = np.stack([fx * zoom + tx, fy * zoom + ty], axis=1).astype(np.int64).astype(np.int16).tolist()
        if _covers_window(field):
            gfxdraw.aapolygon(canvas, field, self.bg_color)  # wholly off the window: draws nothing visible
            canvas.fill(self._mapped(self.bg_color), (0, _BAR, _W, _H - _BAR))
        else:
            canvas.fill((0, 0, 0))  # the parent draws on a fresh, zeroed surface
            gfxdraw.aapolygon(canvas, field, self.bg_color)
            gfxdraw.filled_polygon(canvas, field, self.bg_color)

        # grass and road, culled exactly as the parent culls them
        xs, ys, colors = self._scene()
        rx, ry = _rotate(xs, ys, angle)
        px = rx * zoom + tx
        py = ry * zoom + ty
        inside = (px >= -_MARGIN) & (px <= _W + _MARGIN) & (py >= -_MARGIN) & (py <= _H + _MARGIN)
        idx = np.flatnonzero(inside.any(axis=1))
        if idx.size == 0:
            return
        ix = px[idx].astype(np.int64).astype(np.int16)  # what gfxdraw receives: int() then a cast to Sint16
        iy = py[idx].astype(np.int64).astype(np.int16)
        # polygons whose pixels would all fall off the window or under the dashboard (gfxdraw stays within one
        # pixel of the vertices' bounding box)
        touches = ~(
            (ix.max(axis=1) < -2) | (ix.min(axis=1) > _W + 1) | (iy.max(axis=1) < _BAR - 2) | (iy.min(axis=1) > _H + 1)
        )
        idx = idx[touches]
        pts = np.stack([ix[touches], iy[touches]], axis=2).tolist()
        grass = self.grass_color
        aapolygon, filled_polygon = gfxdraw.aapolygon, gfxdraw.filled_polygon
        for k, poly in zip(idx.tolist(), pts):
            color = colors[k]
            color = grass if color is None else [int(c) for c in color]
            aapolygon(canvas, poly, color)
            filled_polygon(canvas, poly, color)

    def _compose_split(self, canvas, text, text_rect, size) -> pygame.Surface:
        """Shrink in x the visible canvas rows and the dashboard separately, stack them flipped, shrink in y."""
        w, _ = size
        road_x, stacked, out = self._shrink_surfaces(size)
        pygame.transform.smoothscale(canvas.subsurface((0, _BAR, _W, _H - _BAR)), (w, _H - _BAR), road_x)
        stacked.blit(pygame.transform.flip(road_x, False, True), (0, 0))
        if self._dash is None:
            self._dash = pygame.Surface((_W, _H))
        self.surf = self._dash
        self._render_indicators(_W, _H)  # draws the black dashboard over its rows first
        self._dash.blit(text, text_rect)
        pygame.transform.smoothscale(
            self._dash.subsurface((0, _H - _BAR, _W, _BAR)), (w, _BAR), stacked.subsurface((0, _H - _BAR, w, _BAR))
        )
        return pygame.transform.smoothscale(stacked, size, out)

    def _compose_full(self, canvas, text, text_rect, size) -> pygame.Surface:
        """The parent's composition: flip the whole window, draw the dashboard on it, shrink."""
        self.surf = pygame.transform.flip(canvas, False, True)
        self._render_indicators(_W, _H)
        self.surf.blit(text, text_rect)
        return pygame.transform.smoothscale(self.surf, size)


FAST_ID = "FastCarRacing-v3"
if FAST_ID not in gym.registry:
    _spec = gym.spec("CarRacing-v3")
    gym.register(
        FAST_ID,
        entry_point=FastCarRacing,
        max_episode_steps=_spec.max_episode_steps,
        reward_threshold=_spec.reward_threshold,
    )
