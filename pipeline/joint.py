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

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from data import atomic
from data import latents as latent_data
from data.frames import split
from data.store import read_episode
from models.inverse import InverseConfig, InverseModel
from models.mdnrnn import MDNRNN
from models.vae import ConvVAE, sample_z, to_input
from pipeline.contract import checkpoint
from pipeline.contract.errors import RunFailed, UsageError
from pipeline.reporting import plots
from pipeline.reporting.metrics import CsvLog
from pipeline.reporting.progress import bar, write
from pipeline.training import Averages, check_finite, check_weights, epoch_plan, mdn_terms

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
    means z holds the action and little else. The message says which loss took over and, from ``weights`` (the
    λs in use) and ``auto`` (whether ``--balance auto`` chose them), which weight to change."""

    recon_limit: float
    fit_limit: float
    weights: dict[str, float] = field(default_factory=lambda: {"vae": 1.0, "inverse": 1.0})
    auto: bool = False

    def _advice(self, flag: str, direction: str) -> str:
        key = "vae" if flag == "--vae-weight" else "inverse"
        chosen = "chosen by --balance auto" if self.auto else "set by hand"
        other = "" if self.auto else ", or try --balance auto"
        return (f"the last good checkpoint is kept: {direction} {flag} (now {self.weights[key]:.3g}, {chosen})"
                f"{other}")

    def check(self, recon: float, fit: float, reductions: dict[str, float], where: str) -> None:
        """Raise ``RunFailed`` (one line) if the run has collapsed at ``where`` (e.g. "epoch 3"). ``reductions``:
        the weighted reductions of M's and f_inv's losses so far; when V's reconstruction gives way, the larger
        one is the loss that took over."""
        if recon > self.recon_limit and reductions["inverse"] > reductions["mdn"]:
            raise RunFailed(f"joint training collapsed at {where}: f_inv's loss took over (V's reconstruction loss "
                            f"{recon:.4g} passed the limit {self.recon_limit:.4g} while f_inv's weighted reduction, "
                            f"{reductions['inverse']:.3g}, outgrew M's, {reductions['mdn']:.3g}: z is turning into the "
                            f"action); {self._advice('--inverse-weight', 'lower')}")
        if fit >= self.fit_limit:
            raise RunFailed(f"joint training collapsed at {where}: f_inv's loss took over (its fit {fit:.3f} reached "
                            f"the limit {self.fit_limit:g}: z holds the action and little of the frame; V's "
                            f"reconstruction loss {recon:.4g}); {self._advice('--inverse-weight', 'lower')}")
        if recon > self.recon_limit:
            raise RunFailed(f"joint training collapsed at {where}: M's loss took over (V's reconstruction loss "
                            f"{recon:.4g} passed the limit {self.recon_limit:.4g}: V is drifting to frames M "
                            f"predicts easily; f_inv's fit {fit:.3f}); {self._advice('--vae-weight', 'raise')}")


# -- the training loop: 03_train_mdnrnn.py --joint -------------------------------------------------------------

@dataclass
class FrameEpisode:
    """One episode as joint training reads it: frames, not V's codes, since V changes."""

    id: int
    frames: np.ndarray  # (T+1, 64, 64, 3) uint8
    actions: np.ndarray  # (T, A) as M reads them (one-hot for discrete actions)
    rewards: np.ndarray  # (T,)
    terminations: np.ndarray  # (T,)

    @property
    def length(self) -> int:
        return len(self.actions)


def frame_batch(episodes: list[FrameEpisode], picks: list[tuple[int, int]], seq_len: int) -> dict[str, torch.Tensor]:
    """The windows ``picks`` (``data.latents.windows``) padded to ``seq_len``: frames (B, L+1, 64, 64, 3),
    actions (B, L, A), rewards, dones and mask (B, L)."""
    padded = latent_data.pad_windows(episodes, picks, seq_len, {"frames": np.uint8})
    return {k: torch.from_numpy(v) for k, v in padded.items()}


def joint_terms(vae: ConvVAE, m: MDNRNN, inverse: InverseModel, b: dict, weights: dict, device: torch.device,
                done_weight: float) -> dict:
    """The three losses on a batch of frame windows, their weighted sum (``loss``) and f_inv's fit. V's loss is
    stage 02's, over the frames the windows hold; M's is stage 03's on z sampled from V now, so its gradient
    reaches V; f_inv's reads the same z."""
    frames, mask = b["frames"].to(device), b["mask"].to(device)
    batch, steps = frames.shape[:2]
    x = to_input(frames.reshape(-1, *frames.shape[2:]))
    mu, logvar = vae.encode(x)
    z = sample_z(mu, logvar, torch.randn_like(mu))
    held = torch.cat([mask[:, :1], mask], dim=1).reshape(-1).bool()  # frame 0 and each frame a step led to
    v = vae.loss(x[held], vae.decode(z[held]), mu[held], logvar[held])
    z = z.view(batch, steps, -1)
    m_batch = {"z": z[:, :-1], "z_next": z[:, 1:], "actions": b["actions"].to(device),
               "rewards": b["rewards"].to(device), "dones": b["dones"].to(device), "mask": mask}
    m_terms = mdn_terms(m, m_batch, device, done_weight)
    inv_loss, fit = inverse.loss(z[:, :-1], z[:, 1:], m_batch["actions"], mask)
    parts = {"vae": v["loss"], "mdn": m_terms["loss"], "inverse": inv_loss}
    return {"loss": weighted(parts, weights), **parts, "recon": v["recon"], "nll": m_terms["nll"],
            "fit": torch.tensor(next(iter(fit.values())))}


def optimizer(modules: tuple, lr: float, vae_lr: float) -> torch.optim.Adam:
    """The one Adam optimiser of joint training: V's weights at ``vae_lr``, M's and f_inv's at ``lr``. V starts
    trained and Adam moves every weight by about its rate per step whatever the loss weights, so at M's rate
    (1e-3) a trained CarRacing V's held-out reconstruction loss went from 12.5 to 80 in its first 8 steps; at
    stage 02's rate (1e-4) it held."""
    vae, *others = modules
    return torch.optim.Adam([{"params": list(vae.parameters()), "lr": vae_lr},
                             {"params": [p for mod in others for p in mod.parameters()]}], lr=lr)


def step(modules: tuple, opt: torch.optim.Optimizer, b: dict, weights: dict, device: torch.device,
         grad_clip: float, done_weight: float) -> dict:
    """One Adam step of V, M and f_inv together on the weighted loss; returns the terms, detached."""
    terms = joint_terms(*modules, b, weights, device, done_weight)
    opt.zero_grad(set_to_none=True)
    terms["loss"].backward()
    torch.nn.utils.clip_grad_norm_([p for mod in modules for p in mod.parameters()], grad_clip)
    opt.step()
    return {k: v.detach() for k, v in terms.items()}


@torch.no_grad()
def validate(modules: tuple, episodes: list[FrameEpisode], seq_len: int, batch: int, weights: dict,
             device: torch.device, done_weight: float, seed: int) -> dict[str, float]:
    """The terms over every window of ``episodes``, z drawn with a fixed seed (comparable across epochs)."""
    rng = np.random.default_rng(seed)
    picks = latent_data.windows(episodes, seq_len, rng)
    torch.manual_seed(seed)
    totals: dict[str, float] = {}
    for s in range(0, len(picks), batch):
        terms = joint_terms(*modules, frame_batch(episodes, picks[s: s + batch], seq_len), weights, device,
                            done_weight)
        for k, v in terms.items():
            totals[k] = totals.get(k, 0.0) + float(v) * len(picks[s: s + batch])
    return {k: v / len(picks) for k, v in totals.items()}


FIELDS = ["epoch", "step", *PARTS, "recon", "nll", "fit", *(f"val_{k}" for k in (*PARTS, "recon", "nll", "fit")),
          *(f"weighted_reduction_{k}" for k in PARTS), *(f"weight_{k}" for k in PARTS)]


def load_episodes(refs, source) -> list[FrameEpisode]:
    out = []
    for ref in refs:
        ep = read_episode(ref)
        out.append(FrameEpisode(ep.id, ep.observations, source.encode_actions(ep.actions), ep.rewards,
                                ep.terminations))
    return out


def calibrate(modules: tuple, episodes: list[FrameEpisode], args, device: torch.device) -> Balance:
    """``--calibration-steps`` steps on copies of the three models with every weight at 1, then ``balance`` on
    the losses at the start and the end (each the mean over a tenth of the steps, for less noise)."""
    trial = tuple(copy.deepcopy(mod) for mod in modules)
    opt = optimizer(trial, args.lr, args.vae_lr)
    ones = {k: 1.0 for k in PARTS}
    rng = np.random.default_rng([args.seed, 10**6])
    picks = latent_data.windows(episodes, args.seq_len, rng)
    history = []
    for _ in bar(range(args.calibration_steps), desc="--balance auto: calibration"):
        chosen = [picks[j] for j in rng.integers(0, len(picks), args.batch)]
        terms = step(trial, opt, frame_batch(episodes, chosen, args.seq_len), ones, device, args.grad_clip,
                     args.done_weight)
        history.append({k: float(terms[k]) for k in PARTS})
    tenth = max(1, len(history) // 10)
    ends = [{k: float(np.mean([h[k] for h in part])) for k in PARTS} for part in (history[:tenth], history[-tenth:])]
    return balance(ends)


def keep_stagewise_v(run) -> None:
    """Keep stage 02's V as ``vae_stagewise.pt`` before joint training begins (it replaces ``vae.pt`` when it ends):
    copied atomically, and copied again over a copy that does not load (one a full disk cut short before copies
    were atomic). Until ``joint.pt`` exists, ``vae.pt`` is still stage 02's V."""
    kept = run / "vae_stagewise.pt"
    if kept.exists():
        try:
            checkpoint.load(kept, "02_train_vae.py")
            return
        except UsageError:
            pass
    atomic.copy_file(run / "vae.pt", kept)


def train(args, vae_state: dict, config, refs, device: torch.device, dataset: str | None = None) -> dict:
    """Train V, M and f_inv together into ``args.run``; returns V's new state. Resumes from ``joint.pt``.
    ``dataset``: the digest of ``refs`` (``data.store.index_hash``), which V and M record.

    Writes vae.pt (the joint V; stage 02's is kept as vae_stagewise.pt), mdnrnn.pt, inverse.pt,
    metrics/joint.csv and plots/joint_losses.png, plots/joint_balance.png."""
    run, source = args.run, args.source
    train_refs, val_refs = split(refs, args.val_fraction)
    train_eps, val_eps = load_episodes(train_refs, source), load_episodes(val_refs or train_refs, source)
    vae = ConvVAE.from_state(vae_state).to(device)
    m = MDNRNN(config).to(device)
    inverse = InverseModel(InverseConfig(config.z_dim, config.action_dim, source.discrete)).to(device)
    modules = (vae, m, inverse)
    opt = optimizer(modules, args.lr, args.vae_lr)
    ckpt = run / "joint.pt"
    if ckpt.exists():
        state = checkpoint.load(ckpt, "03_train_mdnrnn.py --joint")
        for mod, key in zip(modules, ("vae", "mdnrnn", "inverse")):
            mod.load_state_dict(state[key])
        opt.load_state_dict(state["optimizer"])
        weights, limits, baseline = (state["config"][k] for k in ("weights", "limits", "baseline"))
        progress = state["progress"]
        print(f"resuming joint training from {ckpt}: epoch {progress['epoch']}")
    else:
        keep_stagewise_v(run)
        weights = {"vae": args.vae_weight, "mdn": 1.0, "inverse": args.inverse_weight}
        if args.balance == "auto":
            chosen = calibrate(modules, train_eps, args, device)
            weights = chosen.weights
            print(f"--balance auto: {chosen.reason}")
        baseline = validate(modules, val_eps, args.seq_len, args.batch, weights, device, args.done_weight, args.seed)
        limits = {"recon": args.collapse_recon * baseline["recon"], "fit": args.collapse_fit}
        progress = {"epoch": 0, "step": 0}
    guard = CollapseGuard(limits["recon"], limits["fit"], weights, auto=args.balance == "auto")
    print(f"joint training with λ_vae = {weights['vae']:.3g}, λ_inv = {weights['inverse']:.3g}; stops if V's "
          f"reconstruction loss passes {limits['recon']:.4g} or f_inv's fit reaches {limits['fit']:g}")
    log = CsvLog(run / "metrics" / "joint.csv", FIELDS, key="epoch", resume_after=progress["epoch"])
    for epoch in range(progress["epoch"], args.epochs):
        _, batches = epoch_plan(train_eps, args.seq_len, args.batch, args.seed, epoch)
        avg = Averages()
        for chosen in bar(batches, desc=f"joint epoch {epoch + 1}/{args.epochs}"):
            terms = step(modules, opt, frame_batch(train_eps, chosen, args.seq_len), weights, device, args.grad_clip,
                         args.done_weight)
            progress["step"] += 1
            check_finite(terms, f"step {progress['step']} (epoch {epoch + 1})")
            avg.add(terms, len(chosen))
        row = avg.pop()
        val = validate(modules, val_eps, args.seq_len, args.batch, weights, device, args.done_weight, args.seed)
        reduced = {k: weights[k] * (baseline[k] - val[k]) for k in PARTS}
        guard.check(val["recon"], val["fit"], reduced, f"epoch {epoch + 1}")  # before anything of this epoch is saved
        for mod in modules:
            check_weights(mod, f"epoch {epoch + 1}")
        progress["epoch"] = epoch + 1
        checkpoint.save(ckpt, {"vae": vae.state_dict(), "mdnrnn": m.state_dict(), "inverse": inverse.state_dict(),
                               "optimizer": opt.state_dict(), "progress": progress,
                               "config": {"weights": weights, "limits": limits, "baseline": baseline}})
        log.write(epoch=epoch + 1, step=progress["step"], **{k: row[k] for k in (*PARTS, "recon", "nll", "fit")},
                  **{f"val_{k}": val[k] for k in (*PARTS, "recon", "nll", "fit")},
                  **{f"weighted_reduction_{k}": reduced[k] for k in PARTS},
                  **{f"weight_{k}": weights[k] for k in PARTS})
        csv_path = run / "metrics" / "joint.csv"
        plots.curves(csv_path, "epoch", [f"val_{k}" for k in PARTS], run / "plots" / "joint_losses.png",
                     "joint training: validation loss of V, M and f_inv (unweighted)", logy=False)
        plots.curves(csv_path, "epoch", [f"weighted_reduction_{k}" for k in PARTS], run / "plots" / "joint_balance.png",
                     "weighted reduction since the start: λ·(start − now); the recipe wants V ≥ M ≥ f_inv", logy=False)
        write(f"epoch {epoch + 1}: V {val['vae']:.4g} (recon {val['recon']:.4g}), M {val['mdn']:.4g}, f_inv "
              f"{val['inverse']:.4g} (fit {val['fit']:.3f}); weighted reductions "
              + ", ".join(f"{NAMES[k]} {reduced[k]:.3g}" for k in PARTS))

    vae_out = {**vae.state(), "progress": {"epoch": args.epochs, "step": progress["step"], "frames": 0,
                                           "blocks_done": []}}
    fingerprint = checkpoint.weights_hash(vae.state_dict())
    record = checkpoint.dataset_record(refs, dataset) if dataset is not None else {}
    checkpoint.save(run / "vae.pt", {**vae_out, "fingerprint": fingerprint, **record})
    checkpoint.save(run / "inverse.pt", inverse.state())
    checkpoint.save(run / "mdnrnn.pt", {**m.state(), "progress": {"epoch": args.epochs, "step": progress["step"]},
                                        "vae_fingerprint": fingerprint, "joint": True, **record})
    print(f"V, M and f_inv trained jointly for {progress['epoch']} epoch(s): {run / 'vae.pt'}, {run / 'mdnrnn.pt'}, "
          f"{run / 'inverse.pt'}")
    return checkpoint.load(run / "vae.pt", "03_train_mdnrnn.py --joint")


def latent_pairs(episodes: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every step of latent episodes (z = mu) as f_inv reads it: z_t, z_{t+1} and a_t."""
    z = np.concatenate([e.mu[:-1] for e in episodes])
    z_next = np.concatenate([e.mu[1:] for e in episodes])
    a = np.concatenate([e.actions for e in episodes])
    return torch.from_numpy(z), torch.from_numpy(z_next), torch.from_numpy(a)


def action_fit(train: list, val: list, discrete: bool, seed: int, steps: int = 600, batch: int = 256) -> float:
    """How much of the action a z already holds: a fresh f_inv trained on the (z_t, z_{t+1}) pairs of ``train``
    (latent episodes, z = mu, V frozen) and scored on ``val``: accuracy (discrete) or R² (continuous)."""
    torch.manual_seed(seed)
    z, z_next, a = latent_pairs(train)
    model = InverseModel(InverseConfig(z.shape[1], a.shape[1], discrete))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        i = torch.from_numpy(rng.integers(0, len(z), batch))
        loss, _ = model.loss(z[i], z_next[i], a[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        _, fit = model.loss(*latent_pairs(val))
    return next(iter(fit.values()))
