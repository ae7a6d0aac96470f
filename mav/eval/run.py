"""The evaluation run (`mav eval`), section by section: how well a model follows its prompts, moves,
interpolates, super-resolves and continues.

Every number is measured on the shapes world (DESIGN §4), where the truth is known:

- text faithfulness: videos generated from full prompts ("a large red circle on a blue background") and partial
  ones ("green triangle on black"), judged frame by frame (`mav.eval.judge`) against the attributes the prompt
  names; accuracy is over all frames of all videos, per attribute and for all named attributes at once;
- presence and motion of the same videos: frames with exactly one object; centroid speed, the share of videos
  that move, and smoothness (mean |second difference| / mean |first difference| of the centroid path); the
  share whose mean step is at the world's speed, and the share with no jump (no step beyond the world's);
- ↑F: PSNR of the filled frames of a true clip with every k-th frame known, beside linear blending of the known
  frames around each one; SR^t_l and SR_h: PSNR against the true high-resolution render of a clip rendered at the
  low resolution, beside bicubic upsampling; extrapolation: the centroid error of frames continued from the first
  half of a true clip, beside holding the last known frame;
- wall time per stage and per section.

The held-out scenes are `mav.eval.metrics.eval_scene`'s.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import partial

import numpy as np
import torch

from mav import checks
from mav.checks import UNTIL_STAGES
from mav.conditioning import NATIVE_FPS, frame_skip, sr_cond
from mav.diffusion.noise import generators
from mav.eval.judge import judge_video
from mav.eval.metrics import (ATTRIBUTES, EVAL_SEED_OFFSET, EXTRAPOLATION, FULL, INTERPOLATION, PARTIAL, SR_HIGH,
                              SR_HIGH_FRAMES, SR_LOW, eval_scene, faithfulness, finite_mean, linear_blend, motion,
                              partial_prompt, presence, psnr, stack_clips, unstack_clips)
from mav.progress import Reporter
from mav.world import render_clip


class Clock:
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


def noise_seeds(seed: int, section: int, start: int, count: int) -> list[int]:
    """Sampling seeds of videos start … start+count−1 of a section: consecutive, as `Pipeline.generate` uses."""
    return checks.prompt_seeds(seed * 1_000_000 + section * 100_000 + start, count)


def dense_skip(pipe) -> tuple[int, float]:
    """The frame skip and fps of the model's final videos: base fps × ↑F factor, as a whole native-frame skip."""
    factor = max(1, pipe.defaults.interpolation_factor)
    skip = frame_skip(pipe.defaults.fps * factor)
    return skip, NATIVE_FPS / skip


def missing(pipe, until: str, needs: Sequence[str], last: str) -> str | None:
    """Why a section cannot run (a component the model lacks, or a stage past `until`), or None."""
    absent = [c for c in needs if c not in pipe.models]
    if absent:
        return f"the model has no {', '.join(absent)}"
    if UNTIL_STAGES.index(last) > UNTIL_STAGES.index(until):
        return f"past --until {until}"
    return None


def batches(n: int, size: int):
    for s in range(0, n, size):
        yield s, min(n, s + size)


def empty_text(pipe, b: int):
    return pipe.encode_text([""] * b) if "clip" in pipe.models else None


def faithfulness_section(pipe, clock: Clock, n: int, seed: int, steps, until: str, batch_size: int,
                          reporter: Reporter) -> dict:
    """Generate n videos from full and n from partial prompts; judge them."""
    prompts = {FULL: [eval_scene(seed, FULL, i)[0].describe() for i in range(n)],
               PARTIAL: [partial_prompt(*eval_scene(seed, PARTIAL, i)) for i in range(n)]}
    readings, out = {}, {}
    for section, kind in ((FULL, "full"), (PARTIAL, "partial")):
        reporter.message(f"eval: generating {n} videos from {kind} prompts")
        readings[section] = []
        for s, e in batches(n, batch_size):
            videos = clock.run(pipe.generate, prompts[section][s:e], seed=noise_seeds(seed, section, s, 1)[0],
                               steps=steps, until=until)
            readings[section] += [judge_video(v.frames.numpy()) for v in videos]
        out[kind] = {"skipped": None, **faithfulness(readings[section], prompts[section]),
                     "examples": prompts[section][:3]}
    every = readings[FULL] + readings[PARTIAL]
    return {"faithfulness": out, "presence": {"skipped": None, **presence(every)},
            "motion": {"skipped": None, **motion(every, fps=videos[0].fps)},
            "video": {"frames": len(every[0]), "size": every[0].frame_size}}


def interpolation_section(pipe, clock: Clock, n: int, seed: int, steps, batch_size: int) -> dict:
    """↑F: every k-th frame of a true clip known, the rest filled; PSNR on the filled frames only."""
    cfg = pipe.models["interpolator"].config
    k = max(2, pipe.defaults.interpolation_factor)
    frames = max(1, (cfg.num_frames - 1) // k) * k + 1
    skip, fps = dense_skip(pipe)
    known = np.zeros(frames, dtype=bool)
    known[::k] = True
    anchor = int(np.nonzero(known)[0][known.sum() // 2])  # the known frame nearest the middle: CLIP condition
    model_psnr, blend_psnr = [], []
    for s, e in batches(n, batch_size):
        truth = [render_clip(eval_scene(seed, INTERPOLATION, i)[0], frames, skip, cfg.sample_size)[0]
                 for i in range(s, e)]
        x = stack_clips(truth, pipe.device)
        x[:, :, torch.from_numpy(~known).to(x.device)] = 0.0  # the true in-between frames never reach the model
        embed = pipe.encode_images(x[:, :, anchor]) if "clip" in pipe.models else None
        gens = generators(noise_seeds(seed, INTERPOLATION, s, e - s))
        out = clock.run(pipe.interpolator.fill, x, torch.from_numpy(known), fps=fps, embed=embed,
                        text=empty_text(pipe, e - s), gens=gens, steps=pipe.steps_for("interpolator", steps),
                        guidance=pipe.guidance_for("interpolator", None), label="eval ↑F")
        for true, made in zip(truth, unstack_clips(out, fps)):
            model_psnr.append(psnr(made[~known], true[~known]))
            blend_psnr.append(psnr(linear_blend(true, known)[~known], true[~known]))
    return {"skipped": None, "psnr": finite_mean(model_psnr), "psnr_linear": finite_mean(blend_psnr), "factor": k,
            "frames": frames, "size": cfg.sample_size, "fps": fps, "videos": n}


def sr_section(pipe, clock: Clock, stage: str, n: int, seed: int, steps, batch_size: int) -> dict:
    """SR^t_l or SR_h on a clip truly rendered at the stage's low resolution; PSNR against the high-res render."""
    cfg = pipe.models[stage].config
    low, high = cfg.low_res_size, cfg.sample_size
    section = SR_LOW if stage == "sr_low" else SR_HIGH
    frames = cfg.num_frames if stage == "sr_low" else SR_HIGH_FRAMES
    skip, fps = dense_skip(pipe)
    model_psnr, bicubic_psnr = [], []
    for s, e in batches(n, batch_size):
        scenes = [eval_scene(seed, section, i)[0] for i in range(s, e)]
        truth = [render_clip(sc, frames, skip, high)[0] for sc in scenes]
        x = stack_clips([render_clip(sc, frames, skip, low)[0] for sc in scenes], pipe.device)
        gens = generators(noise_seeds(seed, section, s, e - s))
        if stage == "sr_low":
            out = clock.run(pipe.sr_low.sample, x, gens, fps=fps, steps=pipe.steps_for(stage, steps))
        else:
            out = clock.run(pipe.sr_high.sample, x, gens, steps=pipe.steps_for(stage, steps))
        for true, made, base in zip(truth, unstack_clips(out, fps), unstack_clips(sr_cond(x, high), fps)):
            model_psnr.append(psnr(made, true))
            bicubic_psnr.append(psnr(base, true))
    return {"skipped": None, "psnr": finite_mean(model_psnr), "psnr_bicubic": finite_mean(bicubic_psnr), "from": low,
            "to": high, "frames": frames, "videos": n}


def extrapolation_section(pipe, clock: Clock, n: int, seed: int, steps, batch_size: int) -> dict:
    """The first half of a true clip known, the rest continued by ↑F; centroid error against the true frames."""
    cfg = pipe.models["interpolator"].config
    frames, size = cfg.num_frames, cfg.sample_size
    n_known = max(1, frames // 2)
    skip, fps = dense_skip(pipe)
    known = np.arange(frames) < n_known
    errors, hold_errors, found, kept = [], [], [], []
    for s, e in batches(n, batch_size):
        scenes = [eval_scene(seed, EXTRAPOLATION, i)[0] for i in range(s, e)]
        truth = [render_clip(sc, frames, skip, size)[0] for sc in scenes]
        x = stack_clips(truth, pipe.device)
        x[:, :, n_known:] = 0.0
        embed = pipe.encode_images(x[:, :, n_known - 1]) if "clip" in pipe.models else None
        gens = generators(noise_seeds(seed, EXTRAPOLATION, s, e - s))
        out = clock.run(pipe.interpolator.fill, x, torch.from_numpy(known), fps=fps, embed=embed,
                        text=empty_text(pipe, e - s), gens=gens, steps=pipe.steps_for("interpolator", steps),
                        guidance=pipe.guidance_for("interpolator", None), context=max(1, frames // 2),
                        label="eval extrapolate")
        for scene, true, made in zip(scenes, truth, unstack_clips(out, fps)):
            t_read, m_read = judge_video(true[~known]), judge_video(made[~known])
            errors += list(np.linalg.norm(m_read.centroid - t_read.centroid, axis=1))  # NaN where not found
            last = judge_video(true[n_known - 1]).centroid[0]
            hold_errors += list(np.linalg.norm(t_read.centroid - last, axis=1))
            found += list(m_read.found)
            kept += [all(m_read.attributes(t)[a] == getattr(scene, a) for a in ATTRIBUTES)
                     for t in range(len(m_read))]
    error, hold = finite_mean(errors), finite_mean(hold_errors)
    return {"skipped": None, "centroid_error_px": error,
            "centroid_error_frac": None if error is None else error / size,
            "hold_last_error_px": hold, "hold_last_error_frac": None if hold is None else hold / size,
            "object_found": finite_mean(found), "attributes_kept": finite_mean(kept), "known": n_known,
            "frames": frames, "size": size, "fps": fps, "videos": n}


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
    clock, start = Clock(pipe), time.perf_counter()
    report: dict = {"model": str(pipe.folder), "seed": seed, "n": n, "until": until, "steps": steps,
                    "held_out": f"scenes from numpy default_rng([{EVAL_SEED_OFFSET} + seed, section, i]); "
                                "training uses default_rng([train_seed, j])"}
    # 2. text faithfulness, presence and motion of generated videos
    t0 = time.perf_counter()
    reason = missing(pipe, until, ("clip", "decoder"), "decoder")
    if reason is None:
        report.update(faithfulness_section(pipe, clock, n, seed, steps, until, batch_size, reporter))
        clock.section("generation", t0)
    else:
        report.update(faithfulness={"full": {"skipped": reason}, "partial": {"skipped": reason}},
                      presence={"skipped": reason}, motion={"skipped": reason})
    # 3. ↑F on true clips; 4. SR^t_l and SR_h on true low-resolution renders; 5. extrapolation from the first half
    # of true clips
    def section(name: str, component: str, what: str, run) -> dict:
        """Run one section on true clips, timed, or say why it is skipped."""
        t0 = time.perf_counter()
        reason = missing(pipe, until, (component,), component)
        if reason is not None:
            return {"skipped": reason}
        reporter.message(f"eval: {what} on {n} true clips")
        result = run()
        clock.section(name, t0)
        return result

    common = (n, seed, steps, batch_size)
    report["interpolation"] = section("interpolation", "interpolator", "↑F",
                                      partial(interpolation_section, pipe, clock, *common))
    report["super_resolution"] = {stage: section(stage, stage, stage, partial(sr_section, pipe, clock, stage, *common))
                                  for stage in ("sr_low", "sr_high")}
    report["extrapolation"] = section("extrapolation", "interpolator", "extrapolation",
                                      partial(extrapolation_section, pipe, clock, *common))
    # 6. wall time
    generation = clock.sections.get("generation")
    report["timing"] = {"stages": clock.stages, "sections": clock.sections,
                        "seconds_per_video": None if generation is None else generation / (2 * n),
                        "total": time.perf_counter() - start}
    return report


__all__ = ["evaluate", "Clock", "faithfulness_section", "interpolation_section", "sr_section",
           "extrapolation_section"]
