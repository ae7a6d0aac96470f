"""A Karlo-sized D^t on this machine: the seconds of one denoiser step and the peak memory, for F frames, in fp32
and bf16, with random weights at Karlo's decoder config (nothing is downloaded).

The config is Karlo v1 alpha's decoder (`UNet2DConditionModel` + `UnCLIPTextProjModel`, the values of diffusers'
Karlo conversion script), inflated by `mav.convert.unet.decoder_config`, so the network is the one `mav import
kakaobrain/karlo-v1-alpha` builds. One step is one call under classifier-free guidance (batch 2: conditional and
unconditional), 64², 77 text tokens. Each (dtype, frames) point runs in its own process, so its peak resident
memory (`ru_maxrss`) is its own: weights, activations and the allocator's slack together; the weights alone are
listed beside it. `--frame-chunk N` runs the spatial layers N frames at a time (mav's `frame_chunk`).

    python -m benchmarks.karlo --frames 8 --dtype fp32 bf16 --frame-chunk 0 2 --repeats 2 \\
        --json benchmarks/results/karlo.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.harness import REPO, markdown_table, note, write_json

# Karlo v1 alpha's decoder and text projection (diffusers' scripts/convert_kakao_brain_unclip_to_diffusers.py)
KARLO_DECODER = {
    "sample_size": 64, "layers_per_block": 3, "block_out_channels": [320, 640, 960, 1280], "in_channels": 3,
    "out_channels": 6, "cross_attention_dim": 1536, "class_embed_type": "identity", "attention_head_dim": 64,
    "resnet_time_scale_shift": "scale_shift", "mid_block_type": "UNetMidBlock2DSimpleCrossAttn",
    "down_block_types": ["ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D", "SimpleCrossAttnDownBlock2D",
                         "SimpleCrossAttnDownBlock2D"],
    "up_block_types": ["SimpleCrossAttnUpBlock2D", "SimpleCrossAttnUpBlock2D", "SimpleCrossAttnUpBlock2D",
                       "ResnetUpsampleBlock2D"],
}
KARLO_TEXT_PROJ = {"clip_extra_context_tokens": 4, "clip_embeddings_dim": 768, "time_embed_dim": 1280,
                   "cross_attention_dim": 1536}
# the same block types at toy widths, so that tests/test_benchmarks.py can run the script in seconds
TINY_DECODER = dict(KARLO_DECODER, sample_size=16, layers_per_block=1, block_out_channels=[32, 64],
                    cross_attention_dim=24, attention_head_dim=16, norm_num_groups=8,
                    down_block_types=["ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"],
                    up_block_types=["SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"])
TINY_TEXT_PROJ = {"clip_extra_context_tokens": 4, "clip_embeddings_dim": 768, "time_embed_dim": 128,
                  "cross_attention_dim": 24}
CONFIGS = {"karlo": (KARLO_DECODER, KARLO_TEXT_PROJ), "tiny": (TINY_DECODER, TINY_TEXT_PROJ)}


def _point(name: str, dtype: str, frames: int, repeats: int, warmup: int, threads: int | None, chunk: int) -> dict:
    """Build, time and measure one point (run in a process of its own)."""
    import torch

    from mav.config import DiffusionConfig
    from mav.convert.unet import decoder_config
    from mav.models.unet import SpaceTimeUNet

    if threads:
        torch.set_num_threads(threads)
    unet, text_proj = CONFIGS[name]
    config = decoder_config(unet, text_proj, DiffusionConfig(prediction="eps", variance="learned_range"),
                            num_frames=frames)
    torch.manual_seed(0)
    model = SpaceTimeUNet(config).eval()
    if chunk:
        model.frame_chunk = chunk
    params = sum(p.numel() for p in model.parameters())
    rss_model = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    b, size = 2, config.sample_size
    x = torch.randn(b, 3, frames, size, size)
    kwargs = dict(image_embed=torch.randn(b, 768), text_tokens=torch.randn(b, 77, 768),
                  text_mask=torch.ones(b, 77, dtype=torch.bool), text_pooled=torch.randn(b, 768),
                  fps=torch.full((b,), 7.5))
    t = torch.tensor([500, 500])
    context = torch.autocast("cpu", dtype=torch.bfloat16) if dtype == "bf16" else torch.autocast("cpu",
                                                                                                  enabled=False)
    times = []
    with torch.inference_mode(), context:
        for i in range(warmup + repeats):
            start = time.perf_counter()
            model(x, t, **kwargs)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"config": name, "dtype": dtype, "frames": frames, "frame_chunk": chunk, "parameters": params,
            "weights_bytes": params * 4, "rss_after_build": rss_model, "peak_rss": peak,
            "seconds": sorted(times), "median_s": sorted(times)[len(times) // 2], "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", choices=tuple(CONFIGS), default="karlo")
    parser.add_argument("--frames", nargs="+", type=int, default=[8])
    parser.add_argument("--dtype", nargs="+", choices=("fp32", "bf16"), default=["fp32", "bf16"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--frame-chunk", nargs="+", type=int, default=[0], help="0: all frames at once")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--point", default=None, help=argparse.SUPPRESS)  # internal: one point, JSON on stdout
    args = parser.parse_args()
    if args.point:
        dtype, frames, chunk = args.point.split(",")
        print(json.dumps(_point(args.config, dtype, int(frames), args.repeats, args.warmup, args.threads,
                                int(chunk))))
        return
    rows = []
    for frames in args.frames:
        for chunk in args.frame_chunk:
            for dtype in args.dtype:
                cmd = [sys.executable, "-m", "benchmarks.karlo", "--point", f"{dtype},{frames},{chunk}",
                       "--config", args.config, "--repeats", str(args.repeats), "--warmup", str(args.warmup)]
                if args.threads:
                    cmd += ["--threads", str(args.threads)]
                out = subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, text=True).stdout
                row = json.loads(out.strip().splitlines()[-1])
                rows.append(row)
                note(f"{dtype} {frames} frames chunk {chunk}: {row['median_s']:.1f} s, "
                     f"peak {row['peak_rss'] / 2**30:.1f} GiB")
    headers = ["dtype", "frames", "frame chunk", "step (s, median)", "peak memory (GiB)", "weights fp32 (GiB)",
               "parameters"]
    print(markdown_table(headers, [[r["dtype"], r["frames"], r["frame_chunk"] or "all", f"{r['median_s']:.1f}",
                                    f"{r['peak_rss'] / 2**30:.1f}", f"{r['weights_bytes'] / 2**30:.2f}",
                                    f"{r['parameters'] / 1e6:.0f} M"] for r in rows]))
    write_json(args.json, "karlo", args, rows)


if __name__ == "__main__":
    main()
