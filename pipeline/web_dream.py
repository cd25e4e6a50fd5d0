"""05_dream.py --web: the dream as a web page, with V's decoder, M and C running in the browser.

``write`` fills a folder that any static file server can serve (``serve`` is this project's own):

    index.html, dream.js     the page (copied from pipeline/web/)
    dream.json               what the page needs: sizes, τ, the key table, C's action curves, the starts, the real episode
    models/*.onnx            V's decoder, one step of M, and C, exported by ``torch.onnx.export``
    real.png                 the real episode's frames, one under the other
    ort/                     ONNX Runtime Web's module and WebAssembly, copied from node_modules (npm ci)

The networks run only in ONNX Runtime Web; the page's own script samples z_{t+1} from M's mixture outputs as
``models.mdnrnn.sample`` does (``models.mixture_sampler.sample_with_draws`` is that sampler with its random draws
given, which the page's test hook is checked against), maps held keys to actions through a table made here from the
source's own ``keyboard_action``, and C's outputs to actions through curves made from its ``controller_action``.
"""
from __future__ import annotations

import copy
import functools
import http.server
import json
import shutil
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from envs.base import EnvSource, EnvUnavailable
from models.controller import batched
from models.mdnrnn import MDNRNN, MDNOutput
from models.vae import ConvVAE, sample_z, to_frames, to_input
from pipeline.contract import cli
from pipeline.contract.errors import RunFailed, UsageError
from pipeline.contract.seeding import Purpose, episode_seeds
from pipeline.dream_env import DONE_THRESHOLD, Actor, StartFrames, begin, record_real_episode
from pipeline.world_model import WorldModel

ROOT = Path(__file__).resolve().parents[1]
PAGE = Path(__file__).resolve().parent / "web"  # index.html and dream.js, copied as they are
ORT_DIST = ROOT / "node_modules" / "onnxruntime-web" / "dist"
# ONNX Runtime Web's WebAssembly build: the module the page imports, the loader it imports, and the binary.
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
MARKER = "dream.json"  # a folder holding it was written here, and may be replaced
STARTS = 6  # real frames the page's dreams can start from
OPSET = 17
KEYS = ("left", "right", "up", "down", "space")  # bit i of a key-table index: KEYS[i] is held
CURVE_POINTS = 257  # C's outputs in [-1, 1] at which each action dimension's mapping is tabulated
STOCHASTIC_CORES = ("vsg", "svsg")  # cores that draw random numbers inside a step, where the page cannot feed them
TOLERANCE = 1e-4  # the exported graphs against torch, on the same inputs


# -- the exported networks ---------------------------------------------------------------------------
class Decoder(nn.Module):
    """z (1, Z) → V's frame (1, 64, 64, 3) uint8, exactly ``to_frames(vae.decode(z))``."""

    def __init__(self, vae: ConvVAE):
        super().__init__()
        self.vae = vae

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return to_frames(self.vae.decode(z))


class MStep(nn.Module):
    """One dream step of M: z (1, Z), a (1, A) as M reads actions, the state's tensors → the mixture (logit_pi,
    mu, log_sigma, each (1, Z, K)), reward (1,), done logit (1,), then the next state's tensors."""

    def __init__(self, m: MDNRNN):
        super().__init__()
        self.m = m

    def forward(self, z: torch.Tensor, a: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out, state = self.m.step(z, a, tuple(state), dream=True)
        return (*mixture_and_heads(out), *state)


def mixture_and_heads(out: MDNOutput) -> tuple[torch.Tensor, ...]:
    """What the page reads of M's output, in the order ``MStep`` returns it."""
    return out.logit_pi, out.mu, out.log_sigma, out.reward, out.done_logit


class Controller(nn.Module):
    """C: z (1, Z) and M's state → tanh(W [z, h] + b) (1, A), h being what C reads of the state."""

    def __init__(self, m: MDNRNN, params: torch.Tensor, out_dim: int):
        super().__init__()
        self.m, self.out_dim = m, out_dim
        self.register_buffer("params", params.reshape(1, -1).float())

    def forward(self, z: torch.Tensor, *state: torch.Tensor) -> torch.Tensor:
        return batched(self.params, torch.cat([z, self.m.controller_features(tuple(state))], dim=1), self.out_dim)


def export(module: nn.Module, inputs: tuple, input_names: Sequence[str], output_names: Sequence[str], path: Path) -> None:
    """``torch.onnx.export`` with the TorchScript-based exporter (``dynamo=False``): it needs no onnxscript and
    exports M's LSTM as one ONNX LSTM node. The batch is fixed at 1 (the page drives one dream). Its deprecation
    and tracing warnings are silenced: ``check_exports`` compares every graph with torch instead."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, inputs, str(path), dynamo=False, input_names=list(input_names),
                          output_names=list(output_names), opset_version=OPSET)


def state_names(state: tuple) -> list[str]:
    return [f"state{i}" for i in range(len(state))]


# -- keys and C's actions as tables -------------------------------------------------------------------
def m_input(source: EnvSource, action) -> list[float]:
    """An env action → the vector M reads (one-hot for discrete sources)."""
    return source.encode_actions(source.stored_actions([action]))[0].tolist()


_LAST = object()  # a "last action" that no source makes: where keyboard_action returns it, the held keys pick none


def key_table(source: EnvSource) -> dict:
    """The source's ``keyboard_action`` as tables of what M reads: ``combos[i]`` for the held keys of bit mask i
    over ``KEYS`` (None: those keys pick no action, the last one is kept), ``digits[d - 1]`` for digit d held
    (discrete sources: the highest digit held wins over the arrows), ``first``: the action before any."""
    combos = []
    for mask in range(1 << len(KEYS)):
        held = frozenset(k for i, k in enumerate(KEYS) if mask >> i & 1)
        kept = source.keyboard_action(held, _LAST)
        combos.append(None if kept is _LAST else m_input(source, kept))
    digits = ([m_input(source, source.keyboard_action(frozenset({str(d)}), None))
               for d in range(1, min(9, source.action_dim) + 1)] if source.discrete else [])
    return {"order": list(KEYS), "combos": combos, "digits": digits,
            "first": m_input(source, source.keyboard_action(frozenset(), None)), "help": source.keyboard_help}


def action_curves(source: EnvSource) -> tuple[list | None, str | None]:
    """How the page maps C's tanh outputs to what M reads: ``("argmax", None)`` for a discrete source whose C
    picks by argmax (M reads it one-hot); for a Box source, per action dimension the values its
    ``controller_action`` gives at ``CURVE_POINTS`` outputs in [−1, 1], to interpolate linearly. Returns (None,
    why) when the mapping is not such a table: checked on random outputs, every dimension at once."""
    if source.discrete:
        if type(source).controller_action is not EnvSource.controller_action:
            return None, f"{source.name} maps C's outputs to actions its own way, which the page does not know"
        return "argmax", None
    grid = np.linspace(-1.0, 1.0, CURVE_POINTS, dtype=np.float32)
    table = np.array([m_input(source, source.controller_action(np.full(source.action_dim, g, np.float32))) for g in grid])
    outputs = np.random.default_rng(0).uniform(-1.0, 1.0, (256, source.action_dim)).astype(np.float32)
    exact = np.array([m_input(source, source.controller_action(o)) for o in outputs])
    read = np.stack([np.interp(outputs[:, j], grid, table[:, j]) for j in range(source.action_dim)], axis=1)
    scale = 1.0 + np.abs(table).max(axis=0)
    if not np.all(np.abs(read - exact) <= 1e-5 * scale):
        return None, f"{source.name}'s controller_action is not piecewise linear in each output alone"
    return table.T.tolist(), None


# -- the folder ------------------------------------------------------------------------------------
@dataclass
class Written:
    folder: Path
    starts: int
    real_steps: int  # 0: no real episode (the env cannot run here)
    controller: bool  # C can drive in the page


def write(folder: Path, world: WorldModel, starts: StartFrames, params: torch.Tensor | None, driver: str,
          actor: Actor, seed: int, steps: int, temperature: float) -> Written:
    """Write the page into ``folder`` (replaced whole if an earlier ``write`` made it; any other non-empty
    folder is refused). ``params``: C's parameters (P,), or None where C cannot run in the page (no controller.pt,
    or a PPO policy); ``actor`` drives the real episode (``steps`` steps, reset with ``seed``) that the page
    shows beside M's dream of its actions; ``driver`` says who that is. The folder is filled beside it and
    renamed into place, so an interrupted write leaves the earlier page as it was."""
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or (any(folder.iterdir()) and not (folder / MARKER).exists())):
        raise UsageError(f"--web {folder} exists and is not a folder this command wrote: pass a new or empty folder")
    core = world.mdnrnn.config.core
    if core in STOCHASTIC_CORES:
        raise UsageError(f"--web: M's core {core!r} draws random numbers inside each step, which the page cannot "
                         "reproduce; the page runs M with the lstm or attention core")
    onnxruntime = _onnxruntime()
    ort_files = _ort_files()
    vae, m = copy.deepcopy(world.vae).cpu().eval(), copy.deepcopy(world.mdnrnn).cpu().eval()
    curves, no_curves = action_curves(world.source)
    if params is None:
        controller_note = f"C cannot drive here: this run is driven by {driver}"
    elif curves is None:
        controller_note = f"C cannot drive here: {no_curves}"
    else:
        controller_note = None
    controller = Controller(m, params.detach().cpu(), world.source.action_dim).eval() if controller_note is None else None

    staging = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "ort").mkdir(parents=True)
    try:
        for name in ORT_FILES:
            shutil.copy2(ort_files / name, staging / "ort" / name)
        for name in ("index.html", "dream.js"):
            shutil.copy2(PAGE / name, staging / name)
        models = export_models(staging / "models", vae, m, controller, world.source.action_dim)
        begun = [_start_state(m, starts, s) for s in episode_seeds(seed, Purpose.DREAMS, 0, STARTS)]
        check_exports(onnxruntime, staging / "models", vae, m, controller, begun[0][:2], world.source.action_dim)
        real, real_note = _real_episode(world, vae, m, actor, driver, seed, steps, staging / "real.png")
        state0 = m.initial_state(1, "cpu")
        spec = {
            "env": world.source.name, "z_dim": vae.z_dim, "action_dim": world.source.action_dim,
            "mixtures": m.config.mixtures, "core": core, "temperature": temperature, "done_threshold": DONE_THRESHOLD,
            "state": [{"name": n, "shape": list(s.shape), "dtype": _dtype(s)} for n, s in zip(state_names(state0), state0)],
            "models": models, "keys": key_table(world.source),
            "controller": {"driver": driver, "curves": curves} if controller is not None else None,
            "controller_note": controller_note,
            "starts": [{"episode": episode, "t": t, "z": _values(z0), "state": [_values(s) for s in state]}
                       for z0, state, episode, t in begun],
            "real": real, "real_note": real_note,
        }
        (staging / MARKER).write_text(json.dumps(spec))
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Written(folder, len(begun), real["steps"] if real else 0, controller is not None)


def export_models(out: Path, vae: ConvVAE, m: MDNRNN, controller: Controller | None, action_dim: int) -> dict:
    """V's decoder, one step of M and C (when given) as ONNX files in ``out``; returns their paths as the page
    reads them (relative to the page), C's None when there is none."""
    out.mkdir(parents=True, exist_ok=True)
    state = m.initial_state(1, "cpu")
    names = state_names(state)
    z, a = torch.zeros(1, vae.z_dim), torch.zeros(1, action_dim)
    export(Decoder(vae), (z,), ["z"], ["frame"], out / "decoder.onnx")
    export(MStep(m), (z, a, *state), ["z", "a", *names],
           ["logit_pi", "mu", "log_sigma", "reward", "done_logit", *(f"next_{n}" for n in names)], out / "m_step.onnx")
    if controller is not None:
        export(controller, (z, *state), ["z", *names], ["out"], out / "controller.onnx")
    return {"decoder": f"{out.name}/decoder.onnx", "m": f"{out.name}/m_step.onnx",
            "controller": f"{out.name}/controller.onnx" if controller is not None else None}


def _onnxruntime():
    """ONNX Runtime for Python, which checks the exported graphs (``torch.onnx.export`` needs the onnx package)."""
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError:
        raise UsageError("--web needs the onnx and onnxruntime packages: pip install -c requirements.lock "
                         "-r requirements-extras.txt (make test installs them)") from None
    return onnxruntime


def _ort_files() -> Path:
    missing = [name for name in ORT_FILES if not (ORT_DIST / name).exists()]
    if missing:
        raise UsageError(f"--web copies ONNX Runtime Web from {ORT_DIST}, which lacks {', '.join(missing)}: run "
                         f"npm ci in {ROOT} (make test runs it)")
    return ORT_DIST


def _start_state(m: MDNRNN, starts: StartFrames, seed: int) -> tuple:
    """(z_0 (1, Z), M's state after the warm-up, episode, t) of the start drawn with ``seed``."""
    start = starts.draw([seed])
    z0, state = begin(m, start, torch.device("cpu"))
    return z0, state, int(start.episode[0]), int(start.t[0])


def _dtype(x: torch.Tensor) -> str:
    return {torch.float32: "float32", torch.bool: "bool", torch.int64: "int64"}[x.dtype]


def _values(x: torch.Tensor) -> list:
    """A tensor's values, flat, as JSON numbers (floats exactly: a float32 printed as a float64 reads back)."""
    x = x.detach().cpu().reshape(-1)
    return [bool(v) for v in x.tolist()] if x.dtype == torch.bool else x.tolist()


@torch.no_grad()
def check_exports(onnxruntime, models: Path, vae: ConvVAE, m: MDNRNN, controller: Controller | None,
                  start: tuple, action_dim: int, steps: int = 4) -> None:
    """Run the exported graphs in ONNX Runtime against torch on the same inputs (a start, a few steps of random
    actions): a RunFailed if any output differs by more than ``TOLERANCE``."""
    def session(name: str):
        return onnxruntime.InferenceSession(str(models / name), providers=["CPUExecutionProvider"])

    def feeds(sess, z: torch.Tensor, state: tuple, **more: torch.Tensor) -> dict:
        """The inputs ``sess`` reads (the exporter drops those a graph does not use, as C drops an LSTM's c)."""
        given = {"z": z, **dict(zip(state_names(state), state)), **more}
        return {i.name: given[i.name].numpy() for i in sess.get_inputs()}

    def compare(what: str, got: np.ndarray, want: torch.Tensor) -> None:
        error = float(np.max(np.abs(got.astype(np.float64) - want.numpy().astype(np.float64)), initial=0.0))
        if not error <= TOLERANCE:
            raise RunFailed(f"--web: the exported {what} differs from torch's by {error:.3g}: this torch's ONNX "
                            "export does not reproduce the model")

    decoder, step = session("decoder.onnx"), session("m_step.onnx")
    act = session("controller.onnx") if controller is not None else None
    z, state = start
    rng = np.random.default_rng(0)
    for _ in range(steps):
        compare("V decoder", decoder.run(None, {"z": z.numpy()})[0], to_frames(vae.decode(z)))
        if act is not None:
            compare("C", act.run(None, feeds(act, z, state))[0], controller(z, *state))
        a = torch.from_numpy(rng.uniform(-1, 1, (1, action_dim)).astype(np.float32))
        got = step.run(None, feeds(step, z, state, a=a))
        out, state = m.step(z, a, state, dream=True)
        for g, w in zip(got, (*mixture_and_heads(out), *state), strict=True):
            compare("M step", g, w.float())
        z = out.mu[..., 0]


def _real_episode(world: WorldModel, vae: ConvVAE, m: MDNRNN, actor: Actor, driver: str, seed: int, steps: int,
                  strip: Path) -> tuple[dict | None, str | None]:
    """One real episode for the page's side by side: its frames into ``strip`` (one under the other), and the
    actions (as M reads them), rewards, z_0 (sampled from V's encoding of the first frame, as
    ``pipeline.dream_env.real_vs_dream`` starts its dream) and M's initial state."""
    try:
        episode = record_real_episode(world, actor, seed, steps)
    except EnvUnavailable as e:
        return None, f"the real env cannot run here: {e}"
    Image.fromarray(np.concatenate(episode.frames, axis=0)).save(strip, optimize=True)
    with torch.no_grad():
        mu, logvar = vae.encode(to_input(torch.from_numpy(episode.frames[:1])))
    generator = torch.Generator().manual_seed(seed)
    z0 = sample_z(mu, logvar, torch.randn(mu.shape, generator=generator))
    source = world.source
    return {"seed": seed, "driver": driver, "frames": strip.name, "steps": len(episode.actions),
            "actions": source.encode_actions(source.stored_actions(episode.actions)).tolist(),
            "rewards": np.asarray(episode.rewards, dtype=np.float64).tolist(), "z": _values(z0),
            "state": [_values(s) for s in m.initial_state(1, "cpu")]}, None


# -- 05_dream.py --web ----------------------------------------------------------------------------------------
DEFAULT_PORT = 8000


def add_flags(p) -> None:
    """05_dream.py's --web, --serve and --port."""
    p.add_argument("--web", type=Path, metavar="DIR",
                   help="write the dream as a web page into DIR (V's decoder, M and C run in the browser: drive with "
                        "the keys or let C drive, τ live, a real episode beside M's dream of it) instead of the "
                        "dreams and report")
    p.add_argument("--serve", action="store_true",
                   help="with --web: then serve DIR on 127.0.0.1 at --port until Ctrl-C")
    p.add_argument("--port", type=cli.nonneg_int_up_to(65535), default=DEFAULT_PORT,
                   help="the port --serve listens on (0: any free one)")


def check_flags(args) -> None:
    if args.serve and args.web is None:
        raise UsageError("--serve serves the folder --web writes: pass --web DIR too")


def publish(args, world: WorldModel, starts: StartFrames, params, driver: str, actor: Actor) -> Written:
    """What 05_dream.py --web does: write the page (C drives in it where ``params`` is C's parameter vector, not
    a PPO policy), say where it is, and serve it with --serve."""
    linear = params if isinstance(params, torch.Tensor) else None
    written = write(args.web, world, starts, linear, driver, actor, args.seed, args.steps, args.temperature)
    print(f"the dream's web page is in {written.folder}/ ({written.starts} starts, a real episode of "
          f"{written.real_steps} steps, C {'drives' if written.controller else 'cannot drive'} in it)")
    if args.serve:
        serve(written.folder, args.port)
    else:
        print("serve it with --serve, or with any static file server (opened from file:// it cannot load its models)")
    return written


# -- serving it --------------------------------------------------------------------------------------
class _Handler(http.server.SimpleHTTPRequestHandler):
    """Static files with the types a browser insists on for ES modules and WebAssembly; no request log."""

    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript",
                      ".js": "text/javascript", ".wasm": "application/wasm", ".json": "application/json",
                      ".onnx": "application/octet-stream"}

    def log_message(self, format, *args) -> None:
        pass


def server(folder: Path, port: int, host: str = "127.0.0.1") -> http.server.ThreadingHTTPServer:
    """A static file server for ``folder`` on host:port (port 0: any free one), not yet serving."""
    handler = functools.partial(_Handler, directory=str(folder))
    try:
        return http.server.ThreadingHTTPServer((host, port), handler)
    except OSError as e:
        raise UsageError(f"--port {port}: cannot listen on {host}:{port} ({e.strerror}): pass another --port") from None


def serve(folder: Path, port: int) -> None:
    """Serve ``folder`` on 127.0.0.1 until Ctrl-C (or SIGTERM): stopping it is how it ends, not a failure."""
    httpd = server(folder, port)
    print(f"serving {folder} at http://127.0.0.1:{httpd.server_address[1]}/ (Ctrl-C stops)", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        print("stopped serving", flush=True)
    finally:
        httpd.server_close()


def serve_in_background(folder: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """``folder`` served from a thread on a free port of 127.0.0.1; returns the server (``shutdown`` stops it) and
    its URL."""
    httpd = server(folder, 0)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/"


__all__ = ["Written", "action_curves", "key_table", "serve", "serve_in_background", "server",
           "write"]
