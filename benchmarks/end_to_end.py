"""End to end: `mav generate` on a model, the time of each stage of the cascade, the total, and peak memory.

Each run is a fresh `python -m mav generate … --json -q` process. Its JSON line gives the seconds of each stage
(P, D^t, ↑F, SR^t_l, SR_h: the sampling loops, as Pipeline.timings records them) and of the whole generate call
("seconds", which adds text encoding and tensor → video conversion); "process s" is the child's wall clock
(interpreter start, imports, model load, encode and file write included), and "peak RSS" its resident-set
high-water mark from wait4 (the whole process: Python, torch, weights and activations).

    python -m benchmarks.end_to_end --config shapes --dtype fp32 bf16 --repeats 3 \\
        --json benchmarks/results/end_to_end.json

--config shapes is the embedded default model (the one `mav generate` uses without --model); tiny is a random
tiny model written to a temporary folder; --model runs any model folder or hub id instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import add_common_options, markdown_table, median, note, pipeline_model, prepare, write_json

STAGE_SYMBOLS = {"prior": "P", "decoder": "D^t", "interpolator": "↑F", "sr_low": "SR^t_l", "sr_high": "SR_h"}


def run_generate(model: str | None, prompt: str, dtype: str, seed: int, frames: int | None, threads: int | None,
                 extra: list[str], folder: Path) -> dict:
    """One `mav generate` in a child process: its JSON result, wall seconds and peak RSS."""
    command = [sys.executable, "-m", "mav", "generate", prompt, "-o", str(folder / "out.mp4"), "--overwrite",
               "--json", "-q", "--seed", str(seed), "--dtype", dtype, "--device", "cpu", *extra]
    if model is not None:
        command += ["--model", model]
    if frames is not None:
        command += ["--num-frames", str(frames)]
    env = dict(os.environ)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    out_path = folder / "stdout.txt"
    with open(out_path, "w") as stdout, open(folder / "stderr.txt", "w") as stderr:
        start = time.perf_counter()
        # spawn + wait4 rather than subprocess: wait4 returns this one child's rusage (its own peak RSS)
        child = os.posix_spawn(command[0], command, env, file_actions=[
            (os.POSIX_SPAWN_DUP2, stdout.fileno(), 1), (os.POSIX_SPAWN_DUP2, stderr.fileno(), 2)])
        _, status, usage = os.wait4(child, 0)
        wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        message = (folder / "stderr.txt").read_text().strip().splitlines() or ["?"]
        raise SystemExit(f"mav generate exited with {code}: {message[-1]}")
    result = json.loads(out_path.read_text().strip().splitlines()[-1])
    return {"result": result, "process_s": wall, "peak_rss_mib": usage.ru_maxrss / 1024}


def main(argv: list[str] | None = None) -> int:
    parser = add_common_options(argparse.ArgumentParser(description=__doc__.split("\n\n")[0]), configs=("shapes",),
                                frames=(), repeats=3, dtypes=("fp32", "bf16"), denoiser=False)
    parser.add_argument("--model", default=None, help="a model folder or hub id instead of --config's model")
    parser.add_argument("--prompt", default="a large red circle on a blue background")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", default=None, help="passed to mav generate --steps (default: the model's)")
    args = parser.parse_args(argv)
    prepare(args)
    if len(args.frames) > 1:
        raise SystemExit(f"--frames takes one base frame count here, got {len(args.frames)}")
    frames = args.frames[0] if args.frames else None
    extra = ["--steps", args.steps] if args.steps else []

    rows = []
    with tempfile.TemporaryDirectory(prefix="mav-bench-") as tmp:
        for name in args.config:
            model, label = pipeline_model(name, args.model, Path(tmp))
            for dtype in args.dtype:
                runs = []
                for i in range(args.warmup + args.repeats):
                    note(f"{label} {dtype}: {'warm-up' if i < args.warmup else 'run'} {i + 1}")
                    run = run_generate(model, args.prompt, dtype, args.seed, frames, args.threads, extra, Path(tmp))
                    if i >= args.warmup:
                        runs.append(run)
                stages = {s: median([r["result"]["stages"].get(s, float("nan")) for r in runs]) for s in STAGE_SYMBOLS}
                first = runs[0]["result"]
                rows.append({"model": label, "dtype": dtype, "stages_s": stages,
                             "generate_s": median([r["result"]["seconds"] for r in runs]),
                             "process_s": median([r["process_s"] for r in runs]),
                             "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
                             "video": {"frames": first["frames"], "fps": first["fps"], "size": first["size"]},
                             "skipped": first["skipped"], "runs": runs})

    headers = ["model", "dtype", "video f × h × w", *(f"{s} s" for s in STAGE_SYMBOLS.values()), "generate s",
               "process s", "peak RSS MiB"]
    table = [[r["model"], r["dtype"], f"{r['video']['frames']} × {r['video']['size'][1]} × {r['video']['size'][0]}",
              *(r["stages_s"][s] if s not in r["skipped"] else "skipped" for s in STAGE_SYMBOLS), r["generate_s"],
              r["process_s"], r["peak_rss_mib"]] for r in rows]
    print(markdown_table(headers, table))
    write_json(args.json, "end_to_end", args, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
