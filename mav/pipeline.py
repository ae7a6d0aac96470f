"""The Make-A-Video cascade and its six modes, as short compositions of the same stages.

    video = SR_h ∘ SR^t_l ∘ ↑F ∘ D^t ∘ P (x̂, C_x(x))

Each stage is an object of `mav.cascade` that owns its denoiser, schedule, conditioning and sampling call; each
mode prepares its inputs, then runs the tail of the cascade it shares with the others (`mav.cascade.cascade`,
which holds the loaded stages). A model folder without some component still runs the stages it has, and says
which it skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from einops import rearrange, repeat
from torch import Tensor

from mav import checks
from mav.cascade.cascade import Cascade
from mav.conditioning import Text, mean_embedding, resize_frames
from mav.device import free_memory, resolve_device, resolve_dtype
from mav.diffusion.noise import generators
from mav.errors import ModelError
from mav.media import Video, center_crop_square
from mav.progress import Reporter


class Pipeline(Cascade):
    """Loads a model folder once and runs any of the six modes on it."""

    @classmethod
    def load(cls, spec: str | Path | None = None, *, revision: str | None = None, offline: bool = False,
             device: str = "auto", dtype: str = "fp32", cache_dir: str | None = None,
             reporter: Reporter | None = None) -> Pipeline:
        """Resolve a registry name, folder or hub id, and load every component the folder has."""
        from mav import hub, loading

        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev)
        folder = hub.resolve_model(None if spec is None else str(spec), revision=revision, offline=offline,
                                   cache_dir=cache_dir)
        index = loading.load_index(folder)
        # Components the index lists must load (a missing file is an error); unlisted ones are skipped stages.
        models = {c: loading.load_component(folder, c, device=dev, offline=offline) for c in index.components}
        return cls(folder, index, models, dev, dt, reporter)

    def _check_request(self, *, num_frames: int, factor: int, batch: int) -> None:
        """The checks the CLI makes from the configs before loading (`mav.checks`), made again here for the
        Python API, with this device's free memory."""
        checks.factor_served(factor, self.configs)
        checks.generation_fits(self.configs, num_frames=num_frames, factor=factor, batch=batch,
                               available=free_memory(self.device))

    def _check_result_fits(self, original: Tensor, frames: int, advice: str) -> None:
        """A result of `frames` frames at the size of the loaded input `original` (1 3 f s s) must fit in memory."""
        checks.frames_fit("the video", frames, original.shape[-1], original.shape[-2], free_memory(self.device),
                          advice)

    def _videos(self, video: Tensor, fps: float, meta: list[dict]) -> list[Video]:
        out = []
        for i in range(video.shape[0]):
            v = Video.from_tensor(video[i].float().cpu(), fps)
            v.meta.update(meta[i], skipped=list(self.skipped), seconds=dict(self.timings))
            out.append(v)
        return out

    def _begin(self, seed: int | None, n: int) -> tuple[list[int], list[torch.Generator]]:
        self.timings = {}
        seeds = checks.prompt_seeds(checks.seed(seed), n)
        return seeds, generators(seeds)

    def _load_frames(self, source: Video | str | Path) -> tuple[Tensor, float]:
        """A video or image path (or a Video) → 1 3 f s s in [-1, 1] (centre-cropped square) and its fps."""
        from mav.media import read_media

        video = source if isinstance(source, Video) else read_media(source, image_fps=self.defaults.fps)
        return rearrange(center_crop_square(video).to_tensor(), "c f h w -> 1 c f h w").to(self.device), video.fps

    # ----------------------------------------------------------------------------------------------------------
    # The six modes

    def generate(self, prompt: str | Sequence[str], *, negative_prompt: str | None = None, seed: int | None = None,
                 num_frames: int | None = None, fps: float | None = None, interpolation_factor: int | None = None,
                 steps: int | dict | None = None, guidance: float | dict | None = None,
                 until: str = "sr_high") -> Video | list[Video]:
        """Text → video. A list of prompts gives a list of videos (prompt i uses seed + i)."""
        # 1. check inputs
        prompts = checks.prompts([prompt] if isinstance(prompt, str) else list(prompt))
        num_frames = num_frames or self.defaults.num_frames
        fps = fps or self.defaults.fps
        factor = interpolation_factor or self.defaults.interpolation_factor
        checks.at_least("--num-frames", num_frames)
        checks.at_least("--fps", fps, minimum=1e-3)
        checks.at_least("--factor", factor)
        checks.until(until)
        self._require("clip", "decoder")
        self._check_request(num_frames=num_frames, factor=factor, batch=len(prompts))
        seeds, gens = self._begin(seed, len(prompts))
        # 2. encode the prompts (C_x) and the negative prompt
        text = self.encode_text(prompts)
        negative = self.encode_text([negative_prompt or ""] * len(prompts))
        # 3. prior P: text → CLIP image embedding
        # (without P, the CLIP text embedding stands in)
        embed = text.pooled if self.prior is None else self.prior.sample(
            text, negative, gens, steps=self.steps_for("prior", steps), guidance=self.guidance_for("prior", guidance))
        # 4. D^t: base frames at the base resolution
        video = self.decoder.sample(embed, text, negative, gens, num_frames=num_frames, fps=fps,
                                    steps=self.steps_for("decoder", steps),
                                    guidance=self.guidance_for("decoder", guidance))
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
        checks.at_least("--num-frames", num_frames, minimum=min_frames)
        checks.at_least("--fps", fps, minimum=1e-3)
        checks.at_least("--factor", factor)
        checks.prompt(prompt)
        self._check_request(num_frames=num_frames, factor=factor, batch=1)
        return num_frames, fps, factor

    def _from_keyframes(self, keyframes: dict[int, Tensor], embed: Tensor, text: Text | None,
                        gens: Sequence[torch.Generator], *, num_frames: int, fps: float, factor: int, steps,
                        guidance, stage: str, until: str, label: str) -> tuple[Tensor, float]:
        """Base frames with some of them given (index → 1 3 1 h w image), the rest generated by masked ↑F; then
        the cascade's tail, and the given images put back exactly at their places in the final video."""
        size = self.interpolator.config.sample_size
        base = torch.zeros(1, 3, num_frames, size, size, device=self.device)
        known = torch.zeros(num_frames, dtype=torch.bool)
        for i, image in keyframes.items():
            base[:, :, i:i + 1] = resize_frames(image, size)
            known[i] = True
        base = self.interpolator.fill(base, known, fps=fps, embed=embed, text=text, gens=gens,
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
        embed = mean_embedding(self.encode_images(first[:, :, 0]), self.encode_images(last[:, :, 0]),
                               self.models["clip"].config.normalize_image)
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
        checks.at_least("--factor", factor, minimum=2)
        self._require("clip", "interpolator")
        checks.factor_served(factor, self.configs)
        original, fps = self._load_frames(source)
        checks.input_frames(original.shape[2], 2, getattr(source, "name", None) or "the video",
                            "raising the frame rate")
        self._check_result_fits(original, (original.shape[2] - 1) * factor + 1, "raise the frame rate of shorter parts")
        seeds, gens = self._begin(seed, 1)
        size = self.interpolator.config.sample_size
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
        checks.at_least("--frames", frames)
        self._require("clip", "interpolator")
        original, fps = self._load_frames(source)
        self._check_result_fits(original, original.shape[2] + frames, "ask for fewer frames, or continue a shorter "
                                "or smaller clip")
        seeds, gens = self._begin(seed, 1)
        cfg = self.interpolator.config
        n = original.shape[2]
        embed = self.encode_images(original[:, :, -1])
        text = self._text_or_empty(prompt, 1)
        video = torch.zeros(1, 3, n + frames, cfg.sample_size, cfg.sample_size, device=self.device)
        video[:, :, :n] = resize_frames(original, cfg.sample_size)
        known = torch.arange(n + frames) < n
        video = self.interpolator.fill(video, known, fps=fps, embed=embed, text=text, gens=gens,
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
        checks.at_least("-n", n)
        checks.strength(strength)
        num_frames = num_frames or self.defaults.num_frames
        factor = interpolation_factor or self.defaults.interpolation_factor
        checks.at_least("--num-frames", num_frames)
        checks.at_least("--factor", factor)
        self._require("clip", "decoder")
        self._check_request(num_frames=num_frames, factor=factor, batch=n)
        original, fps = self._load_frames(source)
        seeds, gens = self._begin(seed, n)
        # 2. the input's CLIP embedding, and the input resampled to the base frames and resolution
        f = original.shape[2]
        embed = repeat(self.encode_images(original[:, :, f // 2]), "1 d -> n d", n=n)
        picks = torch.linspace(0, f - 1, num_frames).round().long()
        base_fps = fps * (f - 1) / (num_frames - 1) if f > 1 and num_frames > 1 else self.defaults.fps
        size = self.decoder.config.sample_size
        start = repeat(resize_frames(original[:, :, picks], size), "1 c f h w -> n c f h w", n=n)
        text = self._text_or_empty(prompt, n)
        negative = self._text_or_empty(None, n)
        # 3. D^t from the partly noised input
        video = self.decoder.sample(embed, text, negative, gens, num_frames=num_frames, fps=base_fps,
                                    steps=self.steps_for("decoder", steps),
                                    guidance=self.guidance_for("decoder", guidance), x_start=start,
                                    strength=strength)
        # 4. ↑F, SR^t_l, SR_h
        video, out_fps = self._tail(video, base_fps, gens, embed=embed, text=negative, factor=factor, until=until,
                                    steps=steps, guidance=guidance)
        return self._videos(video, out_fps, [{"prompt": prompt, "seed": s} for s in seeds])

    def upscale(self, source: str | Path | Video, *, seed: int | None = None, steps: int | dict | None = None,
                stages: Sequence[str] = ("sr_low", "sr_high")) -> Video:
        """SR^t_l and/or SR_h on any video (centre-cropped to a square)."""
        stages = checks.sr_stages(stages)
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


__all__ = ["Pipeline", "load_pipeline"]
