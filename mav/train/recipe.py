"""`mav train`: one stage, or a recipe (every stage in the paper's order, each gated on its trivial baseline
before the next one trains on it)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from mav.errors import GateFailed
from mav.train.distributed import teardown_distributed
from mav.train.options import RecipeStep, TrainConfig, default_run_dir
from mav.train.stages import StageOptions, completed, gate_stage, run_stage


def run_training(stage: str, folder: Path, data: str, config: TrainConfig, *, plan: tuple[RecipeStep, ...] | None,
          run_dir: str | None = None, resume: bool = False, options: StageOptions = StageOptions(),
          gate: bool = True, gate_n: int = 16, reporter=None, device: str | None = None) -> Path:
    """Train `stage` with `config`, or, with a `plan`, each of its stages with the plan's steps, batch, learning
    rate, EMA and schedule (the rest from `config`). With `resume`, a plan skips finished stages and gates them
    again. A gate that misses its bar raises GateFailed (exit 6) naming the stage, its figure and the bar."""
    try:
        if plan is None:
            run_stage(stage, folder, data, config, run_dir=run_dir, resume=resume, options=options,
                      reporter=reporter, device=device)
            return folder
        for item in plan:
            if resume and completed(folder, item.stage):
                _say(reporter, f"{item.stage}: already trained, skipping")
            else:
                _say(reporter, f"stage {item.stage}: {item.steps} steps, batch {item.batch_size}")
                cfg = replace(config, steps=item.steps, batch_size=item.batch_size, lr=item.lr,
                              ema_decay=item.ema_decay, warmup_steps=item.warmup, schedule=item.schedule)
                has_checkpoint = (default_run_dir(folder, item.stage) / "checkpoint.pt").exists()
                run_stage(item.stage, folder, data, cfg, resume=resume and has_checkpoint, options=options,
                          reporter=reporter, device=device)
                if not completed(folder, item.stage):  # stopped by --max-minutes: nothing may build on it yet
                    _say(reporter, f"{item.stage} stopped at its time limit before its last step; "
                                   "`mav train recipe --resume` continues it, then the stages after it")
                    return folder
            if gate:
                result = gate_stage(item.stage, folder, n=gate_n, seed=config.seed, reporter=reporter,
                                    device=device)
                _say(reporter, result.line())
                if not result.passed:
                    raise GateFailed(f"{result.line()}; fix or retrain {item.stage} (or --no-gate to go on)")
        return folder
    finally:
        teardown_distributed()


def _say(reporter, message: str) -> None:
    if reporter is not None:
        reporter.message(message)
