"""A diffusers scheduler config (`scheduler_config.json`) → mav's DiffusionConfig and sampler, for the schedulers
an unCLIP model (Karlo) ships. Anything mav's samplers would not reproduce exactly is refused by name.

`UnCLIPScheduler` with `fixed_small_log` variance is DDPM's ancestral step over the respaced chain (the posterior
q(x_s | x_t, x̂0), std √σ²; diffusers takes the log and clamps σ² at 1e-20 first, which changes nothing above
that), with x̂0 clipped to ±clip_sample_range: mav's `ddpm` sampler with `clip_x0`. Its timesteps,
round(i·(T−1)/(n−1)) descending, are mav's uniform spacing. With `learned_range` variance (Karlo's decoder) the
network's second half of channels v sets the step's log variance between log σ̃² and log β, as mav's ddpm does
for a DiffusionConfig with variance="learned_range" (diffusers takes log σ̃² unclamped there, as mav does).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mav.config import DiffusionConfig
from mav.errors import ModelError

_BETAS = {"squaredcos_cap_v2": "cosine"}
_PREDICTION = {"sample": "x0", "epsilon": "eps", "v_prediction": "v"}
_VARIANCE = {"fixed_small_log": "fixed", "learned_range": "learned_range"}


def diffusion_config(config: Mapping[str, Any], *, what: str = "scheduler") -> tuple[DiffusionConfig, str]:
    """(DiffusionConfig, sampler name) for a diffusers scheduler config; ModelError naming what mav can't do."""
    kind = config.get("_class_name", "UnCLIPScheduler")
    if kind != "UnCLIPScheduler":
        raise ModelError(f"{what}: {kind} is not supported; mav reproduces UnCLIPScheduler")
    beta = config.get("beta_schedule", "squaredcos_cap_v2")
    if beta not in _BETAS:
        raise ModelError(f"{what}: beta_schedule {beta!r} is not supported; mav has {', '.join(_BETAS)}")
    prediction = config.get("prediction_type", "epsilon")
    if prediction not in _PREDICTION:
        raise ModelError(f"{what}: prediction_type {prediction!r} is not supported")
    variance = config.get("variance_type", "fixed_small_log")
    if variance not in _VARIANCE:
        raise ModelError(f"{what}: variance_type {variance!r} is not supported; mav samples "
                         f"{' and '.join(_VARIANCE)}")
    clip = float(config.get("clip_sample_range", 1.0)) if config.get("clip_sample", True) else None
    return DiffusionConfig(schedule=_BETAS[beta], timesteps=int(config.get("num_train_timesteps", 1000)),
                           prediction=_PREDICTION[prediction], clip_x0=clip, variance=_VARIANCE[variance]), "ddpm"
