"""↑F, masked frame interpolation: D^t fine-tuned with 4 more input channels, the masked RGB of the frames it is
given and a binary mask (paper §3.3). The same masked model raises the frame rate (every k-th frame known),
continues a clip (the first frames known) and animates an image (frame 0 known). mav's presets show it the
linear blend of the given frames where the paper zero-pads, and let it diffuse the difference from that blend
(`UNetConfig.mask_fill`, `residual`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from einops import rearrange
from torch import Tensor

from mav.cascade.stage import Stage
from mav.conditioning import Text, frame_mask_cond, unet_inputs


class Interpolator(Stage):
    """↑F: fills the frames it is not given, one window of the model's frame count at a time."""

    name, label = "interpolator", "interpolate ↑F"

    def fill(self, video: Tensor, known: Tensor, *, fps: float, embed: Tensor | None, text: Text | None,
             gens: Sequence[torch.Generator], steps: int, guidance: float, context: int = 1,
             label: str | None = None) -> Tensor:
        """Fill every frame where `known` is False.

        video: b 3 N S S (unknown frames may hold anything); known: (N,) bool. A window starts `context` frames
        before the first unknown frame and, when a known frame lies ahead, ends on the last known frame it can
        reach, so that interpolation always sees both ends; otherwise it extrapolates.
        """
        cfg, device = self.config, self.runtime.device
        b, n, window = video.shape[0], video.shape[2], cfg.num_frames
        video, known = video.clone(), known.clone().cpu()
        while not bool(known.all()):
            first = int((~known).nonzero()[0])
            start = max(0, first - context)
            ahead = [j for j in range(first + 1, min(n, start + window)) if known[j]]
            end = ahead[-1] + 1 if ahead else min(n, start + window)
            start = max(0, min(start, end - window))
            part, part_known = video[:, :, start:end], known[start:end]
            cond = frame_mask_cond(part, part_known.to(device), cfg.mask_fill)
            kwargs = unet_inputs(cfg, b, embed=embed, text=text, fps=fps, cond=cond, device=device)
            uncond = None
            if cfg.image_embed_dim and embed is not None:
                uncond = dict(kwargs, image_embed=self.model.null_image_embed(embed.shape[0]).to(embed))
            noise = self.noise((b, 3, end - start, cfg.sample_size, cfg.sample_size), gens)
            out = self.denoise(noise, kwargs, uncond, steps=steps, guidance=guidance, gens=gens, label=label,
                               offset=cond[:, :3] if cfg.residual else None, scale=cfg.residual_scale)
            keep = rearrange(part_known.to(device), "f -> 1 1 f 1 1")
            video[:, :, start:end] = torch.where(keep, part, out)
            known[start:end] = True
        return video

    def interpolate(self, video: Tensor, factor: int, *, fps: float, embed: Tensor | None, text: Text | None,
                    gens: Sequence[torch.Generator], steps: int, guidance: float) -> tuple[Tensor, float]:
        """factor − 1 new frames between every two frames of b 3 f S S: b 3 ((f−1)·factor+1) S S at fps × factor."""
        n = (video.shape[2] - 1) * factor + 1
        dense = torch.zeros(*video.shape[:2], n, *video.shape[3:], device=self.runtime.device)
        dense[:, :, ::factor] = video
        known = torch.zeros(n, dtype=torch.bool)
        known[::factor] = True
        fps = fps * factor
        return self.fill(dense, known, fps=fps, embed=embed, text=text, gens=gens, steps=steps,
                         guidance=guidance), fps
