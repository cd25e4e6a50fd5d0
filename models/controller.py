"""C: a linear map from [z, h] to the action, squashed by tanh (Ha & Schmidhuber, 2018).

Parameters are laid out flat as [W (A×F, row-major), b (A)], the vector CMA-ES evolves. ``batched``
runs N different controllers on N inputs at once, so many candidates step in lockstep.
"""
from __future__ import annotations

import torch


def num_params(in_dim: int, out_dim: int) -> int:
    return (in_dim + 1) * out_dim


def batched(params: torch.Tensor, x: torch.Tensor, out_dim: int) -> torch.Tensor:
    """params (N, P), x (N, F) → tanh(W_n x_n + b_n) (N, A), one controller per row."""
    n, f = x.shape
    w = params[:, : out_dim * f].view(n, out_dim, f)
    b = params[:, out_dim * f:]
    return torch.tanh(torch.einsum("naf,nf->na", w, x) + b)

