"""The forward (noising) process of a discrete-time Gaussian diffusion and its closed forms.

q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I)                         (Ho et al. 2020, Eq. 4)
q(x_{t−1} | x_t, x_0) = N(μ̃_t(x_t, x_0), β̃_t I)                  (Ho et al. 2020, Eqs. 6–7)

Timesteps are 0-based indices t ∈ {0, …, T−1}; index t is step t+1 of the papers, so ᾱ_{−1} = 1 means "clean".
Every array is computed once in float64 and cast to the input's dtype only when applied to a tensor.
"""

from __future__ import annotations

import math
from functools import cached_property

import torch
import torch.nn.functional as F
from torch import Tensor

from mav.config import DiffusionConfig
from mav.errors import UsageError


def cosine_alpha_bar(t: Tensor, timesteps: int, s: float = 0.008) -> Tensor:
    """f(t) / f(0), f(t) = cos²( (t/T + s) / (1 + s) · π/2 )   (Nichol & Dhariwal 2021, Eq. 17)."""
    def f(u: Tensor) -> Tensor:
        return torch.cos((u / timesteps + s) / (1 + s) * math.pi / 2) ** 2

    return f(t.double()) / f(torch.zeros((), dtype=torch.float64))


def cosine_betas(timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """β_t = min(1 − ᾱ(t+1) / ᾱ(t), max_beta) with ᾱ the cosine curve; clipping avoids β = 1 at t = T."""
    t = torch.arange(timesteps + 1, dtype=torch.float64)
    alpha_bar = cosine_alpha_bar(t, timesteps, s)
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=max_beta)


def linear_betas(timesteps: int) -> Tensor:
    """β_t linear from 1e-4 to 0.02 at T = 1000 (Ho et al. 2020), both ends scaled by 1000/T for other T."""
    scale = 1000 / timesteps
    return torch.linspace(scale * 1e-4, scale * 0.02, timesteps, dtype=torch.float64)


def _broadcast(values: Tensor, t: Tensor | int, like: Tensor) -> Tensor:
    """values[t] as `like`'s dtype and device, shaped (b, 1, …, 1) to broadcast over an item of any shape."""
    t = torch.as_tensor(t, dtype=torch.long).cpu().reshape(-1)
    if t.numel() == 1 and like.ndim > 0:
        t = t.expand(like.shape[0])
    picked = values[t].to(device=like.device, dtype=like.dtype)
    return picked.reshape(-1, *([1] * (like.ndim - 1)))  # (b,) → (b, 1, …, 1)


class NoiseSchedule:
    """β_1…β_T and everything derived from them, for one DiffusionConfig (schedule, T, prediction)."""

    def __init__(self, config: DiffusionConfig) -> None:
        self.config = config
        self.num_timesteps = config.timesteps
        self.prediction = config.prediction
        if config.schedule == "cosine":
            self.betas = cosine_betas(config.timesteps)
        else:
            self.betas = linear_betas(config.timesteps)

    def __repr__(self) -> str:
        return f"NoiseSchedule({self.config.schedule}, T={self.num_timesteps}, prediction={self.prediction})"

    # ------------------------------------------------------------------------------------------------------------
    # Closed-form arrays, each (T,) float64

    @cached_property
    def alphas(self) -> Tensor:
        """α_t = 1 − β_t"""
        return 1 - self.betas

    @cached_property
    def alphas_cumprod(self) -> Tensor:
        """ᾱ_t = ∏_{s ≤ t} α_s"""
        return torch.cumprod(self.alphas, dim=0)

    @cached_property
    def alphas_cumprod_prev(self) -> Tensor:
        """ᾱ_{t−1}, with ᾱ_{−1} = 1"""
        return F.pad(self.alphas_cumprod[:-1], (1, 0), value=1.0)

    @cached_property
    def sqrt_alphas_cumprod(self) -> Tensor:
        """√ᾱ_t"""
        return self.alphas_cumprod.sqrt()

    @cached_property
    def sqrt_one_minus_alphas_cumprod(self) -> Tensor:
        """√(1 − ᾱ_t)"""
        return (1 - self.alphas_cumprod).sqrt()

    @cached_property
    def posterior_variance(self) -> Tensor:
        """β̃_t = β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t)   (Ho et al. 2020, Eq. 7)"""
        return self.betas * (1 - self.alphas_cumprod_prev) / (1 - self.alphas_cumprod)

    @cached_property
    def posterior_log_variance_clipped(self) -> Tensor:
        """log β̃_t, with β̃_0 = 0 replaced by β̃_1 so the log is finite"""
        return torch.log(torch.cat([self.posterior_variance[1:2], self.posterior_variance[1:]]))

    @cached_property
    def posterior_mean_coef1(self) -> Tensor:
        """β_t √ᾱ_{t−1} / (1 − ᾱ_t), the weight of x_0 in μ̃_t   (Ho et al. 2020, Eq. 7)"""
        return self.betas * self.alphas_cumprod_prev.sqrt() / (1 - self.alphas_cumprod)

    @cached_property
    def posterior_mean_coef2(self) -> Tensor:
        """(1 − ᾱ_{t−1}) √α_t / (1 − ᾱ_t), the weight of x_t in μ̃_t   (Ho et al. 2020, Eq. 7)"""
        return (1 - self.alphas_cumprod_prev) * self.alphas.sqrt() / (1 - self.alphas_cumprod)

    def alpha_bar(self, t: int) -> float:
        """ᾱ_t as a Python float; t = −1 is the clean end, ᾱ_{−1} = 1."""
        return 1.0 if t < 0 else float(self.alphas_cumprod[t])

    # ------------------------------------------------------------------------------------------------------------
    # Forward process and the three parameterisations

    def q_sample(self, x0: Tensor, t: Tensor | int, noise: Tensor) -> Tensor:
        """x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε   (Ho et al. 2020, Eq. 4)"""
        return (_broadcast(self.sqrt_alphas_cumprod, t, x0) * x0
                + _broadcast(self.sqrt_one_minus_alphas_cumprod, t, x0) * noise)

    @property
    def learned_variance(self) -> bool:
        """Whether the network's second half of channels is a learned-range variance (config.variance)."""
        return self.config.variance == "learned_range"

    def predict_x0(self, x_t: Tensor, t: Tensor | int, output: Tensor) -> Tensor:
        """x̂_0 from the network output:
        eps: x̂_0 = (x_t − √(1 − ᾱ_t) ε̂) / √ᾱ_t
        v:   x̂_0 = √ᾱ_t x_t − √(1 − ᾱ_t) v̂          (Salimans & Ho 2022, §4)
        x0:  x̂_0 = output
        """
        a, s = _broadcast(self.sqrt_alphas_cumprod, t, x_t), _broadcast(self.sqrt_one_minus_alphas_cumprod, t, x_t)
        if self.prediction == "eps":
            return (x_t - s * output) / a
        if self.prediction == "v":
            return a * x_t - s * output
        return output

    def predict_eps(self, x_t: Tensor, t: Tensor | int, output: Tensor) -> Tensor:
        """ε̂ from the network output:
        eps: ε̂ = output
        v:   ε̂ = √(1 − ᾱ_t) x_t + √ᾱ_t v̂
        x0:  ε̂ = (x_t − √ᾱ_t x̂_0) / √(1 − ᾱ_t)
        """
        a, s = _broadcast(self.sqrt_alphas_cumprod, t, x_t), _broadcast(self.sqrt_one_minus_alphas_cumprod, t, x_t)
        if self.prediction == "eps":
            return output
        if self.prediction == "v":
            return s * x_t + a * output
        return (x_t - a * output) / s

    def target(self, x0: Tensor, noise: Tensor, t: Tensor | int) -> Tensor:
        """What the network learns to output: ε (eps), v = √ᾱ_t ε − √(1 − ᾱ_t) x_0 (v), or x_0 (x0)."""
        if self.prediction == "eps":
            return noise
        if self.prediction == "v":
            return (_broadcast(self.sqrt_alphas_cumprod, t, x0) * noise
                    - _broadcast(self.sqrt_one_minus_alphas_cumprod, t, x0) * x0)
        return x0

    def snr(self, t: Tensor | int) -> Tensor:
        """Signal-to-noise ratio SNR(t) = ᾱ_t / (1 − ᾱ_t)   (Kingma et al. 2021, Eq. 2)."""
        a = self.alphas_cumprod[torch.as_tensor(t, dtype=torch.long).cpu()]
        return a / (1 - a)

    def min_snr_weight(self, t: Tensor, gamma: float) -> Tensor:
        """Min-SNR-γ loss weight per sample (Hang et al. 2023, Eq. 7), expressed for this schedule's prediction:
        x0: min(SNR, γ);  eps: min(SNR, γ) / SNR;  v: min(SNR, γ) / (SNR + 1).
        Every form weights the x0 error by min(SNR, γ), so no timestep range dominates the gradient."""
        snr = self.snr(t)
        clipped = snr.clamp(max=gamma)
        if self.prediction == "x0":
            return clipped
        return clipped / snr if self.prediction == "eps" else clipped / (snr + 1)

    def training_loss(self, output: Tensor, x0: Tensor, noise: Tensor, t: Tensor | int, *,
                      mask: Tensor | None = None, min_snr_gamma: float | None = None) -> Tensor:
        """L_simple = E ‖output − target‖² (Ho et al. 2020, Eq. 14), the mean over every element.

        mask: broadcastable to the output, 1 where the error counts (↑F scores only the frames it must make);
        min_snr_gamma: weight each sample by `min_snr_weight` (t must then be a per-sample tensor).
        """
        if self.learned_variance:  # only the mean's half is trained; the variance channels keep what they learned
            output = output[:, :x0.shape[1]]
        error = (output.float() - self.target(x0, noise, t).float()) ** 2
        if min_snr_gamma is not None:
            weight = self.min_snr_weight(torch.as_tensor(t).reshape(-1), min_snr_gamma)
            error = error * weight.to(error).reshape(-1, *([1] * (error.ndim - 1)))
        if mask is None:
            return error.mean()
        mask = mask.to(error.dtype).expand_as(error)
        return (error * mask).sum() / mask.sum().clamp(min=1)

    # ------------------------------------------------------------------------------------------------------------
    # Sampling timesteps

    def timesteps(self, steps: int, strength: float = 1.0, spacing: str = "uniform") -> Tensor:
        """`steps` descending timesteps from T−1 to 0, as a LongTensor.

        spacing "uniform": t_i evenly spaced. "quadratic": t_i = (T−1)·u_i² for evenly spaced u_i, which puts
        more steps at low noise (Song et al. 2021, App. D.2); with 10–25 steps it is the more accurate choice
        for small images. Ending at t = 0 matters: every sampler finishes with x_0 = x̂_0(x_{t_last}), which is
        only the data distribution when t_last is nearly clean.

        `strength` < 1 (variations, SDEdit) keeps the tail of the uniform sequence that starts at the grid
        point nearest strength·(T−1): round(strength·(steps−1)) + 1 timesteps ("quadratic" spaces that many
        from the same start). A single step starts at round(strength·(T−1)).
        """
        if not 1 <= steps <= self.num_timesteps:
            raise UsageError(f"steps must be between 1 and {self.num_timesteps}, got {steps}")
        if not 0.0 < strength <= 1.0:
            raise UsageError(f"strength must be in (0, 1], got {strength}")
        if spacing not in ("uniform", "quadratic"):
            raise UsageError(f"spacing must be uniform or quadratic, got {spacing!r}")
        last = self.num_timesteps - 1
        if steps == 1:
            return torch.tensor([round(strength * last)], dtype=torch.long)
        uniform = torch.linspace(last, 0, steps, dtype=torch.float64).round().long()
        keep = round(strength * (steps - 1)) + 1
        tail = uniform[steps - keep:]
        if spacing == "uniform" or keep == 1:
            return tail
        return _quadratic(int(tail[0]), keep)


def _quadratic(start: int, steps: int) -> Tensor:
    """t_i = start·u_i², u_i evenly spaced from 1 to 0, made strictly descending where rounding collides."""
    u = torch.linspace(1, 0, steps, dtype=torch.float64)
    out: list[int] = []
    for i, t in enumerate((start * u**2).round().long().tolist()):
        t = min(t, out[-1] - 1 if out else start)
        out.append(max(t, steps - 1 - i))  # leave room for the steps still to come
    return torch.tensor(out, dtype=torch.long)
