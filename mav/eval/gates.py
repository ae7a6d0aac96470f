"""Per-stage gates: each learned stage measured on held-out shapes-world scenes against the trivial thing it must
beat, in a minute or two, so that no stage of a recipe trains on a broken one.

| gate | figure | baseline | bar |
|---|---|---|---|
| clip | zero-shot shape, colour, size (text prompts that differ in that attribute only) | chance | each ≥ 90 % |
| prior | cosine of P's embedding to the true one; shape, colour, size retrieved from P's embedding (the nearest of the scene's images that differ in that attribute only) | the mean image embedding; chance | cosine above the baseline, each attribute ≥ 90 % |
| decoder-image | attributes of D's images (temporal layers off) from the true embedding and caption, from the true embedding with no caption (what D^t's videos give its spatial layers), and (with a prior) from P's embedding | chance | each ≥ 90 % |
| decoder | D^t's clips: videos whose mean step is within ×1.5 of the true range; videos with no step longer than ×1.5 its top (no jump); frames with one object; the mean step at half the base fps over that at twice it (fps response) | the true clips | ≥ 90 %; ≥ 90 %; ≥ 98 %; within ×1.5 of the true ratio |
| interpolator | ↑F PSNR at the served layout, sampled and of x̂0 at t = T−1; extrapolation centroid error | linear blend; holding the last frame | sampled ≥ blend + 3 dB, x̂0 ≥ blend; error below holding |
| sr-low, sr-high | PSNR of the sampled SR, and of x̂0 at t = T−1 | bicubic | sampled ≥ bicubic + 2 dB (SR^t_l) / ≥ what an exact posterior sample of one frame scores, bicubic − 1.4 dB (SR_h); x̂0 ≥ bicubic + 1 dB |

Scenes come from streams no training run draws from (as `mav.eval.metrics`), gate `g` from section 10 + g.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from mav import checks
from mav.checks import GATES
from mav.errors import UsageError
from mav.eval.judge import judge_video
from mav.conditioning import frame_mask_cond, frame_skip, from_sr_residual, sr_residual, unet_inputs
from mav.eval.metrics import (ATTRIBUTES, INTERPOLATION, MOTION_TOLERANCE, eval_scene, linear_blend, motion, psnr,
                              stack_clips, unstack_clips)
from mav.eval.run import (Clock, dense_skip, empty_text, extrapolation_section, interpolation_section, noise_seeds,
                          sr_section)
from mav.diffusion.noise import gaussian_noise, generators
from mav.world import PALETTE, SHAPES, SIZES, Scene, render_clip

# The gate that checks what each training stage produced.
STAGE_GATE = {"clip": "clip", "prior": "prior", "decoder-image": "decoder-image", "decoder-video": "decoder",
              "interpolator": "interpolator", "sr-low": "sr-low", "sr-high": "sr-high"}
ATTRIBUTE_BAR = 0.90
SINGLE_OBJECT_BAR = 0.98
SMOOTH_VIDEOS_BAR = 0.90
INTERPOLATION_MARGIN_DB = 3.0
# SR's bars. SR_h sees one frame, and for one frame benchmarks/sr_bound.py (BENCHMARKS.md §7, 12 scenes × 40
# exact posterior samples) finds that a perfect sampler draws 1.4 dB (64²→128²) below bicubic and the posterior
# mean — what x̂0 from pure noise estimates — 1.6 dB above: so SR_h's samples must reach the perfect sampler's
# PSNR and its x̂0 two thirds of the best possible gain. SR^t_l sees all the frames of a moving object, whose
# low-resolution renders pin its position down far better than one frame's (the GPU round's SR^t_l sampled 1.7 dB
# above bicubic, past the single-frame bound), so it keeps issue 11's bar: sampled ≥ bicubic + 2 dB.
SR_SAMPLE_VS_BICUBIC_DB = {"sr_low": 2.0, "sr_high": -1.4}
SR_X0_MARGIN_DB = 1.0
GATE_SECTION = 10  # scene streams 10, 11, …: apart from `mav eval`'s sections 0–5
PRIOR_DECODE_SECTION = GATE_SECTION + 20  # the noise of D's images drawn from P's embeddings
CHANCE = {"color": 1 / 7, "shape": 1 / 3, "size": 1 / 2, "bg": 1 / 8}  # colour: any but the background's


@dataclass
class GateResult:
    """One gate's outcome: each measured figure beside its baseline and bar, and a one-line summary."""

    gate: str
    passed: bool
    figures: dict[str, float | None]
    baselines: dict[str, float | None]
    bars: dict[str, str]
    checks: dict[str, bool]
    seconds: float = 0.0
    details: dict = field(default_factory=dict)

    def line(self) -> str:
        failed = [k for k, ok in self.checks.items() if not ok]
        shown = failed or list(self.checks)
        parts = [f"{k} {_fmt(self.figures.get(k))} (baseline {_fmt(self.baselines.get(k))}, bar {self.bars[k]})"
                 for k in shown]
        return f"gate {self.gate} {'passed' if self.passed else 'FAILED'}: " + "; ".join(parts)

    def to_dict(self) -> dict:
        return asdict(self)


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.3f}" if abs(x) < 2 else f"{x:.2f}"


def _result(gate: str, rows: dict[str, tuple[float | None, float | None, str, bool]], start: float,
            **details) -> GateResult:
    """rows: name → (figure, baseline, bar text, passed)."""
    checks = {k: bool(ok) for k, (_, _, _, ok) in rows.items()}
    return GateResult(gate, all(checks.values()), {k: r[0] for k, r in rows.items()},
                      {k: r[1] for k, r in rows.items()}, {k: r[2] for k, r in rows.items()}, checks,
                      round(time.perf_counter() - start, 1), details)


def _scenes(gate: str, seed: int, n: int, moving: bool) -> list[Scene]:
    section = GATE_SECTION + GATES.index(gate)
    return [eval_scene(seed, section, i, moving=moving)[0] for i in range(n)]


def _images(scenes: list[Scene], size: int, device) -> torch.Tensor:
    """b c h w in [-1, 1]: still renders of the scenes."""
    return stack_clips([sc.render(size)[None] for sc in scenes], device)[:, :, 0]


def _attribute_accuracy(frames: list[np.ndarray], scenes: list[Scene]) -> dict[str, float]:
    """Per attribute, the fraction of uint8 (H, W, 3) images whose judged value is the scene's."""
    hits = dict.fromkeys(ATTRIBUTES, 0)
    for image, scene in zip(frames, scenes, strict=True):
        read = judge_video(image).attributes(0)
        for a in ATTRIBUTES:
            hits[a] += read[a] == getattr(scene, a)
    return {a: hits[a] / len(scenes) for a in ATTRIBUTES}


# ---------------------------------------------------------------------------------------------------------------
# The gates


def _retrieval(scenes: list[Scene], embeds: torch.Tensor, candidates_of) -> dict:
    """Per attribute (shape, colour, size): how often the scene's own value is the nearest, by cosine to its
    embedding, among the unit-norm `candidates_of(variants)` of the scene's variants that differ in that attribute
    only; rows with chance as the baseline."""
    options = {"shape": SHAPES, "color": tuple(PALETTE), "size": tuple(SIZES)}
    rows = {}
    for attribute, values in options.items():
        hits, chance = 0, 0.0
        for scene, embed in zip(scenes, embeds):
            values_here = [v for v in values if not (attribute == "color" and v == scene.bg)]
            variants = [Scene(**{**scene.attributes, attribute: v}) for v in values_here]
            hits += values_here[int((candidates_of(variants) @ embed).argmax())] == getattr(scene, attribute)
            chance += 1 / len(values_here)
        accuracy = hits / len(scenes)
        rows[attribute] = (accuracy, chance / len(scenes), f"≥ {ATTRIBUTE_BAR:.2f}", accuracy >= ATTRIBUTE_BAR)
    return rows


def gate_clip(pipe, n: int, seed: int) -> GateResult:
    """Zero-shot: each image against prompts that differ from its full caption in one attribute only."""
    start = time.perf_counter()
    scenes = _scenes("clip", seed, n, moving=False)
    embeds = pipe.encode_images(_images(scenes, pipe.models["clip"].image_size, pipe.device))

    def prompts(variants: list[Scene]) -> torch.Tensor:
        return torch.nn.functional.normalize(pipe.encode_text([v.describe() for v in variants]).pooled, dim=-1)

    return _result("clip", _retrieval(scenes, embeds, prompts), start, n=n)


def _decode_images(pipe, embed: torch.Tensor, captions: list[str], seed: int, section: int) -> list[np.ndarray]:
    """D with its temporal layers off (the image model): one image per embedding and caption."""
    cfg = pipe.models["decoder"].config
    b = len(captions)
    text, negative = pipe.encode_text(captions), pipe.encode_text([""] * b)
    cond, uncond = pipe.decoder.conditions(embed, text, negative, fps=None)  # images were trained without fps
    for kwargs in (cond, uncond):  # and without temporal layers
        kwargs["temporal"] = False
    gens = generators(noise_seeds(seed, section, 0, b))
    noise = gaussian_noise((b, 3, cfg.sample_size, cfg.sample_size), gens, pipe.device)
    out = pipe.decoder.denoise(noise, cond, uncond, steps=pipe.steps_for("decoder", None),
                               guidance=pipe.guidance_for("decoder", None), gens=gens, label="gate D (images)")
    return [f[0] for f in unstack_clips(out[:, :, None])]


def _prior_embeddings(pipe, scenes: list[Scene], seed: int) -> torch.Tensor:
    """P's embeddings of the scenes' full captions, with the model's steps and guidance."""
    n = len(scenes)
    gens = generators(noise_seeds(seed, GATE_SECTION + GATES.index("prior"), 0, n))
    return pipe.prior.sample(pipe.encode_text([s.describe() for s in scenes]), pipe.encode_text([""] * n), gens,
                             steps=pipe.steps_for("prior", None), guidance=pipe.guidance_for("prior", None))


def gate_decoder_image(pipe, n: int, seed: int) -> GateResult:
    """D on images given the *true* CLIP embedding and the full caption, then the same embedding with no caption:
    every attribute read off the pixels; with a prior, the same from P's embedding (the text-to-image model the
    video model is built on)."""
    start = time.perf_counter()
    scenes = _scenes("decoder-image", seed, n, moving=False)
    captions = [s.describe() for s in scenes]
    embed = pipe.encode_images(_images(scenes, pipe.models["clip"].image_size, pipe.device))
    section = GATE_SECTION + GATES.index("decoder-image")

    def rows_of(images: list[np.ndarray], suffix: str = "") -> dict:
        accuracy = _attribute_accuracy(images, scenes)
        return {f"{a}{suffix}": (accuracy[a], CHANCE[a], f"≥ {ATTRIBUTE_BAR:.2f}", accuracy[a] >= ATTRIBUTE_BAR)
                for a in ATTRIBUTES}

    rows = rows_of(_decode_images(pipe, embed, captions, seed, section))
    # D^t's spatial layers are these, and its videos give them the embedding and no text: D must draw the scene
    # from the embedding alone, not from the caption's words.
    rows.update(rows_of(_decode_images(pipe, embed, [""] * len(scenes), seed, section), ", no caption"))
    if pipe.prior is not None:
        rows.update(rows_of(_decode_images(pipe, _prior_embeddings(pipe, scenes, seed), captions, seed,
                                           PRIOR_DECODE_SECTION), " via P"))
    return _result("decoder-image", rows, start, n=n)


def gate_prior(pipe, n: int, seed: int) -> GateResult:
    """P from full captions, judged in CLIP space (so before any decoder is trained): cosine to the true image
    embedding, beside the mean embedding of other scenes; and each attribute retrieved from P's embedding."""
    start = time.perf_counter()
    scenes = _scenes("prior", seed, n, moving=False)
    size = pipe.models["clip"].image_size
    truth = pipe.encode_images(_images(scenes, size, pipe.device))
    others = pipe.encode_images(_images(_scenes("prior", seed + 1, max(n, 32), moving=False), size, pipe.device))
    mean = torch.nn.functional.normalize(others.mean(0, keepdim=True), dim=-1)
    embed = _prior_embeddings(pipe, scenes, seed)
    cosine = float((embed * truth).sum(-1).mean())
    baseline = float((mean * truth).sum(-1).mean())
    rows = {"cosine": (cosine, baseline, "> baseline", cosine > baseline)}
    rows.update(_retrieval(scenes, embed, lambda variants: pipe.encode_images(_images(variants, size, pipe.device))))
    return _result("prior", rows, start, n=n)


def _decoder_clips(pipe, scenes: list[Scene], embed: torch.Tensor, gens, fps: float) -> tuple[list, list]:
    """D^t's clips of `scenes` (their true embedding and caption) at `fps`, and the true clips at that rate:
    each judged (`judge_video`)."""
    cfg, n = pipe.models["decoder"].config, len(scenes)
    video = pipe.decoder.sample(embed, pipe.encode_text([s.describe() for s in scenes]), pipe.encode_text([""] * n),
                                gens, num_frames=pipe.defaults.num_frames, fps=fps,
                                steps=pipe.steps_for("decoder", None), guidance=pipe.guidance_for("decoder", None))
    made = [judge_video(v) for v in unstack_clips(video, fps)]
    truth = [judge_video(render_clip(sc, pipe.defaults.num_frames, frame_skip(fps), cfg.sample_size)[0])
             for sc in scenes]
    return made, truth


def gate_decoder(pipe, n: int, seed: int) -> GateResult:
    """D^t's base clips from the true embedding and caption of still scenes, at the model's base fps: does the
    object move like the world's objects (mean step within ×1.5 of the true range, and no step longer than ×1.5
    its top: no jump) and stay one? And does the fps it is given set its speed: the mean step at half the base fps
    over that at twice it (a quarter of the scenes, the same noise at both rates), within ×1.5 of the true
    clips' ratio?"""
    start = time.perf_counter()
    scenes = _scenes("decoder", seed, n, moving=True)
    embed = pipe.encode_images(_images(scenes, pipe.models["clip"].image_size, pipe.device))
    seeds = noise_seeds(seed, GATE_SECTION + GATES.index("decoder"), 0, n)
    fps = pipe.defaults.fps
    readings, truth = _decoder_clips(pipe, scenes, embed, generators(seeds), fps)
    moves, true_moves = motion(readings, fps=fps), motion(truth, fps=fps)
    single = float(np.mean(np.concatenate([r.single for r in readings])))
    true_single = float(np.mean(np.concatenate([t.single for t in truth])))
    m = max(2, n // 4)
    mean_steps = []
    for rate in (fps / 2, fps * 2):  # the same noise at both rates
        made, true = _decoder_clips(pipe, scenes[:m], embed[:m], generators(seeds[:m]), rate)
        mean_steps.append((motion(made)["mean_displacement_px"], motion(true)["mean_displacement_px"]))
    (slow, true_slow), (fast, true_fast) = mean_steps
    response = slow / fast if slow is not None and fast else None
    true_response = true_slow / true_fast
    rows = {"true_speed_videos": (moves["true_speed_fraction"], true_moves["true_speed_fraction"],
                                  f"≥ {SMOOTH_VIDEOS_BAR:.2f}", moves["true_speed_fraction"] >= SMOOTH_VIDEOS_BAR),
            "steady_videos": (moves["steady_fraction"], true_moves["steady_fraction"], f"≥ {SMOOTH_VIDEOS_BAR:.2f}",
                              moves["steady_fraction"] >= SMOOTH_VIDEOS_BAR),
            "single_object": (single, true_single, f"≥ {SINGLE_OBJECT_BAR:.2f}", single >= SINGLE_OBJECT_BAR),
            "fps_response": (response, true_response, f"within ×{MOTION_TOLERANCE:g} of the baseline",
                             response is not None
                             and true_response / MOTION_TOLERANCE <= response <= true_response * MOTION_TOLERANCE)}
    return _result("decoder", rows, start, n=n, fps=fps, true_displacement_px=moves["true_displacement_px"],
                   mean_displacement_px=moves["mean_displacement_px"], smoothness=moves["smoothness"],
                   fps_response_rates=[fps / 2, fps * 2], fps_response_scenes=m)


def gate_interpolator(pipe, n: int, seed: int) -> GateResult:
    """↑F at the layout it serves (every k-th frame known at the output fps) against linear blending, and
    extrapolation from the first half of a clip against holding the last known frame."""
    start = time.perf_counter()
    clock = Clock(pipe)
    section_seed = seed + 100_000  # apart from `mav eval`'s scenes for the same seed
    inter = interpolation_section(pipe, clock, n, section_seed, None, 8)
    extra = extrapolation_section(pipe, clock, n, section_seed, None, 8)
    x0, blend = interpolator_x0_psnr(pipe, n, section_seed)
    rows = {"psnr_db": (inter["psnr"], inter["psnr_linear"], f"≥ baseline + {INTERPOLATION_MARGIN_DB:g} dB",
                        inter["psnr"] >= inter["psnr_linear"] + INTERPOLATION_MARGIN_DB),
            "x0_psnr_db": (x0, blend, "≥ baseline", x0 >= blend),
            "extrapolation_error_px": (extra["centroid_error_px"], extra["hold_last_error_px"], "< baseline",
                                       extra["centroid_error_px"] is not None
                                       and extra["centroid_error_px"] < extra["hold_last_error_px"])}
    return _result("interpolator", rows, start, n=n, factor=inter["factor"], fps=inter["fps"])


def interpolator_x0_psnr(pipe, n: int, seed: int, t: int | None = None) -> tuple[float, float]:
    """PSNR on the hidden frames of ↑F's one-step x̂0 from pure noise (t = T−1) at the served layout, and of the
    linear blend of the keys: what ↑F infers from the keys alone, before any sampling, which must already beat
    blending if it has learned where things move. With `t`, x̂0 from the true clip (for a residual ↑F, the true
    residual from the blend) noised to t instead (`benchmarks/interpolator_noise.py`)."""
    inter = pipe.stages["interpolator"]
    model, cfg, schedule = inter.model, inter.config, inter.schedule
    k = max(2, pipe.defaults.interpolation_factor)
    frames = max(1, (cfg.num_frames - 1) // k) * k + 1
    skip, fps = dense_skip(pipe)
    known = np.zeros(frames, dtype=bool)
    known[::k] = True
    truth = [render_clip(eval_scene(seed, INTERPOLATION, i)[0], frames, skip, cfg.sample_size)[0] for i in range(n)]
    clean = stack_clips(truth, pipe.device)
    x = clean.clone()
    x[:, :, torch.from_numpy(~known).to(x.device)] = 0.0
    anchor = int(np.nonzero(known)[0][known.sum() // 2])
    embed = pipe.encode_images(x[:, :, anchor]) if "clip" in pipe.models else None
    kwargs = unet_inputs(cfg, n, embed=embed, text=empty_text(pipe, n), fps=fps, device=pipe.device,
                         cond=frame_mask_cond(x, torch.from_numpy(known).to(x.device), cfg.mask_fill))
    gens = generators(noise_seeds(seed, GATE_SECTION + GATES.index("interpolator"), 0, n))
    blend = kwargs["cond"][:, :3]
    x_t = gaussian_noise(tuple(x.shape), gens, pipe.device)
    if t is not None:
        x_t = schedule.q_sample(sr_residual(clean, blend, cfg.residual_scale) if cfg.residual else clean,
                                torch.full((n,), t, dtype=torch.long), x_t)
    t = torch.full((n,), schedule.num_timesteps - 1 if t is None else t, dtype=torch.long)
    with torch.no_grad():
        out = model(x_t, t.to(pipe.device), **kwargs).float()[:, :x_t.shape[1]]  # (a learned variance's half off)
        x0 = schedule.predict_x0(x_t, t, out)
        if cfg.residual:  # the network's x̂0 is the residual from the blend in its input
            x0 = from_sr_residual(x0, blend, cfg.residual_scale)
        x0 = x0.clamp(-1, 1)
    made = unstack_clips(x0, fps)
    return (float(np.mean([psnr(m[~known], tr[~known]) for m, tr in zip(made, truth)])),
            float(np.mean([psnr(linear_blend(tr, known)[~known], tr[~known]) for tr in truth])))


def sr_x0_psnr(pipe, stage: str, n: int, seed: int) -> tuple[float, float]:
    """PSNR of the SR network's one-step x̂0 from pure noise (t = T−1) and of bicubic upsampling, on true renders:
    the deterministic prediction sampling refines, which must already be at least bicubic."""
    sr = pipe.stages[stage]
    model, cfg, schedule = sr.model, sr.config, sr.schedule
    frames = cfg.num_frames if stage == "sr_low" else 1
    skip, _ = dense_skip(pipe)
    scenes = _scenes(stage.replace("_", "-"), seed, n, moving=True)
    truth = [render_clip(sc, frames, skip, cfg.sample_size)[0] for sc in scenes]
    low = stack_clips([render_clip(sc, frames, skip, cfg.low_res_size)[0] for sc in scenes], pipe.device)
    if stage == "sr_high":
        low = low[:, :, 0]
    gens = generators(noise_seeds(seed, GATE_SECTION + GATES.index(stage.replace("_", "-")), 0, n))
    aug = gaussian_noise(tuple(low.shape), gens, pipe.device) if cfg.aug_cond else None
    kwargs, up = sr.inputs(low, aug, pipe.defaults.fps * pipe.defaults.interpolation_factor)
    t = torch.full((n,), schedule.num_timesteps - 1, dtype=torch.long)
    x_t = gaussian_noise(tuple(up.shape), gens, pipe.device)
    with torch.no_grad():
        x0 = schedule.predict_x0(x_t, t, model(x_t, t.to(pipe.device), **kwargs).float())
    x0 = (up + cfg.residual_scale * x0) if cfg.residual else x0
    if stage == "sr_high":
        x0, up = x0[:, :, None], up[:, :, None]
    made, base = unstack_clips(x0.clamp(-1, 1)), unstack_clips(up)
    return (float(np.mean([psnr(m, t) for m, t in zip(made, truth)])),
            float(np.mean([psnr(b, t) for b, t in zip(base, truth)])))


def gate_sr(pipe, n: int, seed: int, stage: str) -> GateResult:
    start = time.perf_counter()
    sampled = sr_section(pipe, Clock(pipe), stage, n, seed + 100_000, None, 8)
    x0, bicubic = sr_x0_psnr(pipe, stage, n, seed)
    bound = SR_SAMPLE_VS_BICUBIC_DB[stage]
    bar = f"≥ baseline + {bound:g} dB" if bound >= 0 else f"≥ baseline − {-bound:g} dB (a perfect sampler)"
    rows = {"psnr_db": (sampled["psnr"], sampled["psnr_bicubic"], bar,
                        sampled["psnr"] >= sampled["psnr_bicubic"] + bound),
            "x0_psnr_db": (x0, bicubic, f"≥ baseline + {SR_X0_MARGIN_DB:g} dB", x0 >= bicubic + SR_X0_MARGIN_DB)}
    return _result(stage.replace("_", "-"), rows, start, n=n, size=[sampled["from"], sampled["to"]])


RUNNERS = {"clip": gate_clip, "prior": gate_prior, "decoder-image": gate_decoder_image, "decoder": gate_decoder,
           "interpolator": gate_interpolator,
           "sr-low": lambda pipe, n, seed: gate_sr(pipe, n, seed, "sr_low"),
           "sr-high": lambda pipe, n, seed: gate_sr(pipe, n, seed, "sr_high")}
NEEDS = {"clip": ("clip",), "prior": ("clip", "prior"), "decoder-image": ("clip", "decoder"),
         "decoder": ("clip", "decoder"), "interpolator": ("interpolator",), "sr-low": ("sr_low",),
         "sr-high": ("sr_high",)}


def run_gate(pipe, name: str, n: int = 16, seed: int = 0) -> GateResult:
    """Measure one stage of a loaded Pipeline against its baseline (see the module docstring)."""
    checks.gates(name)
    missing = [c for c in NEEDS[name] if c not in pipe.models]
    if missing:
        raise UsageError(f"gate {name} needs the model's {', '.join(missing)}, which {pipe.folder} does not have")
    pipe.reporter.message(f"gate {name}: {n} held-out scenes")
    with torch.no_grad():
        return RUNNERS[name](pipe, n, seed)


__all__ = ["GATES", "STAGE_GATE", "GateResult", "run_gate", "sr_x0_psnr"]
