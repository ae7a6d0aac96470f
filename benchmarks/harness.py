"""What every benchmark shares: its command-line options, timing, autocast, the machine's matmul peak, and output
as a markdown table (stdout) plus an optional JSON file.

Timing rules, the same in every script: models in eval mode under `torch.inference_mode()`, warm-up calls first
and never counted, wall-clock `time.perf_counter()` per call, the median reported. Where two models are compared
they run in one process, alternating A B A B, so that drift in the machine (another job, thermal limits) hits
both alike.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

SIZES = ("tiny", "shapes", "large", "large-wide")
DTYPES = ("fp32", "bf16")
REPO = Path(__file__).resolve().parents[1]


def add_common_options(parser: argparse.ArgumentParser, *, configs: Sequence[str] = SIZES,
                       frames: Sequence[int] = (8, 16, 32), repeats: int = 5, dtypes: Sequence[str] = DTYPES,
                       denoiser: bool = True) -> argparse.ArgumentParser:
    """--config, --frames, --repeats, --warmup, --dtype, --threads and --json with this script's defaults; and
    --batch where the script times a denoiser on inputs it makes itself (`denoiser`)."""
    frames_default = " ".join(map(str, frames)) or "the model's"
    parser.add_argument("--config", nargs="+", choices=SIZES, default=list(configs), metavar="NAME",
                        help=f"model sizes: {' | '.join(SIZES)} (default: {' '.join(configs)})")
    parser.add_argument("--frames", nargs="+", type=int, default=list(frames),
                        help=f"frames per clip (default: {frames_default})")
    if denoiser:
        parser.add_argument("--batch", type=int, default=1,
                            help="clips per step (default: 1; D^t samples 2 under classifier-free guidance)")
    parser.add_argument("--repeats", type=int, default=repeats, help=f"timed runs per point (default: {repeats})")
    parser.add_argument("--warmup", type=int, default=2 if denoiser else 1,
                        help="untimed runs before timing (default: %(default)s)")
    parser.add_argument("--dtype", nargs="+", choices=DTYPES, default=list(dtypes),
                        help=f"fp32, or bf16 through torch.autocast (default: {' '.join(dtypes)})")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's choice, one per core)")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the results here")
    return parser


def prepare(args: argparse.Namespace) -> None:
    """Check the common options (failing early, with the value) and apply --threads."""
    if args.threads is not None:
        if args.threads < 1:
            raise SystemExit(f"--threads must be ≥ 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if getattr(args, "batch", 1) < 1:
        raise SystemExit(f"--batch must be ≥ 1, got {args.batch}")
    if args.repeats < 1:
        raise SystemExit(f"--repeats must be ≥ 1, got {args.repeats}")
    if args.warmup < 0:
        raise SystemExit(f"--warmup must be ≥ 0, got {args.warmup}")
    bad = [f for f in args.frames if f < 1]
    if bad:
        raise SystemExit(f"--frames must be ≥ 1, got {bad[0]}")


def autocast(dtype: str) -> contextlib.AbstractContextManager:
    """fp32: nothing; bf16: CPU autocast, the weights stay fp32 (what `mav --dtype bf16` does on a CPU)."""
    if dtype == "fp32":
        return contextlib.nullcontext()
    return torch.autocast("cpu", dtype=torch.bfloat16)


def time_calls(fn: Callable[[], object], repeats: int, warmup: int) -> list[float]:
    """Seconds per call of `fn`, after `warmup` untimed calls."""
    return time_alternating({"only": fn}, repeats, warmup)["only"]


def time_alternating(fns: dict[str, Callable[[], object]], repeats: int, warmup: int) -> dict[str, list[float]]:
    """Seconds per call of each function, calling them in turn (A B A B …) after warm-up calls of each."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def matmul_peak(dtype: str, size: int = 2048, repeats: int = 10) -> float:
    """The machine's dense-matmul throughput in FLOP/s: the median of `repeats` timed size² × size² products
    (2·size³ FLOPs each) in `dtype`, with every thread torch would use for a model."""
    generator = torch.Generator().manual_seed(0)
    torch_dtype = torch.float32 if dtype == "fp32" else torch.bfloat16
    a = torch.randn(size, size, generator=generator).to(torch_dtype)
    b = torch.randn(size, size, generator=generator).to(torch_dtype)
    seconds = time_calls(lambda: torch.mm(a, b), repeats, warmup=2)
    return 2 * size**3 / median(seconds)


def parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def millions(n: int) -> str:
    return f"{n / 1e6:.2f} M"


def clip_shape(row: dict) -> str:
    """A result row's input as `b c f h w` (every video model here takes 3 channels)."""
    return f"{row['batch']} 3 {row['frames']} {row['size']} {row['size']}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def machine() -> dict[str, object]:
    """What the numbers were measured on (goes into every JSON file)."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform()}


def write_json(path: Path | None, benchmark: str, args: argparse.Namespace, rows: list[dict],
               **extra: object) -> None:
    if path is None:
        return
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "json"}
    data = {"benchmark": benchmark, "command": sys.argv, "settings": settings, "machine": machine(),
            "rows": rows, **extra}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")


def pipeline_model(name: str, override: str | None, scratch: Path) -> tuple[str | None, str]:
    """The model a whole-pipeline benchmark runs for `--config name`, and its label: --model when given; for
    tiny, a random tiny model written under `scratch`; for shapes, None (the embedded default model)."""
    if override is not None:
        return override, override
    if name == "tiny":
        from mav import saving

        return str(saving.init_model(scratch / "tiny", "tiny", seed=0)), "tiny (random weights)"
    if name == "shapes":
        return None, "shapes (embedded default)"
    raise SystemExit(f"--config {name} has no model folder to run the pipeline on; pass --model FOLDER")


def note(message: str) -> None:
    """Progress and skips go to stderr, so stdout is only the table."""
    print(message, file=sys.stderr, flush=True)
