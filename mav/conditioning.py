"""How each stage is conditioned: the conventions that training and inference must share.

Keeping them in one place means the trainer and the pipeline cannot drift apart (a mask polarity or an
embedding scale that differs between the two would silently ruin a model).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from einops import rearrange, repeat
from torch import Tensor

NATIVE_FPS = 30.0  # the frame rate a frame skip k divides: a clip with skip k has fps 30/k


def frame_skip(fps: float) -> int:
    """The whole native-frame skip nearest to `fps` (at least 1): the rate a clip is rendered or read at."""
    return max(1, round(NATIVE_FPS / fps))


@dataclass
class Text:
    """CLIP text conditioning for a batch: per-token states, pooled embedding, token mask."""

    tokens: Tensor  # b L d
    pooled: Tensor  # b D
    mask: Tensor  # b L (True = real token)


def unet_inputs(config, batch: int, *, embed: Tensor | None = None, text: Text | None = None,
                fps: float | Tensor | None = None, cond: Tensor | None = None, aug_level: Tensor | None = None,
                keep: Tensor | None = None, device: torch.device | str = "cpu") -> dict:
    """The keyword arguments of a UNet call, limited to what its config uses; training and sampling both build
    them here.

    embed: (b, D) CLIP image embedding, zeros when None (the unconditional embedding); text: the prompt's token
    states; fps: one rate for the batch or (b,) rates, left out when None; cond: the extra input channels (↑F's
    masked frames, SR's upsampled input); aug_level: (b,) noise-augmentation std of an SR input; keep: (b,) bool,
    classifier-free dropout of the embedding (False: the model's unconditional embedding, zeros or learned), and of
    the fps with it when the model guides on fps (config.fps_guidance). The
    text's pooled embedding goes in too when the model reads it (config.pooled_text_dim). `device` is where
    filled-in tensors go.
    """
    kwargs: dict = {}
    if cond is not None:
        kwargs["cond"] = cond
    if config.image_embed_dim:
        kwargs["image_embed"] = embed if embed is not None else torch.zeros(batch, config.image_embed_dim,
                                                                           device=device)
        if keep is not None:
            kwargs["image_keep"] = keep
    if config.text_dim and text is not None:
        kwargs["text_tokens"], kwargs["text_mask"] = text.tokens, text.mask
    if getattr(config, "pooled_text_dim", 0) and text is not None:
        kwargs["text_pooled"] = text.pooled
    if config.fps_cond and fps is not None:
        kwargs["fps"] = fps if isinstance(fps, Tensor) else torch.full((batch,), float(fps), device=device)
        if config.fps_guidance and keep is not None:
            kwargs["fps_keep"] = keep
    if config.aug_cond and aug_level is not None:
        kwargs["aug_level"] = aug_level
    return kwargs


def image_embedding(clip, images: Tensor) -> Tensor:
    """C_y as every stage reads it, for training and sampling alike: float32, unit-norm for a CLIP that normalises
    (`ClipConfig.normalize_image`, mav's own), the raw projection otherwise (unCLIP's decoder reads it so)."""
    embed = clip.encode_image(images).float()
    return torch.nn.functional.normalize(embed, dim=-1) if clip.config.normalize_image else embed


def mean_embedding(a: Tensor, b: Tensor, normalized: bool) -> Tensor:
    """The embedding halfway between two images': their sum made unit-norm, or (raw embeddings) their mean."""
    return torch.nn.functional.normalize(a + b, dim=-1) if normalized else (a + b) / 2


def prior_scale(embed_dim: int) -> float:
    """CLIP embeddings are unit vectors (per-dimension std ≈ 1/√D); P diffuses them scaled by √D to unit variance."""
    return math.sqrt(embed_dim)


def to_prior_space(image_embed: Tensor, stats: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """CLIP image embedding → the prior's x0: the unit vector scaled by √D, or, for a prior that carries
    per-dimension statistics (mean, std) as unCLIP's does, the embedding standardised by them."""
    if stats is not None:
        return (image_embed - stats[0].to(image_embed)) / stats[1].to(image_embed)
    return image_embed * prior_scale(image_embed.shape[-1])


def from_prior_space(x0: Tensor, stats: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """The prior's sample → a CLIP image embedding: unit-norm, or un-standardised with the prior's `stats` (and
    then left at its own norm, as unCLIP's decoder expects it)."""
    if stats is not None:
        return x0.float() * stats[1].float() + stats[0].float()
    return torch.nn.functional.normalize(x0.float(), dim=-1)


def frame_mask_cond(video: Tensor, known: Tensor, fill: str = "zeros") -> Tensor:
    """The 4 extra input channels of ↑F: the masked RGB and a binary mask (1 = known frame).

    video: b c f h w in [-1, 1]; known: (f,) or (b, f) bool, at least one frame known per sample when fill is
    "blend".  fill: what the RGB channels hold at the unknown frames: "zeros" (the paper's zero padding) or
    "blend" (`blend_known_frames`).  Returns b (c+1) f h w.
    """
    b, _, f, h, w = video.shape
    if known.dim() == 1:
        known = repeat(known, "f -> b f", b=b)
    mask = repeat(known.to(video.dtype), "b f -> b 1 f h w", h=h, w=w)
    if fill == "blend":
        rgb = blend_known_frames(video, known)
    elif fill == "zeros":
        rgb = video * mask
    else:
        raise ValueError(f"fill must be zeros or blend, got {fill!r}")
    return torch.cat([rgb, mask], dim=1)


def blend_known_frames(video: Tensor, known: Tensor) -> Tensor:
    """Each unknown frame as the linear blend of the nearest known frames before and after it, weighted by
    distance; before the first and after the last known frame, that frame held (also the ↑F baseline, through
    `mav.eval.metrics.linear_blend`).  video: b c f h w; known: (b, f) bool → b c f h w."""
    b, _, f = video.shape[:3]
    if not bool(known.any(1).all()):
        raise ValueError("blending needs at least one known frame per clip")
    idx = torch.arange(f, device=video.device).expand(b, f)
    before = torch.where(known, idx, -1).cummax(1).values  # the last known frame ≤ j (−1: none)
    after = torch.where(known, idx, f).flip(1).cummin(1).values.flip(1)  # the first known frame ≥ j (f: none)
    before, after = torch.where(before < 0, after, before), torch.where(after >= f, before, after)
    weight = torch.where(after > before, (idx - before) / (after - before).clamp(min=1), 0.0).to(video.dtype)

    def frames(at: Tensor) -> Tensor:
        return torch.gather(video, 2, repeat(at, "b f -> b c f h w", c=video.shape[1], h=video.shape[3],
                                             w=video.shape[4]))

    weight = rearrange(weight, "b f -> b 1 f 1 1")
    return (1 - weight) * frames(before) + weight * frames(after)


def sr_cond(low_res: Tensor, size: int, method: str = "bicubic") -> Tensor:
    """The extra input channels of an SR stage: the low-resolution video upsampled to the output size, by the
    model's `cond_upsample`: "bicubic" then clamped to [−1, 1] (mav's), or "antialias", torch's antialiased
    bicubic left unclamped (unCLIP's SR inputs).

    low_res: b c f h w → b c f size size (or b c h w → b c size size).
    """
    is_image = low_res.dim() == 4
    x = low_res if is_image else rearrange(low_res, "b c f h w -> (b f) c h w")
    x = torch.nn.functional.interpolate(x.float(), size=(size, size), mode="bicubic", align_corners=False,
                                        antialias=method == "antialias")
    x = (x if method == "antialias" else x.clamp(-1, 1)).to(low_res.dtype)
    return x if is_image else rearrange(x, "(b f) c h w -> b c f h w", b=low_res.shape[0])


def noise_augment(low_res: Tensor, level: Tensor, noise: Tensor) -> Tensor:
    """SR noise-conditioning augmentation: low + s·ε with one std s per sample. low_res, noise: b c … ; level: (b,)."""
    return low_res + level.to(low_res).reshape(-1, *[1] * (low_res.dim() - 1)) * noise


def sr_residual(high_res: Tensor, upsampled: Tensor, scale: float) -> Tensor:
    """What a residual SR stage diffuses: (x − bicubic(low)) / scale, bicubic of the *clean* low-res input."""
    return (high_res - upsampled) / scale


def from_sr_residual(residual: Tensor, upsampled: Tensor, scale: float) -> Tensor:
    """The inverse of `sr_residual`: x = bicubic(low) + scale · residual."""
    return upsampled + scale * residual


def resize_frames(video: Tensor, size: int) -> Tensor:
    """Resize b c f h w (or b c h w) to a square size: area filter down (no aliasing), bicubic up."""
    is_image = video.dim() == 4
    x = video if is_image else rearrange(video, "b c f h w -> (b f) c h w")
    if x.shape[-1] > size or x.shape[-2] > size:
        x = torch.nn.functional.interpolate(x.float(), size=(size, size), mode="area")
    else:
        x = torch.nn.functional.interpolate(x.float(), size=(size, size), mode="bicubic", align_corners=False)
    x = x.clamp(-1, 1).to(video.dtype)
    return x if is_image else rearrange(x, "(b f) c h w -> b c f h w", b=video.shape[0])
