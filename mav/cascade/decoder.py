"""D^t, the decoder: a pseudo-3D UNet that makes F frames at the base resolution from a CLIP image embedding,
the prompt's tokens and the frame rate (paper §3.2). The unconditional side has the model's unconditional embedding
(zeros, or unCLIP's learned one) and the negative prompt."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mav.cascade.stage import Stage
from mav.conditioning import Text, unet_inputs


class Decoder(Stage):
    """D^t: CLIP image embedding (+ text, fps) → base frames."""

    name, label = "decoder", "decoder D^t"

    def conditions(self, embed: Tensor, text: Text | None, negative: Text | None,
                   fps: float | None) -> tuple[dict, dict]:
        """The network's keyword arguments for guidance: conditional, and unconditional (the model's
        unconditional embedding, zeros or learned, and the negative prompt)."""
        b, device = embed.shape[0], self.runtime.device
        # A model that guides on fps (config.fps_guidance) has no fps on its unconditional side.
        keep = torch.ones(b, dtype=torch.bool, device=device) if self.config.fps_guidance else None
        cond = unet_inputs(self.config, b, embed=embed, text=text, fps=fps, keep=keep, device=device)
        uncond = unet_inputs(self.config, b, embed=self.model.null_image_embed(b).to(embed), text=negative, fps=fps,
                             keep=None if keep is None else ~keep, device=device)
        return cond, uncond

    def sample(self, embed: Tensor, text: Text | None, negative: Text | None, gens: Sequence[torch.Generator], *,
               num_frames: int, fps: float, steps: int, guidance: float, x_start: Tensor | None = None,
               strength: float = 1.0) -> Tensor:
        """b 3 F S S frames in [-1, 1]; from `x_start` noised to `strength` when given (variations)."""
        size = self.config.sample_size
        cond, uncond = self.conditions(embed, text, negative, fps)
        noise = self.noise((len(gens), 3, num_frames, size, size), gens)
        return self.denoise(noise, cond, uncond, steps=steps, guidance=guidance, gens=gens, x_start=x_start,
                            strength=strength)
