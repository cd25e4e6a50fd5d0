"""Dreams: C evolved inside M then scored in the real env, 05's outputs and report page, and the keyboard demo."""
from __future__ import annotations

import csv
import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import torch
from PIL import Image

import envs
from conftest import missing, run_stage
from data import latents as latent_data
from models.controller import batched
from models.mdnrnn import MDNRNN, MDNOutput, MDNRNNConfig, mixture_mean
from models.mixture_sampler import components, draw, sample_with_draws
from models.vae import ConvVAE, VAEConfig, sample_z, to_input
from pipeline.contract import evaluations
from pipeline.dream_env import (
    DreamEvaluator,
    StartFrames,
    Starts,
    begin,
    controller_actor,
    dream,
    policy_actor,
    record_real_episode,
    scripted_actor,
)
from pipeline.reporting import dream_window, report
from pipeline.world_model import WorldModel, controller_actions

DREAM = ["--pop", "4", "--trials", "2", "--steps", "30", "--workers", "1", "--in", "dream", "--real-every", "2",
         "--eval-episodes", "2", "--device", "cpu"]


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def fresh_copy(run: Path, dest: Path) -> Path:
    """The tiny run's V, M and latents, without the controller 04 evolved in the real env."""
    shutil.copytree(run, dest)
    for name in ("es_state.pkl", "controller.pt", "controller_eval.json", "metrics/controller.csv"):
        (dest / name).unlink(missing_ok=True)
    return dest


# -- C evolved in the dream ---------------------------------------------------------------------------
def test_dream_training_logs_both_worlds_resumes_and_evaluates_in_the_real_env(tiny_run, tmp_path):
    run = fresh_copy(tiny_run["run"], tmp_path / "run")
    folders = ["--data", tiny_run["data"], "--run", run]
    run_stage("04_train_controller.py", *folders, *DREAM, "--generations", "3")
    log = rows(run / "metrics" / "controller.csv")
    assert [r["generation"] for r in log] == ["1", "2", "3"]
    assert all(int(r["dream_steps"]) > 0 for r in log)
    assert log[0]["env_steps"] == "0" and log[0]["eval_mean"] == ""  # generation 1: in the dream only
    for r in log[1:]:  # generation 2 (--real-every 2) and the last: scored in both worlds
        assert int(r["env_steps"]) > 0
        assert all(np.isfinite(float(r[k])) for k in ("eval_mean", "dream_eval_mean", "real_best"))
    assert (run / "plots" / "controller_fitness.png").exists() and (run / "plots" / "controller_dream_vs_real.png").exists()
    ctrl = torch.load(run / "controller.pt", weights_only=True)
    assert ctrl["trained_in"] == "dream" and ctrl["generation"] == 3
    assert json.loads((run / "config.json").read_text())["controller"]["temperature"] == 1.15

    out = run_stage("04_train_controller.py", *folders, *DREAM, "--generations", "4")
    assert "resuming" in out.stdout and "generation 3" in out.stdout
    assert [r["generation"] for r in rows(run / "metrics" / "controller.csv")] == ["1", "2", "3", "4"]

    out = run_stage("04_train_controller.py", *folders, "--steps", "30", "--workers", "1", "--evaluate", "2")
    result = evaluations.latest(run)
    assert len(result["returns"]) == 2 and f"{result['mean']:.1f} ± {result['std']:.1f}" in out.stdout


def test_dream_player_is_reproducible_and_starts_depend_only_on_their_seed(tiny_run):
    world = WorldModel.load(tiny_run["run"], "carracing")
    player = DreamEvaluator(world, tiny_run["run"] / "latents.h5", max_steps=12, temperature=1.15, device=torch.device("cpu"))
    candidates = np.random.default_rng(0).normal(0, 0.1, (3, world.num_params))
    fitness, steps = player.fitness(candidates, [5, 6])
    assert fitness.shape == (3,) and 0 < steps <= 3 * 2 * 12
    again, _ = player.fitness(candidates, [5, 6])
    np.testing.assert_array_equal(fitness, again)
    both, one = player.starts.draw([5, 6]), player.starts.draw([6])
    np.testing.assert_array_equal(both.z[1], one.z[0])
    assert (both.episode[1], both.t[1]) == (one.episode[0], one.t[0])


class ScriptedM(torch.nn.Module):
    """A stand-in for M: reward 1 every step, done logit from a per-row schedule (done at step done_at[i])."""

    def __init__(self, z_dim: int, done_at: list[int]):
        super().__init__()
        self.z_dim, self.done_at = z_dim, torch.tensor(done_at)

    def initial_state(self, batch, device="cpu"):
        return (torch.zeros(batch),)

    def controller_features(self, state):
        return state[0][:, None]

    def step(self, z, a, state, dream=False):
        t = state[0]
        n = len(z)
        done_logit = torch.where(t == self.done_at, 10.0, -10.0)
        out = MDNOutput(torch.zeros(n, self.z_dim, 1), z[..., None], torch.full((n, self.z_dim, 1), -5.0),
                        torch.ones(n), done_logit)
        return out, (t + 1,)


def test_a_dream_ends_when_m_says_done_and_counts_that_steps_reward():
    m = ScriptedM(4, done_at=[1, 3])
    source = envs.get("carracing")
    result = dream(m, source, torch.zeros(2, 4), m.initial_state(2), scripted_actor([np.zeros(3, np.float32)] * 10),
                   steps=10, temperature=1.0, generator=torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(result.lengths, [2, 4])  # done at step index 1 and 3: 2 and 4 steps
    np.testing.assert_array_equal(result.returns, [2.0, 4.0])


def test_dreams_with_discrete_actions(tmp_path):
    """A discrete source: C picks by argmax, M reads one-hot actions."""
    source = envs.get("airstriker")
    z, a = 8, source.action_dim
    world = WorldModel(source, ConvVAE(VAEConfig(z_dim=z)).eval(),
                       MDNRNN(MDNRNNConfig(z_dim=z, action_dim=a, hidden=16)).eval())
    rng = np.random.default_rng(0)
    one_hot = np.eye(a, dtype=np.float32)
    episodes = [latent_data.LatentEpisode(i, rng.normal(size=(21, z)).astype(np.float32), np.full((21, z), -2.0, np.float32),
                                          one_hot[rng.integers(a, size=20)], np.zeros(20, np.float32), np.zeros(20, bool))
                for i in range(2)]
    latent_data.write(tmp_path / "latents.h5", iter(episodes), {"z_dim": z})
    player = DreamEvaluator(world, tmp_path / "latents.h5", max_steps=5, temperature=1.0, device=torch.device("cpu"), warmup=3)
    fitness, steps = player.fitness(rng.normal(0, 0.5, (2, world.num_params)), [1, 2, 3])
    assert fitness.shape == (2,) and np.all(np.isfinite(fitness)) and steps > 0
    assert np.all(player.starts.draw([1, 2, 3]).t >= 3)


# -- the batched dream against a plain one, bit for bit --------------------------------------------------------
def plain_dream(m: MDNRNN, world: WorldModel, starts: Starts, params: np.ndarray, steps: int, temperature: float,
                seed: int) -> tuple[np.ndarray, np.ndarray, list]:
    """The dream loop written plainly: C's actions mapped row by row by the source, z_{t+1}'s component drawn by
    torch's ops (``components``); returns, lengths and the actions of each step (as M read them)."""
    source, n = world.source, len(params)
    torch.manual_seed(seed)
    z, state = begin(m, starts, torch.device("cpu"))
    generator = torch.Generator().manual_seed(seed)
    params_t = torch.as_tensor(params, dtype=torch.float32)
    alive, returns, lengths, actions = np.ones(n, bool), np.zeros(n), np.zeros(n, np.int64), []
    with torch.no_grad():
        for t in range(steps):
            out = batched(params_t, torch.cat([z, m.controller_features(state)], dim=1), world.controller_out)
            a = source.encode_actions(source.stored_actions([source.controller_action(o) for o in out.numpy()]))
            actions.append(a)
            pred, state = m.step(z, torch.from_numpy(a), state, dream=t > 0)
            logits = pred.logit_pi / temperature
            u = torch.rand(logits.shape[:-1], generator=generator, dtype=torch.float64)
            k = components(logits.reshape(-1, logits.shape[-1]), u.reshape(-1)).view(*logits.shape[:-1], 1)
            mu, sigma = pred.mu.gather(-1, k).squeeze(-1), pred.log_sigma.gather(-1, k).squeeze(-1).exp()
            z = mu + sigma * math.sqrt(temperature) * torch.randn(mu.shape, generator=generator)
            returns += np.where(alive, pred.reward.double().numpy(), 0.0)
            lengths += alive
            alive &= torch.sigmoid(pred.done_logit).numpy() <= 0.5
            if not alive.any():
                break
    return returns, lengths, actions


@pytest.mark.parametrize("env, done_scale", [("carracing", 1.0), ("airstriker", 2.0)])
def test_dreams_equal_the_plain_loop_bit_for_bit(tmp_path, env, done_scale):
    """Returns, done steps and every action of a batch of dreams are those of the plain loop, for the same seed:
    the batched action mapping and the compiled component draw change nothing."""
    source = envs.get(env)
    torch.manual_seed(0)
    world = WorldModel(source, ConvVAE(VAEConfig(z_dim=8)).eval(),
                       MDNRNN(MDNRNNConfig(z_dim=8, action_dim=source.action_dim, hidden=32, mixtures=5)).eval())
    with torch.no_grad():  # a done logit that crosses 0 at many different steps
        world.mdnrnn.head.bias[-1] = -2.0
        world.mdnrnn.head.weight[-1] = torch.randn(32) * done_scale
    rng = np.random.default_rng(0)
    latent_data.write(tmp_path / "latents.h5", iter(synthetic_episodes(source, 8, 3, 30, rng)), {"z_dim": 8})
    player = DreamEvaluator(world, tmp_path / "latents.h5", max_steps=40, temperature=1.15, device=torch.device("cpu"),
                         warmup=2)
    params = rng.normal(0, 0.5, (24, world.num_params))
    starts = player.starts.draw(range(24))
    returns, lengths, actions = plain_dream(player.m, world, starts, params, 40, 1.15, seed=7)
    assert len(set(lengths.tolist())) > 5 and lengths.max() == 40  # rows end at many steps, some at the cap

    result = player.play_starts(params, starts, seed=7)
    np.testing.assert_array_equal(result.returns, returns)
    np.testing.assert_array_equal(result.lengths, lengths)

    seen = []
    actor = controller_actor(world, torch.as_tensor(params, dtype=torch.float32))

    def recording(t, z, features):
        chosen = actor(t, z, features)
        seen.append(source.encode_actions(source.stored_actions(chosen)))
        return chosen

    torch.manual_seed(7)
    z0, state = begin(player.m, starts, torch.device("cpu"))
    again = dream(player.m, source, z0, state, recording, 40, 1.15, torch.Generator().manual_seed(7))
    np.testing.assert_array_equal(again.returns, returns)
    assert len(seen) == len(actions)
    for fast, plain in zip(seen, actions):
        np.testing.assert_array_equal(fast, plain)


def test_a_dream_batch_gives_the_same_results_on_any_number_of_threads(tmp_path):
    """The stage dreams on the cores its idle real-env workers leave: M at full size (LSTM 256, 5 mixtures of 32
    dims) on a batch of 256, on 1 thread and on 2, must give the same returns and lengths, bit for bit."""
    source = envs.get("carracing")
    torch.manual_seed(0)
    world = WorldModel(source, ConvVAE().eval(), MDNRNN().eval())
    with torch.no_grad():
        world.mdnrnn.head.bias[-1] = -10.0  # no dream ends early: every row runs all 25 steps
    rng = np.random.default_rng(0)
    latent_data.write(tmp_path / "latents.h5", iter(synthetic_episodes(source, 32, 4, 30, rng)), {"z_dim": 32})
    params = rng.normal(0, 0.3, (32, world.num_params))
    results = []
    for threads in (1, 2):
        player = DreamEvaluator(world, tmp_path / "latents.h5", max_steps=25, temperature=1.15,
                             device=torch.device("cpu"), threads=threads)
        before = torch.get_num_threads()
        results.append(player.fitness(params, list(range(8))))
        assert torch.get_num_threads() == before  # restored after the batch
    np.testing.assert_array_equal(results[0][0], results[1][0])
    assert results[0][1] == results[1][1] == 32 * 8 * 25


def synthetic_episodes(source: envs.EnvSource, z: int, n: int, steps: int,
                       rng: np.random.Generator) -> list[latent_data.LatentEpisode]:
    """``n`` latent episodes of ``steps`` steps with the source's random actions, as M reads them."""
    policy = source.exploration_policy("random", rng)
    return [latent_data.LatentEpisode(i, rng.normal(size=(steps + 1, z)).astype(np.float32),
                                      np.full((steps + 1, z), -2.0, np.float32),
                                      source.encode_actions(source.stored_actions([policy.act() for _ in range(steps)])),
                                      np.zeros(steps, np.float32), np.zeros(steps, bool)) for i in range(n)]


def test_the_batched_action_mapping_is_the_sources_own_row_by_row():
    rng = np.random.default_rng(0)
    out = np.tanh(rng.normal(0, 2, (500, 3))).astype(np.float32)
    out[:6] = [[-1, -1, -1], [1, 1, 1], [0, 0, 0], [-0.0, -0.0, -0.0], [1e-30, -1e-30, 0.5], [0.25, -0.75, 1e-8]]
    for name in ("carracing", "shapeherd", "airstriker"):
        source = envs.get(name)
        rows = out[:, : source.action_dim] if source.action_dim <= 3 else rng.normal(size=(500, source.action_dim))
        rows = rows.astype(np.float32)
        batch = controller_actions(source, rows)
        assert len(batch) == len(rows)
        for got, row in zip(batch, rows):
            want = source.controller_action(row)
            np.testing.assert_array_equal(got, want)
            assert np.asarray(got).dtype == np.asarray(want).dtype


# -- the mixture's sampler: the distribution it draws, and the same z on both of its paths -----------------------
def mixture(rows: int, dims: int, k: int, scale: float, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random mixtures (rows, dims, k): logits at ``scale``, means, log sigmas."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(rows, dims, k, generator=g) * scale, torch.randn(rows, dims, k, generator=g) * 3,
            torch.randn(rows, dims, k, generator=g) * 0.5 - 1)


def chi_square_p(picked: np.ndarray, probs: np.ndarray) -> float:
    """The chi-square test's p-value for the counts of ``picked`` against the probabilities ``probs``."""
    counts = np.bincount(picked, minlength=len(probs))
    return scipy.stats.chisquare(counts, probs * len(picked)).pvalue


@pytest.mark.parametrize("temperature", [0.5, 1.0, 1.15, 3.0])
def test_the_component_draw_follows_the_softmax_chi_square(temperature):
    """The components ``draw`` picks (recovered from z drawn with no noise: every component its own μ) follow
    softmax(logits / τ): a chi-square test on 400,000 draws from each of three mixtures, one of them with a
    component of probability about 1e-3. The same test rejects draws from the softmax at the wrong temperature,
    so it can tell."""
    logits = torch.tensor([[0.3, -1.2, 2.0, 0.0, -0.5], [1.0, 1.0, 1.0, 1.0, 1.0], [4.0, 0.0, -3.0, 2.5, 1.0]])
    n = 400_000
    mu = torch.arange(5.0).expand(n, 3, 5)
    g = torch.Generator().manual_seed(11)
    z = draw(logits.expand(n, 3, 5), mu, torch.full((n, 3, 5), -60.0), temperature, g)
    picked = z.round().long().numpy()
    assert np.abs(picked - z.numpy()).max() < 1e-6  # σ = e⁻⁶⁰: z is μ_k = k
    for d in range(3):
        probs = torch.softmax(logits[d].double() / temperature, -1).numpy()
        assert chi_square_p(picked[:, d], probs) > 1e-3
        if d != 1:  # the uniform row is the same at any temperature
            wrong = torch.softmax(logits[d].double() / (temperature * 1.1), -1).numpy()
            assert chi_square_p(picked[:, d], wrong) < 1e-6


@pytest.mark.parametrize("temperature", [0.7, 1.15])
def test_the_moments_of_z_are_the_mixtures(temperature):
    """z's mean, variance and third central moment over 200,000 draws are those of the mixture at temperature τ
    (weights softmax(logits / τ), each component's variance σ²τ), within 5 standard errors, in every dimension."""
    logits, mu, log_sigma = mixture(1, 4, 5, 1.5, seed=3)
    n = 200_000
    z = draw(logits.expand(n, 4, 5), mu.expand(n, 4, 5), log_sigma.expand(n, 4, 5), temperature,
             torch.Generator().manual_seed(5)).double()
    p = torch.softmax(logits[0].double() / temperature, -1)
    m, var = mu[0].double(), (2 * log_sigma[0].double()).exp() * temperature
    mean = (p * m).sum(-1)
    central2 = (p * (var + (m - mean[:, None]) ** 2)).sum(-1)
    d = m - mean[:, None]
    central3 = (p * (d ** 3 + 3 * d * var)).sum(-1)
    got_mean = z.mean(0)
    got2 = ((z - got_mean) ** 2).mean(0)
    got3 = ((z - got_mean) ** 3).mean(0)
    central4 = (p * (d ** 4 + 6 * d ** 2 * var + 3 * var ** 2)).sum(-1)
    central6 = ((z - mean) ** 6).mean(0)  # for the third moment's standard error
    assert torch.all((got_mean - mean).abs() < 5 * (central2 / n).sqrt())
    assert torch.all((got2 - central2).abs() < 5 * ((central4 - central2 ** 2) / n).sqrt())
    assert torch.all((got3 - central3).abs() < 5 * (central6 / n).sqrt())


@pytest.mark.parametrize("scale", [1e-3, 1.0, 30.0, 300.0])
def test_the_compiled_draw_is_torchs_ops_bit_for_bit(scale):
    """On the CPU in float32, ``sample_with_draws`` picks and gathers in compiled loops; ``components`` and torch's
    gather do the same in torch's ops. For the same uniforms they give the same z, bit for bit, at any scale of
    logits; and a generator's seed gives one z, leaving the generator where one uniform and one normal a
    dimension leave it."""
    logits, mu, log_sigma = mixture(2000, 8, 5, scale, seed=1)
    g = torch.Generator().manual_seed(2)
    u = torch.rand(2000, 8, generator=g, dtype=torch.float64)
    eps = torch.randn(2000, 8, generator=g)
    z = sample_with_draws(logits, mu, log_sigma, 1.15, u, eps)
    x = (logits / 1.15).reshape(-1, 5)
    k = components(x, u.reshape(-1))
    assert 0 < len(torch.unique(k)) <= 5
    want = (mu.reshape(-1, 5).gather(-1, k).squeeze(-1) + log_sigma.reshape(-1, 5).gather(-1, k).squeeze(-1).exp()
            * math.sqrt(1.15) * eps.reshape(-1)).view(2000, 8)
    assert torch.equal(z, want)
    again = torch.Generator().manual_seed(2)
    assert torch.equal(draw(logits, mu, log_sigma, 1.15, again), z)
    assert torch.equal(again.get_state(), g.get_state())


def test_the_draw_refuses_logits_that_are_not_finite():
    logits, mu, log_sigma = mixture(3, 2, 5, 1.0, seed=0)
    for bad in (float("nan"), float("inf")):
        logits[1, 1, 2] = bad
        with pytest.raises(ValueError, match="not all finite"):
            draw(logits, mu, log_sigma, 1.0, torch.Generator().manual_seed(0))

# -- 05: files, the page, the keyboard demo --------------------------------------------------------------
@pytest.fixture(scope="module")
def dreamed(tiny_run, tmp_path_factory) -> dict:
    """05 run once on a copy of the tiny run (with its controller); the run folder and 05's output. Given only
    --run, 05 finds the env and the data folder the run was trained on in its config.json."""
    run = tmp_path_factory.mktemp("dream") / "run"
    shutil.copytree(tiny_run["run"], run)
    out = run_stage("05_dream.py", "--run", run, "--steps", "20", "--dreams", "2",
                    "--latent-dims", "2", "--device", "cpu")
    return {"run": run, "out": out}


def test_05_writes_every_output(dreamed):
    run = dreamed["run"]
    d = run / "dreams"
    for name in ("reconstructions.png", "latent_sweep.png", "real_vs_dream_error.png"):
        assert Image.open(d / name).size[0] > 200, name
    for name in ("dream_0.gif", "dream_1.gif", "real_vs_dream.gif", "world_view.gif"):
        with Image.open(d / name) as gif:
            assert gif.format == "GIF" and gif.n_frames > 1, name
    with Image.open(d / "real_vs_dream.gif") as gif:
        assert gif.n_frames == 21  # the first frame and 20 steps (the tiny controller never ends an episode early)
    summary = json.loads((d / "summary.json").read_text())
    assert summary["dreams"]["driver"].startswith("the trained controller")
    assert len(summary["dreams"]["returns"]) == 2 and len(summary["latent_sweep"]["dims"]) == 2
    comparison = summary["real_vs_dream"]
    assert len(comparison["error"]) == comparison["steps"] + 1 == 21
    assert all(np.isfinite(comparison["error"]))
    assert json.loads((run / "config.json").read_text())["dream"]["temperature"] == 1.15
    page = (run / "report.html").read_text()
    assert "Content-Security-Policy" in page
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)  # self-contained: no external requests
    assert page.count("data:image/gif;base64,") == 5  # 2 dreams, the driving, the world's view, real vs dream
    with Image.open(d / "world_view.gif") as gif:  # real | V's reconstruction | M's one-step prediction, t = 0, 2…20
        assert gif.n_frames == 11 and gif.size[0] == 3 * 64 * report.COMPARISON_SCALE
    driving = summary["driving"]
    assert driving["steps"] == 30 and Image.open(run / "dreams" / "driving.gif").size == (192, 192 + report.CAPTION_PX)


def test_report_opens_in_headless_chromium(dreamed, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        missing("chromium is not installed (.ci/run installs Debian's chromium)")
    page = (dreamed["run"] / "report.html").as_uri()
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1200,2000"]
    shot = tmp_path / "report.png"
    subprocess.run([*flags, f"--screenshot={shot}", page], capture_output=True, timeout=120, check=True)
    with Image.open(shot) as img:
        assert img.size == (1200, 2000)
        assert len(np.unique(np.asarray(img.convert("L").resize((120, 200))))) > 20  # drawn, not blank
    dom = subprocess.run([*flags, "--virtual-time-budget=5000", "--dump-dom", page], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    body = re.search(r"<body([^>]*)>", dom).group(1)
    attrs = dict(re.findall(r'(data-[a-z-]+)="([^"]*)"', body))
    assert int(attrs["data-images"]) >= 8  # curves, reconstructions, sweep, 2 dreams, real vs dream and its plot
    assert attrs["data-images-ok"] == attrs["data-images"] and attrs["data-errors"] == "0"


def test_play_drives_the_dream_with_scripted_keys(tiny_run, monkeypatch):
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    monkeypatch.setenv("SDL_AUDIODRIVER", "dummy")
    import pygame

    world = WorldModel.load(tiny_run["run"], "carracing")
    starts = StartFrames(tiny_run["run"] / "latents.h5")
    key = lambda kind, k: pygame.event.Event(kind, key=k)  # noqa: E731
    script = {0: [key(pygame.KEYDOWN, pygame.K_UP)],
              3: [key(pygame.KEYUP, pygame.K_UP), key(pygame.KEYDOWN, pygame.K_LEFT)],
              6: [key(pygame.KEYUP, pygame.K_LEFT)],
              8: [key(pygame.KEYDOWN, pygame.K_ESCAPE)]}
    log = dream_window.run(world, starts, temperature=1.15, seed=0, fps=0, events=lambda f: script.get(f, []), max_frames=50)
    expected = [[0, 1, 0]] * 3 + [[-1, 0, 0]] * 3 + [[0, 0, 0]] * 2  # Esc before frame 8 is played
    np.testing.assert_array_equal(np.array(log.actions), expected)
    assert log.dreams >= 1 and np.abs(np.diff(np.array(log.z), axis=0)).sum() > 0  # the dream moved


def test_keyboard_bindings_of_other_sources():
    shapeherd = envs.get("shapeherd")
    np.testing.assert_allclose(dream_window.keyboard_action(shapeherd, frozenset({"down"})), [np.pi / 2, 400], rtol=1e-6)
    np.testing.assert_allclose(dream_window.keyboard_action(shapeherd, frozenset()), [0, 0])
    airstriker = envs.get("airstriker")  # combos: [], LEFT, RIGHT, B, LEFT+B, RIGHT+B
    assert dream_window.keyboard_action(airstriker, frozenset({"left", "space"})) == 4
    assert dream_window.keyboard_action(airstriker, frozenset({"3"})) == 2
    assert dream_window.keyboard_action(airstriker, frozenset()) == 0


def test_05_help_and_a_missing_run():
    out = run_stage("05_dream.py", "--help").stdout
    for flag in ("--temperature", "--dreams", "--steps", "--latent-dims", "--device", "--play", "--warmup"):
        assert flag in out
    proc = run_stage("05_dream.py", "--run", "/nonexistent/run", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "vae.pt not found" in proc.stderr


def test_ms_one_step_prediction_is_its_mixture_mean(tiny_run):
    """mixture_mean on a hand-made mixture, then record_real_episode's record against M run again over the same episode."""
    logit_pi = torch.log(torch.tensor([[[0.25, 0.75], [1.0, 1e-12]]]))
    mu = torch.tensor([[[1.0, 3.0], [-2.0, 5.0]]])
    out = MDNOutput(logit_pi, mu, torch.zeros_like(mu), torch.zeros(1), torch.zeros(1))
    assert mixture_mean(out)[0].tolist() == pytest.approx([2.5, -2.0])

    world = WorldModel.load(tiny_run["run"], "carracing")
    episode = record_real_episode(world, policy_actor(world.source, "brownian", 1, 3), seed=3, steps=12)
    assert episode.predicted.shape == (12, world.vae.z_dim)
    # M's state depends on the sampled z it read; replaying needs those samples, drawn from the seed as record_real_episode did.
    noise = np.random.default_rng(3)
    state = world.mdnrnn.initial_state(1)
    with torch.no_grad():
        for t, action in enumerate(episode.actions):
            mu_v, logvar = world.vae.encode(to_input(torch.from_numpy(episode.frames[t][None])))
            z = sample_z(mu_v, logvar, torch.from_numpy(noise.standard_normal(mu_v.shape, dtype=np.float32)))
            a = torch.from_numpy(world.source.encode_actions(world.source.stored_actions([action])))
            out, state = world.mdnrnn.step(z, a, state)
            np.testing.assert_allclose(mixture_mean(out)[0].numpy(), episode.predicted[t], rtol=1e-5, atol=1e-6)
