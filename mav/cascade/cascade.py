"""The loaded cascade of one model folder: its stages, the CLIP encoders C_x and C_y, the settings every stage
samples under, and the tail ↑F → SR^t_l → SR_h that every mode of `mav.pipeline.Pipeline` ends with.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Self

import torch
from torch import Tensor, nn

from mav import checks
from mav.cascade import STAGE_CLASSES, Decoder, Interpolator, Prior, Runtime, SRHigh, SRLow
from mav.conditioning import Text, image_embedding
from mav.config import COMPONENTS, ModelIndex
from mav.errors import ModelError, UsageError
from mav.progress import Reporter


def _runtime(name: str, doc: str) -> property:
    """A Cascade attribute that lives on the Runtime its stages share, so that setting it reaches them all."""
    return property(lambda self: getattr(self.runtime, name), lambda self, v: setattr(self.runtime, name, v),
                    doc=doc)


class Cascade:
    """The stages of one loaded model folder and what they share; `Pipeline` runs the six modes on them."""

    device = _runtime("device", "Where the stages run.")
    dtype = _runtime("dtype", "What the stages compute in (autocast below fp32).")
    reporter = _runtime("reporter", "Where the stages report their progress.")
    sampler = _runtime("sampler", "The sampler every stage uses (`configure`).")
    timings = _runtime("timings", "Seconds each stage sampled for in the last call (stage → seconds).")

    def __init__(self, folder: Path, index: ModelIndex, models: dict[str, nn.Module], device: torch.device,
                 dtype: torch.dtype = torch.float32, reporter: Reporter | None = None) -> None:
        self.folder, self.index, self.models = folder, index, models
        self.defaults = index.defaults
        self.skipped = [c for c in COMPONENTS if c not in models]
        self.runtime = Runtime(device, dtype, reporter or Reporter(), index.defaults.sampler)
        # The cascade's stages, by component; a stage the folder lacks is None.
        self.stages = {name: stage(models[name], self.runtime) for name, stage in STAGE_CLASSES.items()
                       if name in models}
        self.prior: Prior | None = self.stages.get("prior")
        self.decoder: Decoder | None = self.stages.get("decoder")
        self.interpolator: Interpolator | None = self.stages.get("interpolator")
        self.sr_low: SRLow | None = self.stages.get("sr_low")
        self.sr_high: SRHigh | None = self.stages.get("sr_high")
        self._check_compatible()

    def _check_compatible(self) -> None:
        clip = self.models.get("clip")
        if clip is None:
            return
        for name in ("decoder", "interpolator"):
            m = self.models.get(name)
            if m is not None and m.config.image_embed_dim not in (0, clip.embed_dim):
                raise ModelError(f"{name} expects CLIP embeddings of width {m.config.image_embed_dim}, "
                                 f"but the model's CLIP gives {clip.embed_dim}")
        prior = self.models.get("prior")
        if prior is not None and prior.config.embed_dim != clip.embed_dim:
            raise ModelError(f"prior predicts embeddings of width {prior.config.embed_dim}, "
                             f"but the model's CLIP gives {clip.embed_dim}")

    @property
    def configs(self) -> dict:
        """Each loaded component's config, by component."""
        return {name: m.config for name, m in self.models.items()}

    def _require(self, *names: str) -> None:
        missing = [n for n in names if n not in self.models]
        if missing:
            raise ModelError(f"this mode needs the model's {', '.join(missing)}, which {self.folder} does not have")

    # ----------------------------------------------------------------------------------------------------------
    # C_x and C_y: the frozen CLIP encoders

    @torch.no_grad()
    def encode_text(self, prompts: Sequence[str]) -> Text:
        """C_x: tokens and embeddings of the prompts."""
        self._require("clip")
        clip = self.models["clip"]
        ids = clip.tokenize(list(prompts)).to(self.device)
        with self.runtime.autocast():
            tokens, pooled, mask = clip.encode_text(ids)
        return Text(tokens.float(), pooled.float(), mask)

    @torch.no_grad()
    def encode_images(self, images: Tensor) -> Tensor:
        """C_y: CLIP image embeddings of b c h w images in [-1, 1] (`conditioning.image_embedding`)."""
        self._require("clip")
        with self.runtime.autocast():
            return image_embedding(self.models["clip"], images.to(self.device))

    # ----------------------------------------------------------------------------------------------------------
    # The shared tail: ↑F → SR^t_l → SR_h

    def steps_for(self, stage: str, steps: int | dict | None) -> int:
        """Sampling steps for a stage: an int for all stages, a {stage: n} dict, or None for the model's default."""
        if isinstance(steps, dict):
            return int(steps.get(stage, self.defaults.steps[stage]))
        return int(steps) if steps is not None else int(self.defaults.steps[stage])

    def guidance_for(self, stage: str, guidance: float | dict | None) -> float:
        """Guidance scale for a stage: a float sets P and D^t, a {stage: g} dict any stage, None the defaults."""
        if isinstance(guidance, dict):
            return float(guidance.get(stage, self.defaults.guidance[stage]))
        # One number sets the text-following stages; the masked and SR stages keep their own defaults.
        if guidance is not None and stage in ("prior", "decoder"):
            return float(guidance)
        return float(self.defaults.guidance[stage])

    def _tail(self, video: Tensor, fps: float, gens: Sequence[torch.Generator], *, embed: Tensor | None,
              text: Text | None, factor: int, until: str, steps, guidance, stages=("interpolator", "sr_low",
                                                                                    "sr_high"),
              max_size: int | None = None) -> tuple[Tensor, float]:
        """Run ↑F, SR^t_l and SR_h (those present, requested and not past `until`) on a base-resolution video."""
        last = checks.UNTIL_STAGES.index(until)
        if "interpolator" in stages and factor > 1 and last >= 1 and self.interpolator is not None:
            video, fps = self.interpolator.interpolate(video, factor, fps=fps, embed=embed, text=text, gens=gens,
                                                       steps=self.steps_for("interpolator", steps),
                                                       guidance=self.guidance_for("interpolator", guidance))
        # An SR stage runs only when it makes the video larger (and, with max_size, not past that size).
        if "sr_low" in stages and last >= 2 and self.sr_low is not None and self.sr_low.grows(video, max_size):
            video = self.sr_low.sample(video, gens, fps=fps, steps=self.steps_for("sr_low", steps))
        if "sr_high" in stages and last >= 3 and self.sr_high is not None and self.sr_high.grows(video, max_size):
            video = self.sr_high.sample(video, gens, steps=self.steps_for("sr_high", steps))
        return video, fps

    def compile(self) -> Self:
        """Run the prior and the UNets through `torch.compile` from now on (the first call of each shape compiles,
        which takes minutes on a CPU; later calls are faster). The loaded modules stay as they are."""
        for stage in self.stages.values():
            stage.compile()
        return self

    def frame_chunk(self, size: int) -> Self:
        """Run the spatial layers of every UNet `size` frames at a time (0: all): less memory, the same videos
        (`SpaceTimeUNet.frame_chunk`)."""
        for stage in self.stages.values():
            if hasattr(stage.model, "frame_chunk"):
                stage.model.frame_chunk = size
        return self

    def configure(self, *, sampler: str | None = None, eta: float | None = None) -> Self:
        """Choose the sampler (ddim | ddpm | dpmpp) and DDIM's eta for later calls."""
        if checks.sampler(sampler) is not None:
            self.sampler = sampler
        if eta is not None:
            if not 0.0 <= eta <= 1.0:
                raise UsageError(f"eta must be in 0…1, got {eta}")
            self.runtime.eta = eta
        return self

    def _text_or_empty(self, prompt: str | None, b: int) -> Text | None:
        if "clip" not in self.models:
            return None
        return self.encode_text([prompt or ""] * b)
