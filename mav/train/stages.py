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
from einops import rearrange
from torch import Tensor, nn

from mav import checks, files
from mav.checks import TRAINING_STAGES
from mav.conditioning import (NATIVE_FPS, Text, frame_mask_cond, image_embedding, noise_augment, resize_frames,
                              sr_cond, sr_residual, to_prior_space, unet_inputs)
from mav.config import config_to_dict
from mav.diffusion.noise import draw_timesteps, draw_uniform, gaussian_noise, sample_generators
from mav.errors import ModelError, UsageError
from mav.train.options import default_run_dir

HISTORY_FILE = "training.json"
# Min-SNR-γ by default only for D on images (Hang et al. 2023: ≈3× faster convergence on image generation). Its
# weight min(SNR, γ) on the x0 error all but drops the high-noise end, which is where a stage must lean on its
# conditioning: ↑F on its known frames (a fine-tune with it, at half the lr, still ignored them after 100 steps),
# SR on its low-res input (whose x̂0 from pure noise must already beat bicubic), P on the text; so those weight
# every timestep alike.
MIN_SNR_GAMMA = {"decoder-image": 5.0}
CFG_DROPOUT = 0.1  # chance a sample's conditioning is dropped, so classifier-free guidance has an unconditional model


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
    from mav import hub

    index = hub.load_index(folder)
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
    from mav import hub

    return not hub.load_config(folder, "clip").has_weights_file


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
    from mav import hub
    from mav.diffusion.schedule import NoiseSchedule

    spec = stage_spec(name)
    check_ready(spec, folder)
    model = _trainable(spec, folder)
    config = model.config
    clip = model if spec.name == "clip" else hub.load_component(folder, "clip") if spec.uses_clip else None
    dataset = _dataset(spec, config, clip, data, seed=seed, total_samples=steps * batch_size, options=options,
                       skip=frame_skips(spec.name, hub.load_index(folder).defaults, options.max_skip))

    def batch_fn(step: int, samples: range) -> dict:
        batch = collate([dataset[j] for j in samples])
        batch["index"] = torch.tensor(list(samples))
        return batch

    fingerprint = {"stage": name, "component": spec.component, "config": config_to_dict(config),
                   "data": str(data), "seed": seed, "options": options.__dict__}
    if spec.name == "clip":
        return StageRun(spec, model, batch_fn, _clip_loss(clip_tokenizer=model), None, fingerprint)
    schedule = NoiseSchedule(config.diffusion)
    frozen = {"clip": clip} if clip is not None else {}
    defaults = hub.load_index(folder).defaults
    gamma = MIN_SNR_GAMMA.get(name) if options.min_snr_gamma is None else options.min_snr_gamma or None
    stats = None
    if getattr(config, "embedding_stats", False):  # unCLIP's prior: its space is standardised by fixed statistics
        stats = tuple(p.detach().clone() for p in model.stats)
        model.clip_mean.requires_grad_(False)
        model.clip_std.requires_grad_(False)
    loss = LOSSES[spec.name](schedule=schedule, clip=clip, seed=seed, config=config, gamma=gamma,
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
    from mav import hub

    if spec.name == "clip":
        config = hub.load_config(folder, "clip")
        if not config.has_weights_file:
            raise UsageError(f"{folder} uses the pretrained CLIP {config.name}; there is no CLIP to train")
    module = hub.load_component(folder, spec.component)
    if spec.name == "interpolator" and not any(h.get("stage") == "interpolator"
                                               for h in history(folder, "interpolator")):
        module = interpolator_from_decoder(hub.load_component(folder, "decoder"), module.config)
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

    base = max(1, round(NATIVE_FPS / defaults.fps))
    dense = max(1, round(NATIVE_FPS / (defaults.fps * max(1, defaults.interpolation_factor))))
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
# Losses


def _clip_loss(clip_tokenizer) -> Callable:
    def loss_fn(model: nn.Module, batch: dict, step: int) -> Tensor:
        ids = clip_tokenizer.tokenize(batch["caption"]).to(batch["image"].device)
        return model(batch["image"], ids)  # ClipModel.forward: open_clip's contrastive loss
    return loss_fn


@torch.no_grad()
def _text(clip, captions: list[str], device) -> tuple[Tensor, Tensor, Tensor]:
    tokens, pooled, mask = clip.encode_text(clip.tokenize(captions).to(device))
    return tokens.float(), pooled.float(), mask


def _drop(text: tuple[Tensor, Tensor, Tensor], empty: tuple[Tensor, Tensor, Tensor], keep: Tensor):
    """Per-sample classifier-free dropout: where keep is False the sample gets the empty prompt."""
    return tuple(torch.where(keep.view(-1, *[1] * (a.dim() - 1)), a, b) for a, b in zip(text, empty))


def _denoise_loss(model, schedule, x0: Tensor, gens, *, mask: Tensor | None = None,
                  min_snr_gamma: float | None = None, **kwargs) -> Tensor:
    """ε-, v- or x0-prediction MSE at timesteps and noise drawn from each sample's generator (only where `mask`,
    each sample weighted by min-SNR-γ when `min_snr_gamma` is set)."""
    t = draw_timesteps(gens, schedule.num_timesteps).to(x0.device)
    noise = gaussian_noise(x0.shape, gens, x0.device)
    out = model(schedule.q_sample(x0, t, noise), t, **kwargs)
    return schedule.training_loss(out.float(), x0, noise, t, mask=mask, min_snr_gamma=min_snr_gamma)


def _prior_loss(*, schedule, clip, seed, config, gamma=None, stats=None, **_):
    empty = _EmptyPrompt(clip)

    def loss_fn(model, batch, step):
        gens = sample_generators(seed, batch["index"])
        device = batch["image"].device
        with torch.no_grad():
            embed = image_embedding(clip, batch["image"])
        keep = (draw_uniform(gens) >= CFG_DROPOUT).to(device)
        tokens, pooled, mask = _drop(_text(clip, batch["caption"], device), empty(len(gens), device),
                                     keep)
        return _denoise_loss(model, schedule, to_prior_space(embed, stats), gens, text_tokens=tokens, text_embed=pooled,
                             text_mask=mask, min_snr_gamma=gamma)
    return loss_fn


def _decoder_image_loss(*, schedule, clip, seed, config, gamma=None, **_):
    empty = _EmptyPrompt(clip)

    def loss_fn(model, batch, step):
        gens = sample_generators(seed, batch["index"])
        images, device = batch["image"], batch["image"].device
        with torch.no_grad():
            embed = image_embedding(clip, images)
        keep = (draw_uniform(gens) >= CFG_DROPOUT).to(device)
        text = _drop(_text(clip, batch["caption"], device), empty(len(gens), device), keep)
        kwargs = unet_inputs(config, len(gens), embed=embed, keep=keep, text=Text(*text))
        return _denoise_loss(model, schedule, images, gens, temporal=False, min_snr_gamma=gamma, **kwargs)
    return loss_fn


def _frame_embed(clip, video: Tensor, frame: Tensor) -> Tensor:
    """C_y of one frame per clip (`frame`: (b,) indices): the unit-norm CLIP image embedding."""
    with torch.no_grad():
        picked = video[torch.arange(video.shape[0], device=video.device), :, frame.to(video.device)]  # b c h w
        return image_embedding(clip, picked)


def _video_embed(clip, video: Tensor) -> Tensor:
    """C_y of a clip for D^t: the CLIP image embedding of its middle frame (what P predicts for a prompt)."""
    return _frame_embed(clip, video, torch.full((video.shape[0],), video.shape[2] // 2))


class _EmptyPrompt:
    """The empty prompt's CLIP states for b samples, encoded once per device (the CLIP is frozen here)."""

    def __init__(self, clip) -> None:
        self.clip, self.cache = clip, {}

    def __call__(self, b: int, device) -> tuple[Tensor, Tensor, Tensor]:
        if device not in self.cache:
            self.cache[device] = _text(self.clip, [""], device)
        return tuple(a.expand(b, *a.shape[1:]) for a in self.cache[device])


def _no_text(empty: _EmptyPrompt, batch: dict, device) -> tuple[Tensor, Tensor, Tensor]:
    """Video stages see only the empty prompt: their batches carry no text to give."""
    assert not {"caption", "text", "txt"} & set(batch), "a video batch must not carry text"
    return empty(batch["video"].shape[0], device)


def _decoder_video_loss(*, schedule, clip, seed, config, gamma=None, **_):
    empty = _EmptyPrompt(clip)

    def loss_fn(model, batch, step):
        gens = sample_generators(seed, batch["index"])
        video, device = batch["video"], batch["video"].device
        keep = (draw_uniform(gens) >= CFG_DROPOUT).to(device)
        kwargs = unet_inputs(config, len(gens), embed=_video_embed(clip, video), keep=keep,
                             text=Text(*_no_text(empty, batch, device)), fps=batch["fps"])
        return _denoise_loss(model, schedule, video, gens, min_snr_gamma=gamma, **kwargs)
    return loss_fn


@dataclass(frozen=True)
class MaskMix:
    """How often ↑F trains on each layout of known frames. Most samples are the layout it serves in the cascade:
    every `factor`-th frame known (keys 0, k, 2k, …); the rest keep every mode of the masked model alive."""

    served: float = 0.6  # every factor-th frame, as ↑F runs after D^t
    interpolation: float = 0.15  # every k-th frame for another k, the last frame known (windows end on a key)
    extrapolation: float = 0.15  # the first 1 … F−1 frames (extrapolate)
    first_frame: float = 0.1  # frame 0 only (animate-image)

    def weights(self) -> list[float]:
        return [self.served, self.interpolation, self.extrapolation, self.first_frame]


def random_known_frames(gens: list[torch.Generator], frames: int, factor: int = 4,
                        mix: MaskMix = MaskMix()) -> Tensor:
    """Per sample, which frames ↑F is shown (b, f) bool, drawn from `mix`; at least one frame is always hidden."""
    weights = torch.tensor(mix.weights(), dtype=torch.float64)
    rows = []
    for g in gens:
        mode = int(torch.multinomial(weights, 1, generator=g))
        known = torch.zeros(frames, dtype=torch.bool)
        if mode == 0:
            known[::max(2, factor)] = True
            known[-1] = True  # inference windows end on a key (exactly every factor-th when factor | F − 1)
        elif mode == 1:
            k = int(torch.randint(2, max(3, frames), (), generator=g))
            known[::k] = True
            known[-1] = True
        elif mode == 2:
            known[: int(torch.randint(1, max(2, frames), (), generator=g))] = True
        else:
            known[0] = True
        if bool(known.all()):  # a layout with nothing to fill teaches nothing: hide the frame after frame 0
            known[1] = False
        rows.append(known)
    return torch.stack(rows)


def _pick_known(gens: list[torch.Generator], known: Tensor) -> Tensor:
    """One known frame per sample, uniformly: the frame whose CLIP embedding conditions ↑F (never a hidden one,
    which would tell the model where the object is in frames it must infer)."""
    picks = []
    for g, row in zip(gens, known.cpu()):
        idx = row.nonzero().flatten()
        picks.append(idx[int(torch.randint(len(idx), (), generator=g))])
    return torch.stack(picks)


def _interpolator_loss(*, schedule, clip, seed, config, gamma=None, factor: int = 4, **_):
    empty = _EmptyPrompt(clip)

    def loss_fn(model, batch, step):
        gens = sample_generators(seed, batch["index"])
        video, device = batch["video"], batch["video"].device
        known = random_known_frames(gens, video.shape[2], factor).to(device)
        keep = (draw_uniform(gens) >= CFG_DROPOUT).to(device)
        embed = _frame_embed(clip, video, _pick_known(gens, known))
        kwargs = unet_inputs(config, len(gens), embed=embed, keep=keep,
                             text=Text(*_no_text(empty, batch, device)), fps=batch["fps"],
                             cond=frame_mask_cond(video, known))
        unknown = rearrange(~known, "b f -> b 1 f 1 1")  # the loss scores only the frames ↑F must make
        return _denoise_loss(model, schedule, video, gens, mask=unknown, min_snr_gamma=gamma, **kwargs)
    return loss_fn


def sr_training_inputs(batch: dict, key: str, config, gens) -> tuple[Tensor, dict]:
    """An SR stage's diffusion target and network inputs for a batch of high-resolution `key` frames.

    The low-resolution input is the true low-res render when the data has one, else a downsampled copy. With
    noise augmentation (config.aug_cond) the network sees it with Gaussian noise of std s ~ U[0, noise_aug_max)
    and is told s; the residual target is always relative to the clean input, so it never contains that noise.
    """
    x = batch[key]
    low = batch.get(f"{key}_low")
    low = low if low is not None else resize_frames(x, config.low_res_size)
    clean = sr_cond(low, config.sample_size, config.cond_upsample)
    cond, level = clean, None
    if config.aug_cond:
        level = (draw_uniform(gens) * config.noise_aug_max).to(x.device)
        cond = sr_cond(noise_augment(low, level, gaussian_noise(low.shape, gens, x.device)), config.sample_size,
                       config.cond_upsample)
    kwargs = unet_inputs(config, x.shape[0], fps=batch.get("fps"), cond=cond, aug_level=level, device=x.device)
    target = sr_residual(x, clean, config.residual_scale) if config.residual else x
    return target, kwargs


def _sr_loss(key: str):
    def make(*, schedule, clip, seed, config, gamma=None, **_):
        def loss_fn(model, batch, step):
            gens = sample_generators(seed, batch["index"])
            target, kwargs = sr_training_inputs(batch, key, config, gens)
            return _denoise_loss(model, schedule, target, gens, min_snr_gamma=gamma, **kwargs)
        return loss_fn
    return make


_sr_low_loss, _sr_high_loss = _sr_loss("video"), _sr_loss("image")


LOSSES = {"prior": _prior_loss, "decoder-image": _decoder_image_loss, "decoder-video": _decoder_video_loss,
          "interpolator": _interpolator_loss, "sr-low": _sr_low_loss, "sr-high": _sr_high_loss}


# ---------------------------------------------------------------------------------------------------------------
# Running a stage end to end


def run_stage(name: str, folder: str | Path, data: str, cfg, *, run_dir: str | Path | None = None,
              resume: bool = False, options: StageOptions = StageOptions(), reporter=None,
              device: str | None = None) -> nn.Module:
    """Train one stage and write its EMA weights into the model folder (rank 0), recording it in the history.

    Under torchrun every rank calls this; the caller owns the process group (see `mav.train.distributed`), so
    that all ranks wait here until rank 0 has written the folder the next stage reads.
    """
    from mav import hub
    from mav.train.distributed import barrier, setup_distributed
    from mav.train.loop import Trainer

    folder = Path(folder)
    hub.check_model_folder(folder)
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
        hub.save_component(folder, run.spec.component, ema)
        record_history(folder, run.spec.component, {
            "stage": name, "steps": cfg.steps, "batch_size": cfg.batch_size, "data": str(data),
            "seed": cfg.seed, "seconds": round(time.time() - start, 1), "run_dir": str(run_dir)})
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
    return any(h.get("stage") == stage for h in history(folder, stage_spec(stage).component))


def record_history(folder: Path, component: str, entry: dict) -> None:
    path = folder / component / HISTORY_FILE
    stages = history(folder, component) + [entry]
    files.write_json(path, {"stages": stages})


__all__ = ["STAGE_SPECS", "ORDER", "StageOptions", "build_stage", "run_stage",
           "interpolator_from_decoder", "random_known_frames"]
