"""z_{t+1} drawn from M's mixture: one uniform per latent dimension picks the component, one normal its noise.

Each latent dimension has K Gaussian components. With weights w_k = exp(x_k − max_j x_j), x the mixture logits
divided by the temperature τ, and their running sums c_k = w_0 + … + w_k, a uniform u ∈ [0, 1) picks the first k
with u · c_{K−1} < c_k: component k with probability w_k / Σ_j w_j, the softmax of x. Then
z = μ_k + σ_k · √τ · ε with ε standard normal. One uniform a dimension, where ``torch.multinomial`` on the CPU draws
one a component (the Gumbel-max trick on K exponentials), and no division or logarithm; on the CPU the walk along
the running sums and the gathers of μ_k and log σ_k are compiled loops.

``draw`` takes its random numbers from a torch generator (the uniforms first, then the normals), so a seed gives
one result on one device; ``sample_with_draws`` is the same with the draws given, which is what the dream's web
page computes from its own generator.
"""
from __future__ import annotations

import functools
import math
from types import SimpleNamespace

import numpy as np
import torch


def draw(logit_pi: torch.Tensor, mu: torch.Tensor, log_sigma: torch.Tensor, temperature: float,
         generator: torch.Generator | None = None) -> torch.Tensor:
    """z (..., Z) from the mixtures (..., Z, K) at temperature τ: the uniforms ``torch.rand`` (float64, one per
    dimension) and then the normals ``torch.randn`` (one per dimension) from ``generator``."""
    shape, device = mu.shape[:-1], mu.device
    u = torch.rand(shape, generator=generator, dtype=torch.float64, device=device)
    eps = torch.randn(shape, generator=generator, dtype=mu.dtype, device=device)
    return sample_with_draws(logit_pi, mu, log_sigma, temperature, u, eps)


def sample_with_draws(logit_pi: torch.Tensor, mu: torch.Tensor, log_sigma: torch.Tensor, temperature: float,
                      u: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """``draw`` with its random numbers given: ``u`` (..., Z) uniforms in [0, 1) pick the components, ``eps``
    (..., Z) standard normals are their noise. Raises ValueError on logits that are not all finite (an M whose
    training diverged), which have no distribution to draw from.

    On the CPU in float32 the pick and the gathers are compiled loops; elsewhere torch's ops. Both give the same
    z bit for bit: the same float32 weights (torch's exp), summed in the same order in float64."""
    x = (logit_pi.detach() / temperature).reshape(-1, logit_pi.shape[-1])
    if not math.isfinite(x.sum()):  # an inf or a NaN anywhere makes the sum inf or NaN
        raise ValueError("M's mixture logits are not all finite (inf or NaN): M's training diverged; train it again")
    mus, log_sigmas = mu.detach().reshape(x.shape), log_sigma.detach().reshape(x.shape)
    uniforms = u.reshape(-1)
    if x.device.type == "cpu" and x.dtype == mus.dtype == log_sigmas.dtype == torch.float32 and u.dtype == torch.float64:
        compiled = _compiled()
        weights = np.empty(x.shape, dtype=np.float32)
        compiled.shift(x.contiguous().numpy(), weights)
        torch.from_numpy(weights).exp_()  # torch's exp, as the other path's: the same float32 weights
        mu_k, log_sigma_k = np.empty(len(x), np.float32), np.empty(len(x), np.float32)
        compiled.pick(weights, uniforms.contiguous().numpy(), mus.contiguous().numpy(),
                      log_sigmas.contiguous().numpy(), mu_k, log_sigma_k)
        mu_k, log_sigma_k = torch.from_numpy(mu_k), torch.from_numpy(log_sigma_k)
    else:
        k = components(x, uniforms)
        mu_k, log_sigma_k = mus.gather(-1, k).squeeze(-1), log_sigmas.gather(-1, k).squeeze(-1)
    noise = eps.reshape(-1).to(mu_k.dtype)
    return (mu_k + log_sigma_k.exp() * math.sqrt(temperature) * noise).view(mu.shape[:-1])


def components(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The components (rows, 1) that uniforms ``u`` (rows,) pick from logits ``x`` (rows, K), in torch's ops: the
    first k with u · c_{K−1} < c_k, the weights exp(x − row max) in x's dtype, their running sums in float64."""
    sums = torch.exp(x - x.amax(-1, keepdim=True)).double().cumsum(-1)
    target = u.to(sums.dtype).unsqueeze(-1) * sums[:, -1:]
    return (sums[:, :-1] <= target).sum(-1, keepdim=True)


@functools.cache
def _compiled() -> SimpleNamespace:
    """The compiled loops of ``sample_with_draws`` (compiled on first use, so importing M does not load numba)."""
    from numba import njit

    @njit(cache=True)
    def shift(x, out):
        """out (rows, K) ← x − the row's max, in float32 (as torch's ``x - x.amax(-1)``)."""
        rows, k = x.shape
        for r in range(rows):
            top = x[r, 0]
            for j in range(1, k):
                top = max(top, x[r, j])
            for j in range(k):
                out[r, j] = x[r, j] - top

    @njit(cache=True)
    def pick(w, u, mu, log_sigma, mu_k, log_sigma_k):
        """For each row: k = the number of running sums c_0 … c_{K−2} (float64) at or below u · c_{K−1}, the first k
        with u · c_{K−1} < c_k, counted without a branch on the data (u is random: a branch would mispredict);
        then mu_k, log_sigma_k (rows,) ← that component's μ and log σ."""
        rows, k = w.shape
        for r in range(rows):
            total = 0.0
            for j in range(k):
                total += np.float64(w[r, j])
            target = u[r] * total
            running, count = 0.0, 0
            for j in range(k - 1):
                running += np.float64(w[r, j])
                count += running <= target
            mu_k[r] = mu[r, count]
            log_sigma_k[r] = log_sigma[r, count]

    return SimpleNamespace(shift=shift, pick=pick)
