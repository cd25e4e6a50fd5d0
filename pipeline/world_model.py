"""A run's trained V and M, loaded and checked together (``WorldModel``), and how C's outputs become env
actions (``controller_actions``).
"""
from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import envs
from envs.base import EnvSource
from envs.carracing import CarRacing
from envs.shapeherd import ShapeHerd
from models.controller import num_params
from models.mdnrnn import MDNRNN
from models.vae import ConvVAE
from pipeline.contract import checkpoint
from pipeline.contract.errors import UsageError


@dataclass
class WorldModel:
    """Trained V and M of a run, plus the env source they were trained on."""

    source: envs.EnvSource
    vae: ConvVAE
    mdnrnn: MDNRNN
    vae_fingerprint: str | None = None  # the weights hash of V (checkpoint.weights_hash); None: not checked

    @classmethod
    def load(cls, run: Path, env: str, state: str | None = None) -> WorldModel:
        """V and M of ``run``; a UsageError if M was not trained on this V's z or on this env's actions."""
        vae_state = checkpoint.load(run / "vae.pt", "02_train_vae.py")
        m_state = checkpoint.load(run / "mdnrnn.pt", "03_train_mdnrnn.py")
        source = envs.get(env, state)
        z_v, z_m = vae_state["config"]["z_dim"], m_state["config"]["z_dim"]
        if z_v != z_m:
            raise UsageError(f"{run / 'mdnrnn.pt'} reads z of size {z_m} but {run / 'vae.pt'} encodes to {z_v}: "
                             "run 03_train_mdnrnn.py again on this V (or restore the vae.pt M was trained on)")
        if m_state["config"]["action_dim"] != source.action_dim:
            raise UsageError(f"{run / 'mdnrnn.pt'} was trained on {m_state['config']['action_dim']} action inputs but "
                             f"--env {env} has {source.action_dim}: pass the --env it was trained on, or another --run")
        fingerprint = checkpoint.weights_hash(vae_state["model"])
        if m_state.get("vae_fingerprint", fingerprint) != fingerprint:
            raise UsageError(f"{run / 'mdnrnn.pt'} was trained on the codes of another V than {run / 'vae.pt'} "
                             "(retrained since?): run 03_train_mdnrnn.py again on this V")
        return cls(source, ConvVAE.from_state(vae_state).eval(), MDNRNN.from_state(m_state).eval(), fingerprint)

    def fingerprint(self) -> str:
        """A digest of V's and M's weights: what a controller evolved on them is tied to."""
        return fingerprint_of(self.vae.state_dict(), self.mdnrnn.state_dict())

    @classmethod
    @contextmanager
    def from_bytes(cls, files: dict[str, bytes], env: str, state: str | None = None) -> Iterator[tuple[WorldModel, Path]]:
        """V and M from checkpoint bytes (``files``: name → bytes, vae.pt and mdnrnn.pt among them), as a worker on
        another machine receives them; yields the world and the folder the files are unpacked in, for the others."""
        with tempfile.TemporaryDirectory() as tmp:
            for name, blob in files.items():
                Path(tmp, name).write_bytes(blob)
            yield cls.load(Path(tmp), env, state), Path(tmp)

    def check_controller(self, ctrl: dict, path: Path, flag: str | None = None) -> None:
        """Refuse C's checkpoint ``ctrl`` (read from ``path``; given by ``flag``, if a flag named it) if its sizes do not
        fit these V and M, or it was evolved on other V and M than these."""
        if ctrl["config"]["in_dim"] != self.controller_in or ctrl["config"]["out_dim"] != self.controller_out:
            remedy = f"pass {flag} a controller evolved on them" if flag else "retrain it with 04_train_controller.py"
            raise UsageError(f"{path} has {ctrl['config']} inputs/outputs, but V and M of this run give "
                             f"{self.controller_in} → {self.controller_out}: {remedy}")
        check_controller(ctrl, path, self.fingerprint(), flag)

    def load_controller(self, path: Path, flag: str | None = None) -> dict:
        """C's checkpoint at ``path`` (given by ``flag``, if a flag named it), refused in one line if it is missing,
        damaged or does not fit these V and M (``check_controller``)."""
        if flag and not path.exists():
            raise UsageError(f"{flag} {path}: no such file; pass the controller.pt of a run with these V and M")
        ctrl = checkpoint.load(path, "04_train_controller.py")
        self.check_controller(ctrl, path, flag)
        return ctrl

    @property
    def controller_in(self) -> int:
        return self.vae.z_dim + self.mdnrnn.state_size

    @property
    def controller_out(self) -> int:
        return self.source.action_dim

    @property
    def num_params(self) -> int:
        return num_params(self.controller_in, self.controller_out)


def fingerprint_of(vae_weights: dict, mdnrnn_weights: dict) -> str:
    """``WorldModel.fingerprint`` from V's and M's state dicts (a checkpoint's ``"model"``), without building them."""
    return checkpoint.weights_hash({**{f"vae.{k}": v for k, v in vae_weights.items()},
                                    **{f"mdnrnn.{k}": v for k, v in mdnrnn_weights.items()}})


def check_controller(ctrl: dict, path: Path, world: str, flag: str | None = None) -> None:
    """C's checkpoint records the fingerprint of the V and M it was evolved on (``"world"``); refuse it, in one
    line, when that is not ``world`` (V or M retrained since): it would be scored, dreamed with or shipped on
    a world it never saw. A checkpoint that records none (an older version's) cannot tell, and is taken as it is.
    ``flag``: the flag that named ``path``, if one did (the remedy is then another controller, not a new C)."""
    made_on = ctrl.get("world")
    if made_on is None or made_on == world:
        return
    if flag:
        raise UsageError(f"{flag} {path} was evolved on another V and M than this run's: pass {flag} a controller "
                         "evolved on this run's vae.pt and mdnrnn.pt")
    raise UsageError(f"{path} was evolved on another V and M than this run's (retrained since?): delete it and "
                     f"{path.parent / 'es_state.pkl'}, and run 04_train_controller.py again to evolve C on the "
                     "current ones, or restore the vae.pt and mdnrnn.pt it was evolved on")


# Sources whose ``controller_action`` computes each action component from C's outputs by elementwise numpy
# operations only, indexing the outputs by component: given the outputs transposed, (A, N), it maps all N
# rows in one call, value for value.
_COLUMNWISE = (CarRacing.controller_action, ShapeHerd.controller_action)


def controller_actions(source: envs.EnvSource, out: np.ndarray) -> np.ndarray | list:
    """C's outputs for N episodes (N, A) → their N env actions, each exactly ``source.controller_action`` of its
    row: one vectorised call for CarRacing and ShapeHerd ((N, A) float32) and discrete sources' argmax (a list
    of ints), one call per row otherwise."""
    mapping = type(source).controller_action
    if mapping in _COLUMNWISE:
        return np.ascontiguousarray(source.controller_action(out.T).T)
    if source.discrete and mapping is EnvSource.controller_action:
        return out.argmax(axis=1).tolist()
    return [source.controller_action(o) for o in out]
