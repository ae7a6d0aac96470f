"""The stages of the Make-A-Video cascade, one module each, in the paper's words:

    video = SR_h ∘ SR^t_l ∘ ↑F ∘ D^t ∘ P (x̂, C_x(x))

| stage | module | class |
|---|---|---|
| P | prior.py | Prior |
| D^t | decoder.py | Decoder |
| ↑F | interpolator.py | Interpolator |
| SR^t_l, SR_h | super_resolution.py | SRLow, SRHigh |

Each owns its denoiser, noise schedule, conditioning and sampling call; what they share is in stage.py.
cascade.py holds the stages of one loaded model folder (`Cascade`: C_x and C_y, the settings every stage samples
under, the tail ↑F → SR^t_l → SR_h); the six modes compose them in `mav.pipeline`.
"""

from __future__ import annotations

from mav.cascade.decoder import Decoder
from mav.cascade.interpolator import Interpolator
from mav.cascade.prior import Prior
from mav.cascade.stage import Runtime, Stage
from mav.cascade.super_resolution import SRHigh, SRLow

STAGE_CLASSES: dict[str, type[Stage]] = {s.name: s for s in (Prior, Decoder, Interpolator, SRLow, SRHigh)}

__all__ = ["STAGE_CLASSES", "Stage", "Runtime", "Prior", "Decoder", "Interpolator", "SRLow", "SRHigh"]
