"""The Make-A-Video cascade and its six modes, as short compositions of the same stages.

    video = SR_h ∘ SR^t_l ∘ ↑F ∘ D^t ∘ P (x̂, C_x(x))

Each mode prepares its inputs, then runs the tail of the cascade it shares with the others. A model folder without
some component still runs the stages it has, and says which it skipped.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from einops import rearrange, repeat
from torch import Tensor, nn

from mav.conditioning import (NATIVE_FPS, frame_mask_cond, from_prior_space, from_sr_residual, noise_augment,
                              resize_frames, sr_cond, sr_residual)
from mav.config import COMPONENTS, ModelIndex
from mav.errors import ModelError, UsageError
from mav.media import Video, center_crop_square
from mav.progress import Reporter

# The stages a run can stop after, in cascade order.
STAGES = ("decoder", "interpolator", "sr_low", "sr_high")
STAGE_LABELS = {"prior": "prior P", "decoder": "decoder D^t", "interpolator": "interpolate ↑F",
                "sr_low": "SR^t_l", "sr_high": "SR_h"}
SAMPLERS = ("ddim", "ddpm", "dpmpp")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
MAX_SEED = 2**32 - 1
SR_HIGH_CHUNK = 8  # frames SR_h denoises at once (it works per frame; this only bounds memory)


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA when available; asking for CUDA without a GPU is a usage error, not a silent fallback."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name} was asked for, but no CUDA GPU is available; use --device cpu")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise UsageError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) present")
        return torch.device("cuda", index)
    raise UsageError(f"--device must be auto, cpu, cuda or cuda:N, got {name!r}")


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name not in DTYPES:
        raise UsageError(f"--dtype must be one of {', '.join(DTYPES)}, got {name!r}")
    if name == "fp16" and device.type != "cuda":
        raise UsageError("--dtype fp16 needs a CUDA device; on the CPU use bf16 or fp32")
    return DTYPES[name]


def check_seed(seed: int | None) -> int:
    """A seed in 0…2³²−1, or a fresh random one (always reported back to the user)."""
    if seed is None:
        return secrets.randbelow(MAX_SEED + 1)
    if not 0 <= seed <= MAX_SEED:
        raise UsageError(f"--seed must be in 0…{MAX_SEED}, got {seed}")
    return seed


def check_positive(name: str, value: float | None, minimum: float = 1) -> None:
    if value is not None and value < minimum:
        raise UsageError(f"{name} must be ≥ {minimum:g}, got {value:g}")


def check_prompts(prompts: Sequence[str]) -> list[str]:
    if not prompts:
        raise UsageError("no prompt given")
    for p in prompts:
        if not p.strip():
            raise UsageError("prompt is empty")
    return [p.strip() for p in prompts]


@dataclass
class Text:
    """CLIP text conditioning for a batch: per-token states, pooled embedding, token mask."""

    tokens: Tensor  # b L d
    pooled: Tensor  # b D
    mask: Tensor  # b L (True = real token)


def generators(seeds: Sequence[int]) -> list[torch.Generator]:
    """One CPU generator per sample, so a sample depends only on its seed, not on its batch position or device."""
    return [torch.Generator().manual_seed(s) for s in seeds]


def randn(shape: Sequence[int], gens: Sequence[torch.Generator], device: torch.device) -> Tensor:
    """Gaussian noise of shape (b, ...) with row i drawn from gens[i]."""
    assert shape[0] == len(gens), (shape, len(gens))
    return torch.stack([torch.randn(tuple(shape[1:]), generator=g) for g in gens]).to(device)


class Pipeline:
    """Loads a model folder once and runs any of the six modes on it."""

    def __init__(self, folder: Path, index: ModelIndex, models: dict[str, nn.Module], device: torch.device,
                 dtype: torch.dtype = torch.float32, reporter: Reporter | None = None) -> None:
        from mav.diffusion.schedule import NoiseSchedule

        self.folder, self.index, self.models = folder, index, models
        self.device, self.dtype = device, dtype
        self.reporter = reporter or Reporter()
        self.defaults = index.defaults
        self.schedules = {name: NoiseSchedule(m.config.diffusion) for name, m in models.items() if name != "clip"}
        self.skipped = [c for c in COMPONENTS if c not in models]
        self.timings: dict[str, float] = {}
        self.sampler, self.eta = index.defaults.sampler, 0.0
        self.compiled: dict[str, nn.Module] = {}  # stage → torch.compile'd model, after compile()
        self._check_compatible()

    @classmethod
    def load(cls, spec: str | Path | None = None, *, revision: str | None = None, offline: bool = False,
             device: str = "auto", dtype: str = "fp32", cache_dir: str | None = None,
             reporter: Reporter | None = None) -> Pipeline:
        """Resolve a registry name, folder or hub id, and load every component the folder has."""
        from mav import hub

        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev)
        folder = hub.resolve_model(None if spec is None else str(spec), revision=revision, offline=offline,
                                   cache_dir=cache_dir)
        index = hub.load_index(folder)
        # Components the index lists must load (a missing file is an error); unlisted ones are skipped stages.
        models = {c: hub.load_component(folder, c, device=dev, offline=offline) for c in index.components}
        return cls(folder, index, models, dev, dt, reporter)

    def _check_compatible(self) -> None:
        clip = self.models.get("clip")
        if clip is None:
            return
        for name in ("decoder", "interpolator"):
            m = self.models.get(name)
            if m is not None and m.config.image_embed_dim not in (0, clip.embed_dim):
                raise ModelError(f"{name} expects CLIP embeddings of width {m.config.image_embed_dim}, "
                                 f"but the model's CLIP gives {clip.embed_dim}")
        prior = self.models.get("prior")
        if prior is not None and prior.config.embed_dim != clip.embed_dim:
            raise ModelError(f"prior predicts embeddings of width {prior.config.embed_dim}, "
                             f"but the model's CLIP gives {clip.embed_dim}")

    def _require(self, *names: str) -> None:
        missing = [n for n in names if n not in self.models]
        if missing:
            raise ModelError(f"this mode needs the model's {', '.join(missing)}, which {self.folder} does not have")

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    # ----------------------------------------------------------------------------------------------------------
    # Stages

    @torch.no_grad()
    def encode_text(self, prompts: Sequence[str]) -> Text:
        """C_x: tokens and embeddings of the prompts."""
        self._require("clip")
        clip = self.models["clip"]
        ids = clip.tokenize(list(prompts)).to(self.device)
        with self._autocast():
            tokens, pooled, mask = clip.encode_text(ids)
        return Text(tokens.float(), pooled.float(), mask)

    @torch.no_grad()
    def encode_images(self, images: Tensor) -> Tensor:
        """C_y: unit-norm CLIP image embeddings of b c h w images in [-1, 1]."""
        self._require("clip")
        with self._autocast():
            return torch.nn.functional.normalize(self.models["clip"].encode_image(images.to(self.device)).float(),
                                                 dim=-1)

    def _sample(self, stage: str, x: Tensor, cond: dict, uncond: dict | None, *, steps: int, guidance: float,
                gens: Sequence[torch.Generator], strength: float = 1.0, x_start: Tensor | None = None,
                clamp: float | None = 1.0, label: str | None = None, offset: Tensor | None = None,
                scale: float = 1.0) -> Tensor:
        """Run one stage's sampler from noise `x` (or from `x_start` noised to `strength`).

        `offset`, `scale`: the stage diffuses `(result − offset) / scale` (residual SR); the clamp applies to the
        result.
        """
        from mav.diffusion import samplers
        from mav.diffusion.guidance import classifier_free, x0_denoiser

        model, schedule = self.compiled.get(stage, self.models[stage]), self.schedules[stage]

        def network(x_t: Tensor, t: Tensor, **kwargs) -> Tensor:
            with self._autocast():
                return model(x_t.to(self.device), t.to(self.device), **kwargs).float()

        if uncond is not None and guidance != 1.0:
            model_fn = classifier_free(network, cond, uncond, guidance)
        else:
            def model_fn(x_t: Tensor, t: Tensor) -> Tensor:
                return network(x_t, t, **cond)
        denoiser = x0_denoiser(model_fn, schedule, clamp=None if offset is not None else clamp)
        if offset is not None:
            offset = offset.float()
            residual = denoiser

            def denoiser(x_t: Tensor, t: Tensor) -> Tensor:
                x0 = from_sr_residual(residual(x_t, t), offset, scale)
                return sr_residual(x0.clamp(-clamp, clamp) if clamp is not None else x0, offset, scale)
        timesteps = schedule.timesteps(steps, strength) if strength < 1.0 else schedule.timesteps(steps)
        if x_start is not None:
            t0 = torch.full((x.shape[0],), int(timesteps[0]), dtype=torch.long)
            x = schedule.q_sample(x_start.float(), t0, x)
        start = time.perf_counter()
        with self.reporter.stage(label or STAGE_LABELS[stage], len(timesteps)) as callback, torch.no_grad():
            out = samplers.sample(self.sampler, denoiser, schedule, x.float(), timesteps, generator=list(gens),
                                  callback=callback, eta=self.eta)
        self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - start
        return out if offset is None else from_sr_residual(out, offset, scale)

    def _unet_kwargs(self, stage: str, b: int, *, embed: Tensor | None, text: Text | None, fps: float | None,
                     cond: Tensor | None = None) -> dict:
        """The conditioning a UNet stage takes, limited to what its config uses."""
        cfg = self.models[stage].config
        kwargs: dict = {}
        if cond is not None:
            kwargs["cond"] = cond
        if cfg.image_embed_dim:
            kwargs["image_embed"] = embed if embed is not None else torch.zeros(b, cfg.image_embed_dim,
                                                                               device=self.device)
        if cfg.text_dim and text is not None:
            kwargs["text_tokens"], kwargs["text_mask"] = text.tokens, text.mask
        if cfg.fps_cond:
            kwargs["fps"] = torch.full((b,), float(fps or self.defaults.fps), device=self.device)
        return kwargs

    def prior(self, text: Text, negative: Text, gens: Sequence[torch.Generator], *, steps: int,
              guidance: float) -> Tensor:
        """P: text → unit-norm CLIP image embedding. Without a prior, the CLIP text embedding stands in."""
        if "prior" not in self.models:
            return text.pooled
        cfg = self.models["prior"].config
        cond = {"text_tokens": text.tokens, "text_embed": text.pooled, "text_mask": text.mask}
        uncond = {"text_tokens": negative.tokens, "text_embed": negative.pooled, "text_mask": negative.mask}
        noise = randn((len(gens), cfg.embed_dim), gens, self.device)
        x0 = self._sample("prior", noise, cond, uncond, steps=steps, guidance=guidance, gens=gens, clamp=None)
        return from_prior_space(x0)

    def decode(self, embed: Tensor, text: Text | None, negative: Text | None, gens: Sequence[torch.Generator], *,
               num_frames: int, fps: float, steps: int, guidance: float, x_start: Tensor | None = None,
               strength: float = 1.0) -> Tensor:
        """D^t: F frames at the base resolution, conditioned on the image embedding, text and fps."""
        cfg = self.models["decoder"].config
        b = len(gens)
        cond = self._unet_kwargs("decoder", b, embed=embed, text=text, fps=fps)
        uncond = self._unet_kwargs("decoder", b, embed=torch.zeros_like(embed), text=negative, fps=fps)
        noise = randn((b, 3, num_frames, cfg.sample_size, cfg.sample_size), gens, self.device)
        return self._sample("decoder", noise, cond, uncond, steps=steps, guidance=guidance, gens=gens,
                            x_start=x_start, strength=strength)

    def masked_fill(self, video: Tensor, known: Tensor, *, fps: float, embed: Tensor | None, text: Text | None,
                    gens: Sequence[torch.Generator], steps: int, guidance: float, context: int = 1,
                    label: str | None = None) -> Tensor:
        """↑F as a masked model: fill every frame where `known` is False, one window of the model's size at a time.

        video: b 3 N S S (unknown frames may hold anything); known: (N,) bool. A window starts `context` frames
        before the first unknown frame and, when a known frame lies ahead, ends on the last known frame it can
        reach, so that interpolation always sees both ends; otherwise it extrapolates.
        """
        cfg = self.models["interpolator"].config
        b, n, window = video.shape[0], video.shape[2], cfg.num_frames
        video, known = video.clone(), known.clone().cpu()
        while not bool(known.all()):
            first = int((~known).nonzero()[0])
            start = max(0, first - context)
            ahead = [j for j in range(first + 1, min(n, start + window)) if known[j]]
            end = ahead[-1] + 1 if ahead else min(n, start + window)
            start = max(0, min(start, end - window))
            part, part_known = video[:, :, start:end], known[start:end]
            cond = frame_mask_cond(part, part_known.to(self.device))
            kwargs = self._unet_kwargs("interpolator", b, embed=embed, text=text, fps=fps, cond=cond)
            uncond = None
            if cfg.image_embed_dim and embed is not None:
                uncond = dict(kwargs, image_embed=torch.zeros_like(embed))
            noise = randn((b, 3, end - start, cfg.sample_size, cfg.sample_size), gens, self.device)
            out = self._sample("interpolator", noise, kwargs, uncond, steps=steps, guidance=guidance, gens=gens,
                               label=label)
            keep = rearrange(part_known.to(self.device), "f -> 1 1 f 1 1")
            video[:, :, start:end] = torch.where(keep, part, out)
            known[start:end] = True
        return video

    def _sr_inputs(self, stage: str, low: Tensor, aug_noise: Tensor | None, b: int, fps: float | None
                   ) -> tuple[dict, Tensor]:
        """An SR stage's network inputs for low-res frames, and the clean bicubic upsampling its residual is
        relative to. With noise augmentation the network sees the input at the model's fixed level `noise_aug`."""
        cfg = self.models[stage].config
        clean = sr_cond(low, cfg.sample_size)
        if not cfg.aug_cond:
            return self._unet_kwargs(stage, b, embed=None, text=None, fps=fps, cond=clean), clean
        level = torch.full((low.shape[0],), cfg.noise_aug, device=self.device)
        kwargs = self._unet_kwargs(stage, b, embed=None, text=None, fps=fps,
                                   cond=sr_cond(noise_augment(low, level, aug_noise), cfg.sample_size))
        return dict(kwargs, aug_level=level), clean

    def super_resolve_low(self, video: Tensor, gens: Sequence[torch.Generator], *, fps: float, steps: int) -> Tensor:
        """SR^t_l: a pseudo-3D super-resolution of the whole clip, in windows of the model's frame count."""
        cfg = self.models["sr_low"].config
        b, n = video.shape[0], video.shape[2]
        low = resize_frames(video, cfg.low_res_size)
        noise = randn((b, 3, n, cfg.sample_size, cfg.sample_size), gens, self.device)
        aug_noise = randn(tuple(low.shape), gens, self.device) if cfg.aug_cond else None
        parts = []
        for s in range(0, n, cfg.num_frames):
            window = slice(s, s + cfg.num_frames)
            kwargs, up = self._sr_inputs("sr_low", low[:, :, window],
                                         None if aug_noise is None else aug_noise[:, :, window], b, fps)
            parts.append(self._sample("sr_low", noise[:, :, window], kwargs, None, steps=steps, guidance=1.0,
                                      gens=gens, offset=up if cfg.residual else None, scale=cfg.residual_scale))
        return torch.cat(parts, dim=2)

    def super_resolve_high(self, video: Tensor, gens: Sequence[torch.Generator], *, steps: int) -> Tensor:
        """SR_h: spatial super-resolution per frame, with the same initial noise for every frame (less flicker)."""
        cfg = self.models["sr_high"].config
        b, n = video.shape[0], video.shape[2]
        low = resize_frames(video, cfg.low_res_size)
        noise = randn((b, 3, cfg.sample_size, cfg.sample_size), gens, self.device)
        # the augmentation noise, like the initial noise, is one draw for every frame (less flicker)
        aug_noise = randn((b, 3, cfg.low_res_size, cfg.low_res_size), gens, self.device) if cfg.aug_cond else None
        parts = []
        for s in range(0, n, SR_HIGH_CHUNK):
            window = slice(s, s + SR_HIGH_CHUNK)
            f = low[:, :, window].shape[2]
            frames = rearrange(low[:, :, window], "b c f h w -> (b f) c h w")
            frame_noise = None if aug_noise is None else repeat(aug_noise, "b c h w -> (b f) c h w", f=f)
            x = repeat(noise, "b c h w -> (b f) c h w", f=f)
            kwargs, up = self._sr_inputs("sr_high", frames, frame_noise, b * f, None)
            frame_gens = [g for g in gens for _ in range(f)]
            out = self._sample("sr_high", x, kwargs, None, steps=steps, guidance=1.0, gens=frame_gens,
                               offset=up if cfg.residual else None, scale=cfg.residual_scale)
            parts.append(rearrange(out, "(b f) c h w -> b c f h w", b=b))
        return torch.cat(parts, dim=2)

    # ----------------------------------------------------------------------------------------------------------
    # The shared tail: ↑F → SR^t_l → SR_h

    def steps_for(self, stage: str, steps: int | dict | None) -> int:
        """Sampling steps for a stage: an int for all stages, a {stage: n} dict, or None for the model's default."""
        if isinstance(steps, dict):
            return int(steps.get(stage, self.defaults.steps[stage]))
        return int(steps) if steps is not None else int(self.defaults.steps[stage])

    def guidance_for(self, stage: str, guidance: float | dict | None) -> float:
        """Guidance scale for a stage: a float sets P and D^t, a {stage: g} dict any stage, None the defaults."""
        if isinstance(guidance, dict):
            return float(guidance.get(stage, self.defaults.guidance[stage]))
        # One number sets the text-following stages; the masked and SR stages keep their own defaults.
        if guidance is not None and stage in ("prior", "decoder"):
            return float(guidance)
        return float(self.defaults.guidance[stage])

    def _tail(self, video: Tensor, fps: float, gens: Sequence[torch.Generator], *, embed: Tensor | None,
              text: Text | None, factor: int, until: str, steps, guidance, stages=("interpolator", "sr_low",
                                                                                    "sr_high"),
              max_size: int | None = None) -> tuple[Tensor, float]:
        """Run ↑F, SR^t_l and SR_h (those present, requested and not past `until`) on a base-resolution video."""
        last = STAGES.index(until)
        if "interpolator" in stages and factor > 1 and last >= 1:
            if "interpolator" in self.models:
                n = (video.shape[2] - 1) * factor + 1
                dense = torch.zeros(*video.shape[:2], n, *video.shape[3:], device=self.device)
                dense[:, :, ::factor] = video
                known = torch.zeros(n, dtype=torch.bool)
                known[::factor] = True
                fps = fps * factor
                video = self.masked_fill(dense, known, fps=fps, embed=embed, text=text, gens=gens,
                                         steps=self.steps_for("interpolator", steps),
                                         guidance=self.guidance_for("interpolator", guidance))
        # An SR stage runs only when it makes the video larger (and, with max_size, not past that size).
        if "sr_low" in stages and last >= 2 and "sr_low" in self.models:
            if self._grows("sr_low", video, max_size):
                video = self.super_resolve_low(video, gens, fps=fps, steps=self.steps_for("sr_low", steps))
        if "sr_high" in stages and last >= 3 and "sr_high" in self.models:
            if self._grows("sr_high", video, max_size):
                video = self.super_resolve_high(video, gens, steps=self.steps_for("sr_high", steps))
        return video, fps

    def _grows(self, stage: str, video: Tensor, max_size: int | None) -> bool:
        size = video.shape[-1]
        return self.models[stage].config.sample_size > size and (max_size is None or size < max_size)

    def _videos(self, video: Tensor, fps: float, meta: list[dict]) -> list[Video]:
        out = []
        for i in range(video.shape[0]):
            v = Video.from_tensor(video[i].float().cpu(), fps)
            v.meta.update(meta[i], skipped=list(self.skipped), seconds=dict(self.timings))
            out.append(v)
        return out

    def _begin(self, seed: int | None, n: int) -> tuple[list[int], list[torch.Generator]]:
        self.timings = {}
        base = check_seed(seed)
        seeds = [(base + i) % (MAX_SEED + 1) for i in range(n)]
        return seeds, generators(seeds)

    def compile(self) -> Pipeline:
        """Run the prior and the UNets through `torch.compile` from now on (the first call of each shape compiles,
        which takes minutes on a CPU; later calls are faster). The loaded modules stay as they are."""
        self.compiled = {stage: torch.compile(model) for stage, model in self.models.items() if stage != "clip"}
        return self

    def configure(self, *, sampler: str | None = None, eta: float | None = None) -> Pipeline:
        """Choose the sampler (ddim | ddpm | dpmpp) and DDIM's eta for later calls."""
        if sampler is not None:
            if sampler not in SAMPLERS:
                raise UsageError(f"--sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
            self.sampler = sampler
        if eta is not None:
            if not 0.0 <= eta <= 1.0:
                raise UsageError(f"--eta must be in 0…1, got {eta}")
            self.eta = eta
        return self

    def _text_or_empty(self, prompt: str | None, b: int) -> Text | None:
        if "clip" not in self.models:
            return None
        return self.encode_text([prompt or ""] * b)

    def _load_frames(self, source: Video | str | Path, size: int | None = None) -> tuple[Tensor, float]:
        """A video or image path (or a Video) → 1 3 f s s in [-1, 1] (centre-cropped square) and its fps."""
        from mav.media import read_media

        video = source if isinstance(source, Video) else read_media(source, image_fps=self.defaults.fps)
        x = rearrange(center_crop_square(video).to_tensor(), "c f h w -> 1 c f h w").to(self.device)
        return (x if size is None else resize_frames(x, size)), video.fps

    # ----------------------------------------------------------------------------------------------------------
    # The six modes

    def generate(self, prompt: str | Sequence[str], *, negative_prompt: str | None = None, seed: int | None = None,
                 num_frames: int | None = None, fps: float | None = None, interpolation_factor: int | None = None,
                 steps: int | dict | None = None, guidance: float | dict | None = None,
                 until: str = "sr_high") -> Video | list[Video]:
        """Text → video. A list of prompts gives a list of videos (prompt i uses seed + i)."""
        # 1. check inputs
        prompts = check_prompts([prompt] if isinstance(prompt, str) else list(prompt))
        num_frames = num_frames or self.defaults.num_frames
        fps = fps or self.defaults.fps
        factor = interpolation_factor or self.defaults.interpolation_factor
        check_positive("--num-frames", num_frames)
        check_positive("--fps", fps, minimum=1e-3)
        check_positive("--factor", factor)
        if until not in STAGES:
            raise UsageError(f"--until must be one of {', '.join(STAGES)}, got {until!r}")
        self._require("clip", "decoder")
        seeds, gens = self._begin(seed, len(prompts))
        # 2. encode the prompts (C_x) and the negative prompt
        text = self.encode_text(prompts)
        negative = self.encode_text([negative_prompt or ""] * len(prompts))
        # 3. prior P: text → CLIP image embedding
        embed = self.prior(text, negative, gens, steps=self.steps_for("prior", steps),
                           guidance=self.guidance_for("prior", guidance))
        # 4. D^t: base frames at the base resolution
        video = self.decode(embed, text, negative, gens, num_frames=num_frames, fps=fps,
                            steps=self.steps_for("decoder", steps), guidance=self.guidance_for("decoder", guidance))
        # 5. ↑F (on the empty prompt, as it was trained: the keyframes carry the content), SR^t_l, SR_h
        video, out_fps = self._tail(video, fps, gens, embed=embed, text=self._text_or_empty(None, len(prompts)),
                                    factor=factor, until=until, steps=steps, guidance=guidance)
        videos = self._videos(video, out_fps, [{"prompt": p, "seed": s} for p, s in zip(prompts, seeds)])
        return videos[0] if isinstance(prompt, str) else videos

    def _base_options(self, num_frames: int | None, fps: float | None, factor: int | None, prompt: str | None,
                      min_frames: int = 1) -> tuple[int, float, int]:
        """Fill in the model's defaults and check the options every keyframe mode shares."""
        num_frames = num_frames or self.defaults.num_frames
        fps, factor = fps or self.defaults.fps, factor or self.defaults.interpolation_factor
        check_positive("--num-frames", num_frames, minimum=min_frames)
        check_positive("--fps", fps, minimum=1e-3)
        check_positive("--factor", factor)
        if prompt is not None:
            check_prompts([prompt])
        return num_frames, fps, factor

    def _from_keyframes(self, keyframes: dict[int, Tensor], embed: Tensor, text: Text | None,
                        gens: Sequence[torch.Generator], *, num_frames: int, fps: float, factor: int, steps,
                        guidance, stage: str, until: str, label: str) -> tuple[Tensor, float]:
        """Base frames with some of them given (index → 1 3 1 h w image), the rest generated by masked ↑F; then
        the cascade's tail, and the given images put back exactly at their places in the final video."""
        size = self.models["interpolator"].config.sample_size
        base = torch.zeros(1, 3, num_frames, size, size, device=self.device)
        known = torch.zeros(num_frames, dtype=torch.bool)
        for i, image in keyframes.items():
            base[:, :, i:i + 1] = resize_frames(image, size)
            known[i] = True
        base = self.masked_fill(base, known, fps=fps, embed=embed, text=text, gens=gens,
                                steps=self.steps_for(stage, steps), guidance=self.guidance_for(stage, guidance),
                                label=label)
        video, out_fps = self._tail(base, fps, gens, embed=embed, text=text, factor=factor, until=until,
                                    steps=steps, guidance=guidance)
        stride = (video.shape[2] - 1) // (num_frames - 1)  # k if ↑F ran, else 1 (keyframe modes have ≥ 2 frames)
        for i, image in keyframes.items():
            j = i * stride
            video[:, :, j:j + 1] = resize_frames(image, video.shape[-1])
        return video, out_fps

    def animate_image(self, image: str | Path | Video, prompt: str | None = None, *, seed: int | None = None,
                      num_frames: int | None = None, fps: float | None = None,
                      interpolation_factor: int | None = None, steps: int | dict | None = None,
                      guidance: float | dict | None = None, until: str = "sr_high") -> Video:
        """Image → video: frame 0 is the image, the rest is generated by ↑F in extrapolation mode."""
        # 1. check inputs and read the image
        num_frames, fps, factor = self._base_options(num_frames, fps, interpolation_factor, prompt, min_frames=2)
        self._require("clip", "interpolator")
        original, _ = self._load_frames(image)
        seeds, gens = self._begin(seed, 1)
        # 2. condition on the image's CLIP embedding (and the prompt, if any)
        embed = self.encode_images(original[:, :, 0])
        text = self._text_or_empty(prompt, 1)
        # 3. keep frame 0, generate the rest; ↑F, SR^t_l, SR_h; the exact image back as frame 0
        video, out_fps = self._from_keyframes({0: original[:, :, :1]}, embed, text, gens, num_frames=num_frames,
                                              fps=fps, factor=factor, steps=steps, guidance=guidance,
                                              stage="decoder", until=until, label="animate ↑F")
        return self._videos(video, out_fps, [{"prompt": prompt, "seed": seeds[0]}])[0]

    def interpolate(self, a: str | Path | Video, b: str | Path | Video | None = None, *, factor: int | None = None,
                    prompt: str | None = None, seed: int | None = None, num_frames: int | None = None,
                    fps: float | None = None, steps: int | dict | None = None,
                    guidance: float | dict | None = None) -> Video:
        """Two images → the frames between them; or one video → the same video at `factor`× its frame rate."""
        if b is None:
            return self._raise_frame_rate(a, factor=factor, prompt=prompt, seed=seed, steps=steps,
                                          guidance=guidance)
        # 1. check inputs and read both images
        num_frames, fps, factor = self._base_options(num_frames, fps, factor, prompt, min_frames=2)
        self._require("clip", "interpolator")
        first, _ = self._load_frames(a)
        last, _ = self._load_frames(b)
        seeds, gens = self._begin(seed, 1)
        # 2. condition on the mean CLIP embedding of the two ends
        embed = torch.nn.functional.normalize(self.encode_images(first[:, :, 0]) + self.encode_images(last[:, :, 0]),
                                              dim=-1)
        text = self._text_or_empty(prompt, 1)
        # 3. first and last frame kept, the base frames between them generated; ↑F, SR^t_l, SR_h
        video, out_fps = self._from_keyframes({0: first[:, :, :1], num_frames - 1: last[:, :, :1]}, embed, text,
                                              gens, num_frames=num_frames, fps=fps, factor=factor, steps=steps,
                                              guidance=guidance, stage="interpolator", until="sr_high",
                                              label="in-between ↑F")
        return self._videos(video, out_fps, [{"prompt": prompt, "seed": seeds[0]}])[0]

    def _raise_frame_rate(self, source: str | Path | Video, *, factor: int | None, prompt: str | None,
                          seed: int | None, steps, guidance) -> Video:
        """Insert factor−1 generated frames between consecutive frames of a video, at its own resolution."""
        factor = factor or self.defaults.interpolation_factor
        check_positive("--factor", factor, minimum=2)
        self._require("clip", "interpolator")
        original, fps = self._load_frames(source)
        seeds, gens = self._begin(seed, 1)
        size = self.models["interpolator"].config.sample_size
        embed = self.encode_images(original[:, :, original.shape[2] // 2])
        text = self._text_or_empty(prompt, 1)
        video, out_fps = self._tail(resize_frames(original, size), fps, gens, embed=embed, text=text, factor=factor,
                                    until="sr_high", steps=steps, guidance=guidance, max_size=original.shape[-1])
        video = resize_frames(video, original.shape[-1])
        video[:, :, ::factor] = original
        return self._videos(video, out_fps, [{"prompt": prompt, "seed": seeds[0]}])[0]

    def extrapolate(self, source: str | Path | Video, frames: int, *, prompt: str | None = None,
                    seed: int | None = None, steps: int | dict | None = None,
                    guidance: float | dict | None = None) -> Video:
        """Continue a video by `frames` frames, each window conditioned on the frames before it."""
        check_positive("--frames", frames)
        self._require("clip", "interpolator")
        original, fps = self._load_frames(source)
        seeds, gens = self._begin(seed, 1)
        cfg = self.models["interpolator"].config
        n = original.shape[2]
        embed = self.encode_images(original[:, :, -1])
        text = self._text_or_empty(prompt, 1)
        video = torch.zeros(1, 3, n + frames, cfg.sample_size, cfg.sample_size, device=self.device)
        video[:, :, :n] = resize_frames(original, cfg.sample_size)
        known = torch.arange(n + frames) < n
        video = self.masked_fill(video, known, fps=fps, embed=embed, text=text, gens=gens,
                                 steps=self.steps_for("interpolator", steps),
                                 guidance=self.guidance_for("interpolator", guidance),
                                 context=max(1, cfg.num_frames // 2), label="extrapolate ↑F")
        video, _ = self._tail(video, fps, gens, embed=embed, text=text, factor=1, until="sr_high", steps=steps,
                              guidance=guidance, stages=("sr_low", "sr_high"), max_size=original.shape[-1])
        video = resize_frames(video, original.shape[-1])
        video[:, :, :n] = original
        return self._videos(video, fps, [{"prompt": prompt, "seed": seeds[0]}])[0]

    def variations(self, source: str | Path | Video, n: int = 1, *, strength: float = 0.7, prompt: str | None = None,
                   seed: int | None = None, num_frames: int | None = None,
                   interpolation_factor: int | None = None, steps: int | dict | None = None,
                   guidance: float | dict | None = None, until: str = "sr_high") -> list[Video]:
        """n new videos like the input: its CLIP image embedding as condition, the input noised to `strength`."""
        # 1. check inputs and read the source
        check_positive("-n", n)
        if not 0.0 < strength <= 1.0:
            raise UsageError(f"--strength must be in (0, 1], got {strength}")
        num_frames = num_frames or self.defaults.num_frames
        factor = interpolation_factor or self.defaults.interpolation_factor
        check_positive("--num-frames", num_frames)
        check_positive("--factor", factor)
        self._require("clip", "decoder")
        original, fps = self._load_frames(source)
        seeds, gens = self._begin(seed, n)
        # 2. the input's CLIP embedding, and the input resampled to the base frames and resolution
        f = original.shape[2]
        embed = repeat(self.encode_images(original[:, :, f // 2]), "1 d -> n d", n=n)
        picks = torch.linspace(0, f - 1, num_frames).round().long()
        base_fps = fps * (f - 1) / (num_frames - 1) if f > 1 and num_frames > 1 else self.defaults.fps
        size = self.models["decoder"].config.sample_size
        start = repeat(resize_frames(original[:, :, picks], size), "1 c f h w -> n c f h w", n=n)
        text = self._text_or_empty(prompt, n)
        negative = self._text_or_empty(None, n)
        # 3. D^t from the partly noised input
        video = self.decode(embed, text, negative, gens, num_frames=num_frames, fps=base_fps,
                            steps=self.steps_for("decoder", steps), guidance=self.guidance_for("decoder", guidance),
                            x_start=start, strength=strength)
        # 4. ↑F, SR^t_l, SR_h
        video, out_fps = self._tail(video, base_fps, gens, embed=embed, text=negative, factor=factor, until=until,
                                    steps=steps, guidance=guidance)
        return self._videos(video, out_fps, [{"prompt": prompt, "seed": s} for s in seeds])

    def upscale(self, source: str | Path | Video, *, seed: int | None = None, steps: int | dict | None = None,
                stages: Sequence[str] = ("sr_low", "sr_high")) -> Video:
        """SR^t_l and/or SR_h on any video (centre-cropped to a square)."""
        for s in stages:
            if s not in ("sr_low", "sr_high"):
                raise UsageError(f"upscale stages are sr_low and sr_high, got {s!r}")
        present = [s for s in stages if s in self.models]
        if not present:
            raise ModelError(f"{self.folder} has none of the super-resolution stages {', '.join(stages)}")
        original, fps = self._load_frames(source)
        seeds, gens = self._begin(seed, 1)
        video, _ = self._tail(original, fps, gens, embed=None, text=None, factor=1, until="sr_high", steps=steps,
                              guidance=None, stages=tuple(present))
        return self._videos(video, fps, [{"prompt": None, "seed": seeds[0]}])[0]


def load_pipeline(spec: str | Path | None = None, **kwargs) -> Pipeline:
    """`mav.load_pipeline("path-or-id")`: the Python entry point. Keyword arguments as `Pipeline.load`."""
    return Pipeline.load(spec, **kwargs)


__all__ = ["Pipeline", "load_pipeline", "NATIVE_FPS"]
