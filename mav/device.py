"""Where the cascade computes: the device and dtype that `--device` and `--dtype` name, and the memory free there."""

from __future__ import annotations

import torch

from mav import checks
from mav.errors import UsageError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA when available; asking for CUDA without a GPU is a usage error, not a silent fallback."""
    checks.device_name(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UsageError(f"--device {name} was asked for, but no CUDA GPU is available; use --device cpu")
    index = int(name.split(":")[1]) if ":" in name else 0
    if index >= torch.cuda.device_count():
        raise UsageError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) present")
    return torch.device("cuda", index)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    return DTYPES[checks.dtype_name(name, device.type)]


def free_memory(device: torch.device) -> int | None:
    """Bytes free on `device`, for the checks that a request fits in memory; None when the machine does not say."""
    return torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else checks.available_memory()
