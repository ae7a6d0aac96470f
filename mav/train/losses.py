"""The training objective of each stage of the cascade: a function of (model, batch, step) → loss, built per
stage by `LOSSES[stage](schedule=, clip=, seed=, config=, …)`. Every random draw of sample j (timestep, noise,
conditioning dropout, ↑F's layout of known frames) comes from its own generator seeded with (seed, j), so a batch
is the same on one process or many.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor, nn

from mav.conditioning import (Text, frame_mask_cond, image_embedding, noise_augment, resize_frames, sr_cond,
                              sr_residual, to_prior_space, unet_inputs)
from mav.diffusion.noise import draw_timesteps, draw_uniform, frame_noise, gaussian_noise, sample_generators

# Min-SNR-γ by default only for D on images (Hang et al. 2023: ≈3× faster convergence on image generation). Its
# weight min(SNR, γ) on the x0 error all but drops the high-noise end, which is where a stage must lean on its
# conditioning: ↑F on its known frames (a fine-tune with it, at half the lr, still ignored them after 100 steps),
# SR on its low-res input (whose x̂0 from pure noise must already beat bicubic), P on the text; so those weight
# every timestep alike.
MIN_SNR_GAMMA = {"decoder-image": 5.0}
# Share of a stage's samples whose timestep is drawn from the noisier half of the schedule (the rest uniform, the
# `--high-noise` option): none by default; on ↑F it gained little at the top of the schedule and cost the low-noise
# end (weights/shapes/TRAINING.md §4).
HIGH_NOISE: dict[str, float] = {}
CFG_DROPOUT = 0.1  # chance a sample's conditioning is dropped, so classifier-free guidance has an unconditional model
# D on images: chance that a sample whose embedding is kept loses its caption all the same (unCLIP's decoder drops
# the caption half the time). D^t, which shares D's spatial layers, sees videos with the embedding and no text, and
# a prompt may leave out what the embedding says; with the caption always beside the embedding, D learned to read
# colour from the words only (given the true embedding and no caption it drew the right colour 2 times in 22).
TEXT_DROPOUT = 0.5


def clip_loss(clip_tokenizer) -> Callable:
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
                  min_snr_gamma: float | None = None, high_noise: float = 0.0, frame_correlation: float = 0.0,
                  **kwargs) -> Tensor:
    """ε-, v- or x0-prediction MSE at timesteps and noise drawn from each sample's generator (only where `mask`,
    each sample weighted by min-SNR-γ when `min_snr_gamma` is set, a share `high_noise` of the timesteps from the
    noisier half, a video's frames sharing a share `frame_correlation` of their noise)."""
    t = draw_timesteps(gens, schedule.num_timesteps, high_noise).to(x0.device)
    noise = frame_noise(x0.shape, gens, x0.device, frame_correlation)
    out = model(schedule.q_sample(x0, t, noise), t, **kwargs)
    return schedule.training_loss(out.float(), x0, noise, t, mask=mask, min_snr_gamma=min_snr_gamma)


def _prior_loss(*, schedule, clip, seed, config, gamma=None, high_noise=0.0, stats=None, **_):
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
                             text_mask=mask, min_snr_gamma=gamma, high_noise=high_noise)
    return loss_fn


def _decoder_image_loss(*, schedule, clip, seed, config, gamma=None, high_noise=0.0, **_):
    empty = _EmptyPrompt(clip)

    def loss_fn(model, batch, step):
        gens = sample_generators(seed, batch["index"])
        images, device = batch["image"], batch["image"].device
        with torch.no_grad():
            embed = image_embedding(clip, images)
        keep = (draw_uniform(gens) >= CFG_DROPOUT).to(device)
        keep_text = keep & (draw_uniform(gens) >= TEXT_DROPOUT).to(device)
        text = _drop(_text(clip, batch["caption"], device), empty(len(gens), device), keep_text)
        kwargs = unet_inputs(config, len(gens), embed=embed, keep=keep, text=Text(*text))
        return _denoise_loss(model, schedule, images, gens, temporal=False, min_snr_gamma=gamma, high_noise=high_noise,
                             **kwargs)
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


def _decoder_video_loss(*, schedule, clip, seed, config, gamma=None, high_noise=0.0, **_):
    empty = _EmptyPrompt(clip)

    def loss_fn(model, batch, step):
        gens = sample_generators(seed, batch["index"])
        video, device = batch["video"], batch["video"].device
        keep = (draw_uniform(gens) >= CFG_DROPOUT).to(device)
        kwargs = unet_inputs(config, len(gens), embed=_video_embed(clip, video), keep=keep,
                             text=Text(*_no_text(empty, batch, device)), fps=batch["fps"])
        return _denoise_loss(model, schedule, video, gens, min_snr_gamma=gamma, high_noise=high_noise,
                             frame_correlation=config.frame_noise_correlation, **kwargs)
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


def _interpolator_loss(*, schedule, clip, seed, config, gamma=None, high_noise=0.0, factor: int = 4, **_):
    empty = _EmptyPrompt(clip)

    def loss_fn(model, batch, step):
        gens = sample_generators(seed, batch["index"])
        video, device = batch["video"], batch["video"].device
        known = random_known_frames(gens, video.shape[2], factor).to(device)
        keep = (draw_uniform(gens) >= CFG_DROPOUT).to(device)
        embed = _frame_embed(clip, video, _pick_known(gens, known))
        cond = frame_mask_cond(video, known, config.mask_fill)
        kwargs = unet_inputs(config, len(gens), embed=embed, keep=keep,
                             text=Text(*_no_text(empty, batch, device)), fps=batch["fps"], cond=cond)
        unknown = rearrange(~known, "b f -> b 1 f 1 1")  # the loss scores only the frames ↑F must make
        target = sr_residual(video, cond[:, :3], config.residual_scale) if config.residual else video
        return _denoise_loss(model, schedule, target, gens, mask=unknown, min_snr_gamma=gamma, high_noise=high_noise,
                             **kwargs)
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
    def make(*, schedule, clip, seed, config, gamma=None, high_noise=0.0, **_):
        def loss_fn(model, batch, step):
            gens = sample_generators(seed, batch["index"])
            target, kwargs = sr_training_inputs(batch, key, config, gens)
            return _denoise_loss(model, schedule, target, gens, min_snr_gamma=gamma, high_noise=high_noise, **kwargs)
        return loss_fn
    return make


_sr_low_loss, _sr_high_loss = _sr_loss("video"), _sr_loss("image")


LOSSES = {"prior": _prior_loss, "decoder-image": _decoder_image_loss, "decoder-video": _decoder_video_loss,
          "interpolator": _interpolator_loss, "sr-low": _sr_low_loss, "sr-high": _sr_high_loss}


__all__ = ["LOSSES", "clip_loss", "MIN_SNR_GAMMA", "HIGH_NOISE", "CFG_DROPOUT", "MaskMix", "random_known_frames",
           "sr_training_inputs"]
