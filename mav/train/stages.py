"""The six Make-A-Video training stages, in the paper's order, each a model plus a batch and a loss function.

    clip → prior → decoder-image → decoder-video → interpolator → sr-low, sr-high

Images (with captions) teach CLIP, P, D's spatial layers and SR_h; unlabeled video teaches D's temporal layers,
↑F and SR^t_l. Text never reaches a video stage: video datasets have no caption field, and the video losses
condition on the empty prompt (the same "no text" the image stages use for classifier-free dropout).

Every stage trains one component of a model folder, starting from the weights already there, and writes the EMA
weights back when it finishes, with a line in `<component>/training.json` recording what was done.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mav import checks, files
from mav.checks import TRAINING_STAGES
from mav.conditioning import frame_skip
from mav.config import config_to_dict
from mav.errors import ModelError, UsageError
from mav.loading import HISTORY_FILE
from mav.train.losses import HIGH_NOISE, LOSSES, MIN_SNR_GAMMA, clip_loss
from mav.train.options import default_run_dir




@dataclass(frozen=True)
class StageSpec:
    """What a stage trains, on what data, and which earlier stages it builds on."""

    name: str
    component: str
    data: str  # "images" | "videos"
    after: tuple[tuple[str, str], ...] = ()  # (component, stage) pairs that must be in the folder's history
    uses_clip: bool = True


STAGE_SPECS: dict[str, StageSpec] = {s.name: s for s in (
    StageSpec("clip", "clip", "images", uses_clip=False),
    StageSpec("prior", "prior", "images", after=(("clip", "clip"),)),
    StageSpec("decoder-image", "decoder", "images", after=(("clip", "clip"),)),
    StageSpec("decoder-video", "decoder", "videos", after=(("decoder", "decoder-image"),)),
    StageSpec("interpolator", "interpolator", "videos", after=(("decoder", "decoder-video"),)),
    StageSpec("sr-low", "sr_low", "videos", uses_clip=False),
    StageSpec("sr-high", "sr_high", "images", uses_clip=False),
)}
ORDER = TRAINING_STAGES  # the recipe's order, which `mav.checks` knows without torch
assert tuple(STAGE_SPECS) == ORDER, (tuple(STAGE_SPECS), ORDER)


@dataclass(frozen=True)
class StageOptions:
    """Per-stage knobs beyond the generic TrainConfig."""

    spatial_lr_scale: float = 0.0  # decoder-video: 0 freezes D's spatial layers, >0 trains them at this × lr
    max_skip: int = 8  # video stages: the largest frame skip the schedule draws (fps down to 30/max_skip)
    data_format: str | None = None  # images | videos | shards (default: detected)
    min_snr_gamma: float | None = None  # min-SNR-γ loss weighting (Hang et al. 2023); None: the stage's default
                                        # (MIN_SNR_GAMMA), 0: off (the plain mean over timesteps)
    high_noise: float | None = None  # share of timesteps drawn from the noisier half; None: the stage's default
                                     # (HIGH_NOISE), 0: every timestep alike


@dataclass
class StageRun:
    """A stage ready for the Trainer: the module to train and its two functions."""

    spec: StageSpec
    model: nn.Module
    batch_fn: Callable[[int, range], dict]
    loss_fn: Callable[[nn.Module, dict, int], Tensor]
    param_groups: list | None
    fingerprint: dict
    frozen: dict[str, nn.Module] = field(default_factory=dict)  # helpers moved to the trainer's device

    def to(self, device: torch.device) -> None:
        for module in self.frozen.values():
            module.to(device)


# ---------------------------------------------------------------------------------------------------------------
# Checks: the stage exists, the folder has what it needs


def stage_spec(name: str) -> StageSpec:
    return STAGE_SPECS[checks.training_stage(name, recipe=False)]


def history(folder: Path, component: str) -> list[dict]:
    path = folder / component / HISTORY_FILE
    if not path.is_file():
        return []
    try:
        return json.loads(path.read_text()).get("stages", [])
    except (OSError, ValueError):
        return []


def check_ready(spec: StageSpec, folder: Path) -> None:
    """The model folder has the component this stage trains and the stages it builds on (exit 3 with a hint)."""
    from mav import loading

    index = loading.load_index(folder)
    if spec.component not in index.components:
        raise ModelError(f"{folder} has no {spec.component} component for stage {spec.name}; "
                         f"start from `mav init {folder} --preset NAME`")
    if spec.uses_clip and "clip" not in index.components:
        raise ModelError(f"stage {spec.name} needs the model's CLIP, which {folder} does not have")
    for component, stage in spec.after:
        if component == "clip" and _clip_is_pretrained(folder):
            continue
        if not any(h.get("stage") == stage for h in history(folder, component)):
            raise ModelError(f"stage {spec.name} builds on {stage}, which has not been run on {folder}; "
                             f"run `mav train {stage} --model {folder} ...` first")


def _clip_is_pretrained(folder: Path) -> bool:
    from mav import loading

    return not loading.load_config(folder, "clip").has_weights_file


# ---------------------------------------------------------------------------------------------------------------
# Randomness: every draw of sample j comes from a generator seeded with (seed, j)


def collate(samples: list[dict]) -> dict:
    out: dict[str, Any] = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        if isinstance(values[0], Tensor):
            out[key] = torch.stack(values)
        elif isinstance(values[0], (int, float)):
            out[key] = torch.tensor(values, dtype=torch.float32)
        else:
            out[key] = values
    return out


# ---------------------------------------------------------------------------------------------------------------
# Building a stage


def build_stage(name: str, folder: Path, data: str, *, seed: int, steps: int, batch_size: int,
                options: StageOptions = StageOptions()) -> StageRun:
    """Load what the stage trains from `folder`, open its data, and return the model, batch and loss functions."""
    from mav import loading
    from mav.diffusion.schedule import NoiseSchedule

    spec = stage_spec(name)
    check_ready(spec, folder)
    model = _trainable(spec, folder)
    config = model.config
    clip = model if spec.name == "clip" else loading.load_component(folder, "clip") if spec.uses_clip else None
    dataset = _dataset(spec, config, clip, data, seed=seed, total_samples=steps * batch_size, options=options,
                       skip=frame_skips(spec.name, loading.load_index(folder).defaults, options.max_skip))

    def batch_fn(step: int, samples: range) -> dict:
        batch = collate([dataset[j] for j in samples])
        batch["index"] = torch.tensor(list(samples))
        return batch

    fingerprint = {"stage": name, "component": spec.component, "config": config_to_dict(config),
                   "data": str(data), "seed": seed, "options": options.__dict__}
    if spec.name == "clip":
        return StageRun(spec, model, batch_fn, clip_loss(clip_tokenizer=model), None, fingerprint)
    schedule = NoiseSchedule(config.diffusion)
    frozen = {"clip": clip} if clip is not None else {}
    defaults = loading.load_index(folder).defaults
    gamma = MIN_SNR_GAMMA.get(name) if options.min_snr_gamma is None else options.min_snr_gamma or None
    high_noise = HIGH_NOISE.get(name, 0.0) if options.high_noise is None else options.high_noise
    stats = None
    if getattr(config, "embedding_stats", False):  # unCLIP's prior: its space is standardised by fixed statistics
        stats = tuple(p.detach().clone() for p in model.stats)
        model.clip_mean.requires_grad_(False)
        model.clip_std.requires_grad_(False)
    loss = LOSSES[spec.name](schedule=schedule, clip=clip, seed=seed, config=config, gamma=gamma,
                             high_noise=high_noise,
                             factor=defaults.interpolation_factor, stats=stats)
    groups = None
    if spec.name in ("decoder-image", "decoder-video"):
        video = [p for n, p in model.named_parameters() if is_video_parameter(n)]
        image = [p for n, p in model.named_parameters() if not is_video_parameter(n)]
        if spec.name == "decoder-image":  # images train the image model; the video layers sit out
            for p in video:
                p.requires_grad_(False)
        else:  # video trains the video layers; the image model is frozen or slowed
            for p in image:
                p.requires_grad_(options.spatial_lr_scale > 0)
            if options.spatial_lr_scale > 0:
                groups = [(image, options.spatial_lr_scale)]
    return StageRun(spec, model, batch_fn, loss, groups, fingerprint, frozen)


def is_video_parameter(name: str) -> bool:
    """Parameters that only video gives a meaning to: the temporal layers and the fps embedding."""
    from mav.models.unet import is_temporal_parameter

    return is_temporal_parameter(name) or name.startswith("fps_embed.")


def _trainable(spec: StageSpec, folder: Path) -> nn.Module:
    """The module to train: the folder's weights, except ↑F, which starts from D^t (paper §3.3)."""
    from mav import loading

    if spec.name == "clip":
        config = loading.load_config(folder, "clip")
        if not config.has_weights_file:
            raise UsageError(f"{folder} uses the pretrained CLIP {config.name}; there is no CLIP to train")
    module = loading.load_component(folder, spec.component)
    if spec.name == "interpolator" and not any(h.get("stage") == "interpolator"
                                               for h in history(folder, "interpolator")):
        module = interpolator_from_decoder(loading.load_component(folder, "decoder"), module.config)
    module.train()
    for p in module.parameters():
        p.requires_grad_(True)
    if getattr(module, "last_step", None) is not None:  # unCLIP's last-step SR network stays as imported
        module.last_step.requires_grad_(False)
    return module


def interpolator_from_decoder(decoder: nn.Module, config) -> nn.Module:
    """↑F = D^t with 4 extra input channels (masked RGB + mask), zero-initialised so it starts as D^t."""
    from dataclasses import replace

    from mav.models import build_component

    expected = replace(decoder.config, cond_channels=config.cond_channels, num_frames=config.num_frames)
    if expected != config:
        raise ModelError("the interpolator's config must equal the decoder's except cond_channels and num_frames "
                         "to start from D^t")
    interpolator = build_component("interpolator", config)
    state = decoder.state_dict()
    w = state["conv_in.weight"]
    extra = torch.zeros(w.shape[0], config.cond_channels, *w.shape[2:], dtype=w.dtype)
    state["conv_in.weight"] = torch.cat([w, extra], dim=1)
    interpolator.load_state_dict(state, strict=True)
    return interpolator


def frame_skips(stage: str, defaults, max_skip: int):
    """The frame skips a video stage trains on, from the rates the model samples at (its index's defaults).

    decoder-video: the paper's schedule from high to low fps, centred on D^t's own rate (base skip b = 30/fps):
    its mean moves from about b/2 to about b + ½, within 1 … max_skip. interpolator: the rates ↑F serves — mostly
    the cascade's output rate (base fps × factor), a quarter at the base rate (the keyframe modes). sr-low: the
    output rate, where SR^t_l runs.
    """
    from mav.train.skips import FrameSkipSchedule, SkipChoice

    base = frame_skip(defaults.fps)
    dense = frame_skip(defaults.fps * max(1, defaults.interpolation_factor))
    if stage == "decoder-video":
        start = min(0.9, max(0.05, base / 2 / max_skip))
        end = min(0.95, max(start + 0.01, (base + 0.5) / max_skip))
        return FrameSkipSchedule(max_skip=max_skip, start=start, end=end)
    if stage == "interpolator":
        return SkipChoice((dense, min(base, max_skip)), (0.75, 0.25)) if base != dense else dense
    return dense


def _dataset(spec: StageSpec, config, clip, data: str, *, seed: int, total_samples: int, options: StageOptions,
             skip=1):
    from mav.train.datasets import ShapesImages, ShapesVideos, detect_format, open_dataset

    size = clip.image_size if spec.name == "clip" else getattr(config, "sample_size", None)
    if spec.name == "prior":
        size = clip.image_size
    low = getattr(config, "low_res_size", 0) or None
    if spec.data == "videos":
        frames = config.num_frames
        if data == "shapes":
            return ShapesVideos(size, frames, skip, seed, total_samples=total_samples, low_size=low)
        _check_format(data, "videos", options.data_format, detect_format)
        return open_dataset(data, "videos", size=size, num_frames=frames, skip=skip, seed=seed,
                            total_samples=total_samples)
    if data == "shapes":
        return ShapesImages(size, seed, low_size=low, shape_groups=spec.name == "clip")
    _check_format(data, "images", options.data_format, detect_format)
    return open_dataset(data, "images", size=size, seed=seed)


def _check_format(data: str, kind: str, named: str | None, detect) -> None:
    if not Path(data).exists():
        raise UsageError(f"--data {data}: no such folder (use 'shapes' for the procedural world)")
    found = named or detect(data)
    if found not in (kind, "shards"):
        raise UsageError(f"--data {data} holds {found}, but this stage trains on {kind}")


# ---------------------------------------------------------------------------------------------------------------
# Running a stage end to end


def run_stage(name: str, folder: str | Path, data: str, cfg, *, run_dir: str | Path | None = None,
              resume: bool = False, options: StageOptions = StageOptions(), reporter=None,
              device: str | None = None) -> nn.Module:
    """Train one stage and write its EMA weights into the model folder (rank 0), recording it in the history.

    Under torchrun every rank calls this; the caller owns the process group (see `mav.train.distributed`), so
    that all ranks wait here until rank 0 has written the folder the next stage reads.
    """
    from mav import loading, saving
    from mav.train.distributed import barrier, setup_distributed
    from mav.train.loop import Trainer

    folder = Path(folder)
    loading.check_model_folder(folder)
    rank, _, dev = setup_distributed(device)
    run = build_stage(name, folder, data, seed=cfg.seed, steps=cfg.steps, batch_size=cfg.batch_size,
                      options=options)
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(folder, name)
    trainer = Trainer(run.model, cfg, run_dir, run.batch_fn, run.loss_fn, run.fingerprint,
                      param_groups=run.param_groups, reporter=reporter, device=dev)
    run.to(trainer.device)
    start = time.time()
    ema = trainer.fit(resume=resume)
    if rank == 0:
        saving.save_component(folder, run.spec.component, ema)
        entry = {"stage": name, "steps": trainer.steps_done}
        if trainer.steps_done < cfg.steps:  # stopped by the time limit
            entry["planned_steps"] = cfg.steps
        record_history(folder, run.spec.component, {
            **entry, "batch_size": cfg.batch_size, "data": str(data), "seed": cfg.seed,
            "bf16": trainer.autocast, "seconds": round(time.time() - start, 1), "run_dir": str(run_dir)})
    barrier()
    return ema


GATES_FILE = "gates.json"  # beside the stage run folders: the last gate figures of each stage


def gate_stage(stage: str, folder: str | Path, *, n: int = 16, seed: int = 0, reporter=None,
               device: str | None = None):
    """Measure what `stage` just trained against its baseline (`mav.eval.gates`) and record the figures in
    MODEL.runs/gates.json. Rank 0 measures; under torchrun every rank returns the same result."""
    from mav.eval.gates import STAGE_GATE, GateResult, run_gate
    from mav.pipeline import Pipeline
    from mav.train.distributed import barrier, setup_distributed

    folder = Path(folder)
    rank, _, dev = setup_distributed(device)
    path = default_run_dir(folder, stage).parent / GATES_FILE
    if rank == 0:
        pipe = Pipeline.load(folder, device=str(dev), reporter=reporter)
        result = run_gate(pipe, STAGE_GATE[stage], n, seed)
        gates = json.loads(path.read_text()) if path.is_file() else {}
        gates[stage] = dict(result.to_dict(), time=time.time())
        path.parent.mkdir(parents=True, exist_ok=True)
        files.write_json(path, gates)
    barrier()
    record = dict(json.loads(path.read_text())[stage])
    record.pop("time", None)
    return GateResult(**record)


def completed(folder: Path, stage: str) -> bool:
    """The stage's last run reached its planned steps (a run stopped by --max-minutes records planned_steps)."""
    runs = [h for h in history(folder, stage_spec(stage).component) if h.get("stage") == stage]
    return bool(runs) and "planned_steps" not in runs[-1]


def record_history(folder: Path, component: str, entry: dict) -> None:
    path = folder / component / HISTORY_FILE
    stages = history(folder, component) + [entry]
    files.write_json(path, {"stages": stages})


__all__ = ["STAGE_SPECS", "ORDER", "StageOptions", "build_stage", "run_stage", "gate_stage", "completed",
           "interpolator_from_decoder"]
