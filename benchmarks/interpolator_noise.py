"""Where ↑F stands at each noise level: the PSNR on the hidden frames of its one-step x̂0 at the layout it serves
(every k-th frame known, the gate's held-out scenes), from pure noise (t = T−1, the gate's figure) and from the
true clip noised to t, beside the linear blend of the keys (its baseline).

Sampling starts at t = T−1, where the noisy input says nothing and the keys must decide where the object is; an
↑F that is below the blend there but above it at lower t has learned to denoise, not to interpolate.

    python -m benchmarks.interpolator_noise --model weights/shapes -n 32 --seed 0
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from benchmarks.harness import markdown_table, note, write_json

LEVELS = (900, 800, 700, 500, 300, 100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", nargs="+", default=["weights/shapes"], help="model folders (default: shapes)")
    parser.add_argument("-n", type=int, default=32, help="held-out clips (default: 32)")
    parser.add_argument("--seed", type=int, default=0, help="the gate's seed (default: 0)")
    parser.add_argument("--t", type=int, nargs="+", default=list(LEVELS), help="noise levels below T−1")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE")
    args = parser.parse_args(argv)
    if args.n < 1:
        raise SystemExit("-n must be ≥ 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    from mav.eval.gates import interpolator_x0_psnr
    from mav.pipeline import Pipeline

    rows = []
    for folder in args.model:
        note(f"{folder}")
        pipe = Pipeline.load(folder, device="cpu")
        levels = [t for t in args.t if 0 <= t < pipe.stages["interpolator"].schedule.num_timesteps - 1]
        section_seed = args.seed + 100_000  # the interpolator gate's scenes (mav.eval.gates.gate_interpolator)
        pure, blend = interpolator_x0_psnr(pipe, args.n, section_seed)
        row = {"model": folder, "blend": blend, "pure noise": pure}
        row.update({f"t={t}": interpolator_x0_psnr(pipe, args.n, section_seed, t)[0] for t in levels})
        rows.append(row)
    keys = list(dict.fromkeys(k for r in rows for k in r if k != "model"))
    print(markdown_table(["model", *[f"{k} dB" for k in keys]], [[r["model"], *[r.get(k, "") for k in keys]]
                                                                 for r in rows]))
    write_json(args.json, "interpolator_noise", args, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
