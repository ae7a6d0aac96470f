"""Neural networks of the cascade: CLIP, the prior P and the SpaceTime UNet (D^t, ↑F, SR^t_l, SR_h)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

    from mav.config import ComponentConfig


def build_component(component: str, config: ComponentConfig) -> nn.Module:
    """Build the randomly initialised module for one component of the cascade from its config.

    "clip" → ClipModel, "prior" → DiffusionPrior, "decoder" | "interpolator" | "sr_low" | "sr_high" →
    SpaceTimeUNet. The module keeps its config as `.config`. Seed with `torch.manual_seed` for a reproducible
    initialisation; build under `torch.device("meta")` to only get the shapes (for loading weights).
    """
    from mav.config import COMPONENTS, ClipConfig, PriorConfig, UNetConfig

    if component not in COMPONENTS:
        raise ValueError(f"unknown component {component!r}; choose one of: {', '.join(COMPONENTS)}")
    expected = {"clip": ClipConfig, "prior": PriorConfig}.get(component, UNetConfig)
    if not isinstance(config, expected):
        raise TypeError(f"component {component!r} needs a {expected.__name__}, got {type(config).__name__}")
    if component == "clip":
        from mav.models.clip import ClipModel

        return ClipModel(config)
    if component == "prior":
        from mav.models.prior import DiffusionPrior

        return DiffusionPrior(config)
    from mav.models.unet import SpaceTimeUNet

    return SpaceTimeUNet(config)
