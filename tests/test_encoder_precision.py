"""V's encoder at lower precision (pipeline/encoder_precision.py): bf16 and int8 keep z close to fp32's, fp32 is V's
own encode bit for bit, int8's calibrated model is cached per V, and 04 and 01 take --v-precision end to end."""
from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
import torch

import envs
from conftest import ROOT, assert_one_line_error, copy_run, run_stage
from data.store import RolloutStore, read_observations
from models.vae import ConvVAE, to_input
from pipeline.collect import play_episode
from pipeline.contract import checkpoint
from pipeline.contract.errors import UsageError
from pipeline.contract.seeding import episode_seed
from pipeline.controller_policy import ControllerPolicy, controller_files
from pipeline.encoder_precision import (
    FP32,
    INT8_FILE,
    Fp32Encoder,
    Precision,
    calibrate_int8,
    calibrated_for,
    int8_model,
    int8_weights,
    played_frames,
    prepare,
    run_frames,
)
from pipeline.real_eval import RealEvaluator
from pipeline.world_model import WorldModel

# How close a working lower precision keeps V's outputs to fp32's, on a trained V and frames it was not calibrated
# on: the correlation of every value, and the mean absolute difference as a fraction of the spread (std) of fp32's
# values, for mu and for logvar alike. On the frames below (AMD EPYC Zen 4, AVX-512 BF16 and VNNI), mu: bf16
# 0.99991 and 1.2 %, int8 0.99917 and 2.1 %; int8 calibrated on black frames only (its ranges wrong) 0.014 and 247 %.
# On an AMD EPYC with AVX2 alone, int8 with uint8 weights (int8_weights' choice there) 0.9991 and 2.2 %; with int8
# weights, whose products ONNX Runtime adds in saturating 16-bit arithmetic there, 0.9915 and 10.5 %.
MIN_CORRELATION = 0.995
MAX_RELATIVE_ERROR = 0.05


@pytest.fixture(scope="module")
def trained():
    """The shipped driver's V (trained: its activations are the ones quantisation must keep), 256 real frames to
    calibrate on and 256 others to compare on (Brownian FastCarRacing episodes played with seeds 0 and 1)."""
    vae = ConvVAE.from_state(checkpoint.load(ROOT / "pretrained" / "carracing" / "vae.pt", "02_train_vae.py")).eval()
    source = envs.get("carracing")
    return vae, played_frames(source, 0, 1000), played_frames(source, 1, 1000)


def closeness(reference: torch.Tensor, other: torch.Tensor) -> tuple[float, float]:
    """(correlation of every value, mean |difference| / std of the reference)."""
    ref, got = reference.flatten().double(), other.flatten().double()
    correlation = float(torch.corrcoef(torch.stack([ref, got]))[0, 1])
    return correlation, float((got - ref).abs().mean() / ref.std())


@pytest.mark.parametrize("name", ["bf16", "int8"])
def test_lower_precision_keeps_mu_and_logvar_close_to_fp32(trained, name):
    vae, calibration, frames = trained
    precision = Precision(name, calibrate_int8(vae, calibration) if name == "int8" else None)
    with torch.no_grad():
        reference = Fp32Encoder(vae)(frames)
        lowered = precision.encoder(vae)(frames)
    for what, ref, got in zip(("mu", "logvar"), reference, lowered):
        assert got.dtype == torch.float32 and got.shape == ref.shape == (len(frames), vae.z_dim)
        correlation, error = closeness(ref, got)
        assert correlation > MIN_CORRELATION, f"{name} {what}: correlation {correlation:.5f}"
        assert error < MAX_RELATIVE_ERROR, f"{name} {what}: mean error {error:.3f} of the spread"
        assert not torch.equal(ref, got)  # it did run at another precision


def test_the_bound_fails_a_quantisation_calibrated_on_the_wrong_frames(trained):
    vae, calibration, frames = trained
    broken = Precision("int8", calibrate_int8(vae, np.zeros_like(calibration[:32])))
    with torch.no_grad():
        correlation, error = closeness(Fp32Encoder(vae)(frames)[0], broken.encoder(vae)(frames)[0])
    assert correlation < MIN_CORRELATION and error > MAX_RELATIVE_ERROR


def test_fp32_is_vs_own_encode_bit_for_bit(trained, tiny_run):
    vae, _, frames = trained
    with torch.no_grad():
        for got, want in zip(FP32.encoder(vae)(frames), vae.encode(to_input(torch.from_numpy(frames)))):
            assert torch.equal(got, want)
    world = WorldModel.load(tiny_run["run"], "carracing")
    assert isinstance(RealEvaluator(world, 10).encode, Fp32Encoder)  # the default everywhere C plays


def test_04_evaluates_with_fp32_exactly_as_before_and_with_int8_end_to_end(tiny_run, tmp_path):
    flags = copy_run(tiny_run, tmp_path / "run")
    run = tmp_path / "run"
    before = json.loads((run / "controller_eval.json").read_text())["evaluations"][-1]  # the fixture's --evaluate 3
    fp32 = run_stage("04_train_controller.py", *flags, "--steps", "30", "--workers", "2", "--evaluate", "3",
                     "--v-precision", "fp32")
    again = json.loads((run / "controller_eval.json").read_text())["evaluations"][-1]
    assert again["returns"] == before["returns"] and again["v_precision"] == "fp32"
    assert "V's encoder" not in fp32.stdout and not (run / INT8_FILE).exists()

    int8 = run_stage("04_train_controller.py", *flags, "--steps", "30", "--workers", "2", "--evaluate", "2",
                     "--v-precision", "int8")
    assert "controller score (V's encoder in int8) over 2 episodes" in int8.stdout
    assert f"calibrated on 164 frames of 4 episodes in {tiny_run['data']}" in int8.stdout
    entry = json.loads((run / "controller_eval.json").read_text())["evaluations"][-1]
    assert entry["v_precision"] == "int8" and len(entry["returns"]) == 2 and np.isfinite(entry["returns"]).all()
    digest = checkpoint.weights_hash(checkpoint.load(run / "vae.pt", "02_train_vae.py")["model"])
    assert calibrated_for((run / INT8_FILE).read_bytes()) == digest
    # The second time the cached model is used, not calibrated again.
    cached = run_stage("04_train_controller.py", *flags, "--steps", "30", "--workers", "2", "--evaluate", "2",
                       "--v-precision", "int8")
    assert "calibrated" not in cached.stdout
    assert json.loads((run / "controller_eval.json").read_text())["evaluations"][-1]["returns"] == entry["returns"]


def test_the_int8_model_is_cached_per_v_and_rebuilt_for_a_retrained_one(tiny_run, tmp_path):
    copy_run(tiny_run, tmp_path / "run")
    run = tmp_path / "run"
    calls = []

    def frames():
        calls.append(1)
        return run_frames(tiny_run["data"], "carracing", 0, 30)

    first = int8_model(run, frames)
    assert int8_model(run, frames) == first == (run / INT8_FILE).read_bytes() and len(calls) == 1
    state = checkpoint.load(run / "vae.pt", "02_train_vae.py")
    assert calibrated_for(first) == checkpoint.weights_hash(state["model"])

    # V retrained: other weights, another digest, so the model is calibrated again for it.
    state["model"] = {k: v + 0.01 if v.is_floating_point() else v for k, v in state["model"].items()}
    (run / "vae.pt").unlink()  # a link to the shared fixture's V
    checkpoint.save(run / "vae.pt", state)
    second = int8_model(run, frames)
    assert len(calls) == 2 and second != first and (run / INT8_FILE).read_bytes() == second
    assert calibrated_for(second) == checkpoint.weights_hash(state["model"]) != calibrated_for(first)

    # A damaged cache is calibrated again, not used.
    (run / INT8_FILE).write_bytes(second[:1000])
    assert int8_model(run, frames) == second and len(calls) == 3

    # Made for a CPU of the other kind (another weight type): calibrated again for this one.
    other = "uint8" if int8_weights() == "int8" else "int8"
    (run / INT8_FILE).write_bytes(calibrate_int8(ConvVAE.from_state(state).eval(), frames()[0],
                                                 calibrated_for(second), "", other))
    assert int8_model(run, frames) == second and len(calls) == 5


@pytest.mark.parametrize("flags,weights", [("fpu sse2 avx avx2 fma", "uint8"), ("avx2 avx512f avx512_vnni", "int8"),
                                           ("avx2 avx_vnni", "int8"), (None, "uint8")])
def test_int8_weights_are_signed_only_where_the_cpu_has_vnni(tmp_path, flags, weights):
    cpuinfo = tmp_path / "cpuinfo"
    if flags is not None:  # None: no such file (not Linux)
        cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    assert int8_weights(cpuinfo) == weights


def test_calibration_frames_are_the_runs_own(tiny_run, tmp_path):
    frames, where = run_frames(tiny_run["data"], "carracing", 0, 30)
    stored = np.concatenate([read_observations(ref) for ref in RolloutStore(tiny_run["data"]).index()])
    assert frames.shape == (164, 64, 64, 3) and where == f"164 frames of 4 episodes in {tiny_run['data']}"
    assert np.array_equal(frames, stored)  # 4 episodes of 41 frames: every one of them
    # Without the data folder (a shipped run): the first episodes 01_collect.py's Brownian policy plays.
    played, where = run_frames(tmp_path / "gone", "carracing", 7, 20)
    assert where == "84 frames of 4 Brownian episodes of --env carracing played with --seed 7"
    source = envs.get("carracing")
    env = source.make(20)
    first = play_episode(source, env, 0, episode_seed(7, 0), "brownian").observations
    env.close()
    assert played.shape == (4 * 21, 64, 64, 3) and np.array_equal(played[:21], first)


def test_the_controller_policy_takes_the_precision(tiny_run):
    files = controller_files(tiny_run["run"])
    frames, _ = run_frames(tiny_run["data"], "carracing", 0, 30)
    plain, fp32 = (ControllerPolicy(files, "carracing", None, 0.1, *extra) for extra in ((), (FP32,)))
    model = calibrate_int8(plain.world.vae, frames)
    int8 = ControllerPolicy(files, "carracing", None, 0.1, Precision("int8", model))
    for policy in (plain, fp32, int8):
        policy.reset(3)
    for frame in frames[:6]:
        a, b, c = plain.act(frame), fp32.act(frame), int8.act(frame)
        assert np.array_equal(a, b) and c.shape == a.shape and np.isfinite(c).all()


def test_01_collects_with_an_int8_encoder(tiny_run, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_run["data"], data)
    flags = copy_run(tiny_run, tmp_path / "run")
    flags[1] = data
    run_stage("01_collect.py", *flags, "--policy", "controller", "--round", "1", "--episodes", "1", "--steps", "40",
              "--workers", "1", "--v-precision", "int8")
    assert {(r.policy, r.round) for r in RolloutStore(data).index()} == {("brownian", 0), ("controller", 1)}
    assert (tmp_path / "run" / INT8_FILE).exists()
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["collect_round1"]["v_precision"] == "int8"


@pytest.mark.parametrize("script, args, flag", [
    ("04_train_controller.py", ["--v-precision", "fp16"], "--v-precision"),
    ("04_train_controller.py", ["--v-precision", "int8", "--algo", "ppo"], "--v-precision"),
    ("01_collect.py", ["--v-precision", "int8"], "--v-precision"),
])
def test_bad_precision_flags_are_one_line(tiny_run, tmp_path, script, args, flag):
    flags = copy_run(tiny_run, tmp_path / "run")
    proc = run_stage(script, *flags, *args, check=False)
    assert_one_line_error(proc, flag)


def test_int8_without_onnxruntime_is_one_line(tiny_run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails, as where it is not installed
    with pytest.raises(UsageError, match="--v-precision int8 needs the onnx and onnxruntime packages"):
        prepare("int8", tiny_run["run"], tiny_run["data"], "carracing", 0, 30)
    assert prepare("bf16", tiny_run["run"], tiny_run["data"], "carracing", 0, 30) == Precision("bf16")
