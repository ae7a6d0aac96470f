"""P, the diffusion prior: a prompt's CLIP text states → a unit-norm CLIP image embedding (paper §3.1).

It diffuses the embedding scaled by √D (`mav.conditioning.to_prior_space`), conditioned on the prompt's tokens and
pooled embedding; a negative prompt is its unconditional side.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mav.cascade.stage import Stage
from mav.conditioning import Text, from_prior_space


def prior_inputs(text: Text) -> dict:
    """The prior network's keyword arguments for a prompt."""
    return {"text_tokens": text.tokens, "text_embed": text.pooled, "text_mask": text.mask}


class Prior(Stage):
    """P: text → CLIP image embedding."""

    name, label = "prior", "prior P"

    def sample(self, text: Text, negative: Text, gens: Sequence[torch.Generator], *, steps: int,
               guidance: float) -> Tensor:
        """(b, D) unit-norm CLIP image embeddings for the prompts, guided away from `negative`."""
        noise = self.noise((len(gens), self.config.embed_dim), gens)
        x0 = self.denoise(noise, prior_inputs(text), prior_inputs(negative), steps=steps, guidance=guidance,
                          gens=gens, clamp=self.config.diffusion.clip_x0)
        return from_prior_space(x0, self.model.stats)
