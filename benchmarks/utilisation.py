"""Utilisation: how much of the machine's matmul throughput a denoiser step reaches.

FLOPs per step are counted by torch.utils.flop_counter (matmuls, convolutions, attention; 2 per multiply-add;
norms and element-wise ops uncounted), divided by the median step time, and set against the peak measured in the
same run: the fastest of square matmuls of a few sizes (the median time of each; 1024², 2048² and 4096² by
default) in the same dtype (fp32, or bf16 tensors for bf16 autocast).

diffusers' UNet3DConditionModel, configured alike (benchmarks/denoisers.py), is measured beside mav's when it can
be imported, which tells whether a gap in step time comes from more FLOPs or from fewer FLOPs per second.

    python -m benchmarks.utilisation --config tiny shapes large --frames 16 --dtype fp32 bf16 \\
        --repeats 5 --warmup 2 --json benchmarks/results/utilisation.json
"""

from __future__ import annotations

import argparse

from benchmarks import denoisers
from benchmarks.harness import (add_common_options, clip_shape, markdown_table, matmul_peak, median, note, prepare,
                                time_alternating, write_json)


def main(argv: list[str] | None = None) -> int:
    parser = add_common_options(argparse.ArgumentParser(description=__doc__.split("\n\n")[0]))
    parser.add_argument("--matmul-size", type=int, nargs="+", default=[1024, 2048, 4096],
                        help="sides of the square matmuls timed for the peak; the fastest counts "
                             "(default: 1024 2048 4096)")
    parser.add_argument("--no-diffusers", action="store_true", help="measure mav alone")
    args = parser.parse_args(argv)
    prepare(args)
    have_diffusers = denoisers.wants_diffusers(args.no_diffusers, doing="measuring")

    # 1. the machine's peak, measured now, in every dtype the models will run in
    peaks = {}
    for dtype in args.dtype:
        note(f"peak: {' '.join(f'{n}²' for n in args.matmul_size)} matmuls, {dtype}")
        peaks[dtype] = max(matmul_peak(dtype, n, repeats=max(args.repeats, 5)) for n in args.matmul_size)

    # 2. FLOPs and time per step of each model
    rows = []
    for name in args.config:
        config = denoisers.bench_config(name)
        models = denoisers.contenders(config, have_diffusers)
        for frames in args.frames:
            inputs = denoisers.step_inputs(config, frames, batch=args.batch)
            flops = {label: denoisers.count_flops(step, model, *inputs) for label, (model, step) in models.items()}
            for dtype in args.dtype:
                note(f"{name}: {frames} frames, {dtype}")
                calls = {label: denoisers.stepper(model, step, inputs, dtype)
                         for label, (model, step) in models.items()}
                times = time_alternating(calls, args.repeats, args.warmup)
                for label in models:
                    seconds = median(times[label])
                    achieved = flops[label] / seconds
                    rows.append({"model": label, "config": name, "batch": args.batch, "frames": frames,
                                 "size": config.sample_size, "dtype": dtype, "gflop_per_step": flops[label] / 1e9,
                                 "ms_per_step": 1e3 * seconds, "gflops": achieved / 1e9,
                                 "peak_gflops": peaks[dtype] / 1e9, "utilisation": achieved / peaks[dtype]})

    print(markdown_table(["dtype", "matmul peak GFLOP/s"],
                         [[d, p / 1e9] for d, p in peaks.items()]) + "\n")
    print(markdown_table(
        ["model", "config", "input b c f h w", "dtype", "GFLOP/step", "ms/step", "GFLOP/s", "% of peak"],
        [[r["model"], r["config"], clip_shape(r), r["dtype"], r["gflop_per_step"],
          r["ms_per_step"], r["gflops"], f"{100 * r['utilisation']:.1f} %"] for r in rows]))
    write_json(args.json, "utilisation", args, rows, peak_flops=peaks)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
