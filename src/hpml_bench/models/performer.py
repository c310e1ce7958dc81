"""Performer (FAVOR+) linear self-attention over all spatial positions, as HCT uses it.

Re-implemented from the description in SEED-NOTES §1.2: queries and keys go through a
fixed random feature map phi (generalized ReLU kernel by default, or the softmax kernel),
so attention costs O(N) in the number of tokens N = H*W instead of O(N^2).
"""
from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import nn

KERNEL_EPS_RELU = 1e-3
KERNEL_EPS_SOFTMAX = 1e-4


def orthogonal_random_features(nb_rows: int, dim: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """[nb_rows, dim]: stacked blocks of QR-orthogonal rows, each row scaled to norm sqrt(dim)."""
    blocks = []
    for _ in range(math.ceil(nb_rows / dim)):
        q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=generator))
        blocks.append(q.T)
    matrix = torch.cat(blocks)[:nb_rows]
    return matrix * math.sqrt(dim)


def relu_features(x: torch.Tensor, projection: torch.Tensor) -> torch.Tensor:
    """phi(x) = ReLU((d^-1/4 x) P^T) + eps: the generalized (ReLU) kernel."""
    x = x * x.shape[-1] ** -0.25
    return torch.relu(torch.einsum("bhnd,md->bhnm", x, projection)) + KERNEL_EPS_RELU


def softmax_features(x: torch.Tensor, projection: torch.Tensor, is_query: bool) -> torch.Tensor:
    """Positive random features of the softmax kernel (exp), stabilised by the max."""
    normalizer = x.shape[-1] ** -0.25
    dash = torch.einsum("bhnd,md->bhnm", x * normalizer, projection)
    diag = (x**2).sum(-1, keepdim=True) * normalizer**2 / 2
    stab = dash.amax(-1, keepdim=True) if is_query else dash.amax((-1, -2), keepdim=True)
    return projection.shape[0] ** -0.5 * (torch.exp(dash - diag - stab) + KERNEL_EPS_SOFTMAX)


def linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Non-causal: out_n = phi(q_n) (sum_m phi(k_m) v_m^T) / (phi(q_n) . sum_m phi(k_m))."""
    k_sum = k.sum(dim=-2)
    d_inv = 1.0 / torch.einsum("bhnm,bhm->bhn", q, k_sum)
    context = torch.einsum("bhnm,bhne->bhme", k, v)
    return torch.einsum("bhme,bhnm,bhn->bhne", context, q, d_inv)


class PerformerAttention(nn.Module):
    """Global self-attention on a feature map [B, C, H, W] -> [B, C, H, W], in float32."""

    def __init__(self, dim: int, heads: int = 8, dropout: float = 0.1, relu_kernel: bool = True):
        super().__init__()
        self.heads = heads
        dim_head = dim // heads
        nb_features = max(1, int(dim_head * math.log(dim_head)))
        self.relu_kernel = relu_kernel
        self.to_q = nn.Linear(dim, dim)
        self.to_k = nn.Linear(dim, dim)
        self.to_v = nn.Linear(dim, dim)
        self.to_out = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)
        # Drawn once and kept (never redrawn), so the model is a fixed function to export.
        self.register_buffer("projection", orthogonal_random_features(nb_features, dim_head))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        tokens = rearrange(x, "b c h w -> b (h w) c")
        if torch.is_autocast_enabled(x.device.type):
            # Reduced precision overflows the kernel's sums: attention runs in float32.
            with torch.autocast(device_type=x.device.type, enabled=False):
                out = self._attend(tokens.float())
        else:
            out = self._attend(tokens.float())
        out = self.dropout(self.to_out(out))
        return rearrange(out, "b (h w) c -> b c h w", h=h, w=w).to(x.dtype)

    def _attend(self, tokens: torch.Tensor) -> torch.Tensor:
        q, k, v = (rearrange(f(tokens), "b n (h d) -> b h n d", h=self.heads) for f in (self.to_q, self.to_k, self.to_v))
        if self.relu_kernel:
            q, k = relu_features(q, self.projection), relu_features(k, self.projection)
        else:
            q, k = softmax_features(q, self.projection, True), softmax_features(k, self.projection, False)
        return rearrange(linear_attention(q, k, v), "b h n d -> b n (h d)")
