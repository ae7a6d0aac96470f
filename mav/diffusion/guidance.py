"""Thin wrappers that turn a network into what the samplers want: the eps/v/x0 parameterisation and
classifier-free guidance (Ho & Salimans 2022), kept out of both the network and the samplers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from mav.diffusion.schedule import NoiseSchedule

ModelFn = Callable[..., Tensor]
Denoiser = Callable[[Tensor, Tensor], Tensor]


def x0_denoiser(model_fn: ModelFn, schedule: NoiseSchedule, clamp: float | None = None) -> Denoiser:
    """`model_fn(x_t, t)` outputs eps, v or x0 (schedule.prediction); return `denoiser(x_t, t) -> x̂_0` in float32,
    clamped to [−clamp, clamp] when given (pixels live in [−1, 1]; CLIP embeddings need no clamp).

    For a model with a learned-range variance (schedule.learned_variance) the denoiser returns `(x̂_0, v)`, v the
    output's second half of channels, which the ddpm sampler turns into the step's variance."""

    def denoiser(x_t: Tensor, t: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        output = model_fn(x_t, t).to(device=x_t.device, dtype=torch.float32)
        variance = None
        if schedule.learned_variance:
            output, variance = output.split(x_t.shape[1], dim=1)
        x0 = schedule.predict_x0(x_t.float(), t, output)
        x0 = x0.clamp(-clamp, clamp) if clamp is not None else x0
        return x0 if variance is None else (x0, variance)

    return denoiser


def _batch_kwargs(cond: dict[str, Any], uncond: dict[str, Any]) -> dict[str, Any]:
    """Stack cond over uncond along dim 0 for one batched forward; None in both stays None."""
    if set(cond) != set(uncond):
        raise ValueError(f"cond and uncond need the same keys, got {sorted(cond)} and {sorted(uncond)}")
    batched = {}
    for key, c in cond.items():
        u = uncond[key]
        if c is None and u is None:
            batched[key] = None
        elif isinstance(c, Tensor) and isinstance(u, Tensor):
            batched[key] = torch.cat([c, u.to(c.device)])
        elif isinstance(c, Tensor) or isinstance(u, Tensor):
            # the network would need a fill value for the missing half, which only the caller knows
            other = u if isinstance(c, Tensor) else c
            raise ValueError(f"{key!r} is a tensor in one of cond/uncond but {other!r} in the other")
        elif c == u:
            batched[key] = c
        else:
            raise ValueError(f"non-tensor argument {key!r} differs between cond ({c!r}) and uncond ({u!r})")
    return batched


def classifier_free(model_fn: ModelFn, cond: dict[str, Any], uncond: dict[str, Any], scale: float,
                    guided_channels: int | None = None) -> ModelFn:
    """Guided output ô = o(∅) + s·(o(c) − o(∅))   (Ho & Salimans 2022, Eq. 6, with s = 1 + w).

    `model_fn(x_t, t, **kwargs)` is the raw network; cond and uncond are its keyword arguments (a negative
    prompt is just uncond). Both halves run in one forward with the batch doubled; scale = 1 is the conditional
    output alone and skips the unconditional half. The combination is linear, so it is the same whether the
    network predicts eps, v or x0. `guided_channels`: mix only the output's first channels and keep the
    conditional rest (a learned variance, as unCLIP's decoder guides).
    """
    if scale == 1.0:
        def conditional(x_t: Tensor, t: Tensor) -> Tensor:
            return model_fn(x_t, t, **cond)

        return conditional

    kwargs = _batch_kwargs(cond, uncond)

    def guided(x_t: Tensor, t: Tensor) -> Tensor:
        out_cond, out_uncond = model_fn(torch.cat([x_t, x_t]), torch.cat([t, t]), **kwargs).float().chunk(2)
        if guided_channels is None:
            return out_uncond + scale * (out_cond - out_uncond)
        mixed = out_uncond[:, :guided_channels] + scale * (out_cond[:, :guided_channels] -
                                                           out_uncond[:, :guided_channels])
        return torch.cat([mixed, out_cond[:, guided_channels:]], dim=1)

    return guided
