"""PNG figures: loss curves and image grids."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from data.atomic import atomic  # noqa: E402
from pipeline import metrics  # noqa: E402


def curves(csv_path: Path, x: str, ys: list[str], out: Path, title: str, logy: bool = False) -> None:
    """Plot columns ``ys`` of a metrics CSV against ``x``."""
    rows = metrics.read(csv_path)
    fig, ax = plt.subplots(figsize=(7, 4))
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


def save(fig, out: Path, dpi: int = 100) -> None:
    """Write ``fig`` as a PNG atomically (an interrupted write never replaces the last good figure), and close it."""
    with atomic(out) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)


def image_rows(rows: list[np.ndarray], labels: list[str], out: Path, title: str) -> None:
    """Each entry of ``rows`` is (N, 64, 64, 3) uint8; drawn as one labelled row of frames."""
    n = max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), n, figsize=(1.2 * n, 1.3 * len(rows)), squeeze=False)
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
