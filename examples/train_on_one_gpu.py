"""Train a model folder's stages on one GPU within a time budget, several stages at once.

Small Make-A-Video stages leave a big GPU mostly idle, so this runs independent chains of `mav train` side by
side on it ("lanes"), each in its own copy of the model folder, and merges the components they trained into one
folder at the end. Stages that build on each other (D on images, then D^t's temporal layers) share a lane; stages
that do not (↑F, SR^t_l, SR_h, which train from their own weights) get one each. Each stage's step count is
fitted to its share of the budget: a calibration run (30 steps) measures its rate on the loaded GPU, then the
real run plans its cosine schedule for the steps that fit, with `--max-minutes` as a safety stop.

    python examples/train_on_one_gpu.py --model weights/shapes --out /tmp/shapes-gpu --minutes 7

writes /tmp/shapes-gpu/model (the merged folder, fp32 weights), /tmp/shapes-gpu/runs/LANE-STAGE/metrics.jsonl
(each run's log) and /tmp/shapes-gpu/log.txt. The lanes and their hyper-parameters (`LANES` below) are those of
the `shapes` model's GPU round (weights/shapes/TRAINING.md); edit them for another model. Gate the result with
`mav eval --model /tmp/shapes-gpu/model --stage all` and ship it with `mav export`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from mav.train.stages import STAGE_SPECS, history


@dataclass(frozen=True)
class Stage:
    name: str
    share: float  # of its lane's time
    batch_size: int
    lr: float
    ema_decay: float = 0.999
    warmup: int = 50
    workers: int = 3
    extra: tuple[str, ...] = ()


@dataclass
class Lane:
    name: str
    stages: tuple[Stage, ...]
    ok: bool = False

    @property
    def components(self) -> set[str]:
        """What this lane's folder contributes to the merged model."""
        return {STAGE_SPECS[stage.name].component for stage in self.stages}


LANES = (
    Lane("decoder", (Stage("decoder-image", 0.5, 256, 4e-4, workers=4),
                     Stage("decoder-video", 0.5, 64, 4e-4, 0.998, workers=4))),
    # a later round, after D on images has converged: D^t's temporal layers alone (not run by default)
    Lane("decoder-video", (Stage("decoder-video", 1.0, 64, 4e-4, 0.998, workers=4),)),
    Lane("interpolator", (Stage("interpolator", 1.0, 64, 5e-4, 0.998),)),
    Lane("sr-low", (Stage("sr-low", 1.0, 32, 5e-4, 0.998),)),
    Lane("sr-high", (Stage("sr-high", 1.0, 128, 5e-4, 0.998, workers=2),)),
)
DEFAULT_LANES = ("decoder", "interpolator", "sr-low", "sr-high")
# The share of its calibrated rate a stage is planned at: it calibrates while other lanes are still starting. On
# the H200 with four lanes, stages planned at 0.9 of that rate did 67–87 % of their steps in the time.
RATE_MARGIN = 0.7


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="the model folder to start from (left untouched)")
    parser.add_argument("--out", required=True, help="a new folder for the merged model, runs and log")
    parser.add_argument("--minutes", type=float, required=True, help="wall-clock budget for the training")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--only", default="", help="comma-separated lane names to run (default: all)")
    parser.add_argument("--batch-scale", type=float, default=1.0,
                        help="multiply every batch size (a CPU dry run of this script: 0.03)")
    parser.add_argument("--calibration-steps", type=int, default=30)
    parser.add_argument("--startup-seconds", type=float, default=20.0,
                        help="a `mav train` process's start (imports, model, workers) before its first step")
    parser.add_argument("--lr-scale", type=float, default=1.0, help="multiply every learning rate (a later round)")
    args = parser.parse_args()
    wanted = args.only.split(",") if args.only else list(DEFAULT_LANES)
    unknown = sorted(set(wanted) - {lane.name for lane in LANES})
    if unknown:
        parser.error(f"--only: no lane {', '.join(unknown)}; lanes: {', '.join(lane.name for lane in LANES)}")
    lanes = [lane for lane in LANES if lane.name in wanted]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=False)
    deadline = time.monotonic() + args.minutes * 60
    say = _logger(out / "log.txt")
    say(f"budget {args.minutes:g} min, lanes: {', '.join(lane.name for lane in lanes)}")
    threads = [threading.Thread(target=_run_lane, args=(lane, Path(args.model), out, deadline, args, say))
               for lane in lanes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    merged = out / "model"
    shutil.copytree(args.model, merged)
    for lane in lanes:
        if lane.ok:
            for component in lane.components:
                shutil.rmtree(merged / component)
                shutil.copytree(out / "lanes" / lane.name / "model" / component, merged / component)
        say(f"lane {lane.name}: {'merged' if lane.ok else 'FAILED, the starting weights kept'}")
    return 0 if all(lane.ok for lane in lanes) else 1


def _run_lane(lane: Lane, source: Path, out: Path, deadline: float, args, say) -> None:
    folder = out / "lanes" / lane.name / "model"
    shutil.copytree(source, folder)
    start = time.monotonic()
    try:
        for i, stage in enumerate(lane.stages):
            remaining_share = sum(s.share for s in lane.stages[i:])
            seconds = (deadline - time.monotonic()) * stage.share / remaining_share
            _run_stage(lane, stage, folder, out, seconds, args, say)
        lane.ok = True
    except Exception as err:  # noqa: BLE001 — one lane's failure must not stop the others
        say(f"[{lane.name}] failed after {time.monotonic() - start:.0f} s: {err}")


def _run_stage(lane: Lane, stage: Stage, folder: Path, out: Path, seconds: float, args, say) -> None:
    runs = out / "runs"
    t0 = time.monotonic()
    calibration = out / "lanes" / lane.name / f"calibrate-{stage.name}"
    shutil.copytree(folder, calibration)
    cal_dir = runs / f"{lane.name}-{stage.name}-calibration"
    batch = max(1, round(stage.batch_size * args.batch_scale))
    cal_steps = args.calibration_steps
    for extra in ((), ("--no-bf16",)):  # one more try in fp32, in case bf16 autocast is what failed
        shutil.rmtree(cal_dir, ignore_errors=True)
        try:
            _mav_train(stage, calibration, cal_dir, cal_steps, batch, cal_steps, None,
                       10 if cal_steps >= 30 else 1, args, lane, out, extra)
            break
        except RuntimeError as err:
            if extra:
                raise
            say(f"[{lane.name}] {stage.name}: {err}; trying once more without bf16 autocast")
    shutil.rmtree(calibration)
    rates = [json.loads(line)["samples_per_s"] for line in (cal_dir / "metrics.jsonl").read_text().splitlines()]
    if len(rates) < 3:
        raise RuntimeError(f"the calibration of {stage.name} logged {len(rates)} windows, too few to time it")
    rate = sum(rates[-2:]) / 2  # the first windows hold CUDA's and cuDNN's warm-up
    left = seconds - (time.monotonic() - t0)
    if left < 2 * args.startup_seconds:
        raise RuntimeError(f"{stage.name}: {left:.0f} s left after its calibration, too little to train")
    steps = max(stage.warmup + 10, int(RATE_MARGIN * rate / batch * (left - args.startup_seconds)))
    say(f"[{lane.name}] {stage.name}: {rate:.0f} samples/s in calibration; {steps} steps at batch "
        f"{batch} in {left:.0f} s")
    _mav_train(stage, folder, runs / f"{lane.name}-{stage.name}", steps, batch, stage.warmup,
               left - args.startup_seconds, 50, args, lane, out, extra)
    last = history(folder, STAGE_SPECS[stage.name].component)[-1]
    cut = f", stopped by the time limit at {last['steps']} of {last['planned_steps']} steps" \
        if "planned_steps" in last else ""
    say(f"[{lane.name}] {stage.name}: done in {time.monotonic() - t0:.0f} s{cut}")


def _mav_train(stage: Stage, folder: Path, run_dir: Path, steps: int, batch: int, warmup: int,
               seconds: float | None, log_every: int, args, lane: Lane, out: Path,
               extra: tuple[str, ...] = ()) -> None:
    command = [
        sys.executable, "-m", "mav", "train", stage.name, "--model", str(folder), "--data", "shapes",
        "--steps", str(steps), "--batch-size", str(batch), "--lr", f"{stage.lr * args.lr_scale:g}",
        "--warmup", str(min(warmup, steps)), "--schedule", "cosine", "--ema-decay", str(stage.ema_decay),
        "--seed", str(args.seed), "--log-every", str(log_every),
        "--checkpoint-every", "0", "--run-dir", str(run_dir), "--workers", str(stage.workers),
        "--device", args.device, "--no-gate", *stage.extra, *extra,
    ]
    if seconds is not None:  # a time limit (never under a second: 0 would mean none)
        command += ["--max-minutes", f"{max(seconds, 1.0) / 60:.4f}"]
    with open(out / f"{lane.name}.log", "a") as log:
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        # the lanes share the CPU cores: a training process needs few threads, its batch workers one each
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    if done.returncode:
        raise RuntimeError(f"{stage.name} exited with {done.returncode} (see {lane.name}.log)")


def _logger(path: Path):
    lock = threading.Lock()
    t0 = time.monotonic()

    def say(message: str) -> None:
        line = f"{time.monotonic() - t0:7.1f} s  {message}"
        with lock:
            print(line, flush=True)
            with open(path, "a") as f:
                f.write(line + "\n")
    return say


if __name__ == "__main__":
    raise SystemExit(main())
