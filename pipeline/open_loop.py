"""Scoring a trained M on held-out episodes, the same way for every core (compare_cores.py, compare_joint.py).

Open-loop prediction: M reads the real z and actions up to a start step t0 (teacher forcing), then runs
on its own: each next z is the mixture's mean (the expected value of p(z_{t+1})), fed back with the real
actions, for up to K steps. The predicted z at t0 + k is decoded through V and compared with the real
frame at t0 + k (mean squared error per pixel, in [0, 1] units). Dreaming cores (svsg) run on their
prior after t0.
"""
from __future__ import annotations

import numpy as np
import torch

from data.latents import LatentEpisode
from data.store import EpisodeRef, read_observations
from models.mdnrnn import MDNRNN, mixture_mean
from models.vae import ConvVAE, to_input
from pipeline.contract.cli import MAX_STEPS, positive_int


@torch.no_grad()
def open_loop_errors(model: MDNRNN, vae: ConvVAE, episodes: list[LatentEpisode], refs: dict[int, EpisodeRef],
                     horizons: list[int], starts_per_episode: int, seed: int) -> dict[int, float]:
    """Mean per-pixel squared error of decoded k-step open-loop predictions, for each k in ``horizons``."""
    model.eval()
    vae.eval()
    rng = np.random.default_rng(seed)
    horizon = max(horizons)
    errors: dict[int, list[float]] = {k: [] for k in horizons}
    for ep in episodes:
        if ep.length <= horizon:
            continue
        frames = read_observations(refs[ep.id])
        for t0 in rng.integers(1, ep.length - horizon + 1, size=starts_per_episode):
            z = torch.from_numpy(ep.mu[: t0 + 1]).unsqueeze(0)  # real z_0 … z_t0
            a = torch.from_numpy(ep.actions[: t0 + horizon]).unsqueeze(0)
            _, state, _ = model(z[:, :t0], a[:, :t0])  # teacher-forced prefix: state after z_{t0−1}, a_{t0−1}
            z_t = z[:, t0]
            predicted = []
            for k in range(horizon):
                out, state = model.step(z_t, a[:, t0 + k], state, dream=k > 0)
                z_t = mixture_mean(out)
                predicted.append(z_t)
            decoded = vae.decode(torch.cat(predicted))  # (K, 3, 64, 64), frame t0+1 … t0+K
            real = to_input(torch.from_numpy(frames[t0 + 1: t0 + horizon + 1]))
            per_step = (decoded - real).pow(2).mean(dim=(1, 2, 3))
            for k in horizons:
                errors[k].append(float(per_step[k - 1]))
    return {k: float(np.mean(v)) if v else float("nan") for k, v in errors.items()}


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def markdown_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """rows of values → a markdown table; columns are (key, header, format)."""
    lines = ["| " + " | ".join(h for _, h, _ in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for key, _, fmt in columns:
            value = row.get(key)
            cells.append("–" if value is None or (isinstance(value, float) and np.isnan(value)) else format(value, fmt))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def add_open_loop_flags(parser) -> None:
    """--horizons and --starts: where and how far the open-loop error is measured."""
    parser.add_argument("--horizons", default="1,5,10,30", help="open-loop prediction horizons k (steps ahead)")
    parser.add_argument("--starts", type=positive_int, default=4, help="open-loop start points per held-out episode")


def parse_horizons(parser, text: str) -> list[int]:
    """``--horizons`` "1,5,10,30" → sorted distinct steps ahead; anything else is the parser's one-line error."""
    try:
        horizons = sorted({int(k) for k in text.split(",")})
    except ValueError:
        parser.error(f"argument --horizons: {text!r} is not a comma-separated list of integers")
    if not horizons or horizons[0] < 1 or horizons[-1] > MAX_STEPS:
        parser.error(f"argument --horizons: horizons must be positive integers up to {MAX_STEPS}")
    return horizons
