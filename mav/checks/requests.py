"""Requests a model (by its configs) or this machine cannot serve, refused before the model loads, with the
limit in the message."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mav.errors import MediaError, OutOfMemory, UsageError

# ---------------------------------------------------------------------------------------------------------------
# Requests a model (by its configs) or this machine cannot serve


def factor_served(factor: int | None, configs: Mapping[str, Any]) -> None:
    """↑F fills gaps of at most its window − 1 frames (the layouts it was trained on); a larger factor would leave
    windows with a single key frame, i.e. silent extrapolation."""
    cfg = configs.get("interpolator")
    if factor is None or factor <= 1 or cfg is None:
        return
    if factor > cfg.num_frames - 1:
        raise UsageError(f"--factor {factor}: this model's ↑F fills gaps of at most {cfg.num_frames - 1} frames "
                         f"(its window is {cfg.num_frames}); use --factor ≤ {cfg.num_frames - 1}, or raise the "
                         f"frame rate in two passes")


def input_frames(count: int | None, minimum: int, path: str | os.PathLike, what: str) -> None:
    if count is not None and count < minimum:
        raise MediaError(f"{path} has {count} frame{'s' if count != 1 else ''}; {what} needs at least {minimum}")


def unet_bytes(cfg: Any, frames: int, batch: int) -> int:
    """A rough upper bound of the activation memory of one no-grad call of a SpaceTime UNet over `frames`
    frames at once: the skip activations it holds, a working set at full resolution, and the attention scores of
    each attention level (spatial: tokens² per frame; temporal: frames² per token)."""
    total = 4 * cfg.widths[0] * cfg.sample_size ** 2 * frames
    for level, width in enumerate(cfg.widths):
        tokens = (cfg.sample_size >> level) ** 2
        total += (cfg.blocks_per_level + 1) * width * tokens * frames
        if level in cfg.attention_levels:
            total += cfg.heads * tokens * tokens * frames
            if cfg.temporal:
                total += cfg.heads * tokens * frames * frames
    return 4 * batch * total


def video_bytes(frames: int, height: int, width: int, batch: int = 1) -> int:
    """A finished batch of videos in float32 and uint8, with a working copy."""
    return batch * frames * 3 * height * width * (4 * 2 + 1)


def frames_fit(what: str, frames: int | None, width: int, height: int, available: int | None,
               advice: str) -> None:
    """OutOfMemory (exit 5) before any work when a video of `frames` frames of width × height, held as uint8 and
    float32 with a working copy, would not fit in `available` bytes."""
    if frames is None or available is None:
        return
    need = video_bytes(frames, height, width)
    if need > available:
        raise OutOfMemory(f"{what}: {frames} frames of {width}×{height} would need about {need / 2**30:.1f} GiB "
                          f"({available / 2**30:.1f} GiB free); {advice}")


def available_memory() -> int | None:
    """Bytes this machine can still give (Linux's MemAvailable), or None when it does not say."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def generation_fits(configs: Mapping[str, Any], *, num_frames: int, factor: int, batch: int,
                    available: int | None, option: str = "--num-frames") -> None:
    """OutOfMemory (exit 5) before any work when D^t's frames, all denoised at once, and the finished videos
    would not fit in `available` bytes. ↑F and SR work in windows of fixed size, so they are not the limit."""
    decoder = configs.get("decoder") or configs.get("interpolator")
    if decoder is None or available is None:
        return
    out_frames = (num_frames - 1) * max(factor, 1) + 1
    size = max(getattr(c, "sample_size", 0) for c in configs.values())
    need = unet_bytes(decoder, num_frames, 2 * batch) + video_bytes(out_frames, size, size, batch)
    if need > available:
        raise OutOfMemory(f"{option} {num_frames} would need about {need / 2**30:.1f} GiB ({available / 2**30:.1f} "
                          f"GiB free): D^t denoises all base frames at once; ask for fewer frames and make a long "
                          f"video with `mav extrapolate`")
