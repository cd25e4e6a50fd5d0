"""M's recurrent cores: the math of the sparse gates and of SVSG's masked KL, attention's causality and its
context vector, and for every core: shapes, stepping == the sequence, the checkpoint round trip and one
optimisation step.

vsg and svsg draw their gates (and svsg its state) from torch's global generator, in the same order
whether a sequence is run at once or step by step; so "stepping == sequence" is tested under the same seed.
"""
from __future__ import annotations

import io
import math

import pytest
import torch
import torch.nn.functional as F

from models import MDNRNN, MDNRNNConfig
from models.cores import CORES, core_options
from models.cores.svsg import SVSGCore, gaussian_stats, masked_gaussian_kl
from models.cores.vsg import VSGCore, sparsity_loss, straight_through_bernoulli
from pipeline.training import mdn_step, mdn_terms

Z, A, H = 4, 2, 8
SMALL_OPTIONS = {"lstm": {}, "attention": {"window": 3}, "vsg": {}, "svsg": {}}
CPU = torch.device("cpu")


def make(core: str, **options) -> MDNRNN:
    torch.manual_seed(0)
    return MDNRNN(MDNRNNConfig(z_dim=Z, action_dim=A, hidden=H, mixtures=2, core=core,
                               core_options={**SMALL_OPTIONS[core], **options}))


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_core_options_defaults_follow_design():
    assert core_options("lstm") == {}
    assert core_options("attention") == {"window": 16}
    assert core_options("vsg") == {"kappa": 0.4, "sparsity_scale": 0.1, "sparsity_floor": 0.1}
    assert core_options("svsg") == {**core_options("vsg"), "kl_scale": 1.0, "kl_free": 0.0}


# -- every core ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("core", sorted(CORES))
def test_shapes_and_extras(core):
    m = make(core)
    out, state, extras = m(torch.randn(3, 5, Z), torch.randn(3, 5, A))
    assert out.logit_pi.shape == out.mu.shape == (3, 5, Z, 2) and out.reward.shape == out.done_logit.shape == (3, 5)
    assert sorted(extras) == sorted(m.core.extras)  # 03_train_mdnrnn.py makes CSV columns of these names
    assert all(v.dim() == 0 and torch.isfinite(v) for v in extras.values())
    assert m.controller_features(state).shape == (3, m.state_size)
    start = m.controller_features(m.initial_state(3))  # what C reads before the first step
    assert start.shape == (3, m.state_size) and torch.all(start == 0)


@pytest.mark.parametrize("dream", [False, True])
@pytest.mark.parametrize("core", sorted(CORES))
def test_stepping_equals_the_sequence(core, dream):
    m = make(core)
    z, a = torch.randn(2, 7, Z), torch.randn(2, 7, A)
    torch.manual_seed(1)
    first, mid, _ = m(z[:, :3], a[:, :3], dream=dream)  # two calls: the state (attention's window too) carries
    rest, final, _ = m(z[:, 3:], a[:, 3:], mid, dream=dream)
    torch.manual_seed(1)
    state = m.initial_state(2)
    for t in range(7):
        step, state = m.step(z[:, t], a[:, t], state, dream=dream)
        for s_field, a_field, b_field in zip(step, first, rest):
            if s_field is None:  # one reward head: no per-head predictions
                continue
            assert torch.allclose(s_field, torch.cat([a_field, b_field], 1)[:, t], atol=1e-5)
    assert torch.allclose(m.controller_features(state), m.controller_features(final), atol=1e-5)


@pytest.mark.parametrize("core,options", [("lstm", {}), ("attention", {"window": 5}),
                                          ("vsg", {"kappa": 0.3, "sparsity_floor": 0.0}),
                                          ("svsg", {"kappa": 0.2, "kl_scale": 0.5, "kl_free": 1.0})])
def test_checkpoint_round_trip_rebuilds_the_same_core(core, options):
    m = make(core, **options)
    buffer = io.BytesIO()
    torch.save(m.state(), buffer)
    buffer.seek(0)
    back = MDNRNN.from_state(torch.load(buffer, weights_only=True))
    assert back.config == m.config and type(back.core) is type(m.core)
    assert all(getattr(back.core, k) == v for k, v in options.items())
    z, a = torch.randn(2, 4, Z), torch.randn(2, 4, A)
    torch.manual_seed(2)
    expected, _, _ = m(z, a)
    torch.manual_seed(2)
    got, _, _ = back(z, a)
    assert all(x is y is None or torch.equal(x, y) for x, y in zip(expected, got))


@pytest.mark.parametrize("core", sorted(CORES))
def test_one_optimisation_step_lowers_the_loss(core):
    m = make(core)
    g = torch.Generator().manual_seed(3)
    z = torch.randn(4, 9, Z, generator=g)
    batch = {"z": z[:, :-1], "z_next": z[:, 1:], "actions": torch.randn(4, 8, A, generator=g),
             "rewards": torch.randn(4, 8, generator=g), "dones": torch.zeros(4, 8), "mask": torch.ones(4, 8)}
    batch["mask"][0, 6:] = 0

    def loss() -> dict:
        torch.manual_seed(4)  # the same gate and state draws before and after the step
        with torch.no_grad():
            return mdn_terms(m, batch, CPU, 1.0)

    before = loss()
    added = sum(v for k, v in before.items() if k.startswith("loss_"))
    assert torch.isclose(before["loss"], before["nll"] + before["reward_mse"] + before["done_bce"] + added)
    torch.manual_seed(4)
    mdn_step(m, torch.optim.Adam(m.parameters(), lr=1e-3), batch, CPU, grad_clip=1.0, done_weight=1.0)
    assert loss()["loss"] < before["loss"]


# -- attention ---------------------------------------------------------------------------------------
def test_attention_never_looks_ahead_nor_across_the_batch():
    core = make("attention", window=4).core
    x = torch.randn(3, 10, Z + A)
    t0 = 6
    base, _, _ = core(x)
    later = x.clone()
    later[:, t0] += 1.0
    moved, _, _ = core(later)
    assert torch.allclose(base[:, :t0], moved[:, :t0], atol=1e-6)
    assert (base[:, t0:] - moved[:, t0:]).abs().amax() > 1e-3
    other_row = x.clone()
    other_row[1:] = torch.randn(2, 10, Z + A)  # a softmax over the batch axis would leak other rows into row 0
    assert torch.allclose(core(other_row)[0][0], base[0], atol=1e-6)


def test_attention_context_is_a_softmax_over_the_window_in_time():
    k = 3
    core = make("attention", window=k).core
    x = torch.randn(2, 6, Z + A)
    features, _, _ = core(x)
    out, _ = core.lstm(x)
    for t in range(6):
        window = out[:, max(0, t - k + 1): t + 1]  # (B, ≤K, H): this step and the K − 1 before it
        scores = torch.einsum("bh,bkh->bk", core.query(out[:, t]), core.key(window)) / math.sqrt(H)
        context = torch.einsum("bk,bkh->bh", torch.softmax(scores, dim=1), core.value(window))
        assert torch.allclose(features[:, t], torch.cat([out[:, t], context], -1), atol=1e-5)


# -- vsg -------------------------------------------------------------------------------------------
def test_straight_through_gate_is_binary_and_passes_gradient_to_its_probabilities():
    torch.manual_seed(5)
    p = torch.rand(20_000, requires_grad=True)
    g = straight_through_bernoulli(p)
    assert set(g.detach().unique().tolist()) <= {0.0, 1.0}
    assert abs(float(g.detach().mean() - p.detach().mean())) < 0.01
    weights = torch.randn(20_000)
    (g * weights).sum().backward()
    assert torch.allclose(p.grad, weights)  # d g / d p = 1: the sample passes p's gradient through

    core = make("vsg").core  # inside the cell: the update rows of the dense layer learn from the features alone
    features, _, _ = core(torch.randn(2, 5, Z + A))
    features.pow(2).sum().backward()
    assert core.cell.layer.weight.grad[2 * H:].abs().sum() > 0


def test_sparsity_loss_is_zero_at_kappa_and_grows_away_from_it():
    kappa = 0.4

    def at(p: float, scale: float = 1.0, floor: float = 0.0) -> torch.Tensor:
        return sparsity_loss(torch.full((2, 3, 5), logit(p)), kappa, scale, floor)

    assert float(at(kappa)) < 1e-6
    below = [float(at(p)) for p in (0.39, 0.3, 0.2, 0.1, 0.02)]
    above = [float(at(p)) for p in (0.41, 0.5, 0.7, 0.9, 0.98)]
    assert below == sorted(below) and above == sorted(above) and below[0] > 0 and above[0] > 0
    kl = 0.7 * math.log(0.7 / kappa) + 0.3 * math.log(0.3 / (1 - kappa))  # per dim; summed over 5 dims
    assert math.isclose(float(at(0.7, scale=0.1)), 0.1 * 5 * kl, rel_tol=1e-5)
    # Below the floor: a constant α·floor, no gradient; above it, the KL itself.
    low = torch.full((2, 3, 5), logit(0.42), requires_grad=True)
    loss = sparsity_loss(low, kappa, 0.1, 0.1)
    loss.backward()
    assert math.isclose(float(loss.detach()), 0.1 * 0.1, rel_tol=1e-6) and torch.all(low.grad == 0)
    assert math.isclose(float(at(0.7, scale=0.1, floor=0.1)), 0.1 * 5 * kl, rel_tol=1e-5)


def toy_fraction(kappa: float, scale: float, steps: int = 50) -> tuple[float, float]:
    """Train a VSG core and a linear readout to predict the next input of a toy sequence whose inputs change
    in 2 of 6 dims only; returns the update fraction before and after."""
    torch.manual_seed(6)
    core = VSGCore(4, 2, H, kappa=kappa, sparsity_scale=scale, sparsity_floor=0.0)
    readout = torch.nn.Linear(H, 6)
    opt = torch.optim.Adam([*core.parameters(), *readout.parameters()], lr=0.03)
    fractions = []
    for _ in range(steps):
        x = torch.randn(16, 1, 6).expand(16, 13, 6).clone()  # a constant per sequence…
        x[..., :2] = torch.randn(16, 13, 2).cumsum(1) / 3  # …except two dims that wander
        features, _, extras = core(x[:, :-1])
        loss = F.mse_loss(readout(features), x[:, 1:]) + extras["loss_sparsity"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        fractions.append(float(extras["update_fraction"]))
    return sum(fractions[:5]) / 5, sum(fractions[-5:]) / 5


def test_vsg_update_fraction_falls_towards_the_prior_on_a_sparse_toy_sequence():
    start, end = toy_fraction(kappa=0.05, scale=1.0)
    _, free = toy_fraction(kappa=0.05, scale=0.0)  # the same training without the sparsity loss
    assert start > 0.2  # σ(−1) ≈ 0.27 at initialisation
    assert free > 0.5  # left alone, the task opens the gates…
    assert abs(end - 0.05) < 0.05  # …the sparsity loss brings them down to the prior


def test_gates_are_sampled_in_evaluation_too():
    core = make("vsg").core.eval()
    with torch.no_grad():
        core.cell.layer.weight.zero_()
        core.cell.layer.bias[2 * H:] = logit(0.3) + 1  # p = σ(u − 1) = 0.3 everywhere
    torch.manual_seed(7)
    _, _, extras = core(torch.randn(4000, 1, Z + A))
    assert abs(float(extras["update_fraction"]) - 0.3) < 0.02  # thresholding at 0.5 would update nothing


# -- svsg ------------------------------------------------------------------------------------------
def test_state_std_is_two_sigmoid_half_plus_min():
    mean, std = gaussian_stats(torch.tensor([[1.0, -2.0, 0.0, 40.0, -40.0, 3.0]]))
    assert torch.equal(mean, torch.tensor([[1.0, -2.0, 0.0]]))
    expected = [2 * (1 / (1 + math.exp(-20.0))) + 0.1, 2 * (1 / (1 + math.exp(20.0))) + 0.1, 2 / (1 + math.exp(-1.5)) + 0.1]
    assert torch.allclose(std, torch.tensor([expected]), atol=1e-6)


def test_masked_kl_ignores_dimensions_whose_gate_is_closed():
    torch.manual_seed(8)
    post_mean, prior_mean = torch.randn(3, 6, requires_grad=True), torch.randn(3, 6, requires_grad=True)
    post_std, prior_std = (torch.rand(3, 6) + 0.2).requires_grad_(), (torch.rand(3, 6) + 0.2).requires_grad_()
    gate = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0, 1.0]).expand(3, 6)
    kl = masked_gaussian_kl(post_mean, post_std, prior_mean, prior_std, gate)
    full = torch.distributions.kl_divergence(torch.distributions.Normal(post_mean, post_std),
                                             torch.distributions.Normal(prior_mean, prior_std))
    assert torch.allclose(kl, (full * gate).sum(-1), atol=1e-6)
    kl.sum().backward()
    closed = gate == 0
    for p in (post_mean, post_std, prior_mean, prior_std):
        assert torch.all(p.grad[closed] == 0) and torch.all(p.grad[~closed] != 0)
    with torch.no_grad():  # closed dims may disagree arbitrarily without cost
        far = post_mean + 100 * closed
        assert torch.allclose(masked_gaussian_kl(far, post_std, prior_mean, prior_std, gate), kl)

    core = make("svsg").core  # every gate closed: nothing pays, and the state is copied
    with torch.no_grad():
        core.cell.layer.bias[2 * H:] = -100.0
    features, _, extras = core(torch.randn(2, 4, Z + A))
    assert float(extras["kl"]) == 0.0 and float(extras["update_fraction"]) == 0.0 and torch.all(features == 0)


def test_svsg_dream_runs_on_the_prior_and_ignores_z():
    core = make("svsg").core
    x = torch.randn(3, Z + A)
    other_z = x.clone()
    other_z[:, :Z] = torch.randn(3, Z)
    (start,) = core.initial_state(3, CPU)
    start = start + torch.randn(3, H)

    def step(inputs: torch.Tensor, dream: bool) -> torch.Tensor:
        torch.manual_seed(9)  # the same gate and noise draws, so only z can make a difference
        return core.step(inputs, (start,), dream=dream)[0]

    # With dream=True the prior's mean and std, the gate and hence the next state are the same for any z_t.
    assert torch.equal(step(x, dream=True), step(other_z, dream=True))
    assert not torch.allclose(step(x, dream=False), step(other_z, dream=False))  # the posterior reads z_t
    _, _, extras = core(torch.randn(2, 3, Z + A), dream=True)
    assert "loss_kl" not in extras and "loss_sparsity" in extras  # a dream has no posterior to pay a KL


def test_svsg_kl_scale_and_free_nats():
    x = torch.randn(2, 5, Z + A)
    kls = {}
    for scale, free in ((1.0, 0.0), (0.5, 0.0), (1.0, 1e6)):
        torch.manual_seed(0)
        core = SVSGCore(Z, A, H, kl_scale=scale, kl_free=free)
        torch.manual_seed(10)
        kls[scale, free] = core(x)[2]
    raw = kls[1.0, 0.0]["kl"]
    assert raw > 0 and torch.isclose(kls[1.0, 0.0]["loss_kl"], raw)
    assert torch.isclose(kls[0.5, 0.0]["loss_kl"], 0.5 * raw)
    assert float(kls[1.0, 1e6]["loss_kl"]) == 1e6
