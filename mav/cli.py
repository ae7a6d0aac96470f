"""`mav`: thin Typer commands, each checking its inputs and calling one Pipeline method.

stdout carries only results (a path per line, or one JSON object per result with --json); progress and messages go
to stderr. Exit codes (DESIGN §5): 0 ok · 1 unexpected · 2 usage · 3 model · 4 file · 5 out of memory · 6 a gate
failed · 130 Ctrl-C.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer

from mav import checks
from mav.convert import IMAGE_ENCODER
from mav.errors import MavError, ModelError, OutOfMemory, UsageError

app = typer.Typer(
    name="mav",
    help="Make-A-Video: text-to-video without text-video data. Every command runs on the embedded default model "
         "unless --model names a registry name, a model folder or a hub id owner/name[@revision].",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

# ---------------------------------------------------------------------------------------------------------------
# Shared option types

ModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", help="Registry name, model folder or hub id "
                                                 "owner/name[@revision]. Default: the embedded model.",
                                                 envvar="MAV_MODEL")]
RevisionOpt = Annotated[Optional[str], typer.Option(help="Hub revision (branch, tag or commit) to use.")]
OfflineOpt = Annotated[bool, typer.Option("--offline", help="Never touch the network; hub models must be cached.")]
DeviceOpt = Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N", envvar="MAV_DEVICE")]
DtypeOpt = Annotated[str, typer.Option(help="fp32 | bf16 | fp16 (fp16 on CUDA only)")]
SeedOpt = Annotated[Optional[int], typer.Option(help="Seed in 0…2³²−1 (prompt i uses seed+i). Default: random, "
                                                "and reported.")]
StepsOpt = Annotated[Optional[str], typer.Option(help="Sampling steps: N for every stage, or per stage as "
                                                 "'decoder=30,sr_low=10'.")]
GuidanceOpt = Annotated[Optional[str], typer.Option("--guidance-scale", "-g", help="Classifier-free guidance: G "
                                                    "for P and D^t, or per stage as 'prior=2,decoder=5'.")]
SamplerOpt = Annotated[Optional[str], typer.Option(help="ddim | ddpm | dpmpp (default: the model's).")]
OutputOpt = Annotated[Optional[str], typer.Option("--output", "-o", help="Output file (.mp4 .webm .gif) or folder "
                                                  "of PNG frames (ending in /). Fields: {index} {seed} {slug}.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object per result on stdout.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress; print only the output paths.")]
CompileOpt = Annotated[bool, typer.Option(
    "--compile", help="torch.compile the denoisers: faster steps once compiled (≈1.3× per UNet step on a CPU), "
                      "but compiling takes minutes, so it pays off only over many videos (batch jobs).")]
FrameChunkOpt = Annotated[int, typer.Option(
    min=0, help="Run the UNets' spatial layers N frames at a time: less memory for long or large videos, the same "
                "result, somewhat slower (0: all frames at once).")]
CacheOpt = Annotated[Optional[str], typer.Option(help="Hub cache folder (default: huggingface_hub's).")]



@app.callback()
def _root() -> None:
    """Make-A-Video from the command line."""


# ---------------------------------------------------------------------------------------------------------------
# Input checks: everything that needs no model runs before torch is imported (mav.checks), then what the model's
# configs say it can serve, and only then does the model load.


@dataclass
class Run:
    """The checked options every sampling command shares."""

    seed: int
    steps: int | dict | None
    guidance: float | dict | None
    sampler: str | None
    device: str
    dtype: str


def _check_common(seed: int | None, fps: float | None = None, num_frames: int | None = None,
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


def _model(model: str | None, revision: str | None, offline: bool, cache_dir: str | None = None) -> Checked:
    from mav import hub

    folder = hub.resolve_model(model, revision=revision, offline=offline, cache_dir=cache_dir)
    return Checked(folder, hub.check_model(folder), hub.load_index(folder).defaults, offline)


def _pipeline(model: Checked, run: Run, quiet: bool, compile_: bool = False, frame_chunk: int = 0):
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


def _emit(video, path: str, as_json: bool, seconds: float, overwrite: bool) -> None:
    from mav.media import save_video

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


def _read_input(path: str):
    """Decode an input image or video (already checked by its header) for the model."""
    from mav.media import read_media

    return read_media(path)


# ---------------------------------------------------------------------------------------------------------------
# Commands


@app.command(epilog="Examples:\n\n  mav generate \"a red circle on a blue background\" -o circle.mp4 --seed 1\n\n"
                    "  mav generate --prompts-file prompts.txt -o 'out/{index}-{seed}.mp4' --json")
def generate(
    prompt: Annotated[Optional[str], typer.Argument(help="The text prompt.")] = None,
    prompts_file: Annotated[Optional[str], typer.Option(help="One prompt per line ('-' for stdin).")] = None,
    negative_prompt: Annotated[Optional[str], typer.Option(help="What to steer away from.")] = None,
    num_frames: Annotated[Optional[int], typer.Option(help="Base frames from D^t.")] = None,
    fps: Annotated[Optional[float], typer.Option(help="Frame rate of the base frames.")] = None,
    factor: Annotated[Optional[int], typer.Option(help="↑F frame skip k: F → (F−1)·k+1 frames.")] = None,
    until: Annotated[str, typer.Option(help="Last stage to run: decoder | interpolator | sr_low | sr_high.")]
    = "sr_high",
    batch_size: Annotated[int, typer.Option(help="Prompts sampled together.")] = 1,
    output: OutputOpt = None, seed: SeedOpt = None, steps: StepsOpt = None, guidance_scale: GuidanceOpt = None,
    sampler: SamplerOpt = None, model: ModelOpt = None, revision: RevisionOpt = None, offline: OfflineOpt = False,
    device: DeviceOpt = "auto", dtype: DtypeOpt = "fp32", overwrite: OverwriteOpt = False, json_out: JsonOpt = False,
    quiet: QuietOpt = False, compile_: CompileOpt = False, frame_chunk: FrameChunkOpt = 0,
) -> None:
    """Text → video through the whole cascade: P → D^t → ↑F → SR^t_l → SR_h."""
    # 1. every check that needs no model, before torch is imported
    prompts = checks.read_prompts(prompt, prompts_file)
    run = _check_common(seed, fps, num_frames, factor, steps=steps, guidance=guidance_scale, sampler=sampler,
                        device=device, dtype=dtype)
    checks.at_least("--batch-size", batch_size, 1)
    checks.until(until)
    seeds = checks.prompt_seeds(run.seed, len(prompts))
    template = output or ("{slug}-{seed}.mp4" if len(prompts) == 1 else "{index:03d}-{slug}-{seed}.mp4")
    paths = checks.outputs(template, seeds, [checks.slugify(p) for p in prompts], overwrite)
    # 2. what the model's configs say it can serve
    checked = _model(model, revision, offline)
    _servable(checked, run, num_frames=num_frames, factor=factor, batch=min(batch_size, len(prompts)))
    # 3. load the model once, then sample the prompts in batches, saving each video as soon as it is done
    pipe = _pipeline(checked, run, quiet, compile_, frame_chunk)
    for s in range(0, len(prompts), batch_size):
        start = time.perf_counter()
        videos = pipe.generate(prompts[s:s + batch_size], negative_prompt=negative_prompt, seed=seeds[s],
                               num_frames=num_frames, fps=fps, interpolation_factor=factor, steps=run.steps,
                               guidance=run.guidance, until=until)
        for i, video in enumerate(videos):
            _emit(video, paths[s + i], json_out, (time.perf_counter() - start) / len(videos), overwrite)


def _servable(model: Checked, run: Run, *, num_frames: int | None, factor: int | None, batch: int = 1,
              base: bool = True) -> None:
    """Refuse, before the model loads, a factor ↑F was not trained for and (when the mode makes base frames with
    D^t, `base`) base frames that would not fit."""
    factor = factor or model.defaults.interpolation_factor
    checks.factor_served(factor, model.configs)
    if base and _on_cpu(run):
        checks.generation_fits(model.configs, num_frames=num_frames or model.defaults.num_frames, factor=factor,
                               batch=batch, available=checks.available_memory())


def _on_cpu(run: Run) -> bool:
    """Whether the run's memory is this machine's RAM (a GPU's is asked of torch once the model loads, and the
    Pipeline checks the same request there)."""
    return run.device == "cpu" or (run.device == "auto" and not checks.may_have_cuda())


def _input(path: str, what: str, run: Run, *, image: bool = True, video: bool = True, min_frames: int = 1,
           mode: str = "", frames_out=None, advice: str = "") -> str:
    """Check an input file by its header: its kind, its frame count where the mode needs several, and, with
    `frames_out` (input frames → frames of the result at the input's size), that the result fits in memory."""
    kind = checks.input_media(path, image=image, video=video, what=what)
    if min_frames > 1 or (frames_out is not None and _on_cpu(run)):
        count, width, height = checks.probe(path, kind)
        checks.input_frames(count, min_frames, path, mode)
        if frames_out is not None and count is not None and _on_cpu(run):
            checks.frames_fit(path, max(count, frames_out(count)), width, height, checks.available_memory(), advice)
    return kind


@app.command("animate-image", epilog="Example:\n\n  mav animate-image photo.png -o anim.mp4")
def animate_image(
    image: Annotated[str, typer.Argument(help="The image that becomes frame 0.")],
    prompt: Annotated[Optional[str], typer.Option(help="Optional text to steer the motion and content.")] = None,
    num_frames: Annotated[Optional[int], typer.Option(help="Base frames (frame 0 is the image).")] = None,
    fps: Annotated[Optional[float], typer.Option(help="Frame rate of the base frames.")] = None,
    factor: Annotated[Optional[int], typer.Option(help="↑F frame skip k.")] = None,
    output: OutputOpt = None, seed: SeedOpt = None, steps: StepsOpt = None, guidance_scale: GuidanceOpt = None,
    sampler: SamplerOpt = None, model: ModelOpt = None, revision: RevisionOpt = None, offline: OfflineOpt = False,
    device: DeviceOpt = "auto", dtype: DtypeOpt = "fp32", overwrite: OverwriteOpt = False, json_out: JsonOpt = False,
    quiet: QuietOpt = False, compile_: CompileOpt = False, frame_chunk: FrameChunkOpt = 0,
) -> None:
    """Image → video: keep the image as frame 0 and generate what follows."""
    run = _check_common(seed, fps, num_frames, factor, min_frames=2, prompt=prompt, steps=steps,
                        guidance=guidance_scale, sampler=sampler, device=device, dtype=dtype)
    _input(image, "image", run, video=False)
    (path,) = checks.outputs(output or f"{Path(image).stem}-animated-{{seed}}.mp4", [run.seed], [Path(image).stem],
                             overwrite)
    checked = _model(model, revision, offline)
    _servable(checked, run, num_frames=num_frames, factor=factor)
    pipe = _pipeline(checked, run, quiet, compile_, frame_chunk)
    picture = _read_input(image)
    start = time.perf_counter()
    video = pipe.animate_image(picture, prompt, seed=run.seed, num_frames=num_frames, fps=fps,
                               interpolation_factor=factor, steps=run.steps, guidance=run.guidance)
    _emit(video, path, json_out, time.perf_counter() - start, overwrite)


@app.command(epilog="Examples:\n\n  mav interpolate a.png b.png -o inter.gif\n\n"
                    "  mav interpolate clip.mp4 --factor 4 -o smooth.mp4")
def interpolate(
    first: Annotated[str, typer.Argument(help="First image, or a video whose frame rate to raise.")],
    last: Annotated[Optional[str], typer.Argument(help="Last image (two-image mode).")] = None,
    factor: Annotated[Optional[int], typer.Option(help="Frame-rate factor (video) or ↑F frame skip (images).")]
    = None,
    prompt: Annotated[Optional[str], typer.Option(help="Optional text to steer the in-between frames.")] = None,
    num_frames: Annotated[Optional[int], typer.Option(help="Base frames between and including the two images.")]
    = None,
    fps: Annotated[Optional[float], typer.Option(help="Frame rate of the base frames (two-image mode).")] = None,
    output: OutputOpt = None, seed: SeedOpt = None, steps: StepsOpt = None, guidance_scale: GuidanceOpt = None,
    sampler: SamplerOpt = None, model: ModelOpt = None, revision: RevisionOpt = None, offline: OfflineOpt = False,
    device: DeviceOpt = "auto", dtype: DtypeOpt = "fp32", overwrite: OverwriteOpt = False, json_out: JsonOpt = False,
    quiet: QuietOpt = False, compile_: CompileOpt = False, frame_chunk: FrameChunkOpt = 0,
) -> None:
    """Generate the frames between two images, or raise a video's frame rate by --factor."""
    run = _check_common(seed, fps, num_frames, factor, min_frames=2, prompt=prompt, steps=steps,
                        guidance=guidance_scale, sampler=sampler, device=device, dtype=dtype)
    if last is None:
        checks.at_least("--factor", factor, 2)
        checks.input_media(first, image=False, what="video")  # its frames are read once the factor is known
    else:
        _input(first, "first image", run, video=False)
        _input(last, "last image", run, video=False)
    (path,) = checks.outputs(output or f"{Path(first).stem}-interpolated-{{seed}}.mp4", [run.seed],
                             [Path(first).stem], overwrite)
    checked = _model(model, revision, offline)
    _servable(checked, run, num_frames=num_frames, factor=factor, base=last is not None)
    if last is None:  # at least 2 frames; the result has (n − 1)·k + 1 frames at the video's own size
        k = factor or checked.defaults.interpolation_factor
        _input(first, "video", run, image=False, min_frames=2, mode="raising the frame rate",
               frames_out=lambda n: (n - 1) * k + 1, advice="raise the frame rate of shorter parts")
    pipe = _pipeline(checked, run, quiet, compile_, frame_chunk)
    a = _read_input(first)
    b = _read_input(last) if last is not None else None
    start = time.perf_counter()
    video = pipe.interpolate(a, b, factor=factor, prompt=prompt, seed=run.seed, num_frames=num_frames, fps=fps,
                             steps=run.steps, guidance=run.guidance)
    _emit(video, path, json_out, time.perf_counter() - start, overwrite)


@app.command(epilog="Example:\n\n  mav extrapolate clip.mp4 --frames 16 -o longer.mp4")
def extrapolate(
    video: Annotated[str, typer.Argument(help="The video to continue.")],
    frames: Annotated[int, typer.Option(help="How many frames to add.")] = 16,
    prompt: Annotated[Optional[str], typer.Option(help="Optional text to steer the continuation.")] = None,
    output: OutputOpt = None, seed: SeedOpt = None, steps: StepsOpt = None, guidance_scale: GuidanceOpt = None,
    sampler: SamplerOpt = None, model: ModelOpt = None, revision: RevisionOpt = None, offline: OfflineOpt = False,
    device: DeviceOpt = "auto", dtype: DtypeOpt = "fp32", overwrite: OverwriteOpt = False, json_out: JsonOpt = False,
    quiet: QuietOpt = False, compile_: CompileOpt = False, frame_chunk: FrameChunkOpt = 0,
) -> None:
    """Continue a video for any number of frames."""
    run = _check_common(seed, prompt=prompt, steps=steps, guidance=guidance_scale, sampler=sampler, device=device,
                        dtype=dtype)
    checks.at_least("--frames", frames, 1)
    _input(video, "video", run, image=False, frames_out=lambda n: n + frames,
           advice="ask for fewer --frames, or continue a shorter or smaller clip")
    (path,) = checks.outputs(output or f"{Path(video).stem}-extended-{{seed}}.mp4", [run.seed], [Path(video).stem],
                             overwrite)
    checked = _model(model, revision, offline)
    pipe = _pipeline(checked, run, quiet, compile_, frame_chunk)
    clip = _read_input(video)
    start = time.perf_counter()
    out = pipe.extrapolate(clip, frames, prompt=prompt, seed=run.seed, steps=run.steps, guidance=run.guidance)
    _emit(out, path, json_out, time.perf_counter() - start, overwrite)


@app.command(epilog="Example:\n\n  mav variations clip.mp4 -n 2 -o 'var-{index}.mp4'")
def variations(
    source: Annotated[str, typer.Argument(help="A video or an image.")],
    n: Annotated[int, typer.Option("-n", "--num", help="How many variations.")] = 1,
    strength: Annotated[float, typer.Option(help="How far to depart from the input, in (0, 1].")] = 0.7,
    prompt: Annotated[Optional[str], typer.Option(help="Optional text to steer the variations.")] = None,
    num_frames: Annotated[Optional[int], typer.Option(help="Base frames.")] = None,
    factor: Annotated[Optional[int], typer.Option(help="↑F frame skip k.")] = None,
    output: OutputOpt = None, seed: SeedOpt = None, steps: StepsOpt = None, guidance_scale: GuidanceOpt = None,
    sampler: SamplerOpt = None, model: ModelOpt = None, revision: RevisionOpt = None, offline: OfflineOpt = False,
    device: DeviceOpt = "auto", dtype: DtypeOpt = "fp32", overwrite: OverwriteOpt = False, json_out: JsonOpt = False,
    quiet: QuietOpt = False, compile_: CompileOpt = False, frame_chunk: FrameChunkOpt = 0,
) -> None:
    """New videos like the input: its CLIP image embedding, and the input partly noised."""
    run = _check_common(seed, None, num_frames, factor, prompt=prompt, steps=steps, guidance=guidance_scale,
                        sampler=sampler, device=device, dtype=dtype)
    checks.at_least("-n", n, 1)
    checks.strength(strength)
    _input(source, "input", run, frames_out=lambda n: n, advice="use a shorter or smaller clip")
    seeds = checks.prompt_seeds(run.seed, n)
    stem = Path(source).stem
    template = output or (f"{stem}-variation-{{seed}}.mp4" if n == 1 else f"{stem}-variation-{{index}}-{{seed}}.mp4")
    paths = checks.outputs(template, seeds, [stem] * n, overwrite)
    checked = _model(model, revision, offline)
    _servable(checked, run, num_frames=num_frames, factor=factor, batch=n)
    pipe = _pipeline(checked, run, quiet, compile_, frame_chunk)
    clip = _read_input(source)
    start = time.perf_counter()
    videos = pipe.variations(clip, n, strength=strength, prompt=prompt, seed=run.seed, num_frames=num_frames,
                             interpolation_factor=factor, steps=run.steps, guidance=run.guidance)
    for video, path in zip(videos, paths):
        _emit(video, path, json_out, (time.perf_counter() - start) / n, overwrite)


@app.command(epilog="Example:\n\n  mav upscale clip.mp4 -o big.mp4")
def upscale(
    video: Annotated[str, typer.Argument(help="The video (or image) to upscale.")],
    stage: Annotated[Optional[list[str]], typer.Option(help="sr_low and/or sr_high (default: both).")] = None,
    output: OutputOpt = None, seed: SeedOpt = None, steps: StepsOpt = None, sampler: SamplerOpt = None,
    model: ModelOpt = None, revision: RevisionOpt = None, offline: OfflineOpt = False, device: DeviceOpt = "auto",
    dtype: DtypeOpt = "fp32", overwrite: OverwriteOpt = False, json_out: JsonOpt = False, quiet: QuietOpt = False,
    compile_: CompileOpt = False, frame_chunk: FrameChunkOpt = 0,
) -> None:
    """Spatiotemporal (SR^t_l) and spatial (SR_h) super-resolution of any video."""
    run = _check_common(seed, steps=steps, sampler=sampler, device=device, dtype=dtype)
    stages = checks.sr_stages(stage)
    _input(video, "input", run, frames_out=lambda n: n, advice="upscale a shorter clip, or it in parts")
    (path,) = checks.outputs(output or f"{Path(video).stem}-upscaled-{{seed}}.mp4", [run.seed], [Path(video).stem],
                             overwrite)
    checked = _model(model, revision, offline)
    if not any(s in checked.configs for s in stages):
        raise ModelError(f"{checked.folder} has none of the super-resolution stages {', '.join(stages)}")
    pipe = _pipeline(checked, run, quiet, compile_, frame_chunk)
    clip = _read_input(video)
    start = time.perf_counter()
    out = pipe.upscale(clip, seed=run.seed, steps=run.steps, stages=stages)
    _emit(out, path, json_out, time.perf_counter() - start, overwrite)


@app.command()
def init(
    folder: Annotated[str, typer.Argument(help="The model folder to create.")],
    preset: Annotated[str, typer.Option(help="A named config: tiny (runs in seconds on a CPU) or small.")] = "tiny",
    seed: Annotated[int, typer.Option(help="Seed of the random initialisation.")] = 0,
    overwrite: OverwriteOpt = False,
) -> None:
    """Write a complete, randomly initialised model folder (all six components)."""
    from mav import hub
    from mav.config import preset as get_preset

    get_preset(preset)
    path = hub.init_model(Path(folder), preset, seed=seed, overwrite=overwrite)
    print(path)


@app.command("import", epilog="Examples:\n\n  mav import kakaobrain/karlo-v1-alpha -o karlo-video --dtype fp16\n\n"
                              "  mav import ./karlo-v1-alpha -o karlo-video --image-encoder ./karlo-image-variations "
                              "--offline")
def import_(
    source: Annotated[str, typer.Argument(help="An unCLIP text-to-image model in the diffusers layout: a Hub id "
                                               "OWNER/NAME[@REVISION] or a local folder.")],
    output: Annotated[str, typer.Option("-o", "--output", help="The mav model folder to write.")],
    image_encoder: Annotated[str, typer.Option(help="Where C_y's image tower comes from: a transformers CLIP "
                                                    "image encoder (a folder or Hub id, its image_encoder/ "
                                                    "sub-folder or itself).")] = IMAGE_ENCODER,
    dtype: Annotated[str, typer.Option(help="fp32 | fp16 | bf16: the dtype the weights are written in.")] = "fp32",
    frames: Annotated[int, typer.Option(help="D^t's window: base frames per clip.")] = 8,
    revision: RevisionOpt = None, offline: OfflineOpt = False, cache_dir: CacheOpt = None,
    overwrite: OverwriteOpt = False, quiet: QuietOpt = False,
) -> None:
    """Import an open text-to-image model (Karlo, unCLIP) and inflate it into a mav video model: prior, decoder
    and super-resolution keep their weights, the new temporal layers start as the identity (so every frame is
    the image model's until `mav train decoder-video` teaches it motion)."""
    # 1. check every input before torch is imported
    if dtype not in ("fp32", "fp16", "bf16"):
        raise UsageError(f"--dtype must be fp32, fp16 or bf16, got {dtype!r}")
    checks.at_least("--frames", frames, 1)
    checks.model_output(output, overwrite)
    # 2. fetch, convert, inflate, write
    from mav.convert.unclip import ImportOptions, import_unclip
    from mav.progress import reporter_for

    reporter = reporter_for(quiet)
    options = ImportOptions(revision=revision, offline=offline, cache_dir=cache_dir, image_encoder=image_encoder,
                            dtype=dtype, num_frames=frames)
    print(import_unclip(source, output, options, overwrite=overwrite, progress=reporter.message))


@app.command()
def pull(
    model_id: Annotated[str, typer.Argument(help="Hub id owner/name[@revision].")],
    revision: RevisionOpt = None, cache_dir: CacheOpt = None,
) -> None:
    """Download a hub model into the local cache (only the files mav reads)."""
    from mav import hub

    print(hub.pull(model_id, revision=revision, cache_dir=cache_dir))


@app.command()
def info(
    model: ModelOpt = None, revision: RevisionOpt = None, offline: OfflineOpt = False, cache_dir: CacheOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show a model's components, parameter counts, configs and defaults."""
    from mav import hub

    folder = hub.resolve_model(model, revision=revision, offline=offline, cache_dir=cache_dir)
    data = hub.model_info(folder)
    if json_out:
        print(json.dumps(data, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"model: {folder}")
    table = Table("component", "parameters", "config")
    for name, comp in data.get("components", {}).items():
        params = comp.get("parameters")
        config = comp.get("config", {})
        summary = ", ".join(f"{k}={v}" for k, v in config.items() if k != "diffusion" and not isinstance(v, dict))
        table.add_row(name, f"{params:,}" if isinstance(params, int) else "-", summary[:120])
    console.print(table)
    if data.get("skipped"):
        console.print(f"missing components (their stages are skipped): {', '.join(data['skipped'])}")
    console.print(f"defaults: {json.dumps(data.get('defaults', {}))}")


@app.command(epilog="Examples:\n\n  mav init m --preset small && mav train recipe --preset small --model m --data shapes\n\n"
                    "  mav train decoder-video --model m --data videos/ --steps 2000 --batch-size 8 --resume\n\n"
                    "  torchrun --nproc_per_node=8 -m mav train decoder-image --model m --data shards/")
def train(
    stage: Annotated[str, typer.Argument(help="clip | prior | decoder-image | decoder-video | interpolator | "
                                         "sr-low | sr-high, or recipe (all of them in order).")],
    model: Annotated[str, typer.Option("--model", "-m", help="The model folder to train (made by `mav init`).")],
    data: Annotated[str, typer.Option(help="'shapes' (the procedural world), an image–text folder, a video "
                                      "folder, or a folder of .tar shards.")] = "shapes",
    data_format: Annotated[Optional[str], typer.Option(help="images | videos | shards (default: detected).")]
    = None,
    preset: Annotated[Optional[str], typer.Option(help="recipe: the preset whose steps to run (tiny, small).")]
    = None,
    steps: Annotated[int, typer.Option(help="Optimizer steps.")] = 1000,
    batch_size: Annotated[int, typer.Option(help="Global batch size (over processes and accumulation).")] = 16,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW).")] = 1e-4,
    warmup: Annotated[int, typer.Option(help="Linear warm-up steps.")] = 100,
    schedule: Annotated[str, typer.Option(help="constant | cosine learning-rate schedule after warm-up.")]
    = "constant",
    grad_accum: Annotated[int, typer.Option(help="Gradient accumulation micro-steps per step.")] = 1,
    grad_clip: Annotated[float, typer.Option(help="Clip the gradient norm (0: off).")] = 1.0,
    ema_decay: Annotated[float, typer.Option(help="EMA decay of the saved weights.")] = 0.999,
    checkpoint_every: Annotated[int, typer.Option(help="Checkpoint every N steps (and at the end).")] = 500,
    log_every: Annotated[int, typer.Option(help="Log a line every N steps.")] = 50,
    seed: Annotated[int, typer.Option(help="Seed of data order, noise and dropout.")] = 0,
    spatial_lr_scale: Annotated[float, typer.Option(help="decoder-video: learning rate of D's spatial layers as "
                                                    "a fraction of --lr (0 freezes them).")] = 0.0,
    max_skip: Annotated[int, typer.Option(help="Video stages: largest frame skip (fps down to 30/N).")] = 8,
    run_dir: Annotated[Optional[str], typer.Option(help="Checkpoints and metrics.jsonl (default: "
                                                   "MODEL.runs/STAGE beside the model).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the run folder's checkpoint.")] = False,
    fsdp: Annotated[bool, typer.Option("--fsdp", help="Shard the model with FSDP2 (under torchrun).")] = False,
    fsdp_reshard: Annotated[bool, typer.Option(
        "--fsdp-reshard/--no-fsdp-reshard", help="FSDP2's reshard_after_forward: free each block's gathered "
                                                 "weights after its forward (least memory) or keep them for the "
                                                 "backward (fewer all-gathers).")] = True,
    bf16: Annotated[bool, typer.Option(help="bf16 autocast on CUDA.")] = True,
    min_snr_gamma: Annotated[Optional[float], typer.Option(
        help="Min-SNR-γ loss weighting (Hang et al. 2023); 0 turns it off (the plain mean over timesteps). "
             "Default: 5 for decoder-image, off for the other stages (they must lean on their conditioning "
             "at high noise, which it down-weights).")] = None,
    gate: Annotated[bool, typer.Option("--gate/--no-gate", help="recipe: after each stage, measure it against its "
                                       "baseline (`mav eval --stage`) and stop (exit 6) if it misses its bar.")]
    = True,
    gate_n: Annotated[int, typer.Option(help="recipe: held-out scenes per gate.")] = 16,
    device: DeviceOpt = "auto", quiet: QuietOpt = False,
) -> None:
    """Train a stage of the cascade, in the paper's order, on one process or under torchrun."""
    from mav import hub
    from mav.train.options import TrainConfig, default_run_dir, recipe

    # 1. check every input before torch is imported
    checks.training_stage(stage)
    if stage == "recipe":
        plan = recipe(preset or "")
        if run_dir is not None:
            raise UsageError("--run-dir names one stage's folder; a recipe keeps each stage beside the model")
    else:
        if preset is not None:
            raise UsageError("--preset goes with `mav train recipe`")
        plan = None
    checks.data_source(data, data_format)
    checks.at_least("--max-skip", max_skip, 1)
    checks.at_least("--spatial-lr-scale", spatial_lr_scale, 0)
    checks.at_least("--min-snr-gamma", min_snr_gamma, 0)
    checks.at_least("--gate-n", gate_n, 1)
    checks.device_name(device)
    common = dict(lr=lr, warmup_steps=warmup, schedule=schedule, grad_accum=grad_accum, grad_clip=grad_clip,
                  ema_decay=ema_decay, checkpoint_every=checkpoint_every, log_every=log_every, seed=seed, bf16=bf16,
                  fsdp=fsdp, fsdp_reshard=fsdp_reshard)
    TrainConfig(steps=steps, batch_size=batch_size, **common)  # its own checks of every value
    folder = hub.check_model_folder(Path(model))
    hub.check_model(folder)
    if plan is None and not resume:
        existing = Path(run_dir) if run_dir is not None else default_run_dir(folder, stage)
        if (existing / "checkpoint.pt").exists():
            raise UsageError(f"{existing} already holds a checkpoint of {stage}: pass --resume to continue it, or "
                             f"--run-dir DIR to start a new run elsewhere")

    from mav.errors import GateFailed
    from mav.pipeline import resolve_device
    from mav.progress import reporter_for
    from mav.train.distributed import teardown_distributed
    from mav.train.stages import StageOptions, completed, gate_stage, run_stage

    dev = resolve_device(device)
    options = StageOptions(spatial_lr_scale=spatial_lr_scale, max_skip=max_skip, data_format=data_format,
                           min_snr_gamma=min_snr_gamma)
    reporter = reporter_for(quiet)
    device_name = None if device == "auto" else str(dev)
    try:
        if plan is None:
            cfg = TrainConfig(steps=steps, batch_size=batch_size, **common)
            run_stage(stage, folder, data, cfg, run_dir=run_dir, resume=resume, options=options,
                      reporter=reporter, device=device_name)
            print(folder)
            return
        # 2. a recipe: every stage in order, each gated on its baseline before the next trains on it; with
        #    --resume, finished stages are skipped (and gated again)
        for item in plan:
            if resume and completed(folder, item.stage):
                reporter.message(f"{item.stage}: already trained, skipping")
            else:
                reporter.message(f"stage {item.stage}: {item.steps} steps, batch {item.batch_size}")
                cfg = TrainConfig(steps=item.steps, batch_size=item.batch_size,
                                  **dict(common, lr=item.lr, ema_decay=item.ema_decay, warmup_steps=item.warmup,
                                         schedule=item.schedule))
                has_checkpoint = (default_run_dir(folder, item.stage) / "checkpoint.pt").exists()
                run_stage(item.stage, folder, data, cfg, resume=resume and has_checkpoint, options=options,
                          reporter=reporter, device=device_name)
            if gate:
                result = gate_stage(item.stage, folder, n=gate_n, seed=seed, reporter=reporter, device=device_name)
                reporter.message(result.line())
                if not result.passed:
                    raise GateFailed(f"{result.line()}; fix or retrain {item.stage} (or --no-gate to go on)")
        print(folder)
    finally:
        teardown_distributed()


@app.command("eval", epilog="Examples:\n\n  mav eval --model shapes -n 16 --seed 0\n\n"
                            "  mav eval --model m -n 4 --steps 10 --until decoder --json > eval.json")
def eval_(
    n: Annotated[int, typer.Option("-n", "--num", help="Videos per prompt kind (full, partial), and clips per "
                                   "↑F, SR and extrapolation section.")] = 16,
    seed: Annotated[int, typer.Option(help="Seed of the held-out scenes and the sampling noise.")] = 0,
    until: Annotated[str, typer.Option(help="Last stage of the judged videos, and of the sections run: decoder | "
                                       "interpolator | sr_low | sr_high.")] = "sr_high",
    batch_size: Annotated[int, typer.Option(help="Videos sampled together.")] = 8,
    stage: Annotated[Optional[str], typer.Option(
        "--stage", help="Gate one or more stages against their baselines instead of the whole run: clip, prior, "
                        "decoder-image, decoder, interpolator, sr-low, sr-high (comma-separated), or all. Exit 6 "
                        "if a gate fails.")] = None,
    steps: StepsOpt = None, sampler: SamplerOpt = None, model: ModelOpt = None, revision: RevisionOpt = None,
    offline: OfflineOpt = False, device: DeviceOpt = "auto", dtype: DtypeOpt = "fp32",
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object with every number.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress; print only the results.")] = False,
) -> None:
    """Measure a model on held-out shapes-world scenes: text faithfulness, presence and motion, ↑F, SR,
    extrapolation and wall time. Stages the model lacks are reported as skipped. With --stage, gate single stages
    against their trivial baselines (linear blend, bicubic, chance …) in a minute or two each."""
    # 1. check every input before torch is imported
    checks.eval_count(n)
    run = _check_common(seed, steps=steps, sampler=sampler, device=device, dtype=dtype)
    checks.until(until)
    checks.at_least("--batch-size", batch_size, 1)
    gates = None
    if stage is not None:
        gates = checks.gates(stage)
        if run.steps is not None:
            raise UsageError("--steps does not go with --stage: gates sample with the model's own steps")
    checked = _model(model, revision, offline)
    # 2. load the model, evaluate, print one table per section (or one JSON object)
    pipe = _pipeline(checked, run, quiet)
    if gates is not None:
        _gates(pipe, gates, n, seed, json_out)
        return
    from mav.eval.metrics import evaluate

    report = evaluate(pipe, n, seed, run.steps, until=until, batch_size=batch_size)
    if json_out:
        print(json.dumps(report), flush=True)
        return
    from mav.eval.report import print_report

    print_report(report)


def _gates(pipe, gates: list[str], n: int, seed: int, json_out: bool) -> None:
    """Run gates, print their figures (a table, or one JSON object), and fail with exit 6 naming the first that
    missed its bar."""
    from mav.errors import GateFailed
    from mav.eval.gates import run_gate

    results = [run_gate(pipe, g, n, seed) for g in gates]
    if json_out:
        print(json.dumps({"model": str(pipe.folder), "seed": seed, "n": n,
                          "gates": [r.to_dict() for r in results]}), flush=True)
    else:
        from mav.eval.report import print_gates

        print_gates(results)
    failed = [r for r in results if not r.passed]
    if failed:
        raise GateFailed(failed[0].line())


# ---------------------------------------------------------------------------------------------------------------
# Entry point: one-line errors with the documented exit codes


def _fail(message: str, code: int) -> int:
    print(f"mav: error: {message}", file=sys.stderr)
    return code


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (used by `main` and the tests)."""
    from typer.exceptions import Abort

    try:  # Typer ≥ 0.26 vendors Click; older Typer uses Click itself
        from typer._click.exceptions import ClickException, NoArgsIsHelpError
    except ImportError:  # pragma: no cover
        from click.exceptions import ClickException, NoArgsIsHelpError

    try:
        result = app(args=argv, prog_name="mav", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except NoArgsIsHelpError as err:
        print(err.ctx.get_help(), file=sys.stderr)
        return 2
    except ClickException as err:
        return _fail(err.format_message().replace("\n", " "), err.exit_code)
    except MavError as err:
        if os.environ.get("MAV_DEBUG"):
            raise
        return _fail(str(err).replace("\n", " "), err.exit_code)
    except (KeyboardInterrupt, Abort):
        return _fail("interrupted", 130)
    except Exception as err:
        if os.environ.get("MAV_DEBUG"):
            raise
        import torch

        if isinstance(err, torch.OutOfMemoryError):
            return _fail(f"out of memory: {str(err).splitlines()[0]} (try fewer frames, --batch-size 1 or "
                         f"--dtype bf16)", OutOfMemory.exit_code)
        return _fail(f"unexpected {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''} "
                     f"(set MAV_DEBUG=1 for the traceback)", 1)


def main() -> None:
    sys.exit(run())
