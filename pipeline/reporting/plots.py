"""PNG figures: loss curves and image grids."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from data.atomic import atomic
from pipeline.reporting import metrics


def pyplot():
    """matplotlib's pyplot on the Agg backend, imported on first use: a stage that stops at its flags or its
    checks, or only scores, does not pay for the import (half a second of every stage's start)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def curves(csv_path: Path, x: str, ys: list[str], out: Path, title: str, logy: bool = False) -> None:
    """Plot columns ``ys`` of a metrics CSV against ``x``."""
    rows = metrics.read(csv_path)
    fig, ax = pyplot().subplots(figsize=(7, 4))
    for y in ys:
        pts = [(r[x], r[y]) for r in rows if y in r and np.isfinite(r[y])]
        if pts:
            ax.plot(*zip(*pts), label=y, marker="." if len(pts) < 30 else None)
    ax.set_xlabel(x)
    ax.set_title(title)
    if logy:
        ax.set_yscale("symlog")
    ax.grid(alpha=0.3)
    ax.legend()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    save(fig, out)


def score_vs_budget(csv_path: Path, out: Path, title: str) -> None:
    """The CMA mean's real-env score (mean ± std of its periodic scorings) and the population's mean fitness
    against what they cost: cumulative env steps (left) and cumulative wall time (right), from controller.csv."""
    rows = metrics.read(csv_path)
    steps = np.cumsum([r.get("env_steps", 0) for r in rows])
    hours = np.cumsum([r.get("seconds", 0.0) for r in rows]) / 3600
    scored = [i for i, r in enumerate(rows) if np.isfinite(r.get("eval_mean", np.nan))]
    fig, axes = pyplot().subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, x, label in ((axes[0], steps, "real env steps (all of them: training and scoring)"),
                         (axes[1], hours, "wall time (hours)")):
        ax.plot(x, [r.get("mean", np.nan) for r in rows], color="tab:gray", lw=0.8, label="population mean fitness")
        if scored:
            mean = np.array([rows[i]["eval_mean"] for i in scored])
            std = np.array([rows[i].get("eval_std", 0.0) for i in scored])
            ax.errorbar(x[scored], mean, yerr=std, marker="o", capsize=3, color="tab:blue",
                        label="CMA mean: real-env score ± std")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("return")
    axes[0].legend(loc="lower right")
    fig.suptitle(title)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    save(fig, out)


def rounds(csv_path: Path, out: Path) -> None:
    """Iterative training round by round (metrics/rounds.csv): C's real and dream returns and M's calibration (its
    dream of C against the real episodes from the same first frames) against rounds (left) and real env steps
    (middle); M's NLL on each round's new episodes before and after fine-tuning (right)."""
    rows = metrics.read(csv_path)
    col = lambda name: np.array([r.get(name, np.nan) for r in rows], dtype=float)  # noqa: E731
    fig, axes = pyplot().subplots(1, 3, figsize=(15, 4))
    for ax, x, label in ((axes[0], col("round"), "round"), (axes[1], col("real_env_steps"), "real env steps")):
        ax.errorbar(x, col("c_real_return"), yerr=col("c_real_std"), marker="o", capsize=3, label="C, real env")
        ax.plot(x, col("c_dream_return"), marker="s", label="C, M's dream")
        ax.plot(x, col("calibration_dream"), ls="--", marker=".", label="calibration: dream from real starts")
        ax.plot(x, col("calibration_real"), ls="--", marker=".", label="calibration: the real episodes")
        ax.set_xlabel(label)
        ax.set_ylabel("return")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    axes[2].plot(col("round"), col("nll_new_before"), marker="o", label="before fine-tuning")
    axes[2].plot(col("round"), col("nll_new_after"), marker="o", label="after fine-tuning")
    axes[2].set_xlabel("round")
    axes[2].set_ylabel("M's NLL on the round's new episodes")
    axes[2].grid(alpha=0.3)
    axes[2].legend(fontsize=8)
    fig.suptitle("iterative training")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    save(fig, out)


def save(fig, out: Path, dpi: int = 100) -> None:
    """Write ``fig`` as a PNG atomically (an interrupted write never replaces the last good figure), and close it."""
    with atomic(out) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    pyplot().close(fig)


def image_rows(rows: list[np.ndarray], labels: list[str], out: Path, title: str) -> None:
    """Each entry of ``rows`` is (N, 64, 64, 3) uint8; drawn as one labelled row of frames."""
    n = max(len(r) for r in rows)
    fig, axes = pyplot().subplots(len(rows), n, figsize=(1.2 * n, 1.3 * len(rows)), squeeze=False)
    for i, (row, label) in enumerate(zip(rows, labels)):
        for j in range(n):
            ax = axes[i, j]
            ax.axis("off")
            if j < len(row):
                ax.imshow(row[j])
        axes[i, 0].set_title(label, fontsize=8, loc="left")
    fig.suptitle(title)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    save(fig, out)
