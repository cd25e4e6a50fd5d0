"""FastCarRacing renders byte-for-byte what Gymnasium's CarRacing-v3 renders, and the pipeline builds it.

Each test drives the stock env and the fast one side by side with the same seed and actions and compares every
observation (reset included), reward, termination, truncation and info. No timings here: see bench/.
"""
from __future__ import annotations

import inspect
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pygame
import pygame.gfxdraw
import pytest
from gymnasium.envs.box2d.car_racing import CarRacing as StockCarRacing

import envs
import envs.fast_carracing as fast_module
from envs import carracing_raster as raster
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


def sharp_turns(steps: int = 200) -> list[np.ndarray]:
    """Full steering from side to side at full gas, with hard braking in between: the car skids, spins, leaves the
    road and turns through every angle (the camera with it)."""
    actions = []
    for t in range(steps):
        steer = 1.0 if (t // 25) % 2 else -1.0
        brake = 0.9 if t % 40 >= 32 else 0.0
        actions.append(np.array([steer, 0.0 if brake else 1.0, brake], np.float32))
    return actions


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


@pytest.mark.parametrize("seed", [2, 5])
def test_sharp_turns_and_skids_are_byte_identical(seed):
    assert_same_run(seed, sharp_turns())


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


def test_other_smoothscale_backends_render_as_the_parent():
    # the x pass reproduces filter_shrink_X_SSE2; with pygame's plain C filter the parent's renderer runs
    backend = pygame.transform.get_smoothscale_backend()
    pygame.transform.set_smoothscale_backend("GENERIC")
    try:
        assert_same_run(6, brownian_driver(6, 30))
    finally:
        pygame.transform.set_smoothscale_backend(backend)


def test_rotation_matches_pygame_vector2():
    rng = np.random.default_rng(0)
    quarter = np.pi / 2
    angles = list(rng.uniform(-20, 20, 200))
    for k in range(-8, 9):  # exact and nearly exact quarter turns, inside and outside Vector2's epsilon
        angles += [k * quarter + d for d in (0.0, 1e-9, -1e-9, 5e-7, -5e-7, 2e-6, -2e-6)]
    xs, ys = rng.uniform(-400, 400, 64), rng.uniform(-400, 400, 64)
    for angle in angles:  # the renderer's rotation: the angle reduced once, then each vertex rotated by the kernel
        quarter, cos, sin = fast_module._rotation(float(angle))
        got = [raster._rotated(float(x), float(y), quarter, cos, sin) for x, y in zip(xs, ys)]
        expected = [pygame.math.Vector2(x, y).rotate_rad(float(angle)) for x, y in zip(xs, ys)]
        assert got == [(v[0], v[1]) for v in expected], angle


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


# -- the kernels against pygame's own primitives, pixel for pixel ------------------------------------------------

_W, _H, _BAR = fast_module._W, fast_module._H, fast_module._BAR


def _random_quads(rng, n: int) -> np.ndarray:
    """(n, 4, 2) integer quadrilaterals of every kind the scene can produce and worse: small and large, convex or
    not, slivers, near-horizontal and near-vertical edges, straddling or far outside the window and its rows."""
    kind = rng.integers(0, 5, n)
    centre = rng.uniform([-300, -300], [_W + 300, _H + 300], (n, 1, 2))
    size = np.where(kind[:, None, None] == 0, rng.uniform(1, 6, (n, 1, 1)), rng.uniform(5, 600, (n, 1, 1)))
    quads = centre + rng.uniform(-1, 1, (n, 4, 2)) * size
    flat = kind == 1  # slivers: one coordinate nearly constant
    quads[flat, :, 1] = quads[flat, :1, 1] + rng.integers(-2, 3, (flat.sum(), 4))
    steep = kind == 2
    quads[steep, :, 0] = quads[steep, :1, 0] + rng.integers(-2, 3, (steep.sum(), 4))
    huge = kind == 3
    quads[huge] = rng.uniform(-6000, 6000, (huge.sum(), 4, 2))
    return quads.astype(np.int64)


def _pixels(surface: pygame.Surface) -> np.ndarray:
    return pygame.surfarray.array2d(surface).T & 0xFFFFFF


def _empty_car():
    return np.zeros((0, 8), np.int64), np.zeros((0, 8), np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)


@pytest.mark.parametrize("band", [800, 7])
def test_scene_kernel_matches_gfxdraw(band):
    """aapolygon then filled_polygon of random quadrilaterals, by the kernel (in bands of rows, then x-shrunk to
    96 columns) and by gfxdraw then smoothscale's x pass: equal pixels in every row below the dashboard."""
    rng = np.random.default_rng(band)
    surface = pygame.Surface((_W, _H))
    sched, first, xrecip, table = raster.shrink_schedule(_W, 96)
    for trial in range(25):
        quads = _random_quads(rng, 40)
        colors = rng.integers(0, 1 << 24, len(quads))
        surface.fill((0, 0, 0))
        for quad, color in zip(quads.tolist(), colors.tolist()):
            rgb = ((color >> 16) & 255, (color >> 8) & 255, color & 255)
            pygame.gfxdraw.aapolygon(surface, quad, rgb)
            pygame.gfxdraw.filled_polygon(surface, quad, rgb)
        expected = _pixels(surface)[_BAR:]
        shrunk = pygame.transform.smoothscale(surface.subsurface((0, _BAR, _W, _H - _BAR)), (96, _H - _BAR))
        canvas = np.zeros((min(band, _H - _BAR), _W), np.uint32)
        dirty = np.zeros((_H, 96), np.uint8)
        out = np.zeros((_H, 96), np.uint32)
        full = np.zeros((_H - _BAR, _W), np.uint32)
        keep = np.ones(len(quads), np.bool_)
        car = _empty_car()
        args = (quads[..., 0].copy(), quads[..., 1].copy(), keep, colors, *car, np.zeros(0, np.bool_))
        raster.render(full, dirty[_BAR:], _BAR, _H, *args, False, out, sched, first, xrecip, table)
        np.testing.assert_array_equal(full, expected, err_msg=f"trial {trial}: drawn pixels")
        raster.render(canvas, dirty, _BAR, _H, *args, True, out, sched, first, xrecip, table)
        np.testing.assert_array_equal(out[: _H - _BAR][::-1] & 0xFFFFFF, _pixels(shrunk), err_msg=f"trial {trial}")


def test_car_kernel_matches_draw_polygon():
    """pygame.draw.polygon of random 4- to 8-gons (as the car's fixtures and stripes), by the kernel and by pygame."""
    rng = np.random.default_rng(1)
    surface = pygame.Surface((_W, _H))
    sched, first, xrecip, table = raster.shrink_schedule(_W, 96)
    far = np.full((1, 4), -20000, np.int64)
    for trial in range(25):
        n = 30
        counts = rng.integers(4, 9, n)
        centre = rng.uniform([-50, -50], [_W + 50, _H + 50], (n, 1, 2))
        pts = (centre + rng.uniform(-1, 1, (n, 8, 2)) * rng.uniform(1, 120, (n, 1, 1))).astype(np.int64)
        flat = rng.random(n) < 0.15
        pts[flat, :, 1] = pts[flat, :1, 1]
        colors = rng.integers(0, 1 << 24, n)
        drawn = rng.random(n) < 0.9
        surface.fill((0, 0, 0))
        for k in range(n):
            if drawn[k]:
                color = int(colors[k])
                rgb = ((color >> 16) & 255, (color >> 8) & 255, color & 255)
                pygame.draw.polygon(surface, rgb, pts[k, : counts[k]].tolist())
        canvas = np.zeros((_H - _BAR, _W), np.uint32)
        dirty = np.zeros((_H - _BAR, 96), np.uint8)
        out = np.zeros((_H, 96), np.uint32)
        raster.render(
            canvas, dirty, _BAR, _H, far, far, np.ones(1, np.bool_), np.zeros(1, np.int64),
            pts[..., 0].copy(), pts[..., 1].copy(), counts, colors, drawn, False, out, sched, first, xrecip, table,
        )  # fmt: skip
        np.testing.assert_array_equal(canvas, _pixels(surface)[_BAR:], err_msg=f"trial {trial}")


@pytest.mark.parametrize("width", [96, 600])
def test_x_shrink_matches_smoothscale(width):
    """Every output pixel computed from its pixels, and the table lookups of uniform runs, against smoothscale."""
    rng = np.random.default_rng(width)
    sched, first, xrecip, table = raster.shrink_schedule(_W, width)
    runs = np.repeat(rng.integers(0, 1 << 24, (50, 60)), rng.integers(1, 40, 60), axis=1)[:, :_W]
    image = np.concatenate([rng.integers(0, 1 << 24, (50, _W)), np.pad(runs, ((0, 0), (0, _W - runs.shape[1])))])
    image = image.astype(np.uint32)
    surface = pygame.Surface((_W, len(image)))
    pygame.surfarray.blit_array(surface, image.T)
    expected = _pixels(pygame.transform.smoothscale(surface, (width, len(image))))
    out = np.zeros((len(image), width), np.uint32)
    dense = np.ones((len(image), width), np.uint8)
    raster.shrink_rows(image, dense, 0, len(image), len(image), False, out, *sched, xrecip, table)
    np.testing.assert_array_equal(out & 0xFFFFFF, expected)
    uniform = np.ones((len(image), width), np.uint8)  # a window without a change inside reads the lookup table
    changes = np.flatnonzero(np.any(image[:, 1:] != image[:, :-1], axis=0)) + 1
    uniform[:, first[changes]] = 0
    sparse = 1 - uniform
    out[:] = 0
    raster.shrink_rows(image[50:], sparse[50:], 50, len(image), len(image), False, out, *sched, xrecip, table)
    np.testing.assert_array_equal(out[50:] & 0xFFFFFF, expected[50:])


def test_dashboard_kernel_matches_render_indicators():
    """The dashboard (bars, reward text) by the kernel and by CarRacing._render_indicators, blit and smoothscale."""
    rng = np.random.default_rng(2)
    env = FastCarRacing()
    sched, first, xrecip, table = raster.shrink_schedule(_W, 96)
    band = np.zeros((13, _W), np.uint32)
    dirty = np.zeros((13, 96), np.uint8)
    for trial in range(20):
        values = rng.normal(0, [30, 30, 60, 60, 60, 60, 0.3, 2.0]) * (rng.random(8) < 0.8)
        values[rng.random(8) < 0.1] = 5e-5  # below the drawing threshold
        env.reward = float(rng.uniform(-100, 1000))
        text, rect, text_pixels = env._text()
        car = SimpleNamespace(
            hull=SimpleNamespace(linearVelocity=(values[0], values[1]), angularVelocity=values[7]),
            wheels=[SimpleNamespace(omega=w, joint=SimpleNamespace(angle=values[6])) for w in values[2:6]],
        )
        surface = pygame.Surface((_W, _H))
        StockCarRacing._render_indicators(SimpleNamespace(surf=surface, car=car), _W, _H)
        surface.blit(text, rect)
        expected = _pixels(pygame.transform.smoothscale(surface.subsurface((0, _H - _BAR, _W, _BAR)), (96, _BAR)))
        out = np.zeros((_H, 96), np.uint32)
        raster.dashboard(band, dirty, _H, _H - _BAR, values, text_pixels, rect.left, rect.top, out, sched, first, xrecip, table)
        np.testing.assert_array_equal(out[_H - _BAR :] & 0xFFFFFF, expected, err_msg=f"trial {trial}")
