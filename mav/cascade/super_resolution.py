"""SR^t_l and SR_h, the super-resolution stages (paper §3.4).

Both are residual: they diffuse (x − bicubic(low)) / scale, with the bicubic upsampling of the low-resolution
input as extra input channels. With noise-augmentation conditioning the network sees that input noised to the
model's fixed level `noise_aug` and is told the level; the residual stays relative to the clean input.
SR^t_l is pseudo-3D and works on windows of frames; SR_h works per frame, from the same initial noise for every
frame (less flicker).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from einops import rearrange, repeat
from torch import Tensor

from mav.cascade.stage import Stage
from mav.conditioning import noise_augment, resize_frames, sr_cond, unet_inputs

SR_HIGH_CHUNK = 8  # frames SR_h denoises at once (it works per frame; this only bounds memory)


class SuperResolution(Stage):
    """What SR^t_l and SR_h share: their network inputs and the residual sampling call."""

    def inputs(self, low: Tensor, aug_noise: Tensor | None, fps: float | None = None) -> tuple[dict, Tensor]:
        """The network's keyword arguments for low-res frames (b c f h w, or b c h w), and the clean bicubic
        upsampling its residual is relative to. `aug_noise`, like `low`: the augmentation noise, when the model
        takes it."""
        cfg, device = self.config, self.runtime.device
        b, clean = low.shape[0], sr_cond(low, cfg.sample_size, cfg.cond_upsample)
        if not cfg.aug_cond:
            return unet_inputs(cfg, b, fps=fps, cond=clean, device=device), clean
        level = torch.full((b,), cfg.noise_aug, device=device)
        cond = sr_cond(noise_augment(low, level, aug_noise), cfg.sample_size, cfg.cond_upsample)
        return unet_inputs(cfg, b, fps=fps, cond=cond, aug_level=level, device=device), clean

    def grows(self, video: Tensor, max_size: int | None = None) -> bool:
        """Whether the stage makes `video` larger (and, with max_size, the video is still below that size)."""
        size = video.shape[-1]
        return self.config.sample_size > size and (max_size is None or size < max_size)

    def _residual(self, noise: Tensor, low: Tensor, aug_noise: Tensor | None, gens: Sequence[torch.Generator], *,
                  steps: int, fps: float | None = None) -> Tensor:
        kwargs, up = self.inputs(low, aug_noise, fps)
        cfg = self.config
        return self.denoise(noise, kwargs, None, steps=steps, guidance=1.0, gens=gens,
                            offset=up if cfg.residual else None, scale=cfg.residual_scale)


class SRLow(SuperResolution):
    """SR^t_l: a pseudo-3D super-resolution of the whole clip, in windows of the model's frame count."""

    name, label = "sr_low", "SR^t_l"

    def sample(self, video: Tensor, gens: Sequence[torch.Generator], *, fps: float, steps: int) -> Tensor:
        """b 3 f h w → b 3 f S S."""
        cfg = self.config
        b, n = video.shape[0], video.shape[2]
        low = resize_frames(video, cfg.low_res_size)
        noise = self.noise((b, 3, n, cfg.sample_size, cfg.sample_size), gens)
        aug_noise = self.noise(tuple(low.shape), gens) if cfg.aug_cond else None
        parts = []
        for s in range(0, n, cfg.num_frames):
            window = slice(s, s + cfg.num_frames)
            parts.append(self._residual(noise[:, :, window], low[:, :, window],
                                        None if aug_noise is None else aug_noise[:, :, window], gens,
                                        steps=steps, fps=fps))
        return torch.cat(parts, dim=2)


class SRHigh(SuperResolution):
    """SR_h: spatial super-resolution per frame, with the same initial noise for every frame."""

    name, label = "sr_high", "SR_h"

    def sample(self, video: Tensor, gens: Sequence[torch.Generator], *, steps: int) -> Tensor:
        """b 3 f h w → b 3 f S S."""
        cfg = self.config
        b, n = video.shape[0], video.shape[2]
        low = resize_frames(video, cfg.low_res_size)
        noise = self.noise((b, 3, cfg.sample_size, cfg.sample_size), gens)
        # the augmentation noise, like the initial noise, is one draw for every frame (less flicker)
        aug_noise = self.noise((b, 3, cfg.low_res_size, cfg.low_res_size), gens) if cfg.aug_cond else None
        parts = []
        for s in range(0, n, SR_HIGH_CHUNK):
            f = low[:, :, s:s + SR_HIGH_CHUNK].shape[2]
            frames = rearrange(low[:, :, s:s + SR_HIGH_CHUNK], "b c f h w -> (b f) c h w")
            frame_noise = None if aug_noise is None else repeat(aug_noise, "b c h w -> (b f) c h w", f=f)
            x = repeat(noise, "b c h w -> (b f) c h w", f=f)
            frame_gens = [g for g in gens for _ in range(f)]
            out = self._residual(x, frames, frame_noise, frame_gens, steps=steps)
            parts.append(rearrange(out, "(b f) c h w -> b c f h w", b=b))
        return torch.cat(parts, dim=2)
