"""A trained C as a collection policy: ``01_collect.py --policy controller --run R [--noise σ]``.

The policy sees what C sees when it is scored (V's sampled z of each frame, M's state after reading the last z
and action) and acts as C does, with Gaussian noise of scale σ added to C's outputs before they are mapped to the
env's action (CarRacing: steering, gas, brake; a discrete source: the argmax of the noisy outputs), so the data
covers the controller's neighbourhood and not only its single path. Every random draw comes from the episode's
own generator: an episode is replayable from its seed, whatever worker played it.

The policy travels to workers as bytes (V's, M's and C's checkpoints), as the evaluator's workers receive V and M.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from models.controller import batched
from models.vae import sample_z
from pipeline.contract import checkpoint
from pipeline.contract.errors import UsageError
from pipeline.encoder_precision import FP32, Precision
from pipeline.world_model import WorldModel, check_controller, controller_actions, fingerprint_of

FILES = ("vae.pt", "mdnrnn.pt", "controller.pt")


def controller_files(run: Path) -> dict[str, bytes]:
    """The checkpoints a controller policy needs, read once in the stage's process; refused in one line when one
    is missing, or when C was evolved on other V and M than the run's (retrained since)."""
    for name in FILES:
        if not (run / name).exists():
            raise UsageError(f"--policy controller plays {run / name}, which is missing: train the run through "
                             f"04_train_controller.py first, or pass another --run")
    files = {name: (run / name).read_bytes() for name in FILES}
    vae, m = (checkpoint.load(run / name, made_by) for name, made_by in (("vae.pt", "02_train_vae.py"),
                                                                        ("mdnrnn.pt", "03_train_mdnrnn.py")))
    check_controller(checkpoint.load(run / "controller.pt", "04_train_controller.py"), run / "controller.pt",
                     fingerprint_of(vae["model"], m["model"]))
    return files


class ControllerPolicy:
    """C of a run acting on the frames of one episode at a time (``reset(seed)``, then ``act(frame)``); V's encoder at
    ``precision`` (``pipeline.encoder_precision``; fp32 is V as trained)."""

    def __init__(self, files: dict[str, bytes], env: str, state: str | None, noise: float,
                 precision: Precision = FP32):
        torch.set_num_threads(1)
        with WorldModel.from_bytes(files, env, state) as (self.world, folder):
            ctrl = checkpoint.load(folder / "controller.pt", "04_train_controller.py")
            self.world.check_controller(ctrl, Path("controller.pt"))  # the run's; this copy's folder is temporary
        self.params = ctrl["params"].float()[None]
        self.encode = precision.encoder(self.world.vae)
        self.noise = noise
        self.rng = self.m_state = self.last = None

    def reset(self, seed: int) -> None:
        self.rng = np.random.default_rng([int(seed), 1])  # apart from the env's own use of the seed
        self.m_state = self.world.mdnrnn.initial_state(1)
        self.last = None

    @torch.no_grad()
    def act(self, frame: np.ndarray):
        """The action for ``frame`` (64×64×3 uint8), after M has read the previous z and action."""
        w = self.world
        mu, logvar = self.encode(np.array(frame[None]))
        z = sample_z(mu, logvar, torch.from_numpy(self.rng.standard_normal(mu.shape, dtype=np.float32)))
        if self.last is not None:
            self.m_state = w.mdnrnn.advance(*self.last, self.m_state)
        out = batched(self.params, torch.cat([z, w.mdnrnn.controller_features(self.m_state)], dim=1),
                      w.controller_out).numpy()
        if self.noise > 0:
            out = out + self.noise * self.rng.standard_normal(out.shape).astype(np.float32)
            if not w.source.discrete:
                out = np.clip(out, -1.0, 1.0)
        action = controller_actions(w.source, out)[0]
        a = torch.from_numpy(w.source.encode_actions(w.source.stored_actions([action])))
        self.last = (z, a)
        return action
