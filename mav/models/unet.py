"""The SpaceTime UNet: D^t, ↑F and SR^t_l (pseudo-3D), and SR_h (config.temporal=False, spatial only).

Frames are folded into the batch once at the input, `b c f h w → (b f) c h w`, and unfolded once at the output;
in between, spatial layers see plain images and only the temporal parts of the pseudo-3D layers rearrange.
Down- and upsampling are spatial only: frames are never merged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import Tensor, nn

from mav.config import UNetConfig
from mav.models.layers import TimestepEmbedding, group_norm
from mav.models.pseudo3d import Pseudo3DAttention, Pseudo3DConv


AUG_LEVEL_SCALE = 1000.0  # a noise std in [0, ~0.2] → the timestep range the sinusoidal features resolve


def _zero_last(embedding: TimestepEmbedding) -> TimestepEmbedding:
    """Zero the embedding MLP's output layer, so the condition it adds starts as a no-op."""
    nn.init.zeros_(embedding.mlp[-1].weight)
    nn.init.zeros_(embedding.mlp[-1].bias)
    return embedding


def is_temporal_parameter(name: str) -> bool:
    """Whether a parameter name (from `named_parameters`) belongs to a temporal layer (training stage 4)."""
    return any(part.startswith("temporal") for part in name.split("."))


class ResBlock(nn.Module):
    """GroupNorm → SiLU → Pseudo3DConv, twice, with the embedding conditioning the second norm, and a residual.

    `time_conditioning`: "scale_shift" (norm(h)·(1 + s) + b, s and b from the embedding; mav's and unCLIP's
    decoder) or "add" (norm(h + e); DDPM's, unCLIP's SR). `resample` "down" / "up" makes it the level's
    resampler (BigGAN's, unCLIP's): after the first norm, the features and the residual are average-pooled 2×2 or
    repeated 2×2 (nearest).
    """

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int, *, temporal: bool, groups: int = 0,
                 time_conditioning: str = "scale_shift", resample: str | None = None) -> None:
        super().__init__()
        self.scale_shift, self.resample = time_conditioning == "scale_shift", resample
        self.norm1 = group_norm(in_channels, groups)
        self.conv1 = Pseudo3DConv(in_channels, out_channels, temporal=temporal)
        self.emb_proj = nn.Linear(emb_dim, (2 if self.scale_shift else 1) * out_channels)
        self.norm2 = group_norm(out_channels, groups)
        self.conv2 = Pseudo3DConv(out_channels, out_channels, temporal=temporal)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor, frames: int, temporal: bool, **_) -> Tensor:
        """x: `(b f) c h w`; emb: `((b f), emb_dim)`, already passed through SiLU."""
        h = F.silu(self.norm1(x))
        if self.resample == "down":
            h, x = F.avg_pool2d(h, 2), F.avg_pool2d(x, 2)
        elif self.resample == "up":
            h, x = (F.interpolate(a, scale_factor=2.0, mode="nearest") for a in (h, x))
        h = self.conv1(h, frames, temporal)
        e = rearrange(self.emb_proj(emb), "n c -> n c 1 1")
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = self.norm2(h) * (1 + scale) + shift
        else:
            h = self.norm2(h + e)
        h = self.conv2(F.silu(h), frames, temporal)
        return self.skip(x) + h


class SpaceTimeBlock(nn.Module):
    """A ResBlock, optionally followed by pseudo-3D attention."""

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int, heads: int, context_dim: int | None,
                 *, attention: bool, temporal: bool, fps_dim: int | None = None, groups: int = 0,
                 time_conditioning: str = "scale_shift", joint: bool = False) -> None:
        super().__init__()
        self.res = ResBlock(in_channels, out_channels, emb_dim, temporal=temporal, groups=groups,
                            time_conditioning=time_conditioning)
        self.attn = (Pseudo3DAttention(out_channels, heads, context_dim, temporal=temporal, fps_dim=fps_dim,
                                       joint=joint, groups=groups)
                     if attention else None)

    def forward(self, x: Tensor, emb: Tensor, frames: int, context: Tensor | None, context_mask: Tensor | None,
                temporal: bool, fps_emb: Tensor | None = None, fps_keep: Tensor | None = None) -> Tensor:
        x = self.res(x, emb, frames, temporal)
        if self.attn is not None:
            x = self.attn(x, frames, context, context_mask, temporal, fps_emb, fps_keep)
        return x


class Downsample(nn.Module):
    """Halve height and width with a stride-2 convolution (frames untouched)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor, **_) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Double height and width: nearest neighbour, then a 3×3 convolution (frames untouched)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor, **_) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class SpaceTimeUNet(nn.Module):
    """Config-driven pseudo-3D UNet denoiser for images `b c h w` and videos `b c f h w`.

    Conditioning: diffusion timestep, fps (if `config.fps_cond`), CLIP image embedding (added to the time
    embedding and projected to `config.image_tokens` context tokens), CLIP text tokens (cross-attention with a
    key padding mask) and extra input channels `cond`. A learned null token is always part of the
    cross-attention context, so a sample whose text tokens are all masked still has something to attend to.
    At initialisation every temporal layer is the identity: the video output equals the image output per frame.
    """

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        self._frame_chunk = 0
        widths, temporal = config.widths, config.temporal
        emb_dim = 4 * widths[0]
        self.time_embed = TimestepEmbedding(widths[0], emb_dim)
        # Conditions added to the time embedding start at zero, so adding them leaves a trained model unchanged.
        self.fps_embed = _zero_last(TimestepEmbedding(widths[0], emb_dim)) if config.fps_cond else None
        self.aug_embed = _zero_last(TimestepEmbedding(widths[0], emb_dim)) if config.aug_cond else None

        # Cross-attention context: [null token] + [image tokens] + [text tokens], each of width context_dim.
        self.has_context = config.image_embed_dim > 0 or config.text_dim > 0
        context_dim = (config.context_dim or emb_dim) if self.has_context else None
        self.image_embed_proj: nn.Sequential | None = None
        self.image_to_tokens: nn.Linear | None = None
        self.null_image: nn.Parameter | None = None
        self.text_proj: nn.Sequential | None = None
        self.pooled_proj: nn.Linear | None = None
        self.null_token: nn.Parameter | None = None
        if config.image_embed_dim > 0:
            self.image_embed_proj = (nn.Sequential(nn.Linear(config.image_embed_dim, emb_dim), nn.SiLU(),
                                                   nn.Linear(emb_dim, emb_dim)) if config.image_embed_mlp
                                     else nn.Sequential(nn.Linear(config.image_embed_dim, emb_dim)))
            if config.image_tokens > 0:
                self.image_to_tokens = nn.Linear(config.image_embed_dim, config.image_tokens * context_dim)
            if config.learned_null_image:
                self.null_image = nn.Parameter(torch.zeros(config.image_embed_dim))
        if config.text_dim > 0:
            self.text_proj = (nn.Sequential(nn.LayerNorm(config.text_dim), nn.Linear(config.text_dim, context_dim))
                              if config.text_norm == "before"
                              else nn.Sequential(nn.Linear(config.text_dim, context_dim), nn.LayerNorm(context_dim)))
        if config.pooled_text_dim > 0:
            self.pooled_proj = nn.Linear(config.pooled_text_dim, emb_dim)
        if self.has_context and config.null_token:
            self.null_token = nn.Parameter(torch.randn(1, 1, context_dim) * 0.02)

        self.conv_in = nn.Conv2d(config.in_channels + config.cond_channels, widths[0], 3, padding=1)
        shared = dict(emb_dim=emb_dim, temporal=temporal, groups=config.norm_groups,
                      time_conditioning=config.time_conditioning)
        block = dict(shared, context_dim=context_dim, fps_dim=emb_dim if config.fps_temporal else None,
                     joint=config.attention == "joint")

        def down(channels: int) -> nn.Module:
            if config.resample == "resblock":
                return ResBlock(channels, channels, resample="down", **shared)
            return Downsample(channels)

        def up(channels: int) -> nn.Module:
            if config.resample == "resblock":
                return ResBlock(channels, channels, resample="up", **shared)
            return Upsample(channels)

        self.down = nn.ModuleList()
        skip_channels = [widths[0]]
        channels = widths[0]
        for level, width in enumerate(widths):
            for _ in range(config.blocks_per_level):
                self.down.append(SpaceTimeBlock(channels, width, heads=config.heads_at(width),
                                                attention=level in config.attention_levels, **block))
                channels = width
                skip_channels.append(channels)
            if level < len(widths) - 1:
                self.down.append(down(channels))
                skip_channels.append(channels)
        self.mid = nn.ModuleList([
            SpaceTimeBlock(channels, channels, heads=config.heads_at(channels),
                           attention=len(config.attention_levels) > 0, **block),
            SpaceTimeBlock(channels, channels, heads=config.heads_at(channels), attention=False, **block),
        ])
        self.up = nn.ModuleList()
        for level, width in reversed(list(enumerate(widths))):
            for _ in range(config.blocks_per_level + 1):
                self.up.append(SpaceTimeBlock(channels + skip_channels.pop(), width, heads=config.heads_at(width),
                                              attention=level in config.attention_levels, **block))
                channels = width
            if level > 0:
                self.up.append(up(channels))
        self.norm_out = group_norm(channels, config.norm_groups)
        self.conv_out = nn.Conv2d(channels, config.out_channels, 3, padding=1)
        # unCLIP's SR: a network of the same shape for the final step (see `Stage.denoise`)
        self.last_step = (SpaceTimeUNet(dataclasses.replace(config, last_step_denoiser=False))
                          if config.last_step_denoiser else None)

    @property
    def frame_chunk(self) -> int:
        """How many frames (of the `(b f)` batch) the spatial convolutions and attentions take at a time; 0 = all.
        Lower values trade speed for the transient memory of those layers; results are the same."""
        return self._frame_chunk

    @frame_chunk.setter
    def frame_chunk(self, size: int) -> None:
        if size < 0:
            raise ValueError(f"frame_chunk must be ≥ 0, got {size}")
        self._frame_chunk = size
        for module in self.modules():
            if isinstance(module, (Pseudo3DConv, Pseudo3DAttention)):
                module.frame_chunk = size

    def temporal_parameters(self) -> Iterator[nn.Parameter]:
        """The parameters added for video (Dirac conv1d, temporal attention); empty if config.temporal=False."""
        return (p for name, p in self.named_parameters() if is_temporal_parameter(name))

    def forward(self, x: Tensor, t: Tensor, *, cond: Tensor | None = None, image_embed: Tensor | None = None,
                text_tokens: Tensor | None = None, text_mask: Tensor | None = None, text_pooled: Tensor | None = None,
                fps: Tensor | None = None, aug_level: Tensor | None = None, image_keep: Tensor | None = None,
                fps_keep: Tensor | None = None, temporal: bool = True) -> Tensor:
        """Predict the diffusion target for `x` at timesteps `t`; output has out_channels and x's layout.

        x: `b c f h w` or `b c h w` (f = 1); t: `(b,)`; cond: like x with cond_channels; image_embed:
        `(b, image_embed_dim)`, None = the unconditional embedding (`null_image_embed`); text_tokens
        `(b, L, text_dim)` with text_mask `(b, L)` bool (True = real token); text_pooled `(b, pooled_text_dim)`, the
        pooled text embedding (config.pooled_text_dim; None adds nothing); image_keep `(b,)` bool: where False the
        unconditional embedding replaces image_embed (classifier-free dropout, inside the forward so a learned
        unconditional embedding trains under DDP like any parameter); fps `(b,)`, used only if config.fps_cond;
        aug_level `(b,)`: the std of the noise added to an SR model's low-resolution input (config.aug_cond);
        fps_keep `(b,)` bool: where False the sample gets no fps at all, as if fps were None (config.fps_guidance's
        dropout and unconditional branch); temporal=False skips temporal layers.
        """
        is_image = x.ndim == 4
        if is_image:
            x = rearrange(x, "b c h w -> b c 1 h w")
            if cond is not None and cond.ndim == 4:
                cond = rearrange(cond, "b c h w -> b c 1 h w")
        self._check_inputs(x, cond, image_embed, text_tokens)
        batch, _, frames = x.shape[:3]
        if cond is not None:
            x = torch.cat([x, cond], dim=1)
        temporal = temporal and self.config.temporal

        fps_hidden = self._fps_hidden(fps, batch)
        fps_emb = None if fps_hidden is None else self.fps_embed.mlp[2](fps_hidden)
        if fps_emb is not None and fps_keep is not None:  # no fps at all where not kept (the temporal layers below)
            fps_emb = fps_emb * rearrange(fps_keep.to(fps_emb), "b -> b 1")
        if self.image_embed_proj is not None and (image_embed is not None or image_keep is not None):
            image_embed = self._image_embed_or_null(image_embed, batch, image_keep)
        emb = self._embedding(t, fps_emb, aug_level, image_embed, text_pooled, batch, x.dtype)
        emb = repeat(F.silu(emb), "b d -> (b f) d", f=frames)
        context, context_mask = self._context(image_embed, text_tokens, text_mask, batch, x.dtype)
        if context is not None:
            context = repeat(context, "b m d -> (b f) m d", f=frames)
            context_mask = repeat(context_mask, "b m -> (b f) m", f=frames)
        run = dict(emb=emb, frames=frames, context=context, context_mask=context_mask, temporal=temporal,
                   fps_emb=fps_hidden.to(x.dtype) if fps_hidden is not None and self.config.fps_temporal else None,
                   fps_keep=fps_keep if fps_hidden is not None else None)

        h = self.conv_in(rearrange(x, "b c f h w -> (b f) c h w"))
        skips = [h]
        for layer in self.down:
            h = layer(h, **run)
            skips.append(h)
        for layer in self.mid:
            h = layer(h, **run)
        for layer in self.up:
            h = layer(torch.cat([h, skips.pop()], dim=1) if isinstance(layer, SpaceTimeBlock) else h, **run)
        out = self.conv_out(F.silu(self.norm_out(h)))
        out = rearrange(out, "(b f) c h w -> b c f h w", f=frames)
        return out[:, :, 0] if is_image else out

    def _check_inputs(self, x: Tensor, cond: Tensor | None, image_embed: Tensor | None,
                      text_tokens: Tensor | None) -> None:
        config = self.config
        if x.ndim != 5:
            raise ValueError(f"x must be b c h w or b c f h w, got shape {tuple(x.shape)}")
        if x.shape[1] != config.in_channels:
            raise ValueError(f"x has {x.shape[1]} channels, the model expects {config.in_channels}")
        factor = 2 ** (len(config.widths) - 1)
        if x.shape[-1] % factor or x.shape[-2] % factor:
            raise ValueError(f"height and width must be multiples of {factor}, got {tuple(x.shape[-2:])}")
        if config.cond_channels > 0:
            expected = (x.shape[0], config.cond_channels, *x.shape[2:])
            if cond is None or tuple(cond.shape) != expected:
                got = None if cond is None else tuple(cond.shape)
                raise ValueError(f"cond must have shape {expected}, got {got}")
        elif cond is not None:
            raise ValueError("this UNet takes no cond channels (cond_channels=0)")
        if image_embed is not None and config.image_embed_dim == 0:
            raise ValueError("this UNet has no image-embedding conditioning (image_embed_dim=0)")
        if text_tokens is not None and config.text_dim == 0:
            raise ValueError("this UNet has no text conditioning (text_dim=0)")

    def _fps_hidden(self, fps: Tensor | None, batch: int) -> Tensor | None:
        """The fps embedding's hidden features `(b, emb_dim)`: its output layer (zero at init) adds them to the time
        embedding, and the temporal attention reads them directly, so it can learn from fps at once."""
        if self.fps_embed is None or fps is None:
            return None
        return self.fps_embed.hidden(fps.expand(batch) if fps.ndim == 0 else fps)

    def _embedding(self, t: Tensor, fps_emb: Tensor | None, aug_level: Tensor | None, image_embed: Tensor | None,
                   text_pooled: Tensor | None, batch: int, dtype: torch.dtype) -> Tensor:
        """Time embedding + fps embedding + noise-augmentation level + image embedding + pooled text,
        `(b, emb_dim)`."""
        emb = self.time_embed(t.expand(batch) if t.ndim == 0 else t)
        if fps_emb is not None:
            emb = emb + fps_emb
        if self.aug_embed is not None:
            level = torch.zeros(batch, device=emb.device) if aug_level is None else aug_level.float().expand(batch)
            emb = emb + self.aug_embed(level * AUG_LEVEL_SCALE)
        if self.image_embed_proj is not None:
            emb = emb + self.image_embed_proj(self._image_embed_or_null(image_embed, batch))
        if self.pooled_proj is not None and text_pooled is not None:
            emb = emb + self.pooled_proj(text_pooled.to(self.pooled_proj.weight.dtype))
        return emb.to(dtype)

    def null_image_embed(self, batch: int) -> Tensor:
        """The unconditional image embedding `(b, image_embed_dim)` that guidance and conditioning dropout use:
        zeros, or the learned vector of a model that has one (config.learned_null_image)."""
        weight = self.image_embed_proj[0].weight
        if self.null_image is not None:
            return self.null_image.expand(batch, -1)
        return weight.new_zeros(batch, self.config.image_embed_dim)

    def _image_embed_or_null(self, image_embed: Tensor | None, batch: int, keep: Tensor | None = None) -> Tensor:
        null = self.null_image_embed(batch)
        if image_embed is None:
            return null
        image_embed = image_embed.to(null.dtype)
        return image_embed if keep is None else torch.where(keep.view(-1, 1).to(image_embed.device), image_embed, null)

    def _context(self, image_embed: Tensor | None, text_tokens: Tensor | None, text_mask: Tensor | None,
                 batch: int, dtype: torch.dtype) -> tuple[Tensor | None, Tensor | None]:
        """Cross-attention tokens `(b, m, context_dim)` and their key mask `(b, m)` (True = attend)."""
        if not self.has_context:
            return None, None
        param = self.image_embed_proj[0].weight if self.image_embed_proj is not None else self.text_proj[0].weight
        tokens = [] if self.null_token is None else [self.null_token.expand(batch, -1, -1)]
        if self.image_to_tokens is not None:
            projected = self.image_to_tokens(self._image_embed_or_null(image_embed, batch))
            tokens.append(rearrange(projected, "b (m d) -> b m d", m=self.config.image_tokens))
        fixed = sum(part.shape[1] for part in tokens)
        mask = [torch.ones(batch, fixed, dtype=torch.bool, device=param.device)]
        if text_tokens is not None:
            tokens.append(self.text_proj(text_tokens.to(param.dtype)))
            if text_mask is None:
                text_mask = torch.ones(text_tokens.shape[:2], dtype=torch.bool, device=text_tokens.device)
            mask.append(text_mask.to(device=param.device, dtype=torch.bool))
        if not tokens:
            return None, None
        return torch.cat(tokens, dim=1).to(dtype), torch.cat(mask, dim=1)
