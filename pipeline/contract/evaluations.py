"""Every real-env score a run was given, kept: ``<run>/controller_eval.json``, one record per ``--evaluate``.

A score is only honest on episodes no choice was made on. So the seeds come in numbered *blocks* of the EVALUATE
stream (``pipeline.contract.seeding``): block b is ``episode_seeds(seed, EVALUATE, b, N)``. Each record says which
block it used and which controller it scored (the digest of its parameters), and an evaluation never replaces an
earlier one. Scoring a block that already scored another controller is allowed, but said: the block has become a
selection block, and a score on it no longer counts as fresh.

A *published* score (``--evaluate N --publish``) is the mean over ``PUBLISHED_BLOCKS`` disjoint blocks of
N ≥ 100 episodes that this run never scored before, for the final controller only, with its 95 % confidence
interval.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import math
from pathlib import Path

import numpy as np

from pipeline.contract.errors import UsageError
from pipeline.contract.runconfig import atomic_write_text

FILE = "controller_eval.json"
PUBLISHED_BLOCKS = 3
PUBLISHED_MIN_EPISODES = 100
Z_95 = 1.959963984540054


def interval95(returns: np.ndarray) -> tuple[float, float]:
    """The normal-approximation 95 % confidence interval of the mean of ``returns`` (sample std, n − 1)."""
    r = np.asarray(returns, dtype=float)
    if len(r) < 2:
        return float("nan"), float("nan")
    half = Z_95 * r.std(ddof=1) / math.sqrt(len(r))
    return float(r.mean() - half), float(r.mean() + half)


def digest(params: np.ndarray | bytes) -> str:
    """A short digest of a controller's parameters (or of a policy file's bytes)."""
    blob = params if isinstance(params, bytes) else np.ascontiguousarray(params, dtype=np.float32).tobytes()
    return hashlib.sha256(blob).hexdigest()[:16]


def load(run: Path) -> list[dict]:
    """Every evaluation of ``run``, oldest first. A file written before records were kept (one evaluation, on
    block 0) reads as a list of that one."""
    path = run / FILE
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        raise UsageError(f"{path} is damaged: move it aside (it holds this run's scores) and score again") from None
    if isinstance(data, dict) and "evaluations" in data:
        return list(data["evaluations"])
    if isinstance(data, dict) and "mean" in data:
        return [{"block": 0, **data}]
    raise UsageError(f"{path} is not a record of evaluations: move it aside and score again")


def latest(run: Path, published: bool | None = None) -> dict | None:
    """The newest evaluation (the newest published one with ``published=True``), or None."""
    found = [e for e in load(run) if published is None or bool(e.get("published")) == published]
    return found[-1] if found else None


def used_blocks(run: Path) -> dict[int, set[str]]:
    """Block → the digests of the controllers scored on it (an unknown controller counts as "")."""
    used: dict[int, set[str]] = {}
    for e in load(run):
        for block in e.get("blocks", [e.get("block", 0)]):
            used.setdefault(int(block), set()).add(e.get("controller", ""))
    return used


def fresh_blocks(run: Path, count: int, start: int = 1) -> list[int]:
    """``count`` block numbers from ``start`` on that no evaluation of ``run`` has used."""
    used, blocks, b = used_blocks(run), [], start
    while len(blocks) < count:
        if b not in used:
            blocks.append(b)
        b += 1
    return blocks


def record(run: Path, returns_by_block: dict[int, np.ndarray], controller: str, **details) -> dict:
    """Append one evaluation (over one block, or several for a published score) and return it."""
    returns = np.concatenate([np.asarray(r, dtype=float) for r in returns_by_block.values()])
    low, high = interval95(returns)
    entry = {
        "episodes": int(len(returns)), "mean": float(returns.mean()), "std": float(returns.std()),
        "ci95": [low, high], "min": float(returns.min()), "max": float(returns.max()),
        "block": int(next(iter(returns_by_block))), "blocks": [int(b) for b in returns_by_block],
        "block_means": [float(np.mean(r)) for r in returns_by_block.values()],
        "controller": controller, "date": datetime.date.today().isoformat(), **details,
        "returns": returns.tolist(),
    }
    history = load(run) + [entry]
    atomic_write_text(run / FILE, json.dumps({"evaluations": history}, indent=2))
    return entry


def describe(entry: dict) -> str:
    """One line: mean ± std, the 95 % interval, and over what."""
    low, high = entry["ci95"]
    blocks = entry.get("blocks", [entry.get("block", 0)])
    where = f"block {blocks[0]}" if len(blocks) == 1 else f"blocks {', '.join(map(str, blocks))}"
    return (f"{entry['mean']:.1f} ± {entry['std']:.1f} over {entry['episodes']} episodes (95 % CI of the mean "
            f"{low:.1f} – {high:.1f}; {where})")
