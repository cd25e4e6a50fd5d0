"""05_dream.py --web: the dream as a web page, opened in headless Chromium (Playwright) from a local server on
127.0.0.1. M in the browser is M (the same z as torch's M for the same start, actions and random draws); the keys
and C drive it, the slider sets its τ; a real episode plays beside M's dream of it. CarRacing (the shipped driver),
ShapeHerd (a tiny run of the real stages) and a discrete source (Airstriker, its digits and button combinations).
"""
from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import envs
from conftest import ROOT, missing, run_stage
from data import latents as latent_data
from envs.carracing import CarRacing
from models.controller import batched
from models.mdnrnn import MDNRNN, MDNOutput, MDNRNNConfig, sample
from models.mixture_sampler import sample_with_draws
from models.vae import ConvVAE, VAEConfig, to_frames
from pipeline import web_dream
from pipeline.contract import checkpoint
from pipeline.contract.errors import UsageError
from pipeline.dream_env import StartFrames, controller_actor, policy_actor
from pipeline.stages import stage05_dream
from pipeline.world_model import WorldModel

STAGE = "05_dream.py"
PRETRAINED = ROOT / "pretrained" / "carracing"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOT = ROOT / "docs" / "img" / "web_dream.png"  # rewritten when WM_UPDATE_SCREENSHOT=1
ARTIFACTS = ROOT / "test-artifacts"  # what a test run keeps for a person to look at (not tracked by git)
REAL_STEPS = 40
LEFT, RIGHT = 1, 2  # key-table masks: bit i is web_dream.KEYS[i]


# -- the page's sampler, key table and action curves (no browser) --------------------------------------------
@pytest.mark.parametrize("temperature", [0.3, 1.0, 1.15, 2.0])
def test_the_sampler_given_torchs_draws_is_ms_sample(temperature):
    """Fed the draws ``sample``'s generator makes (a float64 uniform, then a normal, a dimension),
    ``sample_with_draws``, the sampler the page's test hook is checked against, returns exactly what ``sample``
    does."""
    g = torch.Generator().manual_seed(7)
    out = MDNOutput(torch.randn(3, 6, 5, generator=g) * 2, torch.randn(3, 6, 5, generator=g),
                    torch.randn(3, 6, 5, generator=g) * 0.5 - 1, torch.zeros(3), torch.zeros(3))
    ours, theirs = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    for _ in range(20):
        want = sample(out, temperature, theirs)
        uniforms = torch.rand(3, 6, generator=ours, dtype=torch.float64)
        normals = torch.randn(3, 6, generator=ours)
        assert torch.equal(sample_with_draws(out.logit_pi, out.mu, out.log_sigma, temperature, uniforms, normals), want)


def test_key_tables_are_the_sources_own_bindings():
    for name in ("carracing", "shapeherd", "airstriker"):
        source = envs.get(name)
        table = web_dream.key_table(source)
        assert len(table["combos"]) == 32 and table["help"] == source.keyboard_help
        for mask, entry in enumerate(table["combos"]):
            held = frozenset(k for i, k in enumerate(web_dream.KEYS) if mask >> i & 1)
            for last in (None, 1 if source.discrete else None):
                want = source.keyboard_action(held, last)
                if entry is None:  # no action for these keys: the last one stays
                    assert source.discrete and want == (0 if last is None else last)
                else:
                    assert entry == web_dream.m_input(source, want)
    carracing = web_dream.key_table(envs.get("carracing"))
    assert carracing["combos"][LEFT] == [-1, 0, 0] and carracing["combos"][RIGHT] == [1, 0, 0]
    airstriker = envs.get("airstriker")
    table = web_dream.key_table(airstriker)
    assert len(table["digits"]) == min(9, airstriker.action_dim)
    assert table["digits"][2] == np.eye(airstriker.action_dim)[2].tolist()  # digit 3: the third action, one-hot
    assert table["combos"].count(None) > 0 and table["first"] == np.eye(airstriker.action_dim)[0].tolist()


class Cubed(CarRacing):
    """C's steering cubed: not linear between the tabulated outputs."""

    def controller_action(self, out):
        action = super().controller_action(out)
        action[0] = action[0] ** 3
        return action


def test_cs_actions_are_tabulated_where_the_mapping_is_piecewise_linear():
    rng = np.random.default_rng(3)
    for name in ("carracing", "shapeherd"):
        source = envs.get(name)
        curves, why = web_dream.action_curves(source)
        assert why is None and len(curves) == source.action_dim
        grid = np.linspace(-1, 1, web_dream.CURVE_POINTS)
        for out in rng.uniform(-1, 1, (50, source.action_dim)):
            read = [np.interp(out[j], grid, curves[j]) for j in range(source.action_dim)]
            np.testing.assert_allclose(read, web_dream.m_input(source, source.controller_action(out)), rtol=1e-5, atol=1e-5)
    assert web_dream.action_curves(envs.get("airstriker")) == ("argmax", None)
    curves, why = web_dream.action_curves(Cubed())
    assert curves is None and "not piecewise linear" in why


def test_web_flags_and_folders_are_checked(tmp_path):
    with pytest.raises(UsageError, match="--serve serves the folder --web writes"):
        stage05_dream.parse_args(["--run", str(PRETRAINED), "--serve"])
    (tmp_path / "notes.txt").write_text("mine")
    world = WorldModel.load(PRETRAINED, "carracing")
    starts = StartFrames(PRETRAINED / "latents.h5")
    with pytest.raises(UsageError, match=f"--web {tmp_path} exists and is not a folder this command wrote"):
        web_dream.write(tmp_path, world, starts, None, "", None, seed=0, steps=1, temperature=1.0)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    world.mdnrnn = MDNRNN(MDNRNNConfig(core="vsg", hidden=16))
    with pytest.raises(UsageError, match="draws random numbers inside each step"):
        web_dream.write(tmp_path / "new", world, starts, None, "", None, seed=0, steps=1, temperature=1.0)
    assert not (tmp_path / "new").exists()


# -- the page in a browser -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        missing("chromium is not installed (setup/system-packages.sh installs Debian's chromium)")
    absent = [n for n in web_dream.ORT_FILES if not (web_dream.ORT_DIST / n).exists()]
    if absent:
        missing(f"{web_dream.ORT_DIST} lacks {', '.join(absent)}: run npm ci (make test does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


@contextmanager
def opened(browser, folder: Path):
    """The page served from ``folder`` by the project's own server on 127.0.0.1, loaded and ready (its models in
    ONNX Runtime Web), its dream loop paused; no script error on the way."""
    httpd, url = web_dream.serve_in_background(folder)
    page = browser.new_page(viewport={"width": 1240, "height": 660})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    try:
        page.goto(url)
        page.wait_for_function("document.body.dataset.ready === '1' || document.body.dataset.errors", timeout=60_000)
        assert page.evaluate("document.body.dataset.errors") is None, page.inner_text("#status")
        page.evaluate("window.__dream.pause()")
        yield page
        assert not errors
        assert all(r.startswith(url) for r in requests), requests  # nothing but the folder itself
    finally:
        page.close()
        httpd.shutdown()
        httpd.server_close()


def spec_of(folder: Path) -> dict:
    return json.loads((folder / "dream.json").read_text())


def start_of(spec: dict, start) -> tuple[torch.Tensor, tuple]:
    """z_0 (1, Z) and M's state as dream.json ships them, for ``start`` (an index, or 'real')."""
    s = spec["real"] if start == "real" else spec["starts"][start]
    dtypes = {"float32": torch.float32, "bool": torch.bool}
    state = tuple(torch.tensor(v, dtype=dtypes[d["dtype"]]).reshape(d["shape"]) for v, d in zip(s["state"], spec["state"]))
    return torch.tensor(s["z"]).reshape(1, -1), state


@torch.no_grad()
def torch_dream(m: MDNRNN, spec: dict, start, actions, uniforms, normals, temperature) -> dict:
    """Python's M stepped from the same start on the same actions and draws."""
    z, state = start_of(spec, start)
    result = {"z": [z[0].tolist()], "reward": [], "done": []}
    for a, u, e in zip(actions, uniforms, normals):
        out, state = m.step(z, torch.tensor([a], dtype=torch.float32), state, dream=True)
        z = sample_with_draws(out.logit_pi, out.mu, out.log_sigma, temperature,
                              torch.tensor(u, dtype=torch.float64).reshape(z.shape),
                              torch.tensor(e, dtype=torch.float32).reshape(z.shape))
        result["z"].append(z[0].tolist())
        result["reward"].append(float(out.reward[0]))
        result["done"].append(float(torch.sigmoid(out.done_logit[0])))
    return result


@torch.no_grad()
def c_outputs(world: WorldModel, params: torch.Tensor, spec: dict, start) -> np.ndarray:
    """torch's C (params (P,)) on a start's z and M's state: its tanh outputs (A,)."""
    z, state = start_of(spec, start)
    x = torch.cat([z, world.mdnrnn.controller_features(state)], dim=1)
    return batched(params[None], x, world.source.action_dim)[0].numpy()


def check_m_is_m(page, world: WorldModel, spec: dict, steps: int = 12) -> None:
    """For the same start, actions and draws, the browser's z sequence (and M's reward and done) is torch's."""
    rng = np.random.default_rng(11)
    z_dim = spec["z_dim"]
    for start, temperature in ((0, 1.15), (len(spec["starts"]) - 1, 0.5), ("real", 1.0)):
        actions = rng.uniform(-1, 1, (steps, spec["action_dim"])).tolist()
        uniforms = rng.uniform(size=(steps, z_dim)).tolist()
        normals = rng.standard_normal((steps, z_dim)).tolist()
        got = page.evaluate("([s, a, u, e, tau]) => window.__dreamTest(s, a, u, e, tau)",
                            [start, actions, uniforms, normals, temperature])
        want = torch_dream(world.mdnrnn, spec, start, actions, uniforms, normals, temperature)
        assert len(got["z"]) == steps + 1
        np.testing.assert_allclose(got["z"], want["z"], atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(got["reward"], want["reward"], atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(got["done"], want["done"], atol=1e-5)
        assert np.abs(np.diff(want["z"], axis=0)).max() > 0.1  # the dream moved: the check compared something


def info(page) -> dict:
    return page.evaluate("window.__dream.info()")


def frame(page) -> np.ndarray:
    return np.array(page.evaluate("window.__dream.frame()"), dtype=np.uint8).reshape(64, 64, 3)


def drive(page, key: str | None, steps: int, start: int = 0, seed: int = 5) -> tuple[dict, np.ndarray]:
    """A fresh dream from ``start`` (its draws from ``seed``), ``key`` held for ``steps`` steps."""
    page.evaluate("([s, seed]) => window.__dream.reset(s, seed)", [start, seed])
    if key:
        page.keyboard.down(key)
    page.evaluate("(n) => window.__dream.step(n)", steps)
    if key:
        page.keyboard.up(key)
    return info(page), frame(page)


def check_done(page, world: WorldModel, spec: dict) -> None:
    """M's reward and done probability are shown as the dream goes; when the done probability passes 0.5 a new
    dream begins, unless that is switched off (then the dream goes on, which the checks after this one need)."""
    z, state = start_of(spec, 0)
    keys = spec["keys"]
    a = keys["combos"][0] if keys["combos"][0] is not None else keys["first"]
    with torch.no_grad():
        out, _ = world.mdnrnn.step(z, torch.tensor([a]), state, dream=True)
    done, reward = float(torch.sigmoid(out.done_logit[0])), float(out.reward[0])
    assert page.locator("#restart").is_checked()
    before = drive(page, None, 0)[0]
    after = drive(page, None, 1)[0]
    over = done > spec["done_threshold"]
    assert after["ended"] == before["ended"] + over and after["dreams"] == before["dreams"] + 1 + over
    assert after["t"] == (0 if over else 1)
    page.locator("#restart").uncheck()
    went_on = drive(page, None, 1)[0]
    assert went_on["t"] == 1 and went_on["done"] == pytest.approx(done, abs=1e-5)
    assert went_on["reward"] == pytest.approx(reward, abs=1e-4)
    assert page.inner_text("#done") == f"{went_on['done']:.3f}" and page.inner_text("#reward") == f"{went_on['reward']:.3f}"


def check_keys_steer(page, spec: dict, steps: int, least: float) -> None:
    """Left and right give M their table's actions, and dreams from the same start and draws that differ from each
    other and from no key held; the same key again gives the same dream (so the differences are the steering).
    ``least``: the mean pixel difference of left against right must pass it."""
    left, left_frame = drive(page, "ArrowLeft", steps)
    right, right_frame = drive(page, "ArrowRight", steps)
    straight, straight_frame = drive(page, None, steps)
    again, again_frame = drive(page, "ArrowLeft", steps)
    combos = spec["keys"]["combos"]
    np.testing.assert_allclose(left["lastStep"]["input"], combos[LEFT], rtol=1e-6)
    np.testing.assert_allclose(right["lastStep"]["input"], combos[RIGHT], rtol=1e-6)
    np.testing.assert_allclose(straight["lastStep"]["input"], combos[0], rtol=1e-6)
    assert left["t"] == right["t"] == steps and left["dreams"] + 2 == again["dreams"] - 1  # no dream ended on the way
    np.testing.assert_array_equal(again_frame, left_frame)
    assert again["z"] == left["z"]
    for other in (right, straight):
        assert np.abs(np.subtract(left["z"], other["z"])).max() > 1e-2
    assert not np.array_equal(straight_frame, left_frame) and not np.array_equal(straight_frame, right_frame)
    assert np.abs(left_frame.astype(int) - right_frame.astype(int)).mean() > least


def check_temperature_reaches_m(page) -> None:
    """The slider sets τ; the next step samples at it (its z is the sampler's at that τ, from M's outputs and the
    step's own draws); the arrow keys drive the car, not the focused slider."""
    page.locator("#tau").fill("0.3")
    assert info(page)["tau"] == pytest.approx(0.3)
    page.keyboard.press("ArrowLeft")
    assert info(page)["tau"] == pytest.approx(0.3)
    page.evaluate("window.__dream.step(1)")
    last = info(page)["lastStep"]
    assert last["tau"] == pytest.approx(0.3)
    z = len(last["z"])
    logit, mu, log_sigma = (torch.tensor(last["out"][name]).reshape(1, z, -1) for name in ("logit", "mu", "logSigma"))
    want = sample_with_draws(logit, mu, log_sigma, 0.3, torch.tensor(last["uniforms"], dtype=torch.float64).reshape(1, z),
                             torch.tensor(last["normals"]).reshape(1, z))
    np.testing.assert_allclose(last["z"], want[0].numpy(), atol=1e-5)
    page.locator("#tau").fill("1.15")


def check_comparison(page, folder: Path, spec: dict) -> None:
    real = spec["real"]
    assert real["steps"] > 0 and len(real["actions"]) == real["steps"]
    assert Image.open(folder / real["frames"]).size == (64, 64 * (real["steps"] + 1))
    done = page.evaluate("window.__dream.compare()")
    assert done["t"] == real["steps"] and np.isfinite(done["dreamReturn"])
    assert page.inner_text("#compare-t") == f"{real['steps']} / {real['steps']}"


def check_starts(page, world: WorldModel, spec: dict) -> None:
    """A click on the third start's thumbnail starts a dream there, showing V's decoding of its z."""
    page.locator(".start").nth(2).click()
    page.wait_for_function("window.__dream.info().start === 2 && window.__dream.info().t === 0")
    z, _ = start_of(spec, 2)
    with torch.no_grad():
        want = to_frames(world.vae.decode(z))[0].numpy()
    assert np.abs(frame(page).astype(int) - want.astype(int)).max() <= 1


def check_the_loop_runs(page) -> None:
    t = info(page)["t"]
    page.evaluate("window.__dream.run()")
    page.wait_for_function(f"window.__dream.info().t >= {t + 5} || window.__dream.info().dreams > 1", timeout=30_000)
    page.evaluate("window.__dream.pause()")


def write_page(folder: Path, *flags) -> dict:
    out = run_stage(STAGE, *flags, "--web", folder, "--steps", REAL_STEPS, "--device", "cpu")
    assert str(folder) in out.stdout
    return spec_of(folder)


# CarRacing: the shipped driver -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def carracing_page(tmp_path_factory) -> Path:
    config = (PRETRAINED / "config.json").read_bytes()
    folder = tmp_path_factory.mktemp("web") / "carracing"
    write_page(folder, "--run", PRETRAINED)
    assert (PRETRAINED / "config.json").read_bytes() == config  # the shipped run is only read
    return folder


def test_carracing_in_the_browser(browser, carracing_page, tmp_path):
    folder, spec = carracing_page, spec_of(carracing_page)
    world = WorldModel.load(PRETRAINED, "carracing")
    assert spec["env"] == "carracing" and len(spec["starts"]) == web_dream.STARTS and spec["controller"]
    with opened(browser, folder) as page:
        check_m_is_m(page, world, spec)
        check_done(page, world, spec)
        check_keys_steer(page, spec, steps=20, least=1.0)
        check_temperature_reaches_m(page)

        # C drives: its first action is torch's C on the start's z and M's state, mapped by CarRacing's own mapping
        page.evaluate("window.__dream.reset(1, 1)")
        page.locator("#driver-c").check()
        assert info(page)["driver"] == "C"
        page.evaluate("window.__dream.step(1)")
        params = checkpoint.load(PRETRAINED / "controller.pt", "04")["params"].float()
        want = web_dream.m_input(world.source, world.source.controller_action(c_outputs(world, params, spec, 1)))
        np.testing.assert_allclose(info(page)["lastStep"]["input"], want, atol=1e-5)
        page.evaluate("window.__dream.step(4)")
        assert info(page)["lastStep"]["input"] != want  # C reads the dream as it goes
        page.keyboard.down("ArrowLeft")  # a key while C drives: you take over
        page.evaluate("window.__dream.step(1)")
        page.keyboard.up("ArrowLeft")
        assert info(page)["driver"] == "keys" and info(page)["lastStep"]["input"] == [-1, 0, 0]
        page.keyboard.press("c")
        assert info(page)["driver"] == "C" and page.locator("#driver-c").is_checked()
        page.locator("#driver-c").uncheck()
        assert info(page)["driver"] == "keys"

        check_starts(page, world, spec)
        check_the_loop_runs(page)
        check_comparison(page, folder, spec)
        # the picture: C driving, the comparison at its end
        page.locator("#restart").check()
        page.evaluate("window.__dream.reset(0, 0)")
        page.locator("#driver-c").check()
        page.evaluate("window.__dream.step(30)")
        shot = tmp_path / "web_dream.png"
        page.screenshot(path=str(shot))
    with Image.open(shot) as img:
        assert len(np.unique(np.asarray(img.convert("L")))) > 30  # drawn, not blank
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copyfile(shot, ARTIFACTS / shot.name)  # the page as this run drew it
    if os.environ.get("WM_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(shot, SCREENSHOT)


# ShapeHerd: a tiny run of the real stages ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shapeherd_page(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("shapeherd")
    folders = ["--env", "shapeherd", "--data", base / "data", "--run", base / "run"]
    run_stage("01_collect.py", *folders, "--episodes", "3", "--steps", "30", "--workers", "1")
    run_stage("02_train_vae.py", *folders, "--epochs", "1", "--batch", "16", "--device", "cpu")
    run_stage("03_train_mdnrnn.py", *folders, "--epochs", "1", "--seq-len", "16", "--batch", "4", "--hidden", "32",
              "--device", "cpu")
    # written in this process (05's own --web runs on CarRacing above), driven by the collection policy: no C yet
    world = WorldModel.load(base / "run", "shapeherd")
    web_dream.write(base / "web", world, StartFrames(base / "run" / "latents.h5"), None, "the collection policy",
                    policy_actor(world.source, "brownian", 1, 0), seed=0, steps=REAL_STEPS, temperature=1.15)
    return base / "web", base / "run"


def test_shapeherd_in_the_browser(browser, shapeherd_page):
    folder, run = shapeherd_page
    spec = spec_of(folder)
    world = WorldModel.load(run, "shapeherd")
    assert spec["env"] == "shapeherd" and spec["controller"] is None
    assert spec["controller_note"] == "C cannot drive here: this run is driven by the collection policy"
    with opened(browser, folder) as page:
        check_m_is_m(page, world, spec)
        check_done(page, world, spec)
        check_keys_steer(page, spec, steps=20, least=0.0)
        np.testing.assert_allclose(spec["keys"]["combos"][LEFT], [np.pi, 400], rtol=1e-6)  # push left, full force
        check_temperature_reaches_m(page)
        assert page.locator("#driver-c").is_disabled()
        page.keyboard.press("c")
        assert info(page)["driver"] == "keys"  # no C to hand over to
        check_comparison(page, folder, spec)


# A discrete source: the digits and button combinations, and C by argmax -------------------------------------------
@pytest.fixture(scope="module")
def airstriker_page(tmp_path_factory) -> tuple[Path, WorldModel, torch.Tensor]:
    """Airstriker's actions with an untrained V and M (the page's mechanics, not a dream worth watching)."""
    base = tmp_path_factory.mktemp("airstriker")
    source = envs.get("airstriker")
    torch.manual_seed(0)
    z, a = 8, source.action_dim
    world = WorldModel(source, ConvVAE(VAEConfig(z_dim=z)).eval(), MDNRNN(MDNRNNConfig(z_dim=z, action_dim=a, hidden=16)).eval())
    rng = np.random.default_rng(0)
    episodes = [latent_data.LatentEpisode(i, rng.normal(size=(11, z)).astype(np.float32), np.full((11, z), -2.0, np.float32),
                                          np.eye(a, dtype=np.float32)[rng.integers(a, size=10)], np.zeros(10, np.float32),
                                          np.zeros(10, bool)) for i in range(2)]
    latent_data.write(base / "latents.h5", iter(episodes), {"z_dim": z})
    params = torch.randn(world.num_params, generator=torch.Generator().manual_seed(1))
    web_dream.write(base / "web", world, StartFrames(base / "latents.h5"), params, "a random C",
                    controller_actor(world, params[None]), seed=0, steps=8, temperature=1.0)
    return base / "web", world, params


def test_a_discrete_source_in_the_browser(browser, airstriker_page):
    folder, world, params = airstriker_page
    spec = spec_of(folder)
    one_hot = np.eye(world.source.action_dim)
    with opened(browser, folder) as page:
        check_m_is_m(page, world, spec, steps=6)
        check_done(page, world, spec)
        page.evaluate("window.__dream.reset(0, 0)")
        page.keyboard.down("3")
        page.evaluate("window.__dream.step(1)")
        page.keyboard.up("3")
        assert info(page)["lastStep"]["input"] == one_hot[2].tolist()  # digit 3: the third action
        page.keyboard.down("ArrowLeft")
        page.evaluate("window.__dream.step(1)")
        page.keyboard.up("ArrowLeft")
        left = world.source.keyboard_action(frozenset({"left"}), 2)
        assert info(page)["lastStep"]["input"] == one_hot[left].tolist()
        page.locator("#driver-c").check()
        page.evaluate("window.__dream.reset(1, 1)")
        page.evaluate("window.__dream.step(1)")
        assert info(page)["lastStep"]["input"] == one_hot[int(c_outputs(world, params, spec, 1).argmax())].tolist()
        check_comparison(page, folder, spec)
