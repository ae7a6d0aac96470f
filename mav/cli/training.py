"""`mav train` and `mav eval`: train a stage of the cascade (or the whole recipe), and measure a model against
the trivial baselines on held-out shapes-world scenes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from mav import checks
from mav.cli.app import DeviceOpt, DtypeOpt, ModelOpt, OfflineOpt, QuietOpt, RevisionOpt, SamplerOpt, StepsOpt, app
from mav.cli.common import check_common, checked_model, load_pipeline
from mav.errors import UsageError

@app.command(epilog="Examples:\n\n"
                    "  mav init m --preset small && mav train recipe --preset small --model m --data shapes\n\n"
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
    bf16: Annotated[bool, typer.Option(help="bf16 autocast on CUDA, and on a CPU with native bf16 (AVX-512 BF16 "
                                            "or AMX; never where it would be emulated).")] = True,
    workers: Annotated[int, typer.Option(help="Processes that build batches ahead of the training step (0: "
                                         "in the training process). Worth it on a GPU, where rendering or "
                                         "decoding would otherwise leave it waiting.")] = 0,
    max_minutes: Annotated[float, typer.Option(help="Stop each stage after this many minutes, with its "
                                               "checkpoint and weights written (--resume goes on; a recipe "
                                               "stops there; under torchrun the clock is read at log steps; "
                                               "0: no limit).")] = 0.0,
    min_snr_gamma: Annotated[Optional[float], typer.Option(
        help="Min-SNR-γ loss weighting (Hang et al. 2023); 0 turns it off (the plain mean over timesteps). "
             "Default: 5 for decoder-image, off for the other stages (they must lean on their conditioning "
             "at high noise, which it down-weights).")] = None,
    high_noise: Annotated[Optional[float], typer.Option(
        help="Share of training timesteps drawn from the noisier half of the schedule, the rest uniform "
             "(0: every timestep alike, the default for every stage).")] = None,
    gate: Annotated[bool, typer.Option("--gate/--no-gate", help="recipe: after each stage, measure it against its "
                                       "baseline (`mav eval --stage`) and stop (exit 6) if it misses its bar.")]
    = True,
    gate_n: Annotated[int, typer.Option(help="recipe: held-out scenes per gate.")] = 16,
    device: DeviceOpt = "auto", quiet: QuietOpt = False,
) -> None:
    """Train a stage of the cascade, in the paper's order, on one process or under torchrun."""
    from mav import loading
    from mav.train.options import TrainConfig, check_new_run, plan

    # 1. check every input before torch is imported
    checks.training_stage(stage)
    steps_plan = plan(stage, preset=preset, run_dir=run_dir)
    checks.data_source(data, data_format)
    checks.at_least("--max-skip", max_skip, 1)
    checks.at_least("--spatial-lr-scale", spatial_lr_scale, 0)
    checks.at_least("--min-snr-gamma", min_snr_gamma, 0)
    checks.fraction("--high-noise", high_noise)
    checks.at_least("--gate-n", gate_n, 1)
    checks.at_least("--workers", workers, 0)
    checks.at_least("--max-minutes", max_minutes, 0)
    checks.device_name(device)
    config = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, warmup_steps=warmup, schedule=schedule,
                         grad_accum=grad_accum, grad_clip=grad_clip, ema_decay=ema_decay,
                         checkpoint_every=checkpoint_every, log_every=log_every, seed=seed, bf16=bf16, fsdp=fsdp,
                         fsdp_reshard=fsdp_reshard, workers=workers,
                         max_seconds=max_minutes * 60)  # its own checks of every value
    folder = loading.check_model_folder(Path(model))
    loading.check_model(folder)
    check_new_run(stage, folder, run_dir=run_dir, resume=resume)
    # 2. train (a recipe gates each stage before the next trains on it)
    from mav.device import resolve_device
    from mav.progress import reporter_for
    from mav.train.recipe import run_training
    from mav.train.stages import StageOptions

    options = StageOptions(spatial_lr_scale=spatial_lr_scale, max_skip=max_skip, data_format=data_format,
                           min_snr_gamma=min_snr_gamma, high_noise=high_noise)
    device_name = None if device == "auto" else str(resolve_device(device))
    print(run_training(stage, folder, data, config, plan=steps_plan, run_dir=run_dir, resume=resume,
                       options=options, gate=gate, gate_n=gate_n, reporter=reporter_for(quiet), device=device_name))


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
    run = check_common(seed, steps=steps, sampler=sampler, device=device, dtype=dtype)
    checks.until(until)
    checks.at_least("--batch-size", batch_size, 1)
    gates = None
    if stage is not None:
        gates = checks.gates(stage)
        if run.steps is not None:
            raise UsageError("--steps does not go with --stage: gates sample with the model's own steps")
    checked = checked_model(model, revision, offline)
    # 2. load the model, evaluate, print one table per section (or one JSON object)
    pipe = load_pipeline(checked, run, quiet)
    if gates is not None:
        _gates(pipe, gates, n, seed, json_out)
        return
    from mav.eval.run import evaluate

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
