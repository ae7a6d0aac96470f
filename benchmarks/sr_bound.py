"""What any super-resolution can score on the shapes world: PSNR against the true high-resolution render of
bicubic upsampling, of a *perfect* posterior sample and of the posterior mean.

A low-resolution render does not pin the object down: every position that renders to the same low-resolution
image is equally likely under the world's uniform position prior. For each held-out still scene, positions within
one low-resolution pixel of the truth are drawn uniformly and kept when they render to the same low-resolution
image (rejection sampling); their high-resolution renders are samples of the exact posterior. Then

- `posterior sample`: the PSNR a perfect diffusion SR reaches (it draws such a sample);
- `posterior mean`: the best any predictor can reach (the MMSE estimate, what x̂0 from pure noise estimates);

both from the MSE averaged over scenes (and samples), like bicubic.

    python -m benchmarks.sr_bound --sizes 32:64 64:128 --scenes 12 --samples 40
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks.harness import markdown_table, note, write_json


def posterior_renders(scene, low: int, high: int, samples: int, rng: np.random.Generator,
                      max_draws: int = 200_000) -> np.ndarray:
    """High-resolution renders of `samples` positions that render to the scene's low-resolution image."""
    target = scene.render(low)
    lo, hi = scene.bounds
    kept, draws = [], 0
    while len(kept) < samples and draws < max_draws:
        draws += 1
        dx, dy = rng.uniform(-1.0 / low, 1.0 / low, size=2)
        candidate = replace(scene, x=float(np.clip(scene.x + dx, lo, hi)), y=float(np.clip(scene.y + dy, lo, hi)))
        if np.array_equal(candidate.render(low), target):
            kept.append(candidate.render(high).astype(np.float64))
    return np.stack(kept)


def bound(low: int, high: int, scenes: int, samples: int, seed: int) -> dict:
    from mav.eval.metrics import bicubic_upsample, eval_scene

    mse = {"bicubic": [], "posterior sample": [], "posterior mean": []}
    for i in range(scenes):
        scene = eval_scene(seed, 4, i, moving=False)[0]
        truth = scene.render(high).astype(np.float64)
        renders = posterior_renders(scene, low, high, samples, np.random.default_rng([seed, i]))
        up = bicubic_upsample(scene.render(low)[None], high)[0].astype(np.float64)
        mse["bicubic"].append(np.mean((up - truth) ** 2))
        mse["posterior sample"].append(np.mean((renders - truth) ** 2))
        mse["posterior mean"].append(np.mean((np.round(renders.mean(0)) - truth) ** 2))
    return {k: 10 * np.log10(255.0**2 / np.mean(v)) for k, v in mse.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["32:64", "64:128"], help="LOW:HIGH pairs (default: both SR)")
    parser.add_argument("--scenes", type=int, default=12, help="held-out still scenes per size (default: 12)")
    parser.add_argument("--samples", type=int, default=40, help="posterior samples per scene (default: 40)")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, metavar="FILE")
    args = parser.parse_args(argv)
    if args.scenes < 1 or args.samples < 2:
        raise SystemExit("--scenes must be ≥ 1 and --samples ≥ 2")
    rows = []
    for pair in args.sizes:
        try:
            low, high = (int(v) for v in pair.split(":"))
        except ValueError:
            raise SystemExit(f"--sizes takes LOW:HIGH pairs such as 64:128, got {pair!r}") from None
        note(f"{low}² → {high}²")
        rows.append({"sizes": f"{low}² → {high}²", **bound(low, high, args.scenes, args.samples, args.seed)})
    labels = ["bicubic", "posterior sample", "posterior mean"]
    print(markdown_table(["SR", *[f"{k} dB" for k in labels], "mean − bicubic dB", "sample − bicubic dB"],
                         [[r["sizes"], *[r[k] for k in labels], r["posterior mean"] - r["bicubic"],
                           r["posterior sample"] - r["bicubic"]] for r in rows]))
    write_json(args.json, "sr_bound", args, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
