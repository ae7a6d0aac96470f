"""Pseudo-3D convolution and attention (Make-A-Video §3.2, Eqs. 2 and 3).

Both layers work on frames folded into the batch, `(b f) c h w`, the layout the SpaceTime UNet keeps between
layers: the spatial (image) part then sees plain images, and only the temporal part rearranges. Each temporal
part starts as an identity, so at initialisation the video model is the image model applied frame by frame.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from mav.models.layers import Attention, FeedForward, JointAttention, group_norm


def chunked(fn, size: int, *tensors: Tensor | None) -> Tensor:
    """`fn(*tensors)` computed `size` rows at a time along dim 0 (frames folded into the batch) and concatenated:
    the same result, with the transient memory of `size` frames instead of all; size 0 runs all at once. Only for
    per-frame (spatial) work: a row must not depend on the others."""
    rows = next(t.shape[0] for t in tensors if t is not None)
    if not size or rows <= size:
        return fn(*tensors)
    parts = [t.split(size) if t is not None else [None] * -(-rows // size) for t in tensors]
    return torch.cat([fn(*chunk) for chunk in zip(*parts)], dim=0)


class Pseudo3DConv(nn.Module):
    """Conv2d over space, then Conv1d over frames: Conv_P3D(h) = Conv1D(Conv2D(h) ∘ T) ∘ T (Eq. 2).

    The Conv1d is Dirac-initialised with a zero bias (the identity); with `temporal=False` it does not exist.
    Input and output: `(b f) c h w` with `frames = f`.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, *, temporal: bool = True,
                 temporal_kernel_size: int = 3) -> None:
        super().__init__()
        self.spatial = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.frame_chunk = 0  # frames the spatial convolution takes at a time (0: all; SpaceTimeUNet.frame_chunk)
        self.temporal: nn.Conv1d | None = None
        if temporal:
            self.temporal = nn.Conv1d(out_channels, out_channels, temporal_kernel_size,
                                      padding=temporal_kernel_size // 2)
            nn.init.dirac_(self.temporal.weight)
            nn.init.zeros_(self.temporal.bias)

    def forward(self, x: Tensor, frames: int, temporal: bool = True) -> Tensor:
        x = chunked(self.spatial, self.frame_chunk, x)
        if self.temporal is None or not temporal:
            return x
        height, width = x.shape[-2:]
        # The Conv1d's weights run as a (k, 1) Conv2d over a `b c f (h w)` view: the same arithmetic as Conv1d
        # over `(b h w) c f` without copying into that layout and back. On the CPU it measured 1.4–2.7× faster
        # than that Conv1d, and up to 3× faster than a (k, 1, 1) Conv3d with one thread (benchmarks/layouts.py).
        x = rearrange(x, "(b f) c h w -> b c f (h w)", f=frames)
        weight = rearrange(self.temporal.weight, "o i k -> o i k 1")
        x = F.conv2d(x, weight, self.temporal.bias, padding=(self.temporal.padding[0], 0))
        return rearrange(x, "b c f (h w) -> (b f) c h w", h=height, w=width)


class FramePositionBias(nn.Module):
    """Relative position bias for temporal attention, defined for any number of frames.

    A small MLP maps the signed, log-compressed frame distance sign(j−i)·log(1+|j−i|) to one bias per head
    (continuous relative positions, as in Swin-v2), so a model trained on F frames still has a position signal
    for the 4F+ frames of ↑F.
    """

    def __init__(self, heads: int, hidden: int = 32) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(1, hidden), nn.SiLU(), nn.Linear(hidden, heads))

    def forward(self, frames: int) -> Tensor:
        """→ `(heads, frames, frames)` float bias, entry [h, i, j] for query frame i and key frame j."""
        weight = self.mlp[0].weight
        distance = torch.arange(-(frames - 1), frames, device=weight.device, dtype=weight.dtype)
        bias = self.mlp(rearrange(torch.sign(distance) * torch.log1p(distance.abs()), "d -> d 1"))
        index = torch.arange(frames, device=weight.device)
        relative = rearrange(index, "j -> 1 j") - rearrange(index, "i -> i 1") + frames - 1  # j − i, made ≥ 0
        return rearrange(bias[relative], "i j h -> h i j")


class Pseudo3DAttention(nn.Module):
    """Spatial attention then temporal self-attention: ATTN_P3D (Eq. 3).

    Spatial part (per frame), one of two kinds:
    - `joint=False` (mav's own): a transformer block, i.e. self-attention, cross-attention to context tokens (if
      `context_dim`) and feed-forward, each pre-LayerNorm and residual;
    - `joint=True` (unCLIP's, for imported models): GroupNorm (`groups`), then one attention whose keys are the
      context tokens followed by the frame's own tokens, residual.
    Temporal part: self-attention over frames at every pixel with a relative position bias; its output projection
    is zero-initialised, so it starts as the identity. Input and output: `(b f) c h w` with `frames = f`.
    """

    def __init__(self, dim: int, heads: int, context_dim: int | None = None, *, temporal: bool = True,
                 fps_dim: int | None = None, joint: bool = False, groups: int = 0) -> None:
        super().__init__()
        self.frame_chunk = 0  # frames the spatial attention takes at a time (0: all; SpaceTimeUNet.frame_chunk)
        self.norm_joint: nn.GroupNorm | None = None
        self.joint_attn: JointAttention | None = None
        self.norm_self: nn.LayerNorm | None = None
        self.self_attn: Attention | None = None
        self.norm_cross: nn.LayerNorm | None = None
        self.cross_attn: Attention | None = None
        self.norm_ff: nn.LayerNorm | None = None
        self.ff: FeedForward | None = None
        if joint:
            self.norm_joint = group_norm(dim, groups)
            self.joint_attn = JointAttention(dim, heads, context_dim)
        else:
            self.norm_self = nn.LayerNorm(dim)
            self.self_attn = Attention(dim, heads)
            if context_dim is not None:
                self.norm_cross = nn.LayerNorm(dim)
                self.cross_attn = Attention(dim, heads, context_dim)
            self.norm_ff = nn.LayerNorm(dim)
            self.ff = FeedForward(dim)
        self.temporal_norm: nn.LayerNorm | None = None
        self.temporal_attn: Attention | None = None
        self.temporal_position: FramePositionBias | None = None
        if temporal:
            self.temporal_norm = nn.LayerNorm(dim)
            self.temporal_attn = Attention(dim, heads)
            self.temporal_position = FramePositionBias(heads)
            nn.init.zeros_(self.temporal_attn.to_out.weight)
            nn.init.zeros_(self.temporal_attn.to_out.bias)
        # The fps embedding as a scale and shift of the temporal attention's normalised input (zero at first), so
        # the layers that learn motion can tell how far apart the frames are.
        self.temporal_fps: nn.Linear | None = None
        if temporal and fps_dim is not None:
            self.temporal_fps = nn.Linear(fps_dim, 2 * dim)
            nn.init.zeros_(self.temporal_fps.weight)
            nn.init.zeros_(self.temporal_fps.bias)

    def forward(self, x: Tensor, frames: int, context: Tensor | None = None, context_mask: Tensor | None = None,
                temporal: bool = True, fps_emb: Tensor | None = None, fps_keep: Tensor | None = None) -> Tensor:
        """x: `(b f) c h w`; context: `((b f), m, context_dim)`; context_mask: bool `((b f), m)`, True = attend;
        fps_emb: `(b, fps_dim)`, the fps embedding's hidden features, used when the layer has `temporal_fps`;
        fps_keep: `(b,)` bool, False where a sample has no fps (no scale or shift)."""
        height, width = x.shape[-2:]
        tokens = chunked(self._spatial, self.frame_chunk, x, context, context_mask)
        if self.temporal_attn is None or not temporal:
            return rearrange(tokens, "n (h w) c -> n c h w", h=height, w=width)
        tokens = rearrange(tokens, "(b f) s c -> b s f c", f=frames)
        normed = self.temporal_norm(tokens)
        if self.temporal_fps is not None and fps_emb is not None:
            modulation = self.temporal_fps(fps_emb)
            if fps_keep is not None:
                modulation = modulation * rearrange(fps_keep.to(modulation), "b -> b 1")
            scale, shift = rearrange(modulation, "b (two c) -> two b 1 1 c", two=2)
            normed = normed * (1 + scale) + shift
        tokens, normed = (rearrange(a, "b s f c -> (b s) f c") for a in (tokens, normed))
        # A 4-D bias `(1, heads, f, f)`: on the CPU, SDPA with the same bias as 3-D `(heads, f, f)` measured
        # 1.1–1.5× slower in fp32 (benchmarks/layouts.py).
        bias = rearrange(self.temporal_position(frames).to(tokens.dtype), "h i j -> 1 h i j")
        tokens = tokens + self.temporal_attn(normed, attn_mask=bias)
        return rearrange(tokens, "(b h w) f c -> (b f) c h w", h=height, w=width)

    def _spatial(self, x: Tensor, context: Tensor | None, context_mask: Tensor | None) -> Tensor:
        """The per-frame part: `n c h w` → tokens `n (h w) c`."""
        tokens = rearrange(x, "n c h w -> n (h w) c")
        if self.joint_attn is not None:
            return tokens + self.joint_attn(rearrange(self.norm_joint(x), "n c h w -> n (h w) c"), context,
                                            self._joint_mask(context, context_mask, tokens.shape[1]))
        tokens = tokens + self.self_attn(self.norm_self(tokens))
        if self.cross_attn is not None and context is not None:
            mask = None if context_mask is None else rearrange(context_mask, "n m -> n 1 1 m")
            tokens = tokens + self.cross_attn(self.norm_cross(tokens), context, mask)
        return tokens + self.ff(self.norm_ff(tokens))

    @staticmethod
    def _joint_mask(context: Tensor | None, context_mask: Tensor | None, length: int) -> Tensor | None:
        """The joint attention's key mask `(n, 1, 1, m + length)`: the context's own, then every frame token."""
        if context is None or context_mask is None:
            return None
        own = context_mask.new_ones(context_mask.shape[0], length)
        return rearrange(torch.cat([context_mask, own], dim=1), "n m -> n 1 1 m")
