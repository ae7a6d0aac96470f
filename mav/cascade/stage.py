"""What every stage of the cascade shares: the settings it samples under, and its one sampling call.

A stage owns its denoiser (the nn.Module), the noise schedule it was trained with and a progress label; its
`denoise` runs the chosen sampler over the network wrapped as the samplers want it (classifier-free guidance, the
x0 parameterisation, a residual around an offset for SR, partial strength), and records the seconds it took.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from mav.conditioning import from_sr_residual, sr_residual
from mav.diffusion.noise import frame_noise
from mav.progress import Reporter


@dataclass
class Runtime:
    """Where and how the stages of one Pipeline sample, and what they report. One object for all stages, so that
    `Pipeline.configure` and a reset of `Pipeline.timings` reach every stage."""

    device: torch.device
    dtype: torch.dtype = torch.float32
    reporter: Reporter = field(default_factory=Reporter)
    sampler: str = "ddim"
    eta: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)  # stage → seconds sampled since the last reset

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)


class Stage:
    """One stage of the cascade: its denoiser, its noise schedule and the sampling call every stage makes."""

    name = ""  # the model folder's component
    label = ""  # what progress reports call it

    def __init__(self, model: nn.Module, runtime: Runtime) -> None:
        from mav.diffusion.schedule import NoiseSchedule

        self.model, self.runtime = model, runtime
        self.schedule = NoiseSchedule(model.config.diffusion)
        self.compiled: nn.Module | None = None

    @property
    def config(self):
        return self.model.config

    def frame_correlation(self, ndim: int) -> float:
        """The share of noise variance the frames of a clip share (`UNetConfig.frame_noise_correlation`) for a
        tensor of `ndim` dimensions: only videos `(b, c, f, h, w)` have frames to share it."""
        return getattr(self.config, "frame_noise_correlation", 0.0) if ndim == 5 else 0.0

    def noise(self, shape: Sequence[int], gens: Sequence[torch.Generator]) -> Tensor:
        """Gaussian noise of shape (b, …) on the stage's device, row i drawn from gens[i]; a video's frames
        correlated as the model was trained."""
        return frame_noise(shape, gens, self.runtime.device, self.frame_correlation(len(shape)))

    def compile(self) -> None:
        """Run the denoiser through `torch.compile` from now on; `model` stays as it is."""
        self.compiled = torch.compile(self.model)

    def denoise(self, x: Tensor, cond: dict, uncond: dict | None, *, steps: int, guidance: float,
                gens: Sequence[torch.Generator], strength: float = 1.0, x_start: Tensor | None = None,
                clamp: float | None = 1.0, label: str | None = None, offset: Tensor | None = None,
                scale: float = 1.0) -> Tensor:
        """Sample from noise `x` (or from `x_start` noised to `strength`) with `cond` as the network's keyword
        arguments, guided towards them and away from `uncond` by `guidance`.

        `offset`, `scale`: the stage diffuses `(result − offset) / scale` (residual SR); the clamp applies to the
        result.
        """
        from mav.diffusion import samplers
        from mav.diffusion.guidance import classifier_free, x0_denoiser

        runtime, schedule = self.runtime, self.schedule
        model = self.compiled if self.compiled is not None else self.model
        timesteps = schedule.timesteps(steps, strength) if strength < 1.0 else schedule.timesteps(steps)
        # a model with its own last-step network (unCLIP's super_res_last) runs it for the final timestep only
        last_step = getattr(self.model, "last_step", None)
        final = int(timesteps[-1])

        def network(x_t: Tensor, t: Tensor, **kwargs) -> Tensor:
            net = last_step if last_step is not None and int(t[0]) == final else model
            with runtime.autocast():
                return net(x_t.to(runtime.device), t.to(runtime.device), **kwargs).float()

        if uncond is not None and guidance != 1.0:
            model_fn = classifier_free(network, cond, uncond, guidance,
                                       guided_channels=x.shape[1] if schedule.learned_variance else None)
        else:
            def model_fn(x_t: Tensor, t: Tensor) -> Tensor:
                return network(x_t, t, **cond)
        denoiser = x0_denoiser(model_fn, schedule, clamp=None if offset is not None else clamp)
        if offset is not None:
            offset = offset.float()
            residual = denoiser

            def denoiser(x_t: Tensor, t: Tensor) -> Tensor:
                x0 = from_sr_residual(residual(x_t, t), offset, scale)
                return sr_residual(x0.clamp(-clamp, clamp) if clamp is not None else x0, offset, scale)
        if x_start is not None:
            t0 = torch.full((x.shape[0],), int(timesteps[0]), dtype=torch.long)
            x = schedule.q_sample(x_start.float(), t0, x)
        start = time.perf_counter()
        with runtime.reporter.stage(label or self.label, len(timesteps)) as callback, torch.no_grad():
            out = samplers.sample(runtime.sampler, denoiser, schedule, x.float(), timesteps, generator=list(gens),
                                  callback=callback, eta=runtime.eta,
                                  frame_correlation=self.frame_correlation(x.dim()))
        runtime.timings[self.name] = runtime.timings.get(self.name, 0.0) + time.perf_counter() - start
        return out if offset is None else from_sr_residual(out, offset, scale)
