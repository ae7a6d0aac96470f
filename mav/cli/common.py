"""What the commands share: the checks every sampling command makes before torch is imported (mav.checks), then
what the model's configs say it can serve, and only then the model load; and how a result is written and reported.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from mav import checks


@dataclass
class Run:
    """The checked options every sampling command shares."""

    seed: int
    steps: int | dict | None
    guidance: float | dict | None
    sampler: str | None
    device: str
    dtype: str


def check_common(seed: int | None, fps: float | None = None, num_frames: int | None = None,
                 factor: int | None = None, *, min_frames: int = 1, prompt: str | None = None,
                 steps: str | None = None, guidance: str | None = None, sampler: str | None = None,
                 device: str = "auto", dtype: str = "fp32") -> Run:
    """The checks every mode shares (torch-free); the seed is drawn here when not given."""
    checks.at_least("--num-frames", num_frames, min_frames)
    checks.at_least("--factor", factor, 1)
    checks.fps(fps)
    checks.prompt(prompt)
    checks.device_name(device)
    checks.dtype_name(dtype, device)
    return Run(checks.seed(seed), checks.per_stage("--steps", steps, int, 1),
               checks.per_stage("--guidance-scale", guidance, float, 0), checks.sampler(sampler), device, dtype)


@dataclass
class Checked:
    """A model folder checked without torch (index, configs, safetensors headers), and what it was asked with."""

    folder: Path
    configs: dict
    defaults: object
    offline: bool


def checked_model(model: str | None, revision: str | None, offline: bool, cache_dir: str | None = None) -> Checked:
    from mav import hub, loading

    folder = hub.resolve_model(model, revision=revision, offline=offline, cache_dir=cache_dir)
    return Checked(folder, loading.check_model(folder), loading.load_index(folder).defaults, offline)


def load_pipeline(model: Checked, run: Run, quiet: bool, compile_: bool = False, frame_chunk: int = 0):
    """Load the checked model folder (the first and only time torch is imported)."""
    from mav.pipeline import Pipeline
    from mav.progress import reporter_for

    reporter = reporter_for(quiet)
    warning = checks.bf16_warning(run.dtype, run.device)
    if warning:  # a warning is not progress: -q does not hide it
        print(f"mav: warning: {warning}", file=sys.stderr, flush=True)
    pipe = Pipeline.load(model.folder, offline=model.offline, device=run.device, dtype=run.dtype, reporter=reporter)
    if pipe.skipped:
        reporter.message(f"model has no {', '.join(pipe.skipped)}: skipping those stages")
    if compile_:
        pipe.compile()
    if frame_chunk:
        pipe.frame_chunk(frame_chunk)
    return pipe.configure(sampler=run.sampler)


def emit(video, path: str, as_json: bool, seconds: float, overwrite: bool) -> None:
    from mav.media_write import save_video

    Path(path).expanduser().absolute().parent.mkdir(parents=True, exist_ok=True)
    save_video(video, path, overwrite=overwrite)
    if as_json:
        meta = getattr(video, "meta", {})
        print(json.dumps({"path": path, "prompt": meta.get("prompt"), "seed": meta.get("seed"),
                          "frames": video.num_frames, "fps": round(video.fps, 4),
                          "size": [video.width, video.height], "seconds": round(seconds, 3),
                          "stages": {k: round(v, 3) for k, v in meta.get("seconds", {}).items()},
                          "skipped": meta.get("skipped", [])}), flush=True)
    else:
        print(path, flush=True)


def read_input(path: str):
    """Decode an input image or video (already checked by its header) for the model."""
    from mav.media import read_media

    return read_media(path)


def servable(model: Checked, run: Run, *, num_frames: int | None, factor: int | None, batch: int = 1,
             base: bool = True) -> None:
    """Refuse, before the model loads, a factor ↑F was not trained for and (when the mode makes base frames with
    D^t, `base`) base frames that would not fit."""
    factor = factor or model.defaults.interpolation_factor
    checks.factor_served(factor, model.configs)
    if base and on_cpu(run):
        checks.generation_fits(model.configs, num_frames=num_frames or model.defaults.num_frames, factor=factor,
                               batch=batch, available=checks.available_memory())


def on_cpu(run: Run) -> bool:
    """Whether the run's memory is this machine's RAM (a GPU's is asked of torch once the model loads, and the
    Pipeline checks the same request there)."""
    return run.device == "cpu" or (run.device == "auto" and not checks.may_have_cuda())


def check_input(path: str, what: str, run: Run, *, image: bool = True, video: bool = True, min_frames: int = 1,
                mode: str = "", frames_out=None, advice: str = "") -> str:
    """Check an input file by its header: its kind, its frame count where the mode needs several, and, with
    `frames_out` (input frames → frames of the result at the input's size), that the result fits in memory."""
    kind = checks.input_media(path, image=image, video=video, what=what)
    if min_frames > 1 or (frames_out is not None and on_cpu(run)):
        count, width, height = checks.probe(path, kind)
        checks.input_frames(count, min_frames, path, mode)
        if frames_out is not None and count is not None and on_cpu(run):
            checks.frames_fit(path, max(count, frames_out(count)), width, height, checks.available_memory(), advice)
    return kind

