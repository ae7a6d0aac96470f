"""Small layers shared by the SpaceTime UNet and the diffusion prior.

Nothing here registers buffers: models are built on the meta device and filled from safetensors with
`assign=True`, so every tensor a layer needs is either a parameter or computed in `forward`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal features of a scalar per batch item, `(b,) → (b, dim)` in float32.

    emb(t) = [cos(t·ω_0) … cos(t·ω_{k−1}), sin(t·ω_0) … sin(t·ω_{k−1})], ω_i = max_period^(−i/k), k = dim // 2
    (Vaswani et al. 2017; Ho et al. 2020). `t` may be fractional (fps, continuous timesteps).
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) / half * torch.arange(half, device=t.device, dtype=torch.float32))
    args = torch.outer(t.float(), freqs)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class TimestepEmbedding(nn.Module):
    """Sinusoidal features of a per-item scalar (diffusion step, fps) followed by a two-layer MLP."""

    def __init__(self, freq_dim: int, dim: int) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: Tensor) -> Tensor:
        """t: `(b,)` → `(b, dim)`."""
        return self.mlp(timestep_embedding(t, self.freq_dim).to(self.mlp[0].weight.dtype))

    def hidden(self, t: Tensor) -> Tensor:
        """The MLP's hidden features SiLU(W₁·sin(t)) `(b, dim)`: `forward` is the output layer applied to these."""
        return self.mlp[1](self.mlp[0](timestep_embedding(t, self.freq_dim).to(self.mlp[0].weight.dtype)))


def group_norm(channels: int, groups: int = 0) -> nn.GroupNorm:
    """GroupNorm with `groups` groups, or by default up to 32 groups of at least 4 channels (small widths would
    otherwise normalise each channel alone)."""
    if groups <= 0:
        groups = next(g for g in (32, 16, 8, 4, 2, 1) if channels % g == 0 and (channels // g >= 4 or g == 1))
    elif channels % groups:
        raise ValueError(f"{channels} channels do not split into {groups} groups")
    return nn.GroupNorm(groups, channels)


def attend(q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None, fp32_on_cpu: bool) -> Tensor:
    """`F.scaled_dot_product_attention` over `(n, heads, l, d)` queries and `(n, heads, m, d)` keys and values.

    With `fp32_on_cpu`, bf16 attention on a CPU runs in fp32: there SDPA's bf16 kernels are slower than its fp32
    ones at these head widths (benchmarks/layouts.py; BENCHMARKS.md §6); the projections around it stay bf16.
    """
    if q.device.type == "cpu" and q.dtype == torch.bfloat16 and fp32_on_cpu:
        mask = attn_mask.float() if attn_mask is not None and attn_mask.is_floating_point() else attn_mask
        with torch.autocast("cpu", enabled=False):  # CPU autocast would cast SDPA's inputs back to bf16
            out = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask)
        return out.to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)


class Attention(nn.Module):
    """Multi-head attention over token sequences `(n, l, dim)` using `F.scaled_dot_product_attention`.

    Self-attention when `context_dim` is None, cross-attention to a context `(n, m, context_dim)` otherwise.
    `attn_mask` goes to SDPA unchanged: a bool mask (True = attend) or a float bias, broadcastable to
    `(n, heads, l, m)`. `fp32_on_cpu`: under bf16 on a CPU, attend in fp32 (see `forward`); `qkv_bias`: biases on
    the query, key and value projections (the output projection always has one).
    """

    def __init__(self, dim: int, heads: int, context_dim: int | None = None, fp32_on_cpu: bool = True,
                 qkv_bias: bool = False) -> None:
        super().__init__()
        self.fp32_on_cpu = fp32_on_cpu
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by heads={heads}")
        self.heads = heads
        self.is_cross = context_dim is not None
        if self.is_cross:
            self.to_q = nn.Linear(dim, dim, bias=qkv_bias)
            self.to_kv = nn.Linear(context_dim, 2 * dim, bias=qkv_bias)
        else:
            self.to_qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x: Tensor, context: Tensor | None = None, attn_mask: Tensor | None = None) -> Tensor:
        if self.is_cross:
            if context is None:
                raise ValueError("cross-attention needs a context")
            q = rearrange(self.to_q(x), "n l (h d) -> n h l d", h=self.heads)
            k, v = rearrange(self.to_kv(context), "n m (two h d) -> two n h m d", two=2, h=self.heads)
        else:
            q, k, v = rearrange(self.to_qkv(x), "n l (three h d) -> three n h l d", three=3, h=self.heads)
        out = attend(q, k, v, attn_mask, self.fp32_on_cpu)
        return self.to_out(rearrange(out, "n h l d -> n l (h d)"))


class JointAttention(nn.Module):
    """One attention over a frame's own tokens and context tokens at once (GLIDE's and unCLIP's): queries come
    from the frame; keys and values from the context (its own projections), then from the frame.

    x: `(n, l, dim)`; context: `(n, m, context_dim)` or None (then plain self-attention); attn_mask: bool
    `(n, 1, 1, m + l)` (True = attend; context first) with a context, None without. Every projection has a bias.
    """

    def __init__(self, dim: int, heads: int, context_dim: int | None = None, fp32_on_cpu: bool = True) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by heads={heads}")
        self.heads, self.fp32_on_cpu = heads, fp32_on_cpu
        self.to_qkv = nn.Linear(dim, 3 * dim)
        self.to_context_kv = nn.Linear(context_dim, 2 * dim) if context_dim is not None else None
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x: Tensor, context: Tensor | None = None, attn_mask: Tensor | None = None) -> Tensor:
        q, k, v = rearrange(self.to_qkv(x), "n l (three h d) -> three n h l d", three=3, h=self.heads)
        if context is not None and self.to_context_kv is not None:
            ck, cv = rearrange(self.to_context_kv(context), "n m (two h d) -> two n h m d", two=2, h=self.heads)
            k, v = torch.cat([ck, k], dim=2), torch.cat([cv, v], dim=2)
        out = attend(q, k, v, attn_mask, self.fp32_on_cpu)
        return self.to_out(rearrange(out, "n h l d -> n l (h d)"))


class FeedForward(nn.Module):
    """Position-wise MLP: Linear → GELU → Linear."""

    def __init__(self, dim: int, mult: int = 4) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, dim * mult), nn.GELU(), nn.Linear(dim * mult, dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
