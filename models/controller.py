"""C: a linear map from [z, h] to the action, squashed by tanh (Ha & Schmidhuber, 2018).

Parameters are laid out flat as [W (A×F, row-major), b (A)], the vector CMA-ES evolves. ``batched``
runs N different controllers on N inputs at once, so many candidates step in lockstep.
"""
from __future__ import annotations

import torch
from torch import nn


def num_params(in_dim: int, out_dim: int) -> int:
    return (in_dim + 1) * out_dim


def batched(params: torch.Tensor, x: torch.Tensor, out_dim: int) -> torch.Tensor:
    """params (N, P), x (N, F) → tanh(W_n x_n + b_n) (N, A), one controller per row."""
    n, f = x.shape
    w = params[:, : out_dim * f].view(n, out_dim, f)
    b = params[:, out_dim * f:]
    return torch.tanh(torch.einsum("naf,nf->na", w, x) + b)


class LinearController(nn.Module):
    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        self.linear = nn.Linear(in_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, F) → actions (B, A) in [-1, 1]."""
        return torch.tanh(self.linear(x))

    def flat(self) -> torch.Tensor:
        return nn.utils.parameters_to_vector(self.parameters()).detach()

    def load_flat(self, params) -> None:
        nn.utils.vector_to_parameters(torch.as_tensor(params, dtype=torch.float32), self.parameters())
