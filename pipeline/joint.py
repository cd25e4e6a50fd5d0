"""Training V, M and the inverse model f_inv together, on one weighted loss, and keeping the balance.

    L = λ_vae · L_V + L_M + λ_inv · L_inv

The weights follow a recipe from a World Models work log on Sonic (Wassname, 2018): train a little with every
weight at 1 and record how much each loss went down; then choose the weights so that the *weighted*
reductions are within an order of magnitude of each other and rank V first, M second and f_inv third. Its
example: reductions of 1800 (V), 5 (M) and 2.5 (f_inv) at weight 1 give λ_vae = 1/100 and λ_inv = 1, weighted
reductions 18, 5 and 2.5. The log's warning is why the order matters: if M's loss dominates, V learns
blank frames M predicts perfectly; if f_inv's dominates, V encodes only the action.

``balance`` applies the recipe with M's weight fixed at 1 and powers of ten for the others (the log's choice),
and ``CollapseGuard`` stops a run in which one of the two failures shows.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from pipeline.errors import RunFailed, UsageError

PARTS = ("vae", "mdn", "inverse")  # in the order the recipe prefers their reductions
NAMES = {"vae": "V", "mdn": "M", "inverse": "f_inv"}


def weighted(parts: dict[str, float], weights: dict[str, float]):
    """λ_vae · L_V + L_M + λ_inv · L_inv (tensors or numbers; M's weight is 1 unless ``weights`` says)."""
    return sum(weights.get(k, 1.0) * parts[k] for k in PARTS)


@dataclass
class Balance:
    weights: dict[str, float]
    reductions: dict[str, float]  # how much each loss went down over the calibration, at weight 1
    reason: str

    @property
    def weighted_reductions(self) -> dict[str, float]:
        return {k: self.weights[k] * self.reductions[k] for k in PARTS}


def _power_of_ten(x: float, up: bool) -> float:
    exponent = round(math.log10(x), 9)  # an exact power of ten stays one
    return 10.0 ** (math.ceil(exponent) if up else math.floor(exponent))


def balance(history: list[dict[str, float]]) -> Balance:
    """The weights for ``history``, the three losses (``PARTS``) at each step of a calibration run with every
    weight at 1, first to last.

    M's weight stays 1. λ_vae is the smallest power of ten that puts V's weighted reduction at or above M's
    (so within ten times it); λ_inv the largest that keeps f_inv's at or below M's. Should V's then exceed
    f_inv's more than tenfold, λ_inv is raised until it does not: every weighted reduction ends within an
    order of magnitude of the others, ranked V ≥ M ≥ f_inv."""
    if len(history) < 2:
        raise UsageError("--balance auto needs at least two calibration points: calibrate for longer")
    first, last = history[0], history[-1]
    reductions = {k: float(first[k] - last[k]) for k in PARTS}
    for k in PARTS:
        if not reductions[k] > 0:
            raise UsageError(f"--balance auto: {NAMES[k]}'s loss did not go down during the calibration "
                             f"({first[k]:.4g} → {last[k]:.4g}): calibrate for longer, or set --vae-weight and "
                             "--inverse-weight by hand")
    r = reductions
    weights = {"mdn": 1.0, "vae": _power_of_ten(r["mdn"] / r["vae"], up=True),
               "inverse": _power_of_ten(r["mdn"] / r["inverse"], up=False)}
    raised = weights["vae"] * r["vae"] > 10 * weights["inverse"] * r["inverse"]
    if raised:
        weights["inverse"] = weights["vae"] * r["vae"] / (10 * r["inverse"])
    done = Balance(weights, reductions, "")
    w = done.weighted_reductions
    done.reason = (f"over the calibration (weights 1) the losses went down by V {r['vae']:.4g}, M {r['mdn']:.4g}, "
                   f"f_inv {r['inverse']:.4g}; λ_vae = {weights['vae']:.3g} and λ_inv = {weights['inverse']:.3g} "
                   f"make the weighted reductions {w['vae']:.3g}, {w['mdn']:.3g}, {w['inverse']:.3g}: V ≥ M ≥ f_inv, "
                   "within an order of magnitude" + (" (λ_inv raised to keep V's within ten times f_inv's)"
                                                      if raised else ""))
    return done


@dataclass
class CollapseGuard:
    """Stops joint training when V gives up the frames: its reconstruction loss above ``recon_limit``, or the
    inverse model's fit (accuracy for discrete actions, R² for continuous ones) at or above ``fit_limit``, which
    means z holds the action and little else. The message says which loss took over."""

    recon_limit: float
    fit_limit: float

    def check(self, recon: float, fit: float, where: str) -> None:
        """Raise ``RunFailed`` (one line) if the run has collapsed at ``where`` (e.g. "epoch 3")."""
        if fit >= self.fit_limit:
            raise RunFailed(f"joint training collapsed at {where}: f_inv's loss took over (its fit {fit:.3f} reached "
                            f"the limit {self.fit_limit:g}: z holds the action and little of the frame; V's "
                            f"reconstruction loss {recon:.4g}); the last good checkpoint is kept: lower "
                            "--inverse-weight, or use --balance auto")
        if recon > self.recon_limit:
            raise RunFailed(f"joint training collapsed at {where}: M's loss took over (V's reconstruction loss "
                            f"{recon:.4g} passed the limit {self.recon_limit:.4g}: V is drifting to frames M "
                            f"predicts easily; f_inv's fit {fit:.3f}); the last good checkpoint is kept: "
                            "raise --vae-weight, or use --balance auto")
