"""Where mav's UNet spends a denoiser step on the CPU: the top aten ops (torch.profiler, self time) and the time per
layer role (forward hooks with wall-clock timers).

Roles: the 2-D convolution of each pseudo-3D convolution; its temporal part (the (k, 1) conv2d and the
rearranges around it, i.e. the pseudo-3D conv's time minus its 2-D conv); other 2-D convolutions (conv_in/out,
down- and upsampling, 1×1 skips); GroupNorm; LayerNorm; spatial self-attention, cross-attention and temporal
attention (each projection + SDPA + output projection); feed-forward; the frame position bias; and the rest of
the step (embeddings, activations, concatenations, residual adds, the reshapes between layers, and the hooks' own
overhead).

    python -m benchmarks.profile_unet --config shapes --frames 8 --dtype fp32 --repeats 5
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

from torch import nn
from torch.profiler import ProfilerActivity, profile

from benchmarks import denoisers
from benchmarks.harness import add_common_options, clip_shape, markdown_table, note, prepare, write_json
from mav.models.layers import Attention, FeedForward
from mav.models.pseudo3d import FramePositionBias, Pseudo3DConv
from mav.models.unet import Upsample

ROLES = ("conv2d in pseudo-3D conv", "temporal conv1d (as (k, 1) conv2d) + rearranges", "other conv2d", "GroupNorm",
         "LayerNorm", "spatial self-attention", "cross-attention", "temporal attention", "frame position bias",
         "feed-forward", "nearest upsample", "rest of the step")


def role_of(name: str, module: nn.Module, parent: nn.Module | None) -> str | None:
    """The role a module is timed under, or None for modules timed through their parts."""
    leaf = name.rsplit(".", 1)[-1]
    if isinstance(module, Pseudo3DConv):
        return "pseudo-3D conv"  # split into its conv2d and its temporal part afterwards
    if isinstance(module, nn.Conv2d):
        if isinstance(parent, Upsample):
            return "upsample conv2d"  # counted as other conv2d, and taken out of its Upsample's time
        return "conv2d in pseudo-3D conv" if leaf == "spatial" else "other conv2d"
    if isinstance(module, nn.GroupNorm):
        return "GroupNorm"
    if isinstance(module, nn.LayerNorm):
        return "LayerNorm"
    if isinstance(module, Attention):
        return {"self_attn": "spatial self-attention", "cross_attn": "cross-attention",
                "temporal_attn": "temporal attention"}[leaf]
    if isinstance(module, FramePositionBias):
        return "frame position bias"
    if isinstance(module, FeedForward):
        return "feed-forward"
    if isinstance(module, Upsample):
        return "upsample"
    return None


class RoleTimer:
    """Inclusive wall time of every module with a role, summed per role over the timed steps."""

    def __init__(self, model: nn.Module) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.enabled = False
        self._start: dict[int, float] = {}
        modules = dict(model.named_modules())
        for name, module in modules.items():
            role = role_of(name, module, modules.get(name.rpartition(".")[0]) if "." in name else model)
            if role is not None:
                module.register_forward_pre_hook(self._enter)
                module.register_forward_hook(self._leave(role))

    def _enter(self, module: nn.Module, args) -> None:
        self._start[id(module)] = time.perf_counter()

    def _leave(self, role: str):
        def hook(module: nn.Module, args, output) -> None:
            if self.enabled:
                self.seconds[role] += time.perf_counter() - self._start[id(module)]
        return hook

    def roles(self, total: float) -> dict[str, float]:
        """Exclusive seconds per role in ROLES, from the inclusive sums and the total step time."""
        s = self.seconds
        out = {role: s.get(role, 0.0) for role in ROLES}
        out["temporal conv1d (as (k, 1) conv2d) + rearranges"] = s["pseudo-3D conv"] - s["conv2d in pseudo-3D conv"]
        out["other conv2d"] += s["upsample conv2d"]
        out["nearest upsample"] = s["upsample"] - s["upsample conv2d"]
        out["rest of the step"] = total - sum(v for k, v in out.items() if k != "rest of the step")
        return out


def main(argv: list[str] | None = None) -> int:
    parser = add_common_options(argparse.ArgumentParser(description=__doc__.split("\n\n")[0]),
                                configs=("shapes",), frames=(8,), repeats=5, dtypes=("fp32",))
    parser.add_argument("--top", type=int, default=15, help="aten ops to list (default: 15)")
    args = parser.parse_args(argv)
    prepare(args)
    rows = []
    for name in args.config:
        config = denoisers.bench_config(name)
        model = denoisers.mav_unet(config)
        timer = RoleTimer(model)
        for frames in args.frames:
            inputs = denoisers.step_inputs(config, frames, batch=args.batch)
            for dtype in args.dtype:
                note(f"{name}: {frames} frames, {dtype}")
                step = denoisers.stepper(model, denoisers.mav_step, inputs, dtype)
                for _ in range(args.warmup):
                    step()
                # 1. per role, timed without the profiler
                timer.seconds.clear()
                timer.enabled = True
                start = time.perf_counter()
                for _ in range(args.repeats):
                    step()
                total = (time.perf_counter() - start) / args.repeats
                timer.enabled = False
                roles = {k: v / args.repeats for k, v in timer.roles(total * args.repeats).items()}
                # 2. per aten op, under the profiler
                with profile(activities=[ProfilerActivity.CPU]) as prof:
                    for _ in range(args.repeats):
                        step()
                events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
                profiled = sum(e.self_cpu_time_total for e in events) / args.repeats / 1e3  # ms per step
                ops = [{"op": e.key, "self_ms": e.self_cpu_time_total / args.repeats / 1e3,
                        "calls": e.count // args.repeats} for e in events[:args.top]]
                rows.append({"config": name, "batch": args.batch, "frames": frames, "size": config.sample_size,
                             "dtype": dtype, "ms_per_step": 1e3 * total,
                             "roles_ms": {k: 1e3 * v for k, v in roles.items()}, "profiled_ms": profiled,
                             "top_ops": ops})

    for r in rows:
        print(f"\n{r['config']}, input {clip_shape(r)}, {r['dtype']}: {r['ms_per_step']:.1f} ms/step\n")
        print(markdown_table(["role", "ms/step", "share"],
                             [[k, v, f"{100 * v / r['ms_per_step']:.1f} %"] for k, v in
                              sorted(r["roles_ms"].items(), key=lambda kv: -kv[1])]) + "\n")
        print(markdown_table(["aten op (self time)", "ms/step", "share", "calls/step"],
                             [[o["op"], o["self_ms"], f"{100 * o['self_ms'] / r['profiled_ms']:.1f} %", o["calls"]]
                              for o in r["top_ops"]]))
    write_json(args.json, "profile_unet", args, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
