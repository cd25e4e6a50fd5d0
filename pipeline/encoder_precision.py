"""V's encoder at a chosen precision wherever C plays the real env: 04's evaluator workers, 01's controller policy
(``--v-precision fp32|bf16|int8``).

- fp32: V's own ``encode``, the default. Every result is the same as without the choice, bit for bit.
- bf16: a copy of the encoder's layers with bfloat16 weights, fed bfloat16 frames (oneDNN runs them on AVX-512
  BF16 where the CPU has it); mu and logvar come back as float32.
- int8: V's encoder exported to ONNX and quantised statically by ONNX Runtime (weights per output channel,
  activations uint8 per tensor, their ranges calibrated on ``CALIBRATION_FRAMES`` of the run's own frames), run by
  ONNX Runtime. The weights are int8 where the CPU has VNNI and uint8 elsewhere (``int8_weights``). The calibrated
  model is cached in the run folder (``INT8_FILE``), tagged with V's weights digest (``checkpoint.weights_hash``)
  and its weight type: it is built once per V and kind of CPU, and again when V is retrained.

bf16 and int8 change z slightly (tests/test_encoder_precision.py bounds how much), and their results depend on
the CPU's instruction set; what they gain, measured: docs/benchmarks.md. Every encoder maps uint8 frames
(B, 64, 64, 3) to mu, logvar (B, Z) float32, as ``V.encode(to_input(frames))`` does.
"""
from __future__ import annotations

import copy
import logging
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

import envs
from data.atomic import write_bytes
from data.store import RolloutStore, StoreError, read_observations
from models.vae import ConvVAE, to_input
from pipeline.contract import checkpoint
from pipeline.contract.errors import UsageError
from pipeline.contract.seeding import episode_seed

PRECISIONS = ("fp32", "bf16", "int8")
INT8_FILE = "vae_int8.onnx"  # in the run folder: V's encoder, quantised and calibrated
CALIBRATION_FRAMES = 256
CALIBRATION_EPISODES = 8  # stored episodes the calibration frames are spread over
PLAYED_EPISODES, PLAYED_STEPS = 4, 256  # without stored episodes: Brownian episodes played for the calibration
DIGEST_KEY = "vae_weights"  # the ONNX model's metadata entry holding V's weights digest
WEIGHTS_KEY = "weight_type"  # … and the one holding its weights' type (a model without it has int8 weights)
VNNI_FLAGS = {"avx512_vnni", "avx_vnni", "amx_int8"}  # /proc/cpuinfo flags of x86 CPUs with VNNI dot products
OPSET = 17

Encoder = Callable[[np.ndarray], tuple[torch.Tensor, torch.Tensor]]


class EncoderLayers(nn.Module):
    """V's encoding half, with V's own layers: x (B, 3, 64, 64) in [0, 1] → mu, logvar (B, Z)."""

    def __init__(self, vae: ConvVAE):
        super().__init__()
        self.encoder, self.mu, self.logvar = vae.encoder, vae.mu, vae.logvar

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.mu(h), self.logvar(h)


class Fp32Encoder:
    """V's ``encode`` as the pipeline has always called it."""

    def __init__(self, vae: ConvVAE):
        self.vae = vae

    def __call__(self, frames: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return self.vae.encode(to_input(torch.from_numpy(frames)))


class Bf16Encoder:
    """A bfloat16 copy of V's encoder (V itself is left in float32, for M's and the dreams' use)."""

    def __init__(self, vae: ConvVAE):
        self.layers = copy.deepcopy(EncoderLayers(vae)).to(torch.bfloat16).eval()

    def __call__(self, frames: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.layers(to_input(torch.from_numpy(frames)).to(torch.bfloat16))
        return mu.float(), logvar.float()


class Int8Encoder:
    """V's quantised encoder (``calibrate_int8``'s model) in an ONNX Runtime session on as many threads as torch uses
    here (one in a worker)."""

    def __init__(self, model: bytes):
        ort = onnxruntime()
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = torch.get_num_threads(), 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])

    def __call__(self, frames: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        # to_input's values, laid out (B, 3, 64, 64) while still bytes: a quarter of the memory to move
        x = torch.from_numpy(np.ascontiguousarray(frames.transpose(0, 3, 1, 2))).float().div_(255.0)
        mu, logvar = self.session.run(None, {"x": x.numpy()})
        return torch.from_numpy(mu), torch.from_numpy(logvar)


@dataclass(frozen=True)
class Precision:
    """The choice as it travels to a worker process (plain values): its name, and for int8 the calibrated model."""

    name: str = "fp32"
    int8_model: bytes | None = None

    def encoder(self, vae: ConvVAE) -> Encoder:
        """V's encoder at this precision: uint8 frames (B, 64, 64, 3) → mu, logvar (B, Z) float32."""
        if self.name == "fp32":
            return Fp32Encoder(vae)
        if self.name == "bf16":
            return Bf16Encoder(vae)
        if self.name == "int8" and self.int8_model is not None:
            return Int8Encoder(self.int8_model)
        raise ValueError(f"no encoder for precision {self.name!r} (int8 needs its calibrated model)")


FP32 = Precision()


def prepare(name: str, run: Path, data: Path, env: str, seed: int, max_steps: int) -> Precision:
    """The choice ``name`` for the run's V, made in the stage's process before any worker starts: int8's model is
    read from ``<run>/INT8_FILE`` when it was calibrated for this V, else calibrated now on ``run_frames`` and
    cached there."""
    if name != "int8":
        return Precision(name)
    return Precision(name, int8_model(run, lambda: run_frames(data, env, seed, max_steps)))


def int8_model(run: Path, frames: Callable[[], tuple[np.ndarray, str]]) -> bytes:
    """The run's quantised encoder: the cached one if it carries the digest of ``<run>/vae.pt``'s weights, else one
    calibrated on ``frames()`` (frames, where they come from), written to ``<run>/INT8_FILE`` atomically."""
    onnxruntime()
    vae_state = checkpoint.load(run / "vae.pt", "02_train_vae.py")
    digest = checkpoint.weights_hash(vae_state["model"])
    path = run / INT8_FILE
    cached = path.read_bytes() if path.exists() else b""
    weights = int8_weights()
    tags = _metadata(cached) if cached else {}
    if tags.get(DIGEST_KEY) == digest and tags.get(WEIGHTS_KEY, "int8") == weights:
        return cached
    calibration, source = frames()
    model = calibrate_int8(ConvVAE.from_state(vae_state).eval(), calibration, digest, source, weights)
    write_bytes(path, model)
    print(f"V's encoder in int8: calibrated on {source}, cached in {path}")
    return model


def calibrated_for(model: bytes) -> str | None:
    """The V digest a cached model was calibrated for; None for a damaged file or one without it."""
    return _metadata(model).get(DIGEST_KEY)


def _metadata(model: bytes) -> dict[str, str]:
    """An ONNX model's metadata entries; none for a damaged or foreign file (then calibrated again)."""
    import onnx

    try:
        return {p.key: p.value for p in onnx.load_from_string(model).metadata_props}
    except Exception:
        return {}


def int8_weights(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The type int8 quantises V's weights to on this CPU: "int8" where it has VNNI, whose instructions multiply
    uint8 activations by int8 weights and add them in 32 bits; "uint8" elsewhere. Without VNNI (AVX2 alone) ONNX
    Runtime's uint8 × int8 kernel adds pairs of products in 16 bits, which saturate: on the driver's V, mu's mean
    error was 10 % of its spread that way, 2 % with uint8 weights (2 % too with int8 weights on a VNNI CPU).
    A CPU whose flags cannot be read gets "uint8", which no kernel saturates."""
    try:
        flags = set(cpuinfo.read_text().split())
    except OSError:
        return "uint8"
    return "int8" if flags & VNNI_FLAGS else "uint8"


def calibrate_int8(vae: ConvVAE, frames: np.ndarray, digest: str = "", source: str = "",
                   weights: str | None = None) -> bytes:
    """V's encoder exported to ONNX, then statically quantised with ONNX Runtime (QDQ format; weights per channel,
    of type ``weights`` ("int8" or "uint8"; default ``int8_weights()``), activations uint8; min–max ranges over
    ``frames`` (N, 64, 64, 3) uint8). The same V, frames and weight type give the same bytes. ``digest``,
    ``source`` and the weight type are recorded in the model's metadata."""
    weights = weights or int8_weights()
    onnxruntime()
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    x = to_input(torch.from_numpy(np.ascontiguousarray(frames))).contiguous()

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(x[s: s + 32].numpy() for s in range(0, len(x), 32))

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {"x": batch}

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracing notes
        exported, quantised = Path(tmp, "encoder.onnx"), Path(tmp, "encoder_int8.onnx")
        torch.onnx.export(EncoderLayers(vae).eval(), (x[:1],), str(exported), dynamo=False, input_names=["x"],
                          output_names=["mu", "logvar"], opset_version=OPSET,
                          dynamic_axes={"x": {0: "batch"}, "mu": {0: "batch"}, "logvar": {0: "batch"}})
        # Silenced: its advice (on the root logger) to pre-process the graph first, which made this one no faster.
        logging.disable(logging.WARNING)
        try:
            quantize_static(exported, quantised, Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8 if weights == "int8" else QuantType.QUInt8,
                            calibrate_method=CalibrationMethod.MinMax)
        finally:
            logging.disable(logging.NOTSET)
        model = onnx.load(str(quantised))
    onnx.helper.set_model_props(model, {DIGEST_KEY: digest, WEIGHTS_KEY: weights, "calibration": source})
    return model.SerializeToString()


def run_frames(data: Path, env: str, seed: int, max_steps: int) -> tuple[np.ndarray, str]:
    """Up to ``CALIBRATION_FRAMES`` of the run's own frames, and where they come from: spread evenly over
    ``CALIBRATION_EPISODES`` episodes of the data folder, chosen evenly through it; a run without its data folder
    (a shipped one) plays the first ``PLAYED_EPISODES`` episodes of its Brownian collection instead (``played_frames``)."""
    try:
        store = RolloutStore(data)
        refs = store.index() if Path(data).is_dir() else []
        same_env = bool(refs) and str(store.attrs()["env_name"]) == env
    except (StoreError, OSError, KeyError):
        refs, same_env = [], False
    if not same_env:
        frames = played_frames(envs.get(env), seed, max_steps)
        return frames, f"{len(frames)} frames of {PLAYED_EPISODES} Brownian episodes of --env {env} played with --seed {seed}"
    picked = [refs[i] for i in np.unique(np.linspace(0, len(refs) - 1, CALIBRATION_EPISODES).round().astype(int))]
    each = CALIBRATION_FRAMES // len(picked)
    frames = []
    for ref in picked:
        observations = read_observations(ref)
        frames.append(observations[np.unique(np.linspace(0, len(observations) - 1, each).round().astype(int))])
    return np.concatenate(frames), f"{sum(map(len, frames))} frames of {len(picked)} episodes in {data}"


def played_frames(source: envs.EnvSource, seed: int, max_steps: int) -> np.ndarray:
    """Preprocessed frames of the first ``PLAYED_EPISODES`` episodes 01_collect.py's Brownian policy plays with
    ``seed`` (each cut at ``PLAYED_STEPS`` steps), evenly spaced, ``CALIBRATION_FRAMES`` in all at most."""
    env = source.make(min(max_steps, PLAYED_STEPS))
    frames = []
    try:
        for episode in range(PLAYED_EPISODES):
            played_seed = episode_seed(seed, episode)
            policy = source.exploration_policy("brownian", np.random.default_rng(played_seed))
            policy.reset()
            obs, _ = env.reset(seed=played_seed)
            played = [source.preprocess(obs)]
            while True:
                obs, _, terminated, truncated, _ = env.step(policy.act())
                played.append(source.preprocess(obs))
                if terminated or truncated:
                    break
            each = CALIBRATION_FRAMES // PLAYED_EPISODES
            frames += [played[i] for i in np.unique(np.linspace(0, len(played) - 1, each).round().astype(int))]
    finally:
        env.close()
    return np.stack(frames)


def onnxruntime():
    """ONNX Runtime (and onnx, which its quantiser and ``torch.onnx.export`` need), or one line saying how to get them."""
    try:
        import onnx  # noqa: F401
        import onnxruntime as ort
    except ImportError:
        raise UsageError("--v-precision int8 needs the onnx and onnxruntime packages: pip install -c requirements.lock "
                         "-r requirements-extras.txt (make test installs them)") from None
    return ort
