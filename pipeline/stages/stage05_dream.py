"""Stage 05: look inside the world model: V's reconstructions, M's dreams, real against dream, and report.html.

    python 05_dream.py --env carracing [--temperature 1.15] [--dreams 4] [--steps 200]
    python 05_dream.py --env carracing --play        # drive inside the dream with the keyboard (pygame window)
    python 05_dream.py --run pretrained/carracing --web DIR [--serve]   # the dream as a web page (pipeline/web_dream.py)

Writes <run>/dreams/: reconstructions.png (real frames and V's reconstructions), latent_sweep.png (single
latent dimensions swept), dream_<i>.gif (dreams from real frames, rolled forward by M alone at --temperature,
driven by the trained controller when there is one, else by the collection policy; also .mp4 when ffmpeg is
available), real_vs_dream.gif and real_vs_dream_error.png (one real episode and M's dream of the same
actions), world_view.gif (that real episode as the world model sees it: each real frame, V's reconstruction and
M's one-step prediction side by side), driving.gif (the controller's whole real episode), summary.json; then
<run>/report.html, one self-contained page with the whole run.
"""
from __future__ import annotations

import argparse
import contextlib
import json

import numpy as np
import torch

import envs
from data.frames import sample_frames
from envs.base import EnvUnavailable
from models.vae import to_input
from pipeline import ppo, web_dream
from pipeline.compute import device as devices
from pipeline.contract import cli, lock
from pipeline.contract.cli import Parser, nonneg_int, parse_stage_args, positive_float, stage_parser
from pipeline.contract.errors import UsageError
from pipeline.contract.runconfig import atomic_write_text, latents_path, load_config, save_stage_config
from pipeline.contract.seeding import Purpose, episode_seeds
from pipeline.dream_env import (
    Actor,
    StartFrames,
    begin,
    controller_actor,
    decode,
    dream,
    policy_actor,
    real_vs_dream,
    record_real_episode,
)
from pipeline.reporting import dream_window, plots, report
from pipeline.rollouts import open_store
from pipeline.world_model import WorldModel

DEFAULT_STEPS = 200  # dream length when --steps is not given (or the env's episode length, if shorter)
SWEEP = np.linspace(-3.0, 3.0, 9)  # latent values of the sweep: ±3 standard deviations of the prior
RECON_FRAMES = 8
DRIVE_EVERY = 3  # driving.gif keeps every 3rd step: about 17 frames per second of the env's 50
VIEW_EVERY = 2  # world_view.gif keeps every 2nd step (three panels a frame: the report stays small enough to ship)
KL_FRAMES = 32  # frames whose mean KL ranks the latent dimensions


def parser() -> Parser:
    p = stage_parser(__doc__.splitlines()[0])
    p.add_argument("--temperature", type=positive_float, default=1.15,
                   help="M's sampling temperature τ (mixture logits / τ, noise × √τ)")
    p.add_argument("--dreams", type=cli.episodes, default=4, help="dreams to roll out and save as GIFs")
    p.add_argument("--steps", type=cli.steps,
                   help=f"length of each dream and of the real-against-dream episode (default: {DEFAULT_STEPS}, "
                        "or the env's episode length if shorter)")
    p.add_argument("--latent-dims", type=nonneg_int, default=4, help="latent dimensions swept in latent_sweep.png")
    p.add_argument("--warmup", type=cli.nonneg_int_up_to(cli.MAX_STEPS), default=0,
                   help="real steps M reads before each dream starts (0: M starts from its initial state)")
    p.add_argument("--device", choices=devices.CHOICES, default="auto", help="where V and M run (auto: CUDA when present)")
    p.add_argument("--play", action="store_true",
                   help="drive inside the dream with the keyboard in a pygame window instead of writing files")
    web_dream.add_flags(p)
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser()
    args = parse_stage_args(p, "dream", argv)
    args.steps = args.steps or min(DEFAULT_STEPS, args.source.default_max_steps)
    web_dream.check_flags(args)
    return args


def run(args: argparse.Namespace) -> None:
    """Write the dreams and the report into --run, which this process holds throughout (``pipeline.contract.lock``);
    --play and --web write nothing there, so they hold nothing (one may play while 04 trains)."""
    with contextlib.nullcontext() if args.play or args.web else lock.hold(args.run, "--run"):
        _run(args)


def _run(args: argparse.Namespace) -> None:
    device = devices.resolve(args.device)
    torch.manual_seed(args.seed)

    world = WorldModel.load(args.run, args.env, args.state)
    world.vae.to(device)
    world.mdnrnn.to(device)
    starts = StartFrames(latents_path(args.run), args.warmup, world.vae_fingerprint)
    if args.play:
        print(dream_window.HELP)
        dream_window.run(world, starts, args.temperature, args.seed)
        return
    params, driver = load_controller(args, world)
    params = params.to(device) if isinstance(params, torch.Tensor) else params
    if args.web:
        web_dream.publish(args, world, starts, params, driver, make_actor(world, params, args, 1))
        return
    _, refs = open_store(args)
    save_stage_config(args.run, "dream", args)
    out = args.run / "dreams"
    out.mkdir(parents=True, exist_ok=True)

    summary = {"temperature": args.temperature, "mp4": report.mp4_writer() is not None}
    summary["latent_sweep"] = show_v(world, refs, args, device)
    summary["dreams"] = show_dreams(world, starts, make_actor(world, params, args, args.dreams), driver, args, device)
    try:
        summary["real_vs_dream"] = show_real_vs_dream(world, make_actor(world, params, args, 1), driver, args)
        if params is not None:
            summary["driving"] = show_driving(world, make_actor(world, params, args, 1), args)
    except EnvUnavailable as e:
        summary["real_vs_dream_skipped"] = f"the real env cannot run here: {e}"
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    page = report.write(args.run)
    print(f"dreams in {out}/; open {page} in a browser")


def show_driving(world: WorldModel, actor: Actor, args) -> dict:
    """driving.gif: the controller playing one whole real episode (as long as 04 plays them), in the env's own
    frames, every ``DRIVE_EVERY``-th step, with the return so far."""
    steps = load_config(args.run).get("controller", {}).get("steps") or world.source.default_max_steps
    seed = episode_seeds(args.seed, Purpose.DREAMS, 1, 1)[0]
    episode = record_real_episode(world, actor, seed, steps)
    returns = np.concatenate([[0.0], np.cumsum(episode.rewards)])
    shown = range(0, len(episode.observations), DRIVE_EVERY)
    film = [report.captioned(report.upscale(np.asarray(episode.observations[t])[None], 2)[0],
                             f"t {t}  return {returns[t]:+.1f}") for t in shown]
    report.save_gif(film, args.run / "dreams" / "driving.gif", fps=max(1, 50 // DRIVE_EVERY))
    return {"seed": seed, "steps": len(episode.rewards), "return": float(returns[-1]), "every": DRIVE_EVERY}


def load_controller(args, world: WorldModel) -> tuple[object, str]:
    """Who drives, and its description: the kept PPO policy of a ``--algo ppo`` run, else C's parameters (P,) from
    controller.pt, else None (the collection policy)."""
    if (args.run / ppo.BEST).exists():
        return ppo.load_best(args.run, world), f"the PPO policy that scored best ({ppo.BEST})"
    path = args.run / "controller.pt"
    if not path.exists():
        return None, f"the collection policy ({policy_kind(args)}; no controller.pt yet)"
    ctrl = world.load_controller(path)
    return ctrl["params"].float(), f"the trained controller ({ctrl['params_from']})"


def policy_kind(args) -> str:
    """The exploration policy the data was collected with, as config.json records it (brownian if it does not)."""
    kind = load_config(args.run).get("collect", {}).get("policy", "brownian")
    if kind not in envs.POLICIES:
        raise UsageError(f"{args.run / 'config.json'} records the collection policy {kind!r}, which is none of "
                         f"{', '.join(envs.POLICIES)}: fix its collect entry, or pass the --run 01_collect.py wrote")
    return kind


def make_actor(world: WorldModel, params: torch.Tensor | None, args, n: int) -> Actor:
    """Who drives n episodes: C (params (P,) on the dream's device, or a PPO policy), or the collection policy
    without one."""
    if params is None:
        return policy_actor(world.source, policy_kind(args), n, args.seed)
    if not isinstance(params, torch.Tensor):
        return ppo.actor(params, world.source)
    return controller_actor(world, params.expand(n, -1))


@torch.no_grad()
def show_v(world: WorldModel, refs, args, device: torch.device) -> dict:
    """reconstructions.png and latent_sweep.png; returns what the sweep shows."""
    vae = world.vae
    frames = sample_frames(refs, max(RECON_FRAMES, KL_FRAMES), args.seed)
    mu, logvar = vae.encode(to_input(torch.from_numpy(frames).to(device)))
    recon = decode(vae, mu[:RECON_FRAMES])
    plots.image_rows([frames[:RECON_FRAMES], recon], ["real frames", "V: decode(encode(frame)), z = μ"],
                     args.run / "dreams" / "reconstructions.png", "V: real frames and their reconstructions")
    dims, kl = report.informative_dims(mu.cpu().numpy(), logvar.cpu().numpy(), min(args.latent_dims, vae.z_dim))
    if len(dims):
        rows = report.latent_sweep_rows(lambda z: decode(vae, torch.from_numpy(z).to(device)), mu[0].cpu().numpy(),
                                        dims, SWEEP)
        plots.image_rows(rows, [f"z[{d}]  (KL {kl[d]:.2f})" for d in dims], args.run / "dreams" / "latent_sweep.png",
                         f"V: one frame's z, dimension d set to {SWEEP[0]:g} … {SWEEP[-1]:g}")
    return {"dims": [int(d) for d in dims], "kl": [float(kl[d]) for d in dims], "low": SWEEP[0], "high": SWEEP[-1]}


@torch.no_grad()
def show_dreams(world: WorldModel, starts: StartFrames, actor: Actor, driver: str, args, device: torch.device) -> dict:
    """dream_<i>.gif (and .mp4) for --dreams dreams from real frames, rolled out as one batch."""
    begun = starts.draw(episode_seeds(args.seed, Purpose.DREAMS, 0, args.dreams))
    z0, state = begin(world.mdnrnn, begun, device)
    result = dream(world.mdnrnn, world.source, z0, state, actor, args.steps, args.temperature,
                   torch.Generator(device).manual_seed(args.seed), record=True)
    frames = decode(world.vae, result.z)  # (T+1, N, 64, 64, 3)
    for old in (args.run / "dreams").glob("dream_*.*"):  # an earlier run's dreams, maybe more than --dreams
        old.unlink()
    for i in range(args.dreams):
        n = int(result.lengths[i])
        film = report.dream_film(frames[: n + 1, i], result.rewards[:n, i], result.done_prob[:n, i], f"dream {i}")
        report.save_gif(film, args.run / "dreams" / f"dream_{i}.gif")
        report.save_mp4(film, args.run / "dreams" / f"dream_{i}.mp4")
    return {"driver": driver, "temperature": args.temperature, "steps": args.steps,
            "returns": result.returns.tolist(), "lengths": result.lengths.tolist(),
            "starts": [{"episode": int(e), "t": int(t)} for e, t in zip(begun.episode, begun.t)]}


def show_real_vs_dream(world: WorldModel, actor: Actor, driver: str, args) -> dict:
    """real_vs_dream.gif (real | dream, the error plot under them) and real_vs_dream_error.png."""
    c = real_vs_dream(world, actor, args.seed, args.steps, args.temperature)
    plot, columns = report.error_figure(c.error, c.floor, args.run / "dreams" / "real_vs_dream_error.png")
    film = report.comparison_film(c.real, c.dream, plot, columns, args.temperature)
    report.save_gif(film, args.run / "dreams" / "real_vs_dream.gif")
    report.save_mp4(film, args.run / "dreams" / "real_vs_dream.mp4")
    view = report.world_view_film(c.real, c.recon, c.predicted, f"driven by {driver}", every=VIEW_EVERY)
    report.save_gif(view, args.run / "dreams" / "world_view.gif")
    report.save_mp4(view, args.run / "dreams" / "world_view.mp4")
    return {"seed": args.seed, "driver": driver, "steps": len(c.real) - 1, "real_return": float(c.real_rewards.sum()),
            "dream_return": float(c.dream_rewards.sum()), "mean_error": float(c.error[1:].mean()),
            "mean_floor": float(c.floor.mean()), "error": c.error.tolist(), "floor": c.floor.tolist()}

