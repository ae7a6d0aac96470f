"""The measures of an evaluation on the shapes world (DESIGN §4): PSNR, the linear blend and bicubic baselines,
held-out scenes and prompts, and scores of judged videos (text faithfulness, presence, motion). The runs that
produce the videos are `mav.eval.run`'s.

Held-out split: evaluation scenes come from `numpy.random.default_rng([10_000 + seed, section, i])`. Training draws
sample j from `default_rng([train_seed, j])` (train_seed 0 by default), so as long as the training seed is below
10 000 no evaluation scene's positions, velocities or attribute draws come from a training stream. With only
8·7·3·2 = 336 attribute combinations, the combinations themselves necessarily recur; the scenes do not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from einops import rearrange

from mav.conditioning import NATIVE_FPS, blend_known_frames, sr_cond
from mav.eval.judge import COLORS, Readings, judge_video
from mav.media import Video, to_unit
from mav.world import SHAPES, SIZES, SPEED_RANGE, Scene, parse_prompt, random_scene

ATTRIBUTES = ("color", "shape", "size", "bg")
PSNR_CAP = 100.0  # dB reported for identical images (MSE 0), so every number stays finite JSON
MOVE_THRESHOLD = 0.02  # a video moves when its centroid gets this far (× frame side) from where it started
MOTION_TOLERANCE = 1.5  # a video moves like the world when its mean step is within this factor of the true range
SR_HIGH_FRAMES = 4  # frames per clip for SR_h, which works frame by frame anyway
EVAL_SEED_OFFSET = 10_000
# Sections: each draws its scenes and its sampling noise from its own stream.
FULL, PARTIAL, INTERPOLATION, SR_LOW, SR_HIGH, EXTRAPOLATION = range(6)


# ---------------------------------------------------------------------------------------------------------------
# Pixel metrics


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0, cap: float = PSNR_CAP) -> float:
    """Peak signal-to-noise ratio in dB, 10·log10(peak² / MSE), over all elements; capped at `cap` (MSE 0)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"psnr needs equal shapes, got {a.shape} and {b.shape}")
    mse = float(np.mean((a - b) ** 2))
    if mse == 0.0:
        return cap
    return min(cap, 10.0 * math.log10(peak**2 / mse))


def linear_blend(frames: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Fill the unknown frames of uint8 (F, H, W, 3) by blending the nearest known frames on either side.

    Frame j between known frames i0 < j < i1 is (1 − w)·x[i0] + w·x[i1], w = (j − i0)/(i1 − i0); before the
    first or after the last known frame, that frame is held (`mav.conditioning.blend_known_frames`, what a
    blend-filled ↑F is shown, in float64 here).
    """
    known = np.asarray(known, dtype=bool)
    if not known.any():
        raise ValueError("linear_blend needs at least one known frame")
    video = rearrange(torch.from_numpy(frames.astype(np.float64)), "f h w c -> 1 c f h w")
    out = rearrange(blend_known_frames(video, torch.from_numpy(known)[None]), "1 c f h w -> f h w c").numpy()
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def bicubic_upsample(frames: np.ndarray, size: int) -> np.ndarray:
    """uint8 (F, h, w, 3) → uint8 (F, size, size, 3): the bicubic upsampling the SR stages are conditioned on."""
    x = sr_cond(stack_clips([frames]), size)
    return unstack_clips(x)[0]


def stack_clips(clips: Sequence[np.ndarray], device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 clips (F, H, W, 3) → float b c f h w in [-1, 1]."""
    return rearrange(to_unit(np.stack(clips)).to(device), "b f h w c -> b c f h w")


def unstack_clips(x: torch.Tensor, fps: float = NATIVE_FPS) -> list[np.ndarray]:
    """float b c f h w in [-1, 1] → uint8 clips (F, H, W, 3), rounded as a saved video would be."""
    return [Video.from_tensor(x[i].float().cpu(), fps).frames.numpy() for i in range(x.shape[0])]


# ---------------------------------------------------------------------------------------------------------------
# Scoring judged videos


def eval_scene(seed: int, section: int, i: int, moving: bool = True) -> tuple[Scene, np.random.Generator]:
    """Scene i of an evaluation section, from a stream no training run draws from (see the module docstring)."""
    rng = np.random.default_rng([EVAL_SEED_OFFSET + seed, section, i])
    return random_scene(rng, moving=moving), rng


def partial_prompt(scene: Scene, rng: np.random.Generator) -> str:
    """A prompt naming the shape and a proper subset of size, colour and background, in one of a few phrasings:
    "a red circle", "green triangle on black", "a small square, blue background", …"""
    named = [(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (1, 0, 1), (0, 1, 1)][int(rng.integers(7))]
    size, colour, bg = named
    words = ([scene.size] if size else []) + ([scene.color] if colour else []) + [scene.shape]
    text = " ".join(words)
    if rng.random() < 0.5:
        text = ("an " if words[0][0] in "aeiou" else "a ") + text
    if bg:
        article = "an" if scene.bg[0] in "aeiou" else "a"
        text += (f" on {article} {scene.bg} background", f" on {scene.bg}", f", {scene.bg} background",
                 f" against {article} {scene.bg} background")[int(rng.integers(4))]
    return text


def _frames_of(video) -> np.ndarray:
    if isinstance(video, Video):
        return video.frames.numpy()
    if isinstance(video, torch.Tensor):
        return video.cpu().numpy()
    return np.asarray(video)


def faithfulness(readings: Sequence[Readings], prompts: Sequence[str]) -> dict:
    """Per attribute the prompt names, the fraction of frames whose reading matches it; "all": every named one."""
    correct = dict.fromkeys((*ATTRIBUTES, "all"), 0)
    scored = dict.fromkeys((*ATTRIBUTES, "all"), 0)
    for reading, prompt in zip(readings, prompts, strict=True):
        wanted = {k: v for k, v in parse_prompt(prompt).items() if v is not None}
        if not wanted:
            continue
        matches = {k: _matches(reading, k, v) for k, v in wanted.items()}  # (F,) bool each
        for k, m in matches.items():
            correct[k] += int(m.sum())
            scored[k] += len(m)
        correct["all"] += int(np.logical_and.reduce(list(matches.values())).sum())
        scored["all"] += len(reading)
    return {"videos": len(readings), "frames": int(sum(len(r) for r in readings)),
            "accuracy": {k: (correct[k] / scored[k] if scored[k] else None) for k in correct},
            "scored_frames": scored}


def _matches(reading: Readings, attribute: str, value: str) -> np.ndarray:
    names = {"color": COLORS, "bg": COLORS, "shape": SHAPES, "size": tuple(SIZES)}[attribute]
    return getattr(reading, attribute) == names.index(value)


def presence(readings: Sequence[Readings]) -> dict:
    """Fraction of frames with exactly one object, and with an object at all."""
    frames = int(sum(len(r) for r in readings))
    return {"frames": frames,
            "single_object": finite_mean(np.concatenate([r.single for r in readings])) if frames else None,
            "object_found": finite_mean(np.concatenate([r.found for r in readings])) if frames else None}


def true_displacement_range(fps: float, size: int) -> tuple[float, float]:
    """Per-frame displacement of the world's objects at `fps`, in pixels of a `size` frame: SPEED_RANGE × skip
    (a bounce only shortens a step, so this bounds every true clip's mean step from above)."""
    skip = NATIVE_FPS / fps
    return SPEED_RANGE[0] * skip * size, SPEED_RANGE[1] * skip * size


def motion(readings: Sequence[Readings], fps: float | None = None) -> dict:
    """Centroid speed (pixels and frame sides per frame), share of moving videos, smoothness of the moving ones.

    Displacements count only between consecutive frames that both have an object; a video moves when its centroid
    gets farther than MOVE_THRESHOLD·S from its first position. Smoothness is mean |Δ²c| / mean |Δc| (0 for
    constant velocity; bounces and jitter raise it). With `fps`, `true_speed_fraction` is the share of videos with
    an object in every frame whose mean step lies within ×MOTION_TOLERANCE of the true range at that fps, and
    `steady_fraction` the share with an object in every frame and no step longer than ×MOTION_TOLERANCE the
    range's top (a mean can hide an object that jumps across the frame once and glides otherwise).
    """
    speeds, relative, moving, smooth, true_speed, steady = [], [], [], [], [], []
    for r in readings:
        c = r.centroid  # (F, 2), NaN without an object
        step = np.linalg.norm(np.diff(c, axis=0), axis=1)  # NaN where either frame lacks an object
        if fps is not None:
            lo, hi = true_displacement_range(fps, r.frame_size)
            mean_step = np.nanmean(step) if np.isfinite(step).any() else np.nan
            true_speed.append(bool(r.found.all() and lo / MOTION_TOLERANCE <= mean_step <= hi * MOTION_TOLERANCE))
            steady.append(bool(r.found.all() and (len(step) == 0 or step.max() <= hi * MOTION_TOLERANCE)))
        if np.isfinite(step).any():
            speeds.append(np.nanmean(step))
            relative.append(np.nanmean(step) / r.frame_size)
        seen = c[r.found]
        if len(seen) == 0:
            moving.append(False)
            continue
        moves = bool(np.linalg.norm(seen - seen[0], axis=1).max() > MOVE_THRESHOLD * r.frame_size)
        moving.append(moves)
        accel = np.linalg.norm(np.diff(c, n=2, axis=0), axis=1)
        if moves and np.isfinite(accel).any() and np.nanmean(step) > 0:
            smooth.append(np.nanmean(accel) / np.nanmean(step))
    out = {"videos": len(readings), "mean_displacement_px": finite_mean(speeds),
           "mean_displacement_frac": finite_mean(relative), "moving_fraction": finite_mean(moving),
           "smoothness": finite_mean(smooth)}
    if fps is not None:
        lo, hi = true_displacement_range(fps, readings[0].frame_size) if readings else (None, None)
        out.update(true_speed_fraction=finite_mean(true_speed), steady_fraction=finite_mean(steady),
                   true_displacement_px=[lo, hi], fps=fps)
    return out


def score_videos(videos: Sequence, prompts: Sequence[str]) -> dict:
    """Judge videos (Video, or uint8 (F, H, W, 3) arrays or tensors) against their prompts: faithfulness,
    presence and motion, as `evaluate` reports them."""
    if len(videos) != len(prompts):
        raise ValueError(f"{len(videos)} videos but {len(prompts)} prompts")
    readings = [judge_video(_frames_of(v)) for v in videos]
    return {"faithfulness": faithfulness(readings, prompts), "presence": presence(readings),
            "motion": motion(readings)}


def finite_mean(values) -> float | None:
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else None


__all__ = ["score_videos", "faithfulness", "presence", "motion", "psnr", "linear_blend", "bicubic_upsample",
           "eval_scene", "partial_prompt", "stack_clips", "unstack_clips", "finite_mean", "ATTRIBUTES", "PSNR_CAP",
           "MOVE_THRESHOLD"]
