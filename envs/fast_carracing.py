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
from gymnasium.envs.box2d import car_dynamics as _car_dynamics
from gymnasium.envs.box2d import car_racing as _stock
from pygame import gfxdraw

from envs import carracing_raster as raster

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
_BAND = 50  # canvas rows drawn and x-shrunk at a time (200 kB: stays in cache between the two)
_BACKENDS = ("SSE2", "NEON")  # smoothscale's filter_shrink_X_SSE2, which the kernels reproduce


def _rotation(angle: float) -> tuple[int, float, float]:
    """How ``pygame.math.Vector2.rotate_rad`` rotates by ``angle``: angle reduced into [0, 2π) with fmod, then
    an exact swap for quarter turns within the vector epsilon (``quarter`` 0-3), else (4, cos, sin)."""
    a = math.fmod(angle, _TWO_PI)
    if a < 0:
        a += _TWO_PI
    if math.fmod(a + _VECTOR_EPSILON, _HALF_PI) < 2 * _VECTOR_EPSILON:
        return int((a + _VECTOR_EPSILON) / _HALF_PI) % 4, 1.0, 0.0
    return 4, math.cos(a), math.sin(a)


def _grass_quads() -> np.ndarray:
    """The 400 grass squares of the stock renderer, in its order, as a (400, 4, 2) float64 array."""
    d = _stock.GRASS_DIM
    quads = []
    for gx in range(-20, 20, 2):
        for gy in range(-20, 20, 2):
            x0, y0 = d * gx, d * gy
            quads.append([(x0 + d, y0 + 0), (x0 + 0, y0 + 0), (x0 + 0, y0 + d), (x0 + d, y0 + d)])
    return np.array(quads, dtype=np.float64)


_FIELD = np.array([[(1, 1), (1, -1), (-1, -1), (-1, 1)]], dtype=np.float64) * _stock.PLAYFIELD
_GRASS = _grass_quads()
_ROAD0 = 1 + len(_GRASS)  # scene polygons: the playfield, the grass squares, then the road


def _xrgb_surface(size) -> pygame.Surface:
    """A new surface in the pixel format the kernels work in (32-bit ``0x00RRGGBB``, pygame's default here)."""
    surface = pygame.Surface(size)
    if surface.get_bitsize() != 32 or surface.get_masks()[:3] != (0xFF0000, 0xFF00, 0xFF):
        raise RuntimeError(f"FastCarRacing needs 32-bit XRGB surfaces, got masks {surface.get_masks()}")
    return surface


class _RecolourTracker(_stock.FrictionDetector):
    """Gymnasium's contact listener, which resets a road tile's colour on every contact with it, also noting the
    tiles it touched so the renderer re-reads only their colours."""

    def __init__(self, env, lap_complete_percent):
        super().__init__(env, lap_complete_percent)
        self.touched: list = []

    def _contact(self, contact, begin):
        for fixture in (contact.fixtureA, contact.fixtureB):
            tile = fixture.body.userData
            if tile and "road_friction" in tile.__dict__:
                self.touched.append(tile)
        super()._contact(contact, begin)


class FastCarRacing(_stock.CarRacing):
    """Gymnasium's ``CarRacing`` (v3) with a faster renderer that produces byte-identical frames.

    Same constructor, physics, rewards and termination as the parent; only ``_render`` for the ``state_pixels``
    and ``rgb_array`` modes is replaced (``human`` keeps the parent's). The parent draws the playfield, 400 grass
    squares and the road tiles with gfxdraw, the car with ``pygame.draw``, flips the window, draws the dashboard
    and shrinks it with ``smoothscale``. Here compiled kernels (``envs/carracing_raster.py``, whose docstring says
    why each is exact) do the same arithmetic:

    - The vertices of all polygons are rotated, zoomed, translated, truncated and culled in one call, with the
      parent's float64 operations in its order, so the integer vertices are equal; the car's vertices go through
      Box2D's float32 ``b2Mul`` first, as ``Car.draw`` gets them.
    - The playfield, grass and road are drawn by a port of SDL_gfx's ``aapolygonRGBA`` and
      ``filledPolygonRGBAMT`` (what ``gfxdraw.aapolygon`` and ``gfxdraw.filled_polygon`` run), the car by a port
      of pygame's ``draw.polygon``, only on the canvas rows the dashboard does not cover, in bands of rows.
    - ``smoothscale`` is separable: an x pass (each row alone) then a y pass (each column alone). Each band is
      shrunk in x (a port of pygame's ``filter_shrink_X_SSE2``) right after it is drawn, reading only the source
      pixels of output pixels near an edge; the others are a table lookup of their colour. The rows land flipped
      in a narrow surface, above the dashboard's rows (drawn and x-shrunk the same way), and pygame's own
      ``smoothscale`` does the y pass. This equals flipping the full window, drawing the dashboard and shrinking
      it, because the dashboard covers its rows completely.
    - In ``rgb_array`` mode (skid marks: ``Car.draw`` with particles) and when a dashboard bar would reach above
      the dashboard, the whole canvas is drawn and the parent's code draws the car; in the second case the frame
      is then composed exactly as the parent does. With another smoothscale backend than SSE2/NEON (whose
      arithmetic the x pass reproduces) the parent renders.
    - Road tile colours are re-read when Gymnasium's contact listener (``_RecolourTracker``, installed at reset)
      touches the tile; the font and each reward text are reused.

    ``self.surf`` is an internal drawing surface (not the finished window) after a ``state_pixels`` or
    ``rgb_array`` render.
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
        self._ix = self._iy = self._keep = None
        self._colors: np.ndarray | None = None  # each scene polygon's pixel
        self._colors_of: tuple = ()  # the playfield and grass colours they were read for
        self._tile_index: dict[int, int] = {}  # id of a tile's colour array → its scene polygon
        self._canvas: pygame.Surface | None = None
        self._pixels: np.ndarray | None = None  # the canvas's pixels, shared
        self._band = np.zeros((_BAND, _W), np.uint32)
        self._font = None
        self._texts: dict[str, tuple] = {}
        self._shrink: dict[tuple[int, int], tuple] = {}
        self._probe: pygame.Surface | None = None
        self._car_of = None
        self._car_static: tuple = ()
        self._car_xy = (np.zeros((0, 8), np.int64), np.zeros((0, 8), np.int64))
        # no car polygons, for ``raster.render``: (none), vertices, counts or colours, drawn
        self._no_car = (None, np.zeros((0, 8), np.int64), np.zeros(0, np.int64), np.zeros(0, np.bool_))
        self._view = np.zeros(7, np.float64)  # (quarter, cos, sin, zoom, tx, ty, margin), see raster.transform
        self._view[6] = _MARGIN
        self._values = np.zeros(8, np.float64)  # see _dashboard_values

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = super().reset(seed=seed, options=options)
        tracker = _RecolourTracker(self, self.lap_complete_percent)
        self.world.contactListener_bug_workaround = tracker  # (the world keeps no reference of its own)
        self.world.contactListener = tracker
        return obs, info

    # -- per-episode and persistent state ------------------------------------------------------------------------

    def _scene(self):
        """Playfield, grass then road polygons as (P, 4) x and y arrays, and each one's pixel."""
        listener = self.world.contactListener
        touched = listener.touched if isinstance(listener, _RecolourTracker) else None
        if self._scene_of is not self.road_poly or len(self._colors) != _ROAD0 + len(self.road_poly):
            road = np.array([poly for poly, _ in self.road_poly], dtype=np.float64).reshape(len(self.road_poly), 4, 2)
            verts = np.concatenate([_FIELD, _GRASS, road])
            self._scene_x = np.ascontiguousarray(verts[..., 0])
            self._scene_y = np.ascontiguousarray(verts[..., 1])
            self._scene_of = self.road_poly
            n = len(verts)
            self._ix, self._iy = np.empty((n, 4), np.int64), np.empty((n, 4), np.int64)
            self._keep = np.empty(n, np.bool_)
            self._colors = np.zeros(n, np.int64)
            self._colors_of = ()
            self._tile_index = {id(color): _ROAD0 + k for k, (_, color) in enumerate(self.road_poly)}
            touched = None
        if touched is None:  # a new scene, or the stock listener (before reset() returns): read every tile
            rgb = np.array([color for _, color in self.road_poly], dtype=np.float64).astype(np.int64)
            self._colors[_ROAD0:] = (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]  # gfxdraw gets int(c)
        else:
            for tile in touched:
                k = self._tile_index.get(id(tile.color))
                if k is not None:
                    r, g, b = (int(c) for c in tile.color)
                    self._colors[k] = (r << 16) | (g << 8) | b
        if isinstance(listener, _RecolourTracker):
            listener.touched.clear()
        key = (self.bg_color.tobytes(), self.grass_color.tobytes())
        if key != self._colors_of:
            self._colors[0] = self._mapped(self.bg_color)
            self._colors[1:_ROAD0] = self._mapped(self.grass_color)
            self._colors_of = key
        return self._scene_x, self._scene_y, self._colors

    def _text(self):
        """The reward text (surface, rect, pixels) the parent blits on the dashboard."""
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
            pixels = None
            if not text.get_flags() & pygame.SRCALPHA and text.get_colorkey() is None and text.get_alpha() is None:
                opaque = _xrgb_surface(text.get_size())
                opaque.blit(text, (0, 0))  # an opaque blit: the pixels it leaves on the dashboard
                pixels = np.ascontiguousarray(pygame.surfarray.array2d(opaque).T, dtype=np.uint32)
            cached = self._texts[label] = (text, rect, pixels)
        return cached

    def _mapped(self, color) -> int:
        """The pixel gfxdraw would store for ``color`` (whatever its type), read back from a probe pixel."""
        if self._probe is None:
            self._probe = _xrgb_surface((1, 1))
        gfxdraw.pixel(self._probe, 0, 0, color)
        return self._probe.get_at_mapped((0, 0))

    def _canvas_state(self):
        if self._canvas is None:
            canvas = _xrgb_surface((_W, _H))
            self._pixels = np.frombuffer(canvas.get_buffer(), np.uint32).reshape(_H, canvas.get_pitch() // 4)[:, :_W]
            self._canvas = canvas
        return self._canvas, self._pixels

    def _shrink_state(self, size):
        """Per output size: the surface of x-shrunk window rows and its pixels, the output surface, the x-pass
        schedule (``raster.shrink_schedule``), the flags of output pixels to compute from their pixels, and the
        kernels' integer layout (w, h, bar, text x, text y, xrecip)."""
        if size not in self._shrink:
            w, h = size
            stacked = _xrgb_surface((w, _H))
            pixels = np.frombuffer(stacked.get_buffer(), np.uint32).reshape(_H, stacked.get_pitch() // 4)
            sched, first, xrecip, table = raster.shrink_schedule(_W, w)
            dirty = np.zeros((_H, w), np.uint8)
            layout = np.array([_W, _H, _BAR, 0, 0, xrecip], np.int64)
            self._shrink[size] = (stacked, pixels, _xrgb_surface((w, h)), (sched, first, table), dirty, layout)
        return self._shrink[size]

    def _car_polygons(self):
        """The car's polygons in ``Car.draw``'s order, for ``raster.car_vertices``: for each wheel its fixture then
        its white stripe, then the hull's fixtures. Returns (bodies, verts, counts, owner, colors, drawn), drawn
        telling which stripes the stock code draws this frame."""
        car = self.car
        if self._car_of is not car:
            slots = []  # (body index, local vertices, colour); a None vertex list is a wheel's stripe
            for b, obj in enumerate(car.drawlist):
                color = [int(c * 255) for c in obj.color]
                for f in obj.fixtures:
                    slots.append((b, f.shape.vertices, (color[0] << 16) | (color[1] << 8) | color[2]))
                    if "phase" in obj.__dict__:
                        white = _car_dynamics.WHEEL_WHITE
                        slots.append((b, None, (white[0] << 16) | (white[1] << 8) | white[2]))
            verts = np.zeros((len(slots), max(len(v) for _, v, _ in slots if v is not None), 2), np.float32)
            counts = np.full(len(slots), 4, np.int64)
            for k, (_, v, _) in enumerate(slots):
                if v is not None:
                    verts[k, : len(v)] = v
                    counts[k] = len(v)
            owner = np.array([b for b, _, _ in slots], np.int64)
            colors = np.array([c for _, _, c in slots], np.int64)
            stripes = [(k, car.drawlist[b]) for k, (b, v, _) in enumerate(slots) if v is None]
            bodies = np.zeros((len(car.drawlist), 4), np.float32)
            drawn = np.ones(len(slots), np.bool_)
            self._car_static = (bodies, verts, counts, owner, colors, drawn), stripes
            self._car_of = car
            n = len(slots)
            self._car_xy = (np.zeros((n, verts.shape[1]), np.int64), np.zeros((n, verts.shape[1]), np.int64))
        polygons, stripes = self._car_static
        bodies, verts, _, _, _, drawn = polygons
        for b, obj in enumerate(car.drawlist):
            t = obj.transform
            p, q = t.position, t.q
            bodies[b] = (p.x, p.y, q.s, q.c)
        half_w, size = _car_dynamics.WHEEL_W * _car_dynamics.SIZE, _car_dynamics.SIZE
        for k, wheel in stripes:
            phase = wheel.phase
            s1, s2 = math.sin(phase), math.sin(phase + 1.2)
            drawn[k] = not (s1 > 0 and s2 > 0)
            if drawn[k]:
                c1, c2 = math.cos(phase), math.cos(phase + 1.2)
                if s1 > 0:
                    c1 = np.sign(c1)
                if s2 > 0:
                    c2 = np.sign(c2)
                y1, y2 = +_car_dynamics.WHEEL_R * c1 * size, +_car_dynamics.WHEEL_R * c2 * size
                # float64 → float32, as Box2D's b2Vec2 stores them
                verts[k, :4] = ((-half_w, y1), (+half_w, y1), (+half_w, y2), (-half_w, y2))
        return polygons

    def _dashboard_values(self) -> np.ndarray:
        """What ``_render_indicators`` reads: speed x and y, the wheels' omega, the front joint angle, the hull's
        angular velocity."""
        car = self.car
        v = car.hull.linearVelocity
        w = car.wheels
        values = self._values
        values[:] = (v[0], v[1], w[0].omega, w[1].omega, w[2].omega, w[3].omega, w[0].joint.angle, car.hull.angularVelocity)
        return values

    # -- rendering -----------------------------------------------------------------------------------------------

    def _render(self, mode: str):
        if mode not in ("state_pixels", "rgb_array") or pygame.transform.get_smoothscale_backend() not in _BACKENDS:
            return super()._render(mode)
        if self.clock is None:
            self.clock = pygame.time.Clock()
        if "t" not in self.__dict__:
            return None  # reset() not called yet
        assert self.car is not None

        angle = -self.car.hull.angle
        zoom = 0.1 * _stock.SCALE * max(1 - self.t, 0) + _stock.ZOOM * _stock.SCALE * min(self.t, 1)
        scroll_x = -(self.car.hull.position[0]) * zoom
        scroll_y = -(self.car.hull.position[1]) * zoom
        trans = pygame.math.Vector2((scroll_x, scroll_y)).rotate_rad(angle)
        trans = (_W / 2 + trans[0], _H / 4 + trans[1])
        view = self._view
        view[:6] = (*_rotation(angle), zoom, trans[0], trans[1])

        size = (_stock.VIDEO_W, _stock.VIDEO_H) if mode == "rgb_array" else (_stock.STATE_W, _stock.STATE_H)
        stacked, stacked_pixels, out, (sched, first, table), dirty, layout = self._shrink_state(size)
        xs, ys, colors = self._scene()
        ix, iy, keep = self._ix, self._iy, self._keep
        text, text_rect, text_pixels = self._text()
        values = self._dashboard_values()
        split = (
            0.02 * math.hypot(values[0], values[1]) < _BAR_VALUE_LIMIT
            and max(values[2:6]) * 0.01 < _BAR_VALUE_LIMIT
            and text_rect.top >= _H - _BAR
            and text_rect.bottom <= _H
            and text_pixels is not None
        )
        layout[3], layout[4] = text_rect.left, text_rect.top
        if mode == "state_pixels" and split:
            # all in one call: the scene and the car drawn and x-shrunk band by band in a small canvas, then
            # the dashboard
            car = self._car_polygons()
            cx, cy = self._car_xy
            raster.frame(
                view, xs, ys, colors, ix, iy, keep, car, cx, cy, values, text_pixels, layout,
                self._band, dirty, stacked_pixels, sched, first, table,
            )  # fmt: skip
            return self._image(pygame.transform.smoothscale(stacked, size, out), size)
        # The whole canvas, with the car (and in rgb_array mode its particles: skid marks anywhere on the canvas)
        # drawn by the parent's code; every output pixel is then computed from its pixels.
        canvas, pixels = self._canvas_state()
        raster.transform(view, xs, ys, _W, _H, _BAR, ix, iy, keep)
        no = self._no_car
        raster.render(
            pixels[_BAR:], dirty[_BAR:], _BAR, _H, ix, iy, keep, colors, no[1], no[1], no[2], no[2], no[3],
            False, stacked_pixels, sched, first, layout[5], table,
        )  # fmt: skip
        self.car.draw(canvas, zoom, trans, angle, mode not in ["state_pixels_list", "state_pixels"])
        self.surf = canvas
        if not split:
            return self._image(self._compose_full(canvas, text, text_rect, size), size)
        dirty[_BAR:] = 1
        raster.shrink_rows(pixels[_BAR:], dirty[_BAR:], _BAR, _H, _H, True, stacked_pixels, *sched, layout[5], table)
        raster.dashboard(
            self._band, dirty, _H, _H - _BAR, values, text_pixels, text_rect.left, text_rect.top,
            stacked_pixels, sched, first, layout[5], table,
        )  # fmt: skip
        return self._image(pygame.transform.smoothscale(stacked, size, out), size)

    @staticmethod
    def _image(frame: pygame.Surface, size) -> np.ndarray:
        """The frame as the parent returns it: (height, width, 3) uint8 RGB."""
        return raster.rgb(np.frombuffer(frame.get_buffer(), np.uint32).reshape(size[1], frame.get_pitch() // 4), size[0])

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
        vector_entry_point="envs.fast_carracing_vector:FastCarRacingVector",  # gym.make_vec's default for this id
        max_episode_steps=_spec.max_episode_steps,
        reward_threshold=_spec.reward_threshold,
    )
