"""The diffusion prior P: CLIP text → CLIP image embedding (DALL-E 2 / unCLIP style, Ramesh et al. 2022).

A transformer reads the sequence [text tokens…, pooled text embedding, timestep, noised image embedding, query]
and the output at the query token is the prediction (x0 of the image embedding by default, see
config.diffusion.prediction). Attention is bidirectional (causal with `config.causal`, as unCLIP's prior);
padded text tokens are masked out as keys.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from mav.config import PriorConfig
from mav.models.layers import Attention, FeedForward, TimestepEmbedding

# Tokens after the text: pooled text embedding, timestep, noised image embedding, query.
_EXTRA_TOKENS = 4


class TransformerBlock(nn.Module):
    """Pre-LayerNorm transformer block: self-attention then feed-forward, both residual."""

    def __init__(self, width: int, heads: int, qkv_bias: bool = False) -> None:
        super().__init__()
        self.norm_attn = nn.LayerNorm(width)
        self.attn = Attention(width, heads, qkv_bias=qkv_bias)
        self.norm_ff = nn.LayerNorm(width)
        self.ff = FeedForward(width)

    def forward(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        x = x + self.attn(self.norm_attn(x), attn_mask=attn_mask)
        return x + self.ff(self.norm_ff(x))


class DiffusionPrior(nn.Module):
    """Denoiser over CLIP image embeddings conditioned on CLIP text tokens and the pooled text embedding."""

    def __init__(self, config: PriorConfig) -> None:
        super().__init__()
        self.config = config
        width = config.width
        norm = nn.LayerNorm(config.text_dim) if config.text_norm else nn.Identity()
        self.text_proj = nn.Sequential(norm, nn.Linear(config.text_dim, width))
        self.text_embed_proj = nn.Linear(config.embed_dim, width)
        self.time_embed = TimestepEmbedding(width, width)
        self.image_embed_proj = nn.Linear(config.embed_dim, width)
        self.query = nn.Parameter(torch.randn(1, 1, width) * 0.02)
        self.positions = nn.Parameter(torch.randn(1, config.text_tokens + _EXTRA_TOKENS, width) * 0.02)
        self.blocks = nn.ModuleList([TransformerBlock(width, config.heads, config.qkv_bias)
                                     for _ in range(config.layers)])
        self.norm_out = nn.LayerNorm(width)
        self.out = nn.Linear(width, config.embed_dim)
        if config.embedding_stats:  # what the prior's space is standardised by (to_prior_space / from_prior_space)
            self.clip_mean = nn.Parameter(torch.zeros(1, config.embed_dim))
            self.clip_std = nn.Parameter(torch.ones(1, config.embed_dim))

    @property
    def stats(self) -> tuple[Tensor, Tensor] | None:
        """(mean, std) `(1, embed_dim)` the prior's space is standardised by, or None (unit vectors × √D)."""
        return (self.clip_mean, self.clip_std) if self.config.embedding_stats else None

    def forward(self, x: Tensor, t: Tensor, *, text_tokens: Tensor, text_embed: Tensor,
                text_mask: Tensor | None = None) -> Tensor:
        """x: noised image embedding `(b, embed_dim)`; t: `(b,)`; text_tokens `(b, L, text_dim)` with
        L ≤ config.text_tokens; text_embed `(b, embed_dim)`; text_mask `(b, L)` bool, True = real token.
        Returns `(b, embed_dim)`."""
        batch, length = text_tokens.shape[:2]
        if length > self.config.text_tokens:
            raise ValueError(f"the prior takes at most {self.config.text_tokens} text tokens, got {length}")
        dtype = self.query.dtype
        extra = torch.stack([
            self.text_embed_proj(text_embed.to(dtype)),
            self.time_embed(t.expand(batch) if t.ndim == 0 else t),
            self.image_embed_proj(x.to(dtype)),
            self.query[:, 0].expand(batch, -1),
        ], dim=1)
        tokens = torch.cat([
            self.text_proj(text_tokens.to(dtype)) + self.positions[:, :length],
            extra + self.positions[:, -_EXTRA_TOKENS:],
        ], dim=1)
        attn_mask = None
        if text_mask is not None:
            keep = torch.ones(batch, _EXTRA_TOKENS, dtype=torch.bool, device=text_mask.device)
            attn_mask = rearrange(torch.cat([text_mask.bool(), keep], dim=1), "b m -> b 1 1 m")
        if self.config.causal:  # token i attends to tokens ≤ i (the query, last, to all)
            n = tokens.shape[1]
            causal = torch.ones(n, n, dtype=torch.bool, device=tokens.device).tril()
            attn_mask = causal if attn_mask is None else attn_mask & causal
        for block in self.blocks:
            tokens = block(tokens, attn_mask)
        return self.out(self.norm_out(tokens[:, -1])).to(x.dtype)
