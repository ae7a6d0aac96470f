"""The evaluation runs: how well a model follows its prompts, moves, interpolates, super-resolves and continues.

Every number is measured on the shapes world (DESIGN §4), where the truth is known:

- text faithfulness: videos generated from full prompts ("a large red circle on a blue background") and partial
  ones ("green triangle on black"), judged frame by frame (`mav.eval.judge`) against the attributes the prompt
  names; accuracy is over all frames of all videos, per attribute and for all named attributes at once;
- presence and motion of the same videos: frames with exactly one object; centroid speed, the share of videos
  that move, and smoothness (mean |second difference| / mean |first difference| of the centroid path);
- ↑F: PSNR of the filled frames of a true clip with every k-th frame known, beside linear blending of the known
  frames around each one; SR^t_l and SR_h: PSNR against the true high-resolution render of a clip rendered at the
  low resolution, beside bicubic upsampling; extrapolation: the centroid error of frames continued from the first
  half of a true clip, beside holding the last known frame;
- wall time per stage and per section.

Held-out split: evaluation scenes come from `numpy.random.default_rng([10_000 + seed, section, i])`. Training draws
sample j from `default_rng([train_seed, j])` (train_seed 0 by default), so as long as the training seed is below
10 000 no evaluation scene's positions, velocities or attribute draws come from a training stream. With only
8·7·3·2 = 336 attribute combinations, the combinations themselves necessarily recur; the scenes do not.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from functools import partial

import numpy as np
import torch
from einops import rearrange

from mav import checks
from mav.conditioning import NATIVE_FPS, sr_cond
from mav.eval.judge import COLORS, Readings, judge_video
from mav.media import Video, to_unit
from mav.checks import UNTIL_STAGES
from mav.diffusion.noise import generators
from mav.progress import Reporter
from mav.world import SHAPES, SIZES, SPEED_RANGE, Scene, parse_prompt, random_scene, render_clip

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
    first or after the last known frame, that frame is held.
    """
    known = np.asarray(known, dtype=bool)
    idx = np.nonzero(known)[0]
    if len(idx) == 0:
        raise ValueError("linear_blend needs at least one known frame")
    x = frames.astype(np.float64)
    out = x.copy()
    for j in np.nonzero(~known)[0]:
        i1 = idx[np.searchsorted(idx, j)] if j < idx[-1] else idx[-1]
        i0 = idx[np.searchsorted(idx, j) - 1] if j > idx[0] else idx[0]
        w = 0.0 if i1 == i0 else (j - i0) / (i1 - i0)
        out[j] = (1 - w) * x[i0] + w * x[i1]
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def bicubic_upsample(frames: np.ndarray, size: int) -> np.ndarray:
    """uint8 (F, h, w, 3) → uint8 (F, size, size, 3): the bicubic upsampling the SR stages are conditioned on."""
    x = sr_cond(_to_tensor([frames]), size)
    return _to_frames(x)[0]


def _to_tensor(clips: Sequence[np.ndarray], device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 clips (F, H, W, 3) → float b c f h w in [-1, 1]."""
    return rearrange(to_unit(np.stack(clips)).to(device), "b f h w c -> b c f h w")


def _to_frames(x: torch.Tensor, fps: float = NATIVE_FPS) -> list[np.ndarray]:
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
            "single_object": _mean(np.concatenate([r.single for r in readings])) if frames else None,
            "object_found": _mean(np.concatenate([r.found for r in readings])) if frames else None}


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
    an object in every frame whose mean step lies within ×MOTION_TOLERANCE of the true range at that fps.
    """
    speeds, relative, moving, smooth, true_speed = [], [], [], [], []
    for r in readings:
        c = r.centroid  # (F, 2), NaN without an object
        step = np.linalg.norm(np.diff(c, axis=0), axis=1)  # NaN where either frame lacks an object
        if fps is not None:
            lo, hi = true_displacement_range(fps, r.frame_size)
            mean_step = np.nanmean(step) if np.isfinite(step).any() else np.nan
            true_speed.append(bool(r.found.all() and lo / MOTION_TOLERANCE <= mean_step <= hi * MOTION_TOLERANCE))
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
    out = {"videos": len(readings), "mean_displacement_px": _mean(speeds), "mean_displacement_frac": _mean(relative),
           "moving_fraction": _mean(moving), "smoothness": _mean(smooth)}
    if fps is not None:
        lo, hi = true_displacement_range(fps, readings[0].frame_size) if readings else (None, None)
        out.update(true_speed_fraction=_mean(true_speed), true_displacement_px=[lo, hi], fps=fps)
    return out


def score_videos(videos: Sequence, prompts: Sequence[str]) -> dict:
    """Judge videos (Video, or uint8 (F, H, W, 3) arrays or tensors) against their prompts: faithfulness,
    presence and motion, as `evaluate` reports them."""
    if len(videos) != len(prompts):
        raise ValueError(f"{len(videos)} videos but {len(prompts)} prompts")
    readings = [judge_video(_frames_of(v)) for v in videos]
    return {"faithfulness": faithfulness(readings, prompts), "presence": presence(readings),
            "motion": motion(readings)}


def _mean(values) -> float | None:
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else None


# ---------------------------------------------------------------------------------------------------------------
# The evaluation run


class _Clock:
    """Seconds per pipeline stage (from Pipeline.timings) and per section, accumulated over the run."""

    def __init__(self, pipe) -> None:
        self.pipe, self.stages, self.sections = pipe, {}, {}

    def run(self, fn, *args, **kwargs):
        self.pipe.timings = {}
        out = fn(*args, **kwargs)
        for stage, seconds in self.pipe.timings.items():
            self.stages[stage] = self.stages.get(stage, 0.0) + seconds
        return out

    def section(self, name: str, start: float) -> None:
        self.sections[name] = self.sections.get(name, 0.0) + time.perf_counter() - start


def _noise_seeds(seed: int, section: int, start: int, count: int) -> list[int]:
    """Sampling seeds of videos start … start+count−1 of a section: consecutive, as `Pipeline.generate` uses."""
    return checks.prompt_seeds(seed * 1_000_000 + section * 100_000 + start, count)


def _dense_skip(pipe) -> tuple[int, float]:
    """The frame skip and fps of the model's final videos: base fps × ↑F factor, as a whole native-frame skip."""
    factor = max(1, pipe.defaults.interpolation_factor)
    skip = max(1, round(NATIVE_FPS / (pipe.defaults.fps * factor)))
    return skip, NATIVE_FPS / skip


def _missing(pipe, until: str, needs: Sequence[str], last: str) -> str | None:
    """Why a section cannot run (a component the model lacks, or a stage past `until`), or None."""
    absent = [c for c in needs if c not in pipe.models]
    if absent:
        return f"the model has no {', '.join(absent)}"
    if UNTIL_STAGES.index(last) > UNTIL_STAGES.index(until):
        return f"past --until {until}"
    return None


def _batches(n: int, size: int):
    for s in range(0, n, size):
        yield s, min(n, s + size)


def _empty_text(pipe, b: int):
    return pipe.encode_text([""] * b) if "clip" in pipe.models else None


def _faithfulness_section(pipe, clock: _Clock, n: int, seed: int, steps, until: str, batch_size: int,
                          reporter: Reporter) -> dict:
    """Generate n videos from full and n from partial prompts; judge them."""
    prompts = {FULL: [eval_scene(seed, FULL, i)[0].describe() for i in range(n)],
               PARTIAL: [partial_prompt(*eval_scene(seed, PARTIAL, i)) for i in range(n)]}
    readings, out = {}, {}
    for section, kind in ((FULL, "full"), (PARTIAL, "partial")):
        reporter.message(f"eval: generating {n} videos from {kind} prompts")
        readings[section] = []
        for s, e in _batches(n, batch_size):
            videos = clock.run(pipe.generate, prompts[section][s:e], seed=_noise_seeds(seed, section, s, 1)[0],
                               steps=steps, until=until)
            readings[section] += [judge_video(v.frames.numpy()) for v in videos]
        out[kind] = {"skipped": None, **faithfulness(readings[section], prompts[section]),
                     "examples": prompts[section][:3]}
    every = readings[FULL] + readings[PARTIAL]
    return {"faithfulness": out, "presence": {"skipped": None, **presence(every)},
            "motion": {"skipped": None, **motion(every, fps=videos[0].fps)},
            "video": {"frames": len(every[0]), "size": every[0].frame_size}}


def _interpolation_section(pipe, clock: _Clock, n: int, seed: int, steps, batch_size: int) -> dict:
    """↑F: every k-th frame of a true clip known, the rest filled; PSNR on the filled frames only."""
    cfg = pipe.models["interpolator"].config
    k = max(2, pipe.defaults.interpolation_factor)
    frames = max(1, (cfg.num_frames - 1) // k) * k + 1
    skip, fps = _dense_skip(pipe)
    known = np.zeros(frames, dtype=bool)
    known[::k] = True
    anchor = int(np.nonzero(known)[0][known.sum() // 2])  # the known frame nearest the middle: CLIP condition
    model_psnr, blend_psnr = [], []
    for s, e in _batches(n, batch_size):
        truth = [render_clip(eval_scene(seed, INTERPOLATION, i)[0], frames, skip, cfg.sample_size)[0]
                 for i in range(s, e)]
        x = _to_tensor(truth, pipe.device)
        x[:, :, torch.from_numpy(~known).to(x.device)] = 0.0  # the true in-between frames never reach the model
        embed = pipe.encode_images(x[:, :, anchor]) if "clip" in pipe.models else None
        gens = generators(_noise_seeds(seed, INTERPOLATION, s, e - s))
        out = clock.run(pipe.interpolator.fill, x, torch.from_numpy(known), fps=fps, embed=embed,
                        text=_empty_text(pipe, e - s), gens=gens, steps=pipe.steps_for("interpolator", steps),
                        guidance=pipe.guidance_for("interpolator", None), label="eval ↑F")
        for true, made in zip(truth, _to_frames(out, fps)):
            model_psnr.append(psnr(made[~known], true[~known]))
            blend_psnr.append(psnr(linear_blend(true, known)[~known], true[~known]))
    return {"skipped": None, "psnr": _mean(model_psnr), "psnr_linear": _mean(blend_psnr), "factor": k,
            "frames": frames, "size": cfg.sample_size, "fps": fps, "videos": n}


def _sr_section(pipe, clock: _Clock, stage: str, n: int, seed: int, steps, batch_size: int) -> dict:
    """SR^t_l or SR_h on a clip truly rendered at the stage's low resolution; PSNR against the high-res render."""
    cfg = pipe.models[stage].config
    low, high = cfg.low_res_size, cfg.sample_size
    section = SR_LOW if stage == "sr_low" else SR_HIGH
    frames = cfg.num_frames if stage == "sr_low" else SR_HIGH_FRAMES
    skip, fps = _dense_skip(pipe)
    model_psnr, bicubic_psnr = [], []
    for s, e in _batches(n, batch_size):
        scenes = [eval_scene(seed, section, i)[0] for i in range(s, e)]
        truth = [render_clip(sc, frames, skip, high)[0] for sc in scenes]
        x = _to_tensor([render_clip(sc, frames, skip, low)[0] for sc in scenes], pipe.device)
        gens = generators(_noise_seeds(seed, section, s, e - s))
        if stage == "sr_low":
            out = clock.run(pipe.sr_low.sample, x, gens, fps=fps, steps=pipe.steps_for(stage, steps))
        else:
            out = clock.run(pipe.sr_high.sample, x, gens, steps=pipe.steps_for(stage, steps))
        for true, made, base in zip(truth, _to_frames(out, fps), _to_frames(sr_cond(x, high), fps)):
            model_psnr.append(psnr(made, true))
            bicubic_psnr.append(psnr(base, true))
    return {"skipped": None, "psnr": _mean(model_psnr), "psnr_bicubic": _mean(bicubic_psnr), "from": low,
            "to": high, "frames": frames, "videos": n}


def _extrapolation_section(pipe, clock: _Clock, n: int, seed: int, steps, batch_size: int) -> dict:
    """The first half of a true clip known, the rest continued by ↑F; centroid error against the true frames."""
    cfg = pipe.models["interpolator"].config
    frames, size = cfg.num_frames, cfg.sample_size
    n_known = max(1, frames // 2)
    skip, fps = _dense_skip(pipe)
    known = np.arange(frames) < n_known
    errors, hold_errors, found, kept = [], [], [], []
    for s, e in _batches(n, batch_size):
        scenes = [eval_scene(seed, EXTRAPOLATION, i)[0] for i in range(s, e)]
        truth = [render_clip(sc, frames, skip, size)[0] for sc in scenes]
        x = _to_tensor(truth, pipe.device)
        x[:, :, n_known:] = 0.0
        embed = pipe.encode_images(x[:, :, n_known - 1]) if "clip" in pipe.models else None
        gens = generators(_noise_seeds(seed, EXTRAPOLATION, s, e - s))
        out = clock.run(pipe.interpolator.fill, x, torch.from_numpy(known), fps=fps, embed=embed,
                        text=_empty_text(pipe, e - s), gens=gens, steps=pipe.steps_for("interpolator", steps),
                        guidance=pipe.guidance_for("interpolator", None), context=max(1, frames // 2),
                        label="eval extrapolate")
        for scene, true, made in zip(scenes, truth, _to_frames(out, fps)):
            t_read, m_read = judge_video(true[~known]), judge_video(made[~known])
            errors += list(np.linalg.norm(m_read.centroid - t_read.centroid, axis=1))  # NaN where not found
            last = judge_video(true[n_known - 1]).centroid[0]
            hold_errors += list(np.linalg.norm(t_read.centroid - last, axis=1))
            found += list(m_read.found)
            kept += [all(m_read.attributes(t)[a] == getattr(scene, a) for a in ATTRIBUTES)
                     for t in range(len(m_read))]
    error, hold = _mean(errors), _mean(hold_errors)
    return {"skipped": None, "centroid_error_px": error,
            "centroid_error_frac": None if error is None else error / size,
            "hold_last_error_px": hold, "hold_last_error_frac": None if hold is None else hold / size,
            "object_found": _mean(found), "attributes_kept": _mean(kept), "known": n_known, "frames": frames,
            "size": size, "fps": fps, "videos": n}


def evaluate(pipe, n: int = 16, seed: int = 0, steps: int | dict | None = None, reporter: Reporter | None = None,
             *, until: str = "sr_high", batch_size: int = 8) -> dict:
    """Evaluate a loaded Pipeline on held-out shapes-world scenes; every number in one JSON-ready dict.

    n: videos per prompt kind (and clips per ↑F, SR and extrapolation section); seed: picks the held-out scenes
    and the sampling noise; steps: as `Pipeline.generate`; until: the last stage of the generated videos (and of
    the sections evaluated). Sections whose stage the model lacks, or that lie past `until`, are reported as
    {"skipped": reason}.
    """
    # 1. check inputs
    checks.eval_count(n)
    checks.seed(seed)
    checks.until(until)
    checks.at_least("--batch-size", batch_size, 1)
    reporter = reporter or pipe.reporter
    clock, start = _Clock(pipe), time.perf_counter()
    report: dict = {"model": str(pipe.folder), "seed": seed, "n": n, "until": until, "steps": steps,
                    "held_out": f"scenes from numpy default_rng([{EVAL_SEED_OFFSET} + seed, section, i]); "
                                "training uses default_rng([train_seed, j])"}
    # 2. text faithfulness, presence and motion of generated videos
    t0 = time.perf_counter()
    reason = _missing(pipe, until, ("clip", "decoder"), "decoder")
    if reason is None:
        report.update(_faithfulness_section(pipe, clock, n, seed, steps, until, batch_size, reporter))
        clock.section("generation", t0)
    else:
        report.update(faithfulness={"full": {"skipped": reason}, "partial": {"skipped": reason}},
                      presence={"skipped": reason}, motion={"skipped": reason})
    # 3. ↑F on true clips; 4. SR^t_l and SR_h on true low-resolution renders; 5. extrapolation from the first half
    # of true clips
    def section(name: str, component: str, what: str, run) -> dict:
        """Run one section on true clips, timed, or say why it is skipped."""
        t0 = time.perf_counter()
        reason = _missing(pipe, until, (component,), component)
        if reason is not None:
            return {"skipped": reason}
        reporter.message(f"eval: {what} on {n} true clips")
        result = run()
        clock.section(name, t0)
        return result

    common = (n, seed, steps, batch_size)
    report["interpolation"] = section("interpolation", "interpolator", "↑F",
                                      partial(_interpolation_section, pipe, clock, *common))
    report["super_resolution"] = {stage: section(stage, stage, stage, partial(_sr_section, pipe, clock, stage, *common))
                                  for stage in ("sr_low", "sr_high")}
    report["extrapolation"] = section("extrapolation", "interpolator", "extrapolation",
                                      partial(_extrapolation_section, pipe, clock, *common))
    # 6. wall time
    generation = clock.sections.get("generation")
    report["timing"] = {"stages": clock.stages, "sections": clock.sections,
                        "seconds_per_video": None if generation is None else generation / (2 * n),
                        "total": time.perf_counter() - start}
    return report


__all__ = ["evaluate", "score_videos", "faithfulness", "presence", "motion", "psnr", "linear_blend",
           "bicubic_upsample", "eval_scene", "partial_prompt", "ATTRIBUTES", "PSNR_CAP", "MOVE_THRESHOLD"]
