"""Training throughput: samples/s of `mav train STAGE` on the shapes preset, per stage, for several ways of running
the same loop on this machine, in one run.

Each variant is a real `mav train` process on a fresh `shapes` model folder (random weights, the earlier stages
marked as done), timed by the loop itself: the figure is the mean `samples_per_s` of its metrics.jsonl after the
first logged window (warm-up). Variants:

- `one process`: `mav train` as is, torch's default threads (one per core);
- `torchrun ×N`: `torchrun --nproc_per_node=N -m mav train` with one thread per process (DDP over gloo), the same
  global batch split over the processes;
- `--baseline-tree DIR` adds `baseline`: the same command run with the mav package of another checkout (e.g. a
  `git worktree` of the commit before a change), so an old and a new loop are measured side by side;
- `--fp32` adds `one process, fp32`: `mav train --no-bf16`, so the bf16 autocast `mav train` uses by default on a
  CPU with native bf16 is timed against fp32 (the ratios are then relative to it, unless there is a baseline).

    python -m benchmarks.train_throughput --stages decoder-image interpolator --steps 24 --log-every 6 \\
        --procs 2 --baseline-tree /tmp/mav-before --json benchmarks/results/train_throughput.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.harness import REPO, markdown_table, note, write_json

STAGE_BATCH = {"clip": 64, "prior": 64, "decoder-image": 32, "decoder-video": 8, "interpolator": 8, "sr-low": 4,
               "sr-high": 8}


def fresh_model(folder: Path, tree: Path, preset: str) -> None:
    """A fresh folder of `preset` whose history says every stage ran, so any stage may start (`tree`'s mav)."""
    code = ("from pathlib import Path\nfrom mav.train import stages\n"
            "try:\n    from mav.saving import init_model\n"
            "except ImportError:  # a tree from before mav.hub was split\n    from mav.hub import init_model\n"
            f"f = Path({str(folder)!r})\ninit_model(f, {preset!r}, seed=0)\n"
            "for s in stages.ORDER:\n"
            "    stages.record_history(f, stages.STAGE_SPECS[s].component, {'stage': s, 'steps': 0})\n")
    # run outside any checkout: `python -c` puts the working folder first on sys.path, ahead of PYTHONPATH
    subprocess.run([sys.executable, "-c", code], check=True, cwd=folder.parent, env=_env(tree, threads=None))


def _env(tree: Path, threads: int | None) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree), HF_HUB_OFFLINE="1")
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def measure(stage: str, tree: Path, procs: int, steps: int, log_every: int, work: Path, preset: str,
            batch: int, extra: tuple[str, ...] = ()) -> float:
    """Mean samples/s after the first logged window, from the run's own metrics.jsonl."""
    folder = work / f"{stage}-{tree.name}-{procs}{''.join(extra)}"
    shutil.rmtree(folder, ignore_errors=True)
    fresh_model(folder, tree, preset)
    run_dir = work / f"{folder.name}.run"
    shutil.rmtree(run_dir, ignore_errors=True)
    train = ["train", stage, "--model", str(folder), "--steps", str(steps), "--batch-size", str(batch),
             "--log-every", str(log_every), "--checkpoint-every", "0", "--run-dir", str(run_dir), "--quiet", *extra]
    if procs == 1:
        command = [sys.executable, "-m", "mav", *train]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}",
                   "-m", "mav", *train]
    subprocess.run(command, check=True, cwd=work, env=_env(tree, threads=None if procs == 1 else 1),
                   stdout=subprocess.DEVNULL)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    timed = [r for r in rows if r["step"] > log_every]  # skip step 0 and the first window (warm-up)
    return sum(r["samples_per_s"] for r in timed) / len(timed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stages", nargs="+", choices=list(STAGE_BATCH), default=["decoder-image", "interpolator"])
    parser.add_argument("--steps", type=int, default=24, help="optimizer steps per run (default: 24)")
    parser.add_argument("--log-every", type=int, default=6, help="steps per logged window (default: 6)")
    parser.add_argument("--procs", type=int, nargs="*", default=[2], help="torchrun process counts to time")
    parser.add_argument("--preset", default="shapes", help="model preset to train (default: shapes)")
    parser.add_argument("--batch", type=int, default=None, help="batch size for every stage (default: the "
                                                                  "shapes recipe's)")
    parser.add_argument("--baseline-tree", type=Path, default=None,
                        help="a checkout whose mav package is timed too (the loop before a change)")
    parser.add_argument("--fp32", action="store_true", help="also time one process with --no-bf16")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE")
    args = parser.parse_args(argv)
    if args.steps < 2 * args.log_every or args.log_every < 1:
        raise SystemExit("--steps must cover at least two logged windows (--steps ≥ 2 × --log-every ≥ 2)")
    if any(p < 2 for p in args.procs):
        raise SystemExit(f"--procs are torchrun process counts ≥ 2, got {args.procs}")
    variants = []
    if args.baseline_tree is not None:
        if not (args.baseline_tree / "mav" / "__init__.py").is_file():
            raise SystemExit(f"--baseline-tree {args.baseline_tree} has no mav package")
        variants.append(("baseline", args.baseline_tree.resolve(), 1, ()))
    if args.fp32:
        variants.append(("one process, fp32", REPO, 1, ("--no-bf16",)))
    variants.append(("one process", REPO, 1, ()))
    variants += [(f"torchrun ×{p}", REPO, p, ()) for p in args.procs]

    rows = []
    with tempfile.TemporaryDirectory(prefix="mav-throughput-") as tmp:
        for stage in args.stages:
            batch = args.batch or STAGE_BATCH[stage]
            row: dict = {"stage": stage, "batch": batch}
            for label, tree, procs, extra in variants:
                note(f"{stage}: {label}")
                row[label] = measure(stage, tree, procs, args.steps, args.log_every, Path(tmp), args.preset, batch,
                                     extra)
            reference = row.get("baseline", row.get("one process, fp32", row["one process"]))
            for label, *_ in variants:
                row[f"{label} ×"] = row[label] / reference
            rows.append(row)
    labels = [label for label, *_ in variants]
    headers = ["stage", "batch"] + [f"{label} samples/s (×)" for label in labels]
    print(markdown_table(headers, [[r["stage"], r["batch"]] + [f"{r[label]:.1f} ({r[label + ' ×']:.2f}×)"
                                                            for label in labels] for r in rows]))
    write_json(args.json, "train_throughput", args, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
