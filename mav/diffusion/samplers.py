"""Samplers: pure functions that run the reverse process over a denoiser.

Every sampler takes `denoiser(x_t, t) -> x̂_0` (t a `(b,)` long tensor), a NoiseSchedule, the starting `x` at
`timesteps[0]` (pure noise, or a noised input for partial strength) of any shape `(b, …)`, and a descending
sequence of timesteps that may skip steps (respacing). After the last timestep the sample is taken to the clean
end, ᾱ = 1. Each step needs only ᾱ at the current and the next used timestep, so respaced sequences are exact.

The state stays float32 whatever the network runs in. Noise is drawn on the CPU (`mav.diffusion.noise`) from
`generator` (one torch.Generator, or a list with one per batch item) and then moved to x's device, so a sample
depends only on its seed: not on the device, nor on the batch it was drawn in.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from mav.diffusion.noise import Generators, frame_noise
from mav.diffusion.schedule import NoiseSchedule
from mav.errors import UsageError

Denoiser = Callable[[Tensor, Tensor], Tensor]
Callback = Callable[[int, int], None]

SAMPLERS = ("ddim", "ddpm", "dpmpp")


def _schedule_pairs(schedule: NoiseSchedule, timesteps: Tensor | Sequence[int]) -> list[tuple[int, float, float]]:
    """[(t_i, ᾱ_{t_i}, ᾱ_{t_{i+1}})] with ᾱ after the last step = 1 (clean)."""
    ts = [int(t) for t in timesteps]
    if not ts:
        raise ValueError("timesteps is empty")
    if any(a <= b for a, b in zip(ts, ts[1:])) or ts[-1] < 0 or ts[0] >= schedule.num_timesteps:
        raise ValueError(f"timesteps must be strictly descending within [0, {schedule.num_timesteps}), got {ts}")
    nexts = ts[1:] + [-1]
    return [(t, schedule.alpha_bar(t), schedule.alpha_bar(s)) for t, s in zip(ts, nexts)]


def _denoise_with_variance(denoiser: Denoiser, x: Tensor, t: int) -> tuple[Tensor, Tensor | None]:
    """(x̂_0, v): v is a learned-range variance output when the denoiser gives one (`x0_denoiser`), else None."""
    t_batch = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
    out = denoiser(x, t_batch)
    x0, variance = out if isinstance(out, tuple) else (out, None)
    x0 = x0.to(device=x.device, dtype=torch.float32)
    return x0, None if variance is None else variance.to(device=x.device, dtype=torch.float32)


def _denoise(denoiser: Denoiser, x: Tensor, t: int) -> Tensor:
    """x̂_0 alone: the samplers that set their own variance ignore a learned one."""
    return _denoise_with_variance(denoiser, x, t)[0]


def eps_from_x0(x_t: Tensor, x0: Tensor, alpha_bar_t: float) -> Tensor:
    """ε̂ = (x_t − √ᾱ_t x̂_0) / √(1 − ᾱ_t)"""
    return (x_t - math.sqrt(alpha_bar_t) * x0) / math.sqrt(1 - alpha_bar_t)


def ddpm_posterior(alpha_bar_t: float, alpha_bar_s: float) -> tuple[float, float, float]:
    """q(x_s | x_t, x_0) = N(c₁ x_0 + c₂ x_t, σ²) between any two steps s < t of a (respaced) chain:

    β = 1 − ᾱ_t / ᾱ_s                       (the one-step β of the respaced chain)
    c₁ = √ᾱ_s β / (1 − ᾱ_t),  c₂ = √(ᾱ_t / ᾱ_s) (1 − ᾱ_s) / (1 − ᾱ_t),  σ² = β (1 − ᾱ_s) / (1 − ᾱ_t)
    For s = t−1 these are posterior_mean_coef1, posterior_mean_coef2 and posterior_variance (Ho et al. Eq. 7).
    """
    beta = 1 - alpha_bar_t / alpha_bar_s
    coef1 = math.sqrt(alpha_bar_s) * beta / (1 - alpha_bar_t)
    coef2 = math.sqrt(alpha_bar_t / alpha_bar_s) * (1 - alpha_bar_s) / (1 - alpha_bar_t)
    variance = beta * (1 - alpha_bar_s) / (1 - alpha_bar_t)
    return coef1, coef2, variance


def ddpm(denoiser: Denoiser, schedule: NoiseSchedule, x: Tensor, timesteps: Tensor | Sequence[int],
         generator: Generators = None, callback: Callback | None = None, frame_correlation: float = 0.0) -> Tensor:
    """Ancestral sampling (Ho et al. 2020, Alg. 2): x_s ~ q(x_s | x_t, x̂_0) at every used step.

    With a learned-range variance v ∈ [−1, 1] from the denoiser (Nichol & Dhariwal 2021, Eq. 15, over the
    respaced step), log σ² = ((v + 1)/2)·log β + (1 − (v + 1)/2)·log σ̃² instead of the posterior's σ̃².
    """
    x = x.float()
    pairs = _schedule_pairs(schedule, timesteps)
    for i, (t, a_t, a_s) in enumerate(pairs):
        x0, learned = _denoise_with_variance(denoiser, x, t)
        coef1, coef2, variance = ddpm_posterior(a_t, a_s)
        x = coef1 * x0 + coef2 * x
        if variance > 0:
            if learned is None:
                std: Tensor | float = math.sqrt(variance)
            else:
                frac = (learned + 1) / 2
                std = torch.exp(0.5 * (frac * math.log(1 - a_t / a_s) + (1 - frac) * math.log(variance)))
            x = x + std * frame_noise(x.shape, generator, x.device, frame_correlation)
        if callback is not None:
            callback(i + 1, len(pairs))
    return x


def ddim(denoiser: Denoiser, schedule: NoiseSchedule, x: Tensor, timesteps: Tensor | Sequence[int],
         eta: float = 0.0, generator: Generators = None, callback: Callback | None = None,
         frame_correlation: float = 0.0) -> Tensor:
    """DDIM (Song et al. 2021, Eq. 12); eta = 0 is deterministic, eta = 1 has DDPM's ancestral variance:

    x_s = √ᾱ_s x̂_0 + √(1 − ᾱ_s − σ²) ε̂ + σ z,   σ = η √((1 − ᾱ_s)/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_s)   (Eq. 16)
    """
    if eta < 0:
        raise UsageError(f"eta must be ≥ 0, got {eta}")
    x = x.float()
    pairs = _schedule_pairs(schedule, timesteps)
    for i, (t, a_t, a_s) in enumerate(pairs):
        x0 = _denoise(denoiser, x, t)
        eps = eps_from_x0(x, x0, a_t)
        sigma = eta * math.sqrt((1 - a_s) / (1 - a_t) * (1 - a_t / a_s))
        x = math.sqrt(a_s) * x0 + math.sqrt(max(1 - a_s - sigma**2, 0.0)) * eps
        if sigma > 0:
            x = x + sigma * frame_noise(x.shape, generator, x.device, frame_correlation)
        if callback is not None:
            callback(i + 1, len(pairs))
    return x


def dpmpp_2m(denoiser: Denoiser, schedule: NoiseSchedule, x: Tensor, timesteps: Tensor | Sequence[int],
             generator: Generators = None, callback: Callback | None = None) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, Alg. 2), deterministic; `generator` is accepted for a shared signature.

    With α = √ᾱ, σ = √(1 − ᾱ), λ = log(α/σ), h_i = λ_{t_i} − λ_{t_{i−1}} and r_i = h_{i−1}/h_i:
    x_{t_i} = (σ_{t_i}/σ_{t_{i−1}}) x_{t_{i−1}} − α_{t_i} (e^{−h_i} − 1) D_i,
    D_i = (1 + 1/(2r_i)) x̂_0(t_{i−1}) − 1/(2r_i) x̂_0(t_{i−2}); first order (D_i = x̂_0) on the first step and
    on the step into the last timestep, and the final step, to σ = 0, is x = x̂_0.
    The step into the last timestep is lower order (as `lower_order_final` in Lu et al.'s reference code): it
    ends at t ≈ 0, so it spans a far longer λ interval than the step before (r ≪ 1), and extrapolating x̂_0
    that far overshoots.
    """
    del generator
    x = x.float()
    pairs = _schedule_pairs(schedule, timesteps)

    def lam(alpha_bar: float) -> float:
        return 0.5 * math.log(alpha_bar / (1 - alpha_bar))

    x0_prev, h_prev = None, None
    for i, (t, a_t, a_s) in enumerate(pairs):
        x0 = _denoise(denoiser, x, t)
        if a_s >= 1.0:
            x = x0
        else:
            h = lam(a_s) - lam(a_t)
            d = x0
            if x0_prev is not None and i < len(pairs) - 2:
                r = h_prev / h
                d = (1 + 1 / (2 * r)) * x0 - 1 / (2 * r) * x0_prev
            x = math.sqrt((1 - a_s) / (1 - a_t)) * x - math.sqrt(a_s) * math.expm1(-h) * d
            x0_prev, h_prev = x0, h
        if callback is not None:
            callback(i + 1, len(pairs))
    return x


def sample(name: str, denoiser: Denoiser, schedule: NoiseSchedule, x: Tensor, timesteps: Tensor | Sequence[int],
           generator: Generators = None, callback: Callback | None = None, eta: float = 0.0,
           frame_correlation: float = 0.0) -> Tensor:
    """Run the sampler called `name` ("ddpm" | "ddim" | "dpmpp"); eta is used by ddim only. The noise a stochastic
    sampler adds has the model's `frame_correlation` across frames (`mav.diffusion.noise.frame_noise`)."""
    if name == "ddpm":
        return ddpm(denoiser, schedule, x, timesteps, generator=generator, callback=callback,
                    frame_correlation=frame_correlation)
    if name == "ddim":
        return ddim(denoiser, schedule, x, timesteps, eta=eta, generator=generator, callback=callback,
                    frame_correlation=frame_correlation)
    if name == "dpmpp":
        return dpmpp_2m(denoiser, schedule, x, timesteps, generator=generator, callback=callback)
    raise UsageError(f"sampler must be one of {', '.join(SAMPLERS)}, got {name!r}")
