"""What a training run is told: `TrainConfig` (how to train a stage) and the recipes (every stage in order, with
steps sized for a preset). Torch-free, so `mav train` checks its options before anything heavy is imported."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mav.checks import TRAINING_STAGES
from mav.errors import UsageError


@dataclass(frozen=True)
class TrainConfig:
    """How to train; what is trained is the caller's. `batch_size` is global: over processes and micro-steps."""

    steps: int
    batch_size: int
    lr: float = 1e-4
    weight_decay: float = 0.01  # on matrices and kernels only, not on biases and norm gains
    warmup_steps: int = 0
    schedule: str = "constant"  # after warm-up: "constant", or "cosine" down to 0 at `steps`
    grad_clip: float = 1.0  # max global gradient norm; 0 turns clipping off
    grad_accum: int = 1  # micro-steps per optimizer step
    ema_decay: float = 0.999
    checkpoint_every: int = 1000  # steps; 0 saves only at the end
    log_every: int = 10
    seed: int = 0
    # autocast to bfloat16 on CUDA, and on a CPU that computes bf16 natively (AVX-512 BF16, AMX: 1.5–2× the
    # samples/s of fp32 there, BENCHMARKS.md §8); never on a CPU that would emulate it
    bf16: bool = True
    fsdp: bool = False  # shard with FSDP2 instead of replicating with DDP
    # FSDP2's reshard_after_forward: free each block's gathered parameters after its forward (True, least memory)
    # or keep them for the backward (False: one all-gather fewer per block, each block's full size held)
    fsdp_reshard: bool = True
    workers: int = 0  # processes that build batches ahead of the step (0: built in the training process)
    max_seconds: float = 0.0  # stop after this long (checkpoint and EMA weights written, resumable); 0: no limit

    def __post_init__(self) -> None:
        at_least = {"steps": 1, "batch_size": 1, "grad_accum": 1, "log_every": 1,
                    "warmup_steps": 0, "checkpoint_every": 0, "seed": 0, "workers": 0}
        for name, low in at_least.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise UsageError(f"{name.replace('_', ' ')} must be an integer ≥ {low}, got {value!r}")
        if not self.max_seconds >= 0:
            raise UsageError(f"the time limit must be ≥ 0 seconds, got {self.max_seconds}")
        if not self.lr > 0:
            raise UsageError(f"learning rate must be > 0, got {self.lr}")
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise UsageError(f"weight decay and gradient clip must be ≥ 0, got {self.weight_decay}, {self.grad_clip}")
        if not 0 <= self.ema_decay < 1:
            raise UsageError(f"EMA decay must be in [0, 1), got {self.ema_decay}")
        if self.schedule not in ("constant", "cosine"):
            raise UsageError(f"schedule must be 'constant' or 'cosine', got {self.schedule!r}")

    def lr_factor(self, step: int) -> float:
        """Multiplier of `lr` at optimizer step `step` (from 0): (step+1)/warmup, then 1 or ½(1 + cos π·progress)."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.schedule == "cosine":
            progress = (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps)
            return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        return 1.0

    def trajectory(self) -> dict[str, Any]:
        """The fields that change what training computes; a resumed run must match them. How often to log or
        save, FSDP and the process count do not; `steps` does only for the cosine schedule (so a constant run
        can be extended)."""
        ignored = {"checkpoint_every", "log_every", "fsdp", "fsdp_reshard", "workers", "max_seconds"}
        if self.schedule == "constant":
            ignored.add("steps")
        return {k: v for k, v in asdict(self).items() if k not in ignored}


# ---------------------------------------------------------------------------------------------------------------
# Recipes: every stage in order, with steps sized for a preset


@dataclass(frozen=True)
class RecipeStep:
    stage: str
    steps: int
    batch_size: int
    lr: float
    ema_decay: float = 0.999  # shorter stages average over fewer steps, so the EMA is not mostly old weights
    warmup: int = 100
    schedule: str = "cosine"  # a peak learning rate, then cosine decay to 0: converges faster on these small nets


RECIPES: dict[str, tuple[RecipeStep, ...]] = {
    "tiny": tuple(RecipeStep(s, 4, 4, 1e-3, warmup=1) for s in TRAINING_STAGES),
    "shapes": (  # the embedded default's full retrain, gated stage by stage; not yet run end to end (its
                 # stages measured 15 samples/s for D on images, 1.2–3.5 for the video and SR stages, at one
                 # thread on a 2-core CPU: many hours there; weights/shapes/TRAINING.md has what was run)
        RecipeStep("clip", 4000, 64, 1e-3, 0.995, warmup=200),
        RecipeStep("prior", 3000, 64, 1e-3, 0.998, warmup=200),
        RecipeStep("decoder-image", 4000, 32, 1e-3, 0.999, warmup=200),
        RecipeStep("decoder-video", 1500, 8, 5e-4, 0.995),
        RecipeStep("interpolator", 1500, 8, 5e-4, 0.995),
        RecipeStep("sr-low", 600, 4, 1e-3, 0.995, warmup=50),
        RecipeStep("sr-high", 800, 8, 1e-3, 0.995, warmup=50),
    ),
    "small": (
        RecipeStep("clip", 3000, 64, 5e-4),
        RecipeStep("prior", 3000, 64, 3e-4),
        RecipeStep("decoder-image", 6000, 32, 2e-4),
        RecipeStep("decoder-video", 3000, 8, 1e-4),
        RecipeStep("interpolator", 3000, 8, 1e-4),
        RecipeStep("sr-low", 3000, 8, 2e-4),
        RecipeStep("sr-high", 3000, 16, 2e-4),
    ),
}


def recipe(name: str) -> tuple[RecipeStep, ...]:
    if name not in RECIPES:
        raise UsageError(f"unknown preset {name!r}; recipes: {', '.join(RECIPES)}")
    return RECIPES[name]


def default_run_dir(folder: Path, stage: str) -> Path:
    """Checkpoints live beside the model folder, not in it, so the folder stays a clean, shareable model."""
    return folder.absolute().parent / f"{folder.name}.runs" / stage


def plan(stage: str, *, preset: str | None, run_dir: str | None) -> tuple[RecipeStep, ...] | None:
    """What `mav train STAGE` is asked to run: a recipe's steps, or None for one stage (a recipe keeps each stage
    beside the model, so --run-dir goes with one stage only)."""
    if stage == "recipe":
        if run_dir is not None:
            raise UsageError("--run-dir names one stage's folder; a recipe keeps each stage beside the model")
        return recipe(preset or "")
    if preset is not None:
        raise UsageError("--preset goes with `mav train recipe`")
    return None


def check_new_run(stage: str, folder: Path, *, run_dir: str | None, resume: bool) -> None:
    """A stage whose run folder already holds a checkpoint needs --resume to continue it or --run-dir for a new
    run (a recipe resumes or refuses stage by stage)."""
    if stage == "recipe" or resume:
        return
    existing = Path(run_dir) if run_dir is not None else default_run_dir(folder, stage)
    if (existing / "checkpoint.pt").exists():
        raise UsageError(f"{existing} already holds a checkpoint of {stage}: pass --resume to continue it, or "
                         f"--run-dir DIR to start a new run elsewhere")
