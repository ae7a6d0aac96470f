"""Seeded noise: one CPU generator per sample, so that a sample depends only on its seed, not on its batch position
or the device it runs on. The pipeline, the samplers, the evaluation and training all draw their noise here."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

Generators = torch.Generator | Sequence[torch.Generator] | None


def generators(seeds: Sequence[int]) -> list[torch.Generator]:
    """One CPU generator per sample, seeded with seeds[i]."""
    return [torch.Generator().manual_seed(s) for s in seeds]


def gaussian_noise(shape: Sequence[int], generator: Generators = None, device: torch.device | str | None = None,
                   dtype: torch.dtype = torch.float32) -> Tensor:
    """ε ~ N(0, I) of `shape`, drawn on the CPU; with a list of generators, item i is drawn from generator[i]."""
    shape = tuple(shape)
    if generator is None or isinstance(generator, torch.Generator):
        noise = torch.randn(shape, generator=generator)
    else:
        if len(generator) != shape[0]:
            raise ValueError(f"got {len(generator)} generators for a batch of {shape[0]}")
        noise = torch.stack([torch.randn(shape[1:], generator=g) for g in generator])
    return noise.to(device=device, dtype=dtype)


def frame_noise(shape: Sequence[int], generator: Generators = None, device: torch.device | str | None = None,
                correlation: float = 0.0) -> Tensor:
    """ε for a video batch `(b, c, f, h, w)` whose frames share a share `correlation` (ρ) of their noise variance:
    √ρ·ε_shared + √(1 − ρ)·ε_frame, each frame still N(0, I) (the mixed noise model of Ge et al. 2023, "Preserve
    Your Own Correlation"). ρ = 0 is `gaussian_noise`, the same draws; ρ > 0 draws f + 1 frames per sample, the
    last shared."""
    if not 0.0 <= correlation < 1.0:
        raise ValueError(f"the frames' noise correlation must be in [0, 1), got {correlation}")
    if correlation == 0.0:
        return gaussian_noise(shape, generator, device)
    if len(shape) != 5:
        raise ValueError(f"correlated frame noise needs a (b, c, f, h, w) shape, got {tuple(shape)}")
    b, c, f, h, w = shape
    noise = gaussian_noise((b, c, f + 1, h, w), generator, device)
    return correlation ** 0.5 * noise[:, :, f:] + (1.0 - correlation) ** 0.5 * noise[:, :, :f]


def sample_generators(seed: int, index: Tensor) -> list[torch.Generator]:
    """Training: one generator per global sample index j of a run seeded `seed`, so that sample j's noise, timestep
    and dropout are the same on any number of processes and after a resume."""
    return [torch.Generator().manual_seed((seed * 1_000_003 + int(j)) % 2**63) for j in index.tolist()]


def draw_timesteps(gens: Sequence[torch.Generator], timesteps: int, high_noise: float = 0.0) -> Tensor:
    """(b,) timesteps, item i from gens[i]: uniform in [0, timesteps), or with `high_noise` > 0, a share
    `high_noise` of the samples uniform in the noisier half [timesteps // 2, timesteps) and the rest uniform over
    all (so the density of the noisier half is 1 + high_noise times the uniform's, the other half's 1 − high_noise
    times). With 0 the draws are exactly the uniform's."""
    if not 0.0 <= high_noise <= 1.0:
        raise ValueError(f"high_noise must be in [0, 1], got {high_noise}")
    if high_noise == 0.0:
        return torch.stack([torch.randint(timesteps, (), generator=g) for g in gens])
    out = []
    for g in gens:
        low = timesteps // 2 if float(torch.rand((), generator=g)) < high_noise else 0
        out.append(torch.randint(low, timesteps, (), generator=g))
    return torch.stack(out)


def draw_uniform(gens: Sequence[torch.Generator]) -> Tensor:
    """(b,) numbers uniform in [0, 1), item i from gens[i]."""
    return torch.stack([torch.rand((), generator=g) for g in gens])
