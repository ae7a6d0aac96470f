"""Scaling: time and peak memory of one denoiser step as frames grow, and as resolution grows, for mav's pseudo-3D
UNet beside a full spatiotemporal-attention variant of the same net.

The variant (benchmark-only, `FullSpaceTimeAttention`) replaces each pseudo-3D attention (spatial attention per
frame, then temporal attention per pixel) with one self-attention over all f·h·w tokens of a clip, followed by
the same cross-attention and feed-forward; the pseudo-3D convolutions stay. Pseudo-3D attention costs
O(f·(hw)² + hw·f²) and full attention O((f·hw)²), so at a fixed resolution the first grows linearly in frames
(the f² temporal term is small while f ≪ hw) and the second quadratically.

Peak memory: every point runs in a fresh Python process (`--child`), which builds the model and input, runs one
tiny forward to load and initialise the kernels, reads its resident-set high-water mark (getrusage ru_maxrss),
runs the step once, and reads it again. "step MiB" is the growth, i.e. the activation and workspace memory of
one inference step, as the OS saw it (allocator slack included; weights, inputs and libraries excluded);
"process MiB" is the whole process's peak. tracemalloc is not used: it does not see torch's allocations.

    python -m benchmarks.scaling --config shapes --frames 8 16 32 64 128 --sizes 32 64 128 --repeats 3 \\
        --dtype fp32 --json benchmarks/results/scaling.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys

import torch
from einops import rearrange
from torch import Tensor, nn

from benchmarks import denoisers
from benchmarks.harness import (REPO, add_common_options, clip_shape, markdown_table, median, note, prepare, time_calls,
                                write_json)
from mav.config import UNetConfig
from mav.models.layers import Attention, FeedForward
from mav.models.unet import SpaceTimeBlock, SpaceTimeUNet

VARIANTS = ("pseudo-3D", "full 3-D attention")


class FullSpaceTimeAttention(nn.Module):
    """One self-attention over every (frame, pixel) token of a clip, then cross-attention and a feed-forward.

    A drop-in for Pseudo3DAttention (same call signature): input and output `(b f) c h w`.
    """

    def __init__(self, dim: int, heads: int, context_dim: int | None) -> None:
        super().__init__()
        self.norm_self = nn.LayerNorm(dim)
        self.self_attn = Attention(dim, heads)
        self.norm_cross = nn.LayerNorm(dim) if context_dim is not None else None
        self.cross_attn = Attention(dim, heads, context_dim) if context_dim is not None else None
        self.norm_ff = nn.LayerNorm(dim)
        self.ff = FeedForward(dim)

    def forward(self, x: Tensor, frames: int, context: Tensor | None = None, context_mask: Tensor | None = None,
                temporal: bool = True, fps_emb: Tensor | None = None, fps_keep: Tensor | None = None) -> Tensor:
        height, width = x.shape[-2:]  # fps_emb, fps_keep: taken for the pseudo-3D layer's signature, unused here
        tokens = rearrange(x, "(b f) c h w -> b (f h w) c", f=frames)
        tokens = tokens + self.self_attn(self.norm_self(tokens))
        if self.cross_attn is not None and context is not None:
            # the context is repeated per frame by the UNet; one copy per clip is enough here
            context = rearrange(context, "(b f) m d -> b f m d", f=frames)[:, 0]
            mask = None
            if context_mask is not None:
                mask = rearrange(context_mask, "(b f) m -> b f m", f=frames)[:, 0]
                mask = rearrange(mask, "b m -> b 1 1 m")
            tokens = tokens + self.cross_attn(self.norm_cross(tokens), context, mask)
        tokens = tokens + self.ff(self.norm_ff(tokens))
        return rearrange(tokens, "b (f h w) c -> (b f) c h w", f=frames, h=height, w=width)


def full_attention_unet(config: UNetConfig, seed: int = 0) -> SpaceTimeUNet:
    """mav's UNet with every Pseudo3DAttention swapped for FullSpaceTimeAttention of the same width and heads."""
    model = denoisers.mav_unet(config, seed)
    for block in model.modules():
        if isinstance(block, SpaceTimeBlock) and block.attn is not None:
            old = block.attn
            context_dim = old.cross_attn.to_kv.in_features if old.cross_attn is not None else None
            block.attn = FullSpaceTimeAttention(old.norm_self.normalized_shape[0], old.self_attn.heads, context_dim)
    return model.eval()


def max_rss_mib() -> float:
    """This process's resident-set high-water mark (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_point(point: dict) -> dict:
    """In a fresh process: time and memory of one step at one (variant, frames, size, dtype)."""
    if point.get("threads"):
        torch.set_num_threads(point["threads"])
    config = denoisers.bench_config(point["config"])
    build = denoisers.mav_unet if point["variant"] == VARIANTS[0] else full_attention_unet
    model = build(config)
    factor = 2 ** (len(config.widths) - 1)
    primer = denoisers.stepper(model, denoisers.mav_step, denoisers.step_inputs(config, 1, 2 * factor),
                               point["dtype"])
    primer()
    inputs = denoisers.step_inputs(config, point["frames"], point["size"], batch=point["batch"])
    step = denoisers.stepper(model, denoisers.mav_step, inputs, point["dtype"])
    before = max_rss_mib()
    step()  # the first warm-up call, and the one whose memory is measured
    after = max_rss_mib()
    seconds = time_calls(step, point["repeats"], max(point["warmup"] - 1, 0))
    return {**point, "params": sum(p.numel() for p in model.parameters()), "ms": 1e3 * median(seconds),
            "ms_all": [1e3 * s for s in seconds], "step_mib": after - before, "process_mib": after}


def run_point(point: dict, timeout: float, done_before: dict[str, dict]) -> dict:
    """`measure_point` in a child process; a child that fails or runs out of time gives a row saying so.
    A point both sweeps share runs once (`done_before` maps each point's JSON to its result)."""
    key = json.dumps(point, sort_keys=True)
    if key not in done_before:
        done_before[key] = _run_child(point, timeout)
    return done_before[key]


def _run_child(point: dict, timeout: float) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    command = [sys.executable, "-m", "benchmarks.scaling", "--child", json.dumps(point)]
    try:
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**point, "error": f"over {timeout:g} s"}
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        return {**point, "error": f"exit {done.returncode}: {last}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def growth(rows: list[dict], key: str, axis) -> list[str]:
    """Local growth exponent of `key` between consecutive rows of one variant: log(y₂/y₁) / log(x₂/x₁)."""
    out, previous = [], None
    for row in rows:
        if previous is None or "error" in row or "error" in previous or min(row[key], previous[key]) <= 0:
            out.append("")
        else:
            out.append(f"{math.log(row[key] / previous[key]) / math.log(axis(row) / axis(previous)):.2f}")
        previous = row
    return out


def table(rows: list[dict], sweep: str) -> str:
    """One markdown table of a sweep, each variant's rows together, with growth exponents against the swept axis
    (frames, or pixels h·w)."""
    axis = (lambda r: r["frames"]) if sweep == "frames" else (lambda r: r["size"] ** 2)
    unit, along = ("frame", "frames") if sweep == "frames" else ("kpixel", "pixels h·w")
    lines = []
    for variant in VARIANTS:
        mine = [r for r in rows if r["variant"] == variant]
        time_exp, mem_exp = growth(mine, "ms", axis), growth(mine, "step_mib", axis)
        for r, te, me in zip(mine, time_exp, mem_exp):
            shape = clip_shape(r)
            if "error" in r:
                lines.append([variant, shape, r["dtype"], r["error"], "", "", "", "", ""])
                continue
            per = r["ms"] / (axis(r) / (1 if sweep == "frames" else 1000))
            lines.append([variant, shape, r["dtype"], r["ms"], per, te, r["step_mib"], me, r["process_mib"]])
    headers = ["model", "input b c f h w", "dtype", "ms/step", f"ms per {unit}", f"time exponent in {along}",
               "step MiB", f"memory exponent in {along}", "process MiB"]
    return markdown_table(headers, lines)


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(measure_point(json.loads(sys.argv[2]))))
        return 0
    parser = add_common_options(argparse.ArgumentParser(description=__doc__.split("\n\n")[0]), configs=("shapes",),
                                frames=(8, 16, 32, 64, 128), repeats=3, dtypes=("fp32",))
    parser.add_argument("--sizes", nargs="+", type=int, default=[32, 64, 128],
                        help="resolutions for the resolution sweep, at the first of --frames (default: 32 64 128)")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS), metavar="NAME",
                        help="pseudo-3D and/or 'full 3-D attention' (default: both)")
    parser.add_argument("--point-timeout", type=float, default=600,
                        help="seconds one point may take before it is reported as too slow (default: 600)")
    args = parser.parse_args(argv)
    prepare(args)
    sweeps: dict[str, list[dict]] = {"frames": [], "resolution": []}
    done: dict[str, dict] = {}
    for name in args.config:
        config = denoisers.bench_config(name)
        factor = 2 ** (len(config.widths) - 1)
        bad = [s for s in args.sizes if s % factor]
        if bad:
            raise SystemExit(f"--sizes must be multiples of {factor} for {name}, got {bad[0]}")
        for dtype in args.dtype:
            for variant in args.variants:
                base = {"config": name, "variant": variant, "dtype": dtype, "batch": args.batch,
                        "repeats": args.repeats, "warmup": args.warmup, "threads": args.threads}
                for frames in args.frames:
                    note(f"{name} {variant} {dtype}: {frames} frames at {config.sample_size}²")
                    sweeps["frames"].append(run_point({**base, "frames": frames, "size": config.sample_size},
                                                      args.point_timeout, done))
                for size in args.sizes:
                    note(f"{name} {variant} {dtype}: {args.frames[0]} frames at {size}²")
                    sweeps["resolution"].append(run_point({**base, "frames": args.frames[0], "size": size},
                                                    args.point_timeout, done))

    for sweep, rows in sweeps.items():
        for name in args.config:
            for dtype in args.dtype:
                chosen = [r for r in rows if r["config"] == name and r["dtype"] == dtype]
                print(f"\n{name}, {sweep} sweep, {dtype}\n\n{table(chosen, sweep)}")
    write_json(args.json, "scaling", args, sweeps["frames"] + sweeps["resolution"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
