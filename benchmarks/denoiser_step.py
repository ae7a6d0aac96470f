"""One denoiser step, head to head: mav's SpaceTimeUNet against diffusers' UNet3DConditionModel configured alike.

For each size, frame count and dtype both models are built (seeded, eval mode), given the same input clip,
timestep and context, warmed up, then timed alternately A B A B in this one process. The table gives each
model's parameter count and median step time, and the ratio diffusers / mav (above 1: mav is faster).

    python -m benchmarks.denoiser_step --config tiny shapes large --frames 8 16 32 --dtype fp32 bf16 \\
        --repeats 5 --json benchmarks/results/denoiser_step.json

Without diffusers (the `bench` extra) it times mav alone and says so.
"""

from __future__ import annotations

import argparse

import torch

from benchmarks import denoisers
from benchmarks.harness import (SIZES, add_common_options, clip_shape, markdown_table, median, millions, note,
                                parameters, prepare, time_alternating, write_json)


def main(argv: list[str] | None = None) -> int:
    parser = add_common_options(argparse.ArgumentParser(description=__doc__.split("\n\n")[0]))
    parser.add_argument("--no-diffusers", action="store_true", help="time mav alone")
    parser.add_argument("--diffusers-config", choices=SIZES, metavar="NAME",
                        help="build diffusers' model at this size instead of --config's (e.g. mav at large-wide "
                             "against diffusers at large: equal or larger mav parameter count)")
    parser.add_argument("--compile", action="store_true",
                        help="also time mav's UNet under torch.compile (compilation happens in the warm-up)")
    args = parser.parse_args(argv)
    prepare(args)
    have_diffusers = denoisers.wants_diffusers(args.no_diffusers)

    rows = []
    for name in args.config:
        config = denoisers.bench_config(name)
        models = denoisers.contenders(config, have_diffusers and not args.diffusers_config)
        if have_diffusers and args.diffusers_config:
            models["diffusers"] = (denoisers.diffusers_unet(denoisers.bench_config(args.diffusers_config)),
                                   denoisers.diffusers_step)
        if args.compile:
            models["mav compiled"] = (torch.compile(models["mav"][0]), denoisers.mav_step)
        counts = {label: parameters(model) for label, (model, _) in models.items()}
        for frames in args.frames:
            inputs = denoisers.step_inputs(config, frames, batch=args.batch)
            for dtype in args.dtype:
                note(f"{name}: {frames} frames, {dtype}")
                calls = {label: denoisers.stepper(model, step, inputs, dtype)
                         for label, (model, step) in models.items()}
                times = time_alternating(calls, args.repeats, args.warmup)
                row = {"config": name, "diffusers_config": args.diffusers_config or name, "batch": args.batch,
                       "frames": frames, "size": config.sample_size, "dtype": dtype, "mav_params": counts["mav"],
                       "mav_ms": 1e3 * median(times["mav"]), "mav_ms_all": [1e3 * s for s in times["mav"]]}
                if have_diffusers:
                    row.update(diffusers_params=counts["diffusers"], diffusers_ms=1e3 * median(times["diffusers"]),
                               diffusers_ms_all=[1e3 * s for s in times["diffusers"]])
                    row["ratio"] = row["diffusers_ms"] / row["mav_ms"]
                if args.compile:
                    row.update(compiled_ms=1e3 * median(times["mav compiled"]),
                               compiled_ms_all=[1e3 * s for s in times["mav compiled"]])
                rows.append(row)

    headers = ["config", "input b c f h w", "dtype", "mav params", "mav ms/step"]
    if have_diffusers:
        headers += ["diffusers params", "diffusers ms/step", "diffusers / mav"]
    if args.compile:
        headers += ["mav compiled ms/step", "eager / compiled"]
    table = []
    for r in rows:
        label = r["config"]
        if have_diffusers and r["diffusers_config"] != r["config"]:
            label = f"mav {r['config']} / diffusers {r['diffusers_config']}"
        line = [label, clip_shape(r), r["dtype"], millions(r["mav_params"]), r["mav_ms"]]
        if have_diffusers:
            line += [millions(r["diffusers_params"]), r["diffusers_ms"], f"{r['ratio']:.2f}×"]
        if args.compile:
            line += [r["compiled_ms"], f"{r['mav_ms'] / r['compiled_ms']:.2f}×"]
        table.append(line)
    print(markdown_table(headers, table))
    extra = {"diffusers": denoisers.load_diffusers().__version__ if have_diffusers else None}
    write_json(args.json, "denoiser_step", args, rows, **extra)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
