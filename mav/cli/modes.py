"""The six modes of Make-A-Video (generate, animate-image, interpolate, extrapolate, variations, upscale), each
a short command: 1. check every input that needs no model (before torch), 2. check what the model can serve,
3. load it once and make the result, 4. write and report it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from mav import checks
from mav.cli.app import (CompileOpt, DeviceOpt, DtypeOpt, FrameChunkOpt, GuidanceOpt, JsonOpt, ModelOpt, OfflineOpt,
                         OutputOpt, OverwriteOpt, QuietOpt, RevisionOpt, SamplerOpt, SeedOpt, StepsOpt, app)
from mav.cli.common import check_common, check_input, checked_model, emit, load_pipeline, read_input, servable
from mav.errors import ModelError


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
    run = check_common(seed, fps, num_frames, factor, steps=steps, guidance=guidance_scale, sampler=sampler,
                       device=device, dtype=dtype)
    checks.at_least("--batch-size", batch_size, 1)
    checks.until(until)
    seeds = checks.prompt_seeds(run.seed, len(prompts))
    template = output or ("{slug}-{seed}.mp4" if len(prompts) == 1 else "{index:03d}-{slug}-{seed}.mp4")
    paths = checks.outputs(template, seeds, [checks.slugify(p) for p in prompts], overwrite)
    # 2. what the model's configs say it can serve
    checked = checked_model(model, revision, offline)
    servable(checked, run, num_frames=num_frames, factor=factor, batch=min(batch_size, len(prompts)))
    # 3. load the model once, then sample the prompts in batches, saving each video as soon as it is done
    pipe = load_pipeline(checked, run, quiet, compile_, frame_chunk)
    for s in range(0, len(prompts), batch_size):
        start = time.perf_counter()
        videos = pipe.generate(prompts[s:s + batch_size], negative_prompt=negative_prompt, seed=seeds[s],
                               num_frames=num_frames, fps=fps, interpolation_factor=factor, steps=run.steps,
                               guidance=run.guidance, until=until)
        for i, video in enumerate(videos):
            emit(video, paths[s + i], json_out, (time.perf_counter() - start) / len(videos), overwrite)



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
    run = check_common(seed, fps, num_frames, factor, min_frames=2, prompt=prompt, steps=steps,
                       guidance=guidance_scale, sampler=sampler, device=device, dtype=dtype)
    check_input(image, "image", run, video=False)
    (path,) = checks.outputs(output or f"{Path(image).stem}-animated-{{seed}}.mp4", [run.seed], [Path(image).stem],
                             overwrite)
    checked = checked_model(model, revision, offline)
    servable(checked, run, num_frames=num_frames, factor=factor)
    pipe = load_pipeline(checked, run, quiet, compile_, frame_chunk)
    picture = read_input(image)
    start = time.perf_counter()
    video = pipe.animate_image(picture, prompt, seed=run.seed, num_frames=num_frames, fps=fps,
                               interpolation_factor=factor, steps=run.steps, guidance=run.guidance)
    emit(video, path, json_out, time.perf_counter() - start, overwrite)


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
    run = check_common(seed, fps, num_frames, factor, min_frames=2, prompt=prompt, steps=steps,
                       guidance=guidance_scale, sampler=sampler, device=device, dtype=dtype)
    if last is None:
        checks.at_least("--factor", factor, 2)
        checks.input_media(first, image=False, what="video")  # its frames are read once the factor is known
    else:
        check_input(first, "first image", run, video=False)
        check_input(last, "last image", run, video=False)
    (path,) = checks.outputs(output or f"{Path(first).stem}-interpolated-{{seed}}.mp4", [run.seed],
                             [Path(first).stem], overwrite)
    checked = checked_model(model, revision, offline)
    servable(checked, run, num_frames=num_frames, factor=factor, base=last is not None)
    if last is None:  # at least 2 frames; the result has (n − 1)·k + 1 frames at the video's own size
        k = factor or checked.defaults.interpolation_factor
        check_input(first, "video", run, image=False, min_frames=2, mode="raising the frame rate",
                    frames_out=lambda n: (n - 1) * k + 1, advice="raise the frame rate of shorter parts")
    pipe = load_pipeline(checked, run, quiet, compile_, frame_chunk)
    a = read_input(first)
    b = read_input(last) if last is not None else None
    start = time.perf_counter()
    video = pipe.interpolate(a, b, factor=factor, prompt=prompt, seed=run.seed, num_frames=num_frames, fps=fps,
                             steps=run.steps, guidance=run.guidance)
    emit(video, path, json_out, time.perf_counter() - start, overwrite)


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
    run = check_common(seed, prompt=prompt, steps=steps, guidance=guidance_scale, sampler=sampler, device=device,
                       dtype=dtype)
    checks.at_least("--frames", frames, 1)
    check_input(video, "video", run, image=False, frames_out=lambda n: n + frames,
                advice="ask for fewer --frames, or continue a shorter or smaller clip")
    (path,) = checks.outputs(output or f"{Path(video).stem}-extended-{{seed}}.mp4", [run.seed], [Path(video).stem],
                             overwrite)
    checked = checked_model(model, revision, offline)
    pipe = load_pipeline(checked, run, quiet, compile_, frame_chunk)
    clip = read_input(video)
    start = time.perf_counter()
    out = pipe.extrapolate(clip, frames, prompt=prompt, seed=run.seed, steps=run.steps, guidance=run.guidance)
    emit(out, path, json_out, time.perf_counter() - start, overwrite)


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
    run = check_common(seed, None, num_frames, factor, prompt=prompt, steps=steps, guidance=guidance_scale,
                       sampler=sampler, device=device, dtype=dtype)
    checks.at_least("-n", n, 1)
    checks.strength(strength)
    check_input(source, "input", run, frames_out=lambda n: n, advice="use a shorter or smaller clip")
    seeds = checks.prompt_seeds(run.seed, n)
    stem = Path(source).stem
    template = output or (f"{stem}-variation-{{seed}}.mp4" if n == 1 else f"{stem}-variation-{{index}}-{{seed}}.mp4")
    paths = checks.outputs(template, seeds, [stem] * n, overwrite)
    checked = checked_model(model, revision, offline)
    servable(checked, run, num_frames=num_frames, factor=factor, batch=n)
    pipe = load_pipeline(checked, run, quiet, compile_, frame_chunk)
    clip = read_input(source)
    start = time.perf_counter()
    videos = pipe.variations(clip, n, strength=strength, prompt=prompt, seed=run.seed, num_frames=num_frames,
                             interpolation_factor=factor, steps=run.steps, guidance=run.guidance)
    for video, path in zip(videos, paths):
        emit(video, path, json_out, (time.perf_counter() - start) / n, overwrite)


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
    run = check_common(seed, steps=steps, sampler=sampler, device=device, dtype=dtype)
    stages = checks.sr_stages(stage)
    check_input(video, "input", run, frames_out=lambda n: n, advice="upscale a shorter clip, or it in parts")
    (path,) = checks.outputs(output or f"{Path(video).stem}-upscaled-{{seed}}.mp4", [run.seed], [Path(video).stem],
                             overwrite)
    checked = checked_model(model, revision, offline)
    if not any(s in checked.configs for s in stages):
        raise ModelError(f"{checked.folder} has none of the super-resolution stages {', '.join(stages)}")
    pipe = load_pipeline(checked, run, quiet, compile_, frame_chunk)
    clip = read_input(video)
    start = time.perf_counter()
    out = pipe.upscale(clip, seed=run.seed, steps=run.steps, stages=stages)
    emit(out, path, json_out, time.perf_counter() - start, overwrite)

