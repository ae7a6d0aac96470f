"""Option values (seeds, per-stage specs, sampler, device and dtype names, stages, fps, strength), prompts, and
the options of training and evaluation: checked before torch is imported."""

from __future__ import annotations

import os
import re
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path

from mav.errors import MediaError, UsageError

MAX_SEED = 2**32 - 1
SAMPLERS = ("ddim", "ddpm", "dpmpp")
DTYPE_NAMES = ("fp32", "bf16", "fp16")
# The stages that sample, in cascade order (per-stage --steps / --guidance-scale), and those a run can stop after.
SAMPLING_STAGES = ("prior", "decoder", "interpolator", "sr_low", "sr_high")
UNTIL_STAGES = SAMPLING_STAGES[1:]
SR_STAGES = ("sr_low", "sr_high")
# The training stages, in the order a recipe runs them.
TRAINING_STAGES = ("clip", "prior", "decoder-image", "decoder-video", "interpolator", "sr-low", "sr-high")
DATA_FORMATS = ("images", "videos", "shards")
# `mav eval --stage`: the per-stage gates, in cascade order; and the most held-out scenes an evaluation draws.
GATES = ("clip", "prior", "decoder-image", "decoder", "interpolator", "sr-low", "sr-high")
EVAL_MAX_N = 10_000


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (its strerror for OS errors, without errno and file name), for
    one-line errors."""
    text = (getattr(err, "strerror", None) or str(err)).strip().splitlines()
    return text[0] if text else type(err).__name__


# ---------------------------------------------------------------------------------------------------------------
# Option values


def at_least(option: str, value: float | None, minimum: float = 1) -> None:
    """UsageError unless `value` (when given) is ≥ `minimum`."""
    if value is not None and value < minimum:
        raise UsageError(f"{option} must be ≥ {minimum:g}, got {value:g}")


def fraction(option: str, value: float | None) -> None:
    """UsageError unless `value` (when given) is in [0, 1]."""
    if value is not None and not 0.0 <= value <= 1.0:
        raise UsageError(f"{option} must be in [0, 1], got {value:g}")


def seed(value: int | None) -> int:
    """A seed in 0…2³²−1, or a fresh random one (always reported back to the user)."""
    if value is None:
        return secrets.randbelow(MAX_SEED + 1)
    if not 0 <= value <= MAX_SEED:
        raise UsageError(f"--seed must be in 0…{MAX_SEED}, got {value}")
    return value


def prompt_seeds(base: int, count: int) -> list[int]:
    """Result i of a call uses seed base + i (wrapping at 2³²), so any one result can be made again alone."""
    return [(base + i) % (MAX_SEED + 1) for i in range(count)]


def per_stage(option: str, value: str | int | float | dict | None, cast, minimum: float):
    """`--steps` / `--guidance-scale`: 'N' → N for all stages; 'decoder=30,sr_low=10' → a dict; each value checked
    against `minimum`. A number or a dict (the Python API) is checked the same way."""
    if value is None:
        return None
    if isinstance(value, dict):
        out = {}
        for stage, number in value.items():
            out[_stage_name(option, stage)] = _number(option, number, cast, minimum)
        return out
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _number(option, value, cast, minimum)
    text = str(value)
    if "=" not in text:
        return _number(option, text, cast, minimum)
    out = {}
    for item in text.split(","):
        stage, _, number = item.partition("=")
        out[_stage_name(option, stage)] = _number(option, number, cast, minimum)
    return out


def _stage_name(option: str, stage: str) -> str:
    name = str(stage).strip().replace("-", "_")
    if name not in SAMPLING_STAGES:
        raise UsageError(f"{option}: unknown stage {name!r}; stages are {', '.join(SAMPLING_STAGES)}")
    return name


def _number(option: str, text, cast, minimum: float):
    try:
        number = cast(text)
        if cast is int and isinstance(text, float) and text != number:
            raise ValueError
    except (TypeError, ValueError):
        raise UsageError(f"{option} must be a number or stage=number pairs, got {text!r}") from None
    at_least(option, number, minimum)
    return number


def sampler(name: str | None) -> str | None:
    if name is not None and name not in SAMPLERS:
        raise UsageError(f"--sampler must be one of {', '.join(SAMPLERS)}, got {name!r}")
    return name


def device_name(name: str) -> str:
    """The form of `--device` (whether CUDA is there is asked of torch later, still before any model loads)."""
    if name in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", name or ""):
        return name
    raise UsageError(f"--device must be auto, cpu, cuda or cuda:N, got {name!r}")


def dtype_name(name: str, device: str = "auto") -> str:
    if name not in DTYPE_NAMES:
        raise UsageError(f"--dtype must be one of {', '.join(DTYPE_NAMES)}, got {name!r}")
    if name == "fp16" and device == "cpu":
        raise UsageError("--dtype fp16 needs a CUDA device; on the CPU use bf16 or fp32")
    return name


def until(name: str) -> str:
    if name not in UNTIL_STAGES:
        raise UsageError(f"--until must be one of {', '.join(UNTIL_STAGES)}, got {name!r}")
    return name


def fps(value: float | None) -> float | None:
    if value is not None and not value > 0:
        raise UsageError(f"--fps must be > 0, got {value:g}")
    return value


def strength(value: float) -> float:
    if not 0.0 < value <= 1.0:
        raise UsageError(f"--strength must be in (0, 1], got {value:g}")
    return value


def sr_stages(names: Sequence[str] | None) -> tuple[str, ...]:
    """`mav upscale --stage`: sr_low and/or sr_high (default both), in cascade order."""
    chosen = [s.replace("-", "_") for s in (names or SR_STAGES)]
    for s in chosen:
        if s not in SR_STAGES:
            raise UsageError(f"--stage must be sr_low or sr_high, got {s!r}")
    return tuple(s for s in SR_STAGES if s in chosen)


def cpu_has_native_bf16(unknown: bool = True) -> bool:
    """Whether this CPU computes in bf16 natively (AVX-512 BF16 or AMX); without, torch emulates bf16 matmuls
    at a small fraction of fp32's speed. Linux's /proc/cpuinfo tells; elsewhere `unknown` (True: no warning for a
    dtype the user asked for; training, which picks bf16 on its own, passes False)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return unknown
    return any(flag in flags for flag in ("avx512_bf16", "amx_bf16"))


def bf16_warning(dtype: str, device: str) -> str | None:
    """The one-line warning for `--dtype bf16` on a CPU that would run it slower than fp32, else None."""
    if dtype != "bf16" or device.startswith("cuda"):
        return None
    if device == "auto" and may_have_cuda():
        return None
    if cpu_has_native_bf16():
        return None
    return ("--dtype bf16 on this CPU (no AVX-512 BF16 or AMX) is emulated and much slower than fp32; "
            "use --dtype fp32 here")


def may_have_cuda() -> bool:
    """Without importing torch: an NVIDIA driver is loaded (so `--device auto` may pick CUDA)."""
    return Path("/proc/driver/nvidia/version").exists() or bool(os.environ.get("CUDA_VISIBLE_DEVICES"))


# ---------------------------------------------------------------------------------------------------------------
# Prompts


def prompt(text: str | None) -> str | None:
    """An optional prompt: None stays None, an empty one is refused."""
    if text is not None and not text.strip():
        raise UsageError("prompt is empty")
    return None if text is None else text.strip()


def prompts(texts: Sequence[str]) -> list[str]:
    if not texts:
        raise UsageError("no prompt given")
    return [prompt(t) for t in texts]


def read_prompts(text: str | None, prompts_file: str | None) -> list[str]:
    """The prompt argument, a prompts file (`-` for stdin), or stdin when it is not a terminal."""
    if text is not None and prompts_file is not None:
        raise UsageError("give either a prompt or --prompts-file, not both")
    if text is not None:
        return [prompt(text)]
    if prompts_file is None and sys.stdin is not None and sys.stdin.isatty():
        raise UsageError("no prompt given: pass PROMPT, --prompts-file FILE, or pipe prompts on stdin")
    if prompts_file is None or prompts_file == "-":
        content, source = (sys.stdin.read() if sys.stdin is not None else ""), "stdin"
    else:
        path = Path(prompts_file)
        if not path.is_file():
            raise MediaError(f"prompts file {path} does not exist or is not a file")
        try:
            content, source = path.read_text(encoding="utf-8"), str(path)
        except (OSError, UnicodeDecodeError) as err:
            raise MediaError(f"cannot read prompts file {path}: {first_line(err)}") from None
    lines = [line.strip() for line in content.splitlines() if line.strip() and not line.strip().startswith("#")]
    if not lines:
        raise UsageError(f"no prompts in {source} (empty, or only blank and # lines)")
    return lines


# ---------------------------------------------------------------------------------------------------------------
# Training and evaluation options


def gates(spec: str) -> list[str]:
    """`--stage clip,prior` or `all` → the gates to run, each checked."""
    if spec == "all":
        return list(GATES)
    names = [g.strip() for g in spec.split(",")]
    for name in names:
        if name not in GATES:
            raise UsageError(f"--stage must be one of {', '.join(GATES)} (comma-separated) or all, got {name!r}")
    return names


def eval_count(n: int) -> int:
    if not 1 <= n <= EVAL_MAX_N:
        raise UsageError(f"-n must be in 1…{EVAL_MAX_N}, got {n}")
    return n


def training_stage(name: str, *, recipe: bool = True) -> str:
    if name in TRAINING_STAGES or (recipe and name == "recipe"):
        return name
    extra = " (or recipe)" if recipe else ""
    raise UsageError(f"unknown stage {name!r}; stages, in order: {', '.join(TRAINING_STAGES)}{extra}")


def data_source(data: str, data_format: str | None = None) -> str:
    """`--data`: 'shapes' (the procedural world), or a folder or shard pattern that exists and is not empty."""
    if data_format not in (None, *DATA_FORMATS):
        raise UsageError(f"--data-format must be {', '.join(DATA_FORMATS[:-1])} or {DATA_FORMATS[-1]}, "
                         f"got {data_format!r}")
    if data == "shapes":
        return data
    p = Path(data).expanduser()
    if not p.exists() and not any(ch in data for ch in "*?[{"):
        raise MediaError(f"--data {data}: no such file or folder (use 'shapes' for the procedural world)")
    if p.is_dir() and not any(not f.name.startswith(".") for f in p.iterdir()):
        raise MediaError(f"--data {data} is an empty folder")
    return data
