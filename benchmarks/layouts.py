"""The two layout choices inside mav's pseudo-3D layers, timed against their alternatives on the same data.

1. The temporal convolution (a Conv1d over frames at every pixel) on activations kept as `(b f) c h w`:
   as Conv1d on a `(b h w) c f` copy (the textbook form), as a (k, 1, 1) Conv3d on a `b c f h w` view, and as a
   (k, 1) Conv2d on a `b c f (h w)` view (what `Pseudo3DConv` does). All three give the same result.
2. The temporal attention's relative-position bias given to `F.scaled_dot_product_attention` as a 3-D
   `(heads, f, f)` tensor or as a 4-D `(1, heads, f, f)` one (what `Pseudo3DAttention` does), beside no bias.

    python -m benchmarks.layouts --dtype fp32 bf16 --repeats 10 --warmup 3 --json benchmarks/results/layouts.json

Shapes are those of the shapes decoder's layers at 8 and 16 frames and of a wider layer (`--conv` and `--attn`
override them). Times are medians in ms.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange

from benchmarks.harness import autocast, markdown_table, median, note, time_alternating, write_json

CONV_SHAPES = ("2,8,32,32", "2,16,64,16", "1,16,128,32")  # batch, frames, channels, side
ATTN_SHAPES = ("2048,4,8,8", "512,4,16,16", "1024,8,16,32")  # sequences (b·h·w), heads, frames, head width


def conv1d_copy(x, weight, bias, frames):
    side = x.shape[-1]
    y = rearrange(x, "(b f) c h w -> (b h w) c f", f=frames)
    y = F.conv1d(y, weight, bias, padding=weight.shape[-1] // 2)
    return rearrange(y, "(b h w) c f -> (b f) c h w", h=side, w=side)


def conv3d_view(x, weight, bias, frames):
    y = rearrange(x, "(b f) c h w -> b c f h w", f=frames)
    y = F.conv3d(y, rearrange(weight, "o i k -> o i k 1 1"), bias, padding=(weight.shape[-1] // 2, 0, 0))
    return rearrange(y, "b c f h w -> (b f) c h w")


def conv2d_view(x, weight, bias, frames):
    side = x.shape[-1]
    y = rearrange(x, "(b f) c h w -> b c f (h w)", f=frames)
    y = F.conv2d(y, rearrange(weight, "o i k -> o i k 1"), bias, padding=(weight.shape[-1] // 2, 0))
    return rearrange(y, "b c f (h w) -> (b f) c h w", h=side, w=side)


CONVS = {"Conv1d on a copy": conv1d_copy, "(k,1,1) Conv3d": conv3d_view, "(k,1) Conv2d (mav)": conv2d_view}


def ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(","))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dtype", nargs="+", choices=("fp32", "bf16"), default=["fp32", "bf16"])
    parser.add_argument("--conv", nargs="+", default=list(CONV_SHAPES), metavar="B,F,C,S",
                        help=f"temporal-conv inputs (default: {' '.join(CONV_SHAPES)})")
    parser.add_argument("--attn", nargs="+", default=list(ATTN_SHAPES), metavar="N,H,F,D",
                        help=f"temporal-attention inputs (default: {' '.join(ATTN_SHAPES)})")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per point (default: 10)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs before timing (default: 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the results here")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0 or (args.threads is not None and args.threads < 1):
        raise SystemExit("--repeats and --threads must be ≥ 1, --warmup ≥ 0")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    rows = []
    with torch.inference_mode():
        for dtype in args.dtype:
            for shape in args.conv:
                b, f, c, s = ints(shape)
                x = torch.randn(b * f, c, s, s, generator=generator)
                weight, bias = torch.randn(c, c, 3, generator=generator) / c, torch.randn(c, generator=generator)
                note(f"temporal conv {shape}, {dtype}")
                row = {"kind": "temporal conv", "shape": shape, "dtype": dtype}
                with autocast(dtype):
                    reference = conv1d_copy(x, weight, bias, f).float()
                    for label, fn in CONVS.items():
                        row[f"max_diff {label}"] = float((fn(x, weight, bias, f).float() - reference).abs().max())
                    times = time_alternating({label: (lambda fn=fn: fn(x, weight, bias, f))
                                              for label, fn in CONVS.items()}, args.repeats, args.warmup)
                row.update({label: 1e3 * median(t) for label, t in times.items()})
                rows.append(row)
            torch_dtype = torch.float32 if dtype == "fp32" else torch.bfloat16
            for shape in args.attn:
                n, h, f, d = ints(shape)
                q, k, v = (torch.randn(n, h, f, d, generator=generator).to(torch_dtype) for _ in range(3))
                bias = torch.randn(h, f, f, generator=generator).to(torch_dtype)
                note(f"temporal attention {shape}, {dtype}")
                calls = {"3-D bias": lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=bias),
                         "4-D bias (mav)": lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=bias[None]),
                         "no bias": lambda: F.scaled_dot_product_attention(q, k, v)}
                times = time_alternating(calls, args.repeats, args.warmup)
                rows.append({"kind": "temporal attention", "shape": shape, "dtype": dtype,
                             **{label: 1e3 * median(t) for label, t in times.items()}})

    conv_rows = [r for r in rows if r["kind"] == "temporal conv"]
    print(markdown_table(["input b,f,c,side", "dtype", *CONVS, "Conv3d / Conv2d"],
                         [[r["shape"], r["dtype"], *(r[k] for k in CONVS),
                           f"{r['(k,1,1) Conv3d'] / r['(k,1) Conv2d (mav)']:.2f}×"] for r in conv_rows]))
    print()
    attn = ("3-D bias", "4-D bias (mav)", "no bias")
    print(markdown_table(["q k v n,heads,frames,d", "dtype", *attn, "3-D / 4-D"],
                         [[r["shape"], r["dtype"], *(r[k] for k in attn),
                           f"{r['3-D bias'] / r['4-D bias (mav)']:.2f}×"]
                          for r in rows if r["kind"] == "temporal attention"]))
    write_json(args.json, "layouts", args, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
