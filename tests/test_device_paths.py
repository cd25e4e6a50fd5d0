"""The GPU's code paths (bf16 autocast, channels-last V), run on the CPU, where torch supports both: a bug in
them shows up here, in CI, which has no GPU. Each is compared with the full-precision CPU path."""
import copy

import numpy as np
import pytest
import torch

from models.mdnrnn import MDNRNN, MDNRNNConfig
from models.vae import ConvVAE, VAEConfig
from pipeline.compute import device as devices
from pipeline.training import mdn_step, vae_step

CPU = torch.device("cpu")


@pytest.fixture
def gpu_paths_on_cpu(monkeypatch):
    monkeypatch.setattr(devices, "MIXED_PRECISION", {"cuda", "cpu"})
    monkeypatch.setattr(devices, "CHANNELS_LAST", {"cuda", "cpu"})


def _frames(n=8, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, 64, 64, 3), dtype=np.uint8))


def test_v_trains_channels_last_in_bf16_like_in_full_precision(gpu_paths_on_cpu):
    torch.manual_seed(0)
    reference = ConvVAE(VAEConfig(z_dim=8))
    mixed = devices.place(copy.deepcopy(reference), CPU)
    assert mixed.encoder[0].weight.is_contiguous(memory_format=torch.channels_last)
    frames = _frames()
    devices.MIXED_PRECISION.discard("cpu")
    torch.manual_seed(1)
    full = vae_step(reference, torch.optim.Adam(reference.parameters(), 1e-3), frames, CPU)
    devices.MIXED_PRECISION.add("cpu")
    torch.manual_seed(1)
    half = vae_step(mixed, torch.optim.Adam(mixed.parameters(), 1e-3), frames, CPU)
    for k in ("loss", "recon", "kl"):
        assert torch.isfinite(half[k]) and half[k].dtype == torch.float32
        assert half[k].item() == pytest.approx(full[k].item(), rel=0.05), k
    for a, b in zip(reference.parameters(), mixed.parameters()):  # one step moved both the same way
        assert torch.allclose(a, b, atol=2e-3)


def test_m_trains_in_bf16_like_in_full_precision(gpu_paths_on_cpu):
    torch.manual_seed(0)
    model = MDNRNN(MDNRNNConfig(z_dim=8, action_dim=3, hidden=32))
    twin = copy.deepcopy(model)
    rng = np.random.default_rng(0)
    batch = {"z": torch.from_numpy(rng.normal(size=(4, 12, 8)).astype(np.float32)),
             "z_next": torch.from_numpy(rng.normal(size=(4, 12, 8)).astype(np.float32)),
             "actions": torch.from_numpy(rng.uniform(-1, 1, (4, 12, 3)).astype(np.float32)),
             "rewards": torch.from_numpy(rng.normal(size=(4, 12)).astype(np.float32)),
             "dones": torch.zeros(4, 12), "mask": torch.ones(4, 12)}
    # oneDNN's bf16 LSTM needs a CPU with bf16 instructions (AVX-512 BF16, AMX); elsewhere (an AVX2 CPU) it refuses
    # to build the primitive, and torch's own kernels run the same autocast path.
    with torch.backends.mkldnn.flags(enabled=torch.ops.mkldnn._is_mkldnn_bf16_supported()):
        half = mdn_step(model, torch.optim.Adam(model.parameters(), 1e-3), batch, CPU, 1.0, 10.0)
    devices.MIXED_PRECISION.discard("cpu")
    full = mdn_step(twin, torch.optim.Adam(twin.parameters(), 1e-3), batch, CPU, 1.0, 10.0)
    for k in ("loss", "nll", "reward_mse", "done_bce"):
        assert torch.isfinite(half[k]) and half[k].dtype == torch.float32, k
        assert half[k].item() == pytest.approx(full[k].item(), rel=0.05, abs=0.02), k
