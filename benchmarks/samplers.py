"""Samplers: steps against quality, scored by `mav eval`'s text faithfulness, for DDPM, DDIM and DPM-Solver++.

For each sampler and step count the model's prior P and decoder D^t sample with that many steps (`steps=N`
to `mav.eval.evaluate`, `until="decoder"` by default: the later stages do not change what the prompt names),
and the generated videos are judged on the shapes world. The score is the fraction of frames in which every
attribute the prompt names (colour, shape, size, background) is read back correctly, for full prompts and for
partial ones; "s/video" is evaluate's generation time per video.

    python -m benchmarks.samplers --config shapes --samplers ddpm ddim dpmpp --steps 10 20 50 250 --n 16 \\
        --json benchmarks/results/samplers.json

It needs mav.eval; where that cannot be imported it says so and exits 0 without a table.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
from pathlib import Path

from benchmarks.harness import add_common_options, markdown_table, note, pipeline_model, prepare, write_json

SAMPLERS = ("ddpm", "ddim", "dpmpp")
KINDS = ("full", "partial")


def accuracy(report: dict, kind: str) -> float | None:
    """The all-attributes accuracy of one prompt kind in an evaluate() report."""
    try:
        section = report["faithfulness"][kind]
    except KeyError as err:
        raise SystemExit(f"mav.eval.evaluate's report has no faithfulness[{kind!r}] ({err}); "
                         f"benchmarks/samplers.py reads report['faithfulness'][kind]['accuracy']['all']") from None
    if section.get("skipped"):
        raise SystemExit(f"mav.eval skipped the {kind}-prompt section: {section['skipped']}")
    return section["accuracy"]["all"]


def mean(values: list[float | None]) -> float | None:
    """The mean over seeds; None when no seed had a frame to score (a prompt naming nothing)."""
    known = [v for v in values if v is not None]
    return statistics.mean(known) if known else None


def percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def main(argv: list[str] | None = None) -> int:
    parser = add_common_options(argparse.ArgumentParser(description=__doc__.split("\n\n")[0]), configs=("shapes",),
                                frames=(), repeats=1, dtypes=("fp32",), denoiser=False)
    parser.add_argument("--model", default=None, help="a model folder or hub id instead of --config's model")
    parser.add_argument("--samplers", nargs="+", choices=SAMPLERS, default=list(SAMPLERS))
    parser.add_argument("--steps", nargs="+", type=int, default=[10, 20, 50, 250])
    parser.add_argument("--n", type=int, default=16, help="videos per prompt kind (default: 16)")
    parser.add_argument("--seed", type=int, default=0, help="first evaluation seed; --repeats uses seed, seed+1, …")
    parser.add_argument("--until", default="decoder", help="last stage of the judged videos (default: decoder)")
    args = parser.parse_args(argv)
    prepare(args)
    if len(args.frames) > 1:
        raise SystemExit(f"--frames takes one base frame count here, got {len(args.frames)}")
    if any(s < 1 for s in args.steps):
        raise SystemExit(f"--steps must be ≥ 1, got {min(args.steps)}")
    try:
        from mav.eval import evaluate
    except ImportError as err:
        note(f"mav.eval is not importable ({err}): skipping the sampler benchmark")
        return 0
    from mav.pipeline import Pipeline

    rows = []
    with tempfile.TemporaryDirectory(prefix="mav-bench-") as tmp:
        for name in args.config:
            model, label = pipeline_model(name, args.model, Path(tmp))
            for dtype in args.dtype:
                pipe = Pipeline.load(model, device="cpu", dtype=dtype)
                if args.frames:
                    pipe.defaults = dataclasses.replace(pipe.defaults, num_frames=args.frames[0])
                for _ in range(args.warmup):  # a small untimed evaluation, so s/video excludes first-call costs
                    note(f"{label} {dtype}: warm-up")
                    evaluate(pipe, n=1, seed=args.seed, steps=min(args.steps), until=args.until)
                for sampler in args.samplers:
                    pipe.configure(sampler=sampler)
                    for steps in args.steps:
                        scores: dict[str, list[float]] = {kind: [] for kind in KINDS}
                        per_video = []
                        for r in range(args.repeats):
                            note(f"{label} {dtype}: {sampler}, {steps} steps, seed {args.seed + r}")
                            report = evaluate(pipe, n=args.n, seed=args.seed + r, steps=steps, until=args.until)
                            for kind in KINDS:
                                scores[kind].append(accuracy(report, kind))
                            per_video.append(report["timing"]["seconds_per_video"])
                        rows.append({"model": label, "dtype": dtype, "sampler": sampler,
                                     "steps": steps, "n": args.n, "seeds": args.repeats,
                                     **{f"{kind}_accuracy": mean(scores[kind]) for kind in KINDS},
                                     **{f"{kind}_accuracy_all": scores[kind] for kind in KINDS},
                                     "seconds_per_video": statistics.median(per_video)})

    print(markdown_table(
        ["model", "dtype", "sampler", "steps", "full prompts: all attributes", "partial prompts: all attributes",
         "s/video"],
        [[r["model"], r["dtype"], r["sampler"], r["steps"], percent(r["full_accuracy"]),
          percent(r["partial_accuracy"]), r["seconds_per_video"]] for r in rows]))
    write_json(args.json, "samplers", args, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
