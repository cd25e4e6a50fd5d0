"""V, M and C: shapes, losses against hand-computed values, sampling statistics, the action mapping."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import envs
from models import MDNRNN, ConvVAE, MDNRNNConfig, VAEConfig
from models.controller import batched, num_params
from models.mdnrnn import MDNOutput, mixture_nll, sample


def test_vae_shapes_and_paper_architecture():
    vae = ConvVAE()
    x = torch.rand(5, 3, 64, 64)
    mu, logvar = vae.encode(x)
    assert mu.shape == logvar.shape == (5, 32)
    assert vae.encoder(x).shape == (5, 1024)  # 2×2×256
    assert vae.decode(mu).shape == (5, 3, 64, 64)
    assert [m.kernel_size[0] for m in vae.decoder if hasattr(m, "kernel_size")] == [5, 5, 6, 6]


def test_vae_loss_is_summed_squared_error_plus_kl():
    vae = ConvVAE(VAEConfig(z_dim=4, kl_tolerance=0.0))
    x = torch.rand(3, 3, 64, 64)
    recon = torch.rand(3, 3, 64, 64)
    mu, logvar = torch.randn(3, 4), torch.randn(3, 4)
    terms = vae.loss(x, recon, mu, logvar)
    rec = sum(((recon[i] - x[i]) ** 2).sum() for i in range(3)) / 3
    kl = sum(0.5 * float((mu[i] ** 2 + logvar[i].exp() - 1 - logvar[i]).sum()) for i in range(3)) / 3
    assert math.isclose(float(terms["recon"]), float(rec), rel_tol=1e-5)
    assert math.isclose(float(terms["kl"]), kl, rel_tol=1e-5)
    assert math.isclose(float(terms["loss"]), float(rec) + kl, rel_tol=1e-5)


def test_kl_floor_hides_kl_below_tolerance_and_passes_it_above():
    vae = ConvVAE(VAEConfig(z_dim=32, kl_tolerance=0.5))
    x = torch.rand(2, 3, 64, 64)
    small_mu = torch.zeros(2, 32, requires_grad=True)  # KL 0 < 0.5·32 = 16
    terms = vae.loss(x, x, small_mu, torch.zeros(2, 32))
    assert float(terms["loss"].detach()) == 16.0
    terms["loss"].backward()
    assert torch.all(small_mu.grad == 0)
    big_mu = torch.full((2, 32), 2.0, requires_grad=True)  # KL = 0.5·4·32 = 64 > 16
    terms = vae.loss(x, x, big_mu, torch.zeros(2, 32))
    assert math.isclose(float(terms["loss"].detach()), 64.0, rel_tol=1e-6)
    terms["loss"].backward()
    assert torch.allclose(big_mu.grad, torch.full((2, 32), 1.0))  # d/dmu of mean_b sum 0.5 mu²


def test_mixture_nll_matches_a_hand_computed_value():
    # one step, two latent dims, two components each
    pi_logits = torch.tensor([[[0.0, math.log(3.0)], [1.0, 1.0]]])  # weights (0.25, 0.75) and (0.5, 0.5)
    mu = torch.tensor([[[0.0, 1.0], [-1.0, 2.0]]])
    log_sigma = torch.log(torch.tensor([[[1.0, 0.5], [2.0, 1.0]]]))
    out = MDNOutput(pi_logits, mu, log_sigma, torch.zeros(1), torch.zeros(1))
    target = torch.tensor([[0.5, 0.0]])

    def normal(x, m, s):
        return math.exp(-((x - m) ** 2) / (2 * s * s)) / (s * math.sqrt(2 * math.pi))

    p0 = 0.25 * normal(0.5, 0.0, 1.0) + 0.75 * normal(0.5, 1.0, 0.5)
    p1 = 0.5 * normal(0.0, -1.0, 2.0) + 0.5 * normal(0.0, 2.0, 1.0)
    expected = -(math.log(p0) + math.log(p1)) / 2
    assert math.isclose(float(mixture_nll(out, target)), expected, rel_tol=1e-6)
    mask = torch.tensor([1.0])
    assert math.isclose(float(mixture_nll(out, target, mask)), expected, rel_tol=1e-6)


def test_temperature_sharpens_component_choice_and_scales_variance():
    n = 200_000
    logit = torch.tensor([math.log(0.8), math.log(0.2)]).expand(n, 1, 2)
    out = MDNOutput(logit, torch.tensor([-5.0, 5.0]).expand(n, 1, 2), torch.zeros(n, 1, 2), torch.zeros(n), torch.zeros(n))
    g = torch.Generator().manual_seed(0)
    share = lambda t: float((sample(out, t, g) > 0).float().mean())  # noqa: E731
    assert abs(share(1.0) - 0.2) < 0.01
    assert share(0.25) < 0.01  # p ∝ 0.8⁴ vs 0.2⁴: the rare mode almost vanishes
    assert abs(share(100.0) - 0.5) < 0.01  # very hot: components almost uniform
    single = MDNOutput(torch.zeros(n, 1, 1), torch.zeros(n, 1, 1), torch.log(torch.full((n, 1, 1), 2.0)),
                       torch.zeros(n), torch.zeros(n))
    for t in (0.5, 1.0, 1.15):
        assert abs(float(sample(single, t, g).var()) / (4.0 * t) - 1) < 0.02


@pytest.mark.parametrize("heads", [1, 3])
def test_mdnrnn_step_by_step_equals_the_sequence(heads):
    m = MDNRNN(MDNRNNConfig(z_dim=4, action_dim=3, hidden=16, mixtures=2, reward_heads=heads))
    z, a = torch.randn(2, 7, 4), torch.randn(2, 7, 3)
    seq, final, _ = m(z, a)
    state = m.initial_state(2)
    for t in range(7):
        step, state = m.step(z[:, t], a[:, t], state)
        assert (step.reward_heads is None) == (heads == 1)
        for s_field, q_field in zip(step, seq):
            if s_field is not None:
                assert torch.allclose(s_field, q_field[:, t], atol=1e-5)
    assert torch.allclose(m.controller_features(state), m.controller_features(final), atol=1e-5)
    assert seq.logit_pi.shape == (2, 7, 4, 2)


def test_controller_has_867_parameters_for_carracing_and_batches_agree():
    assert num_params(32 + 256, 3) == 867
    params = torch.randn(4, 867)
    x = torch.randn(4, 288)
    out = batched(params, x, 3)
    for i in range(4):  # the flat layout: W (3 × 288, row-major), then b (3)
        w, b = params[i, :864].view(3, 288), params[i, 864:]
        assert torch.allclose(torch.tanh(w @ x[i] + b), out[i], atol=1e-5)


def test_carracing_action_mapping():
    source = envs.get("carracing")
    np.testing.assert_allclose(source.controller_action(np.array([-0.5, -1.0, -0.3])), [-0.5, 0.0, 0.0])
    np.testing.assert_allclose(source.controller_action(np.array([0.9, 1.0, 0.4])), [0.9, 1.0, 0.4])
    np.testing.assert_allclose(source.controller_action(np.array([0.0, 0.0, 1.0])), [0.0, 0.5, 1.0])
