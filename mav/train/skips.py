"""Frame skips for the video stages: which every-k-th-frame rate a training clip is sampled at.

A clip with frame skip k takes every k-th source frame, at the source fps / k (30 / k in the shapes world). D^t
trains on a FrameSkipSchedule that moves from high fps to low fps (the paper's premise), a stage that serves fixed
rates on a SkipChoice; `subsample` makes the low-fps input of ↑F from its dense ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import Tensor

from mav.errors import UsageError


@dataclass(frozen=True)
class FrameSkipSchedule:
    """Frame skip k for the video stage, moving from small skips (high fps, little motion between frames) early
    in training to large skips (low fps) late.

    A Beta distribution discretised over the allowed skips 1..max_skip, its mean moving with progress p ∈ [0, 1]:
        μ(p) = start + (end − start)·p,   α = μ·κ,   β = (1 − μ)·κ,
        P(k_i | p) ∝ u_i^(α−1) · (1 − u_i)^(β−1),   u_i = (i + ½) / max_skip.
    """

    max_skip: int = 8
    start: float = 0.1
    end: float = 0.7
    concentration: float = 6.0

    def __post_init__(self) -> None:
        if self.max_skip < 1:
            raise UsageError(f"max_skip must be ≥ 1, got {self.max_skip}")
        for name, value in (("start", self.start), ("end", self.end)):
            if not 0.0 < value < 1.0:
                raise UsageError(f"the schedule's {name} mean must lie in (0, 1), got {value}")
        if self.concentration <= 0:
            raise UsageError(f"concentration must be > 0, got {self.concentration}")

    @property
    def skips(self) -> np.ndarray:
        return np.arange(1, self.max_skip + 1)

    def probs(self, progress: float) -> np.ndarray:
        """P(k) for k = 1..max_skip at training progress p ∈ [0, 1]."""
        if not 0.0 <= progress <= 1.0:
            raise UsageError(f"progress must lie in [0, 1], got {progress}")
        mean = self.start + (self.end - self.start) * progress
        alpha, beta = mean * self.concentration, (1.0 - mean) * self.concentration
        u = (np.arange(self.max_skip) + 0.5) / self.max_skip
        log_p = (alpha - 1.0) * np.log(u) + (beta - 1.0) * np.log1p(-u)
        p = np.exp(log_p - log_p.max())
        return p / p.sum()

    def mean(self, progress: float) -> float:
        """E[k] at progress p."""
        return float((self.skips * self.probs(progress)).sum())

    def sample(self, rng: np.random.Generator, progress: float) -> int:
        return int(rng.choice(self.skips, p=self.probs(progress)))


@dataclass(frozen=True)
class SkipChoice:
    """A fixed distribution over frame skips, whatever the training progress: the frame rates a stage serves.

    ↑F, for one, is sampled at the model's output rate (base fps × its factor) and, in the keyframe modes, at the
    base rate; it trains on those skips rather than on the decoder's schedule.
    """

    skips: tuple[int, ...]
    weights: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.skips or len(self.skips) != len(self.weights):
            raise UsageError(f"a SkipChoice needs one weight per skip, got {self.skips} and {self.weights}")
        if any(int(k) != k or k < 1 for k in self.skips):
            raise UsageError(f"frame skips must be integers ≥ 1, got {self.skips}")
        if any(w < 0 for w in self.weights) or sum(self.weights) <= 0:
            raise UsageError(f"skip weights must be ≥ 0 with a positive sum, got {self.weights}")

    def sample(self, rng: np.random.Generator, progress: float = 0.0) -> int:
        p = np.asarray(self.weights, dtype=np.float64)
        return int(self.skips[int(rng.choice(len(self.skips), p=p / p.sum()))])


Skip = int | FrameSkipSchedule | SkipChoice


def subsample(video: Tensor, fps: float, k: int) -> tuple[Tensor, float]:
    """Every k-th frame of a (…, c, f, h, w) clip and its frame rate: the low-fps input of ↑F from its dense
    ground truth (a dense clip of (F − 1)·k + 1 frames keeps F frames)."""
    if k < 1:
        raise UsageError(f"k must be ≥ 1, got {k}")
    return video[..., ::k, :, :], fps / k
