"""Typed, frozen configs for every component and their JSON round trip (the named presets: `mav.presets`).

A model folder (DESIGN §3) holds `model_index.json` (a `ModelIndex`) and one sub-folder per component, each
with `config.json` (one of the component configs below) and `model.safetensors`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from mav.errors import ModelError

FORMAT_VERSION = 1

# The cascade, in the order the pipeline runs it (paper Eq. 1).
COMPONENTS = ("clip", "prior", "decoder", "interpolator", "sr_low", "sr_high")


@dataclass(frozen=True)
class DiffusionConfig:
    """How a denoiser was trained: noise schedule, number of steps and what the network predicts."""

    schedule: str = "cosine"  # cosine | linear
    timesteps: int = 1000
    prediction: str = "v"  # eps | v | x0
    # Clamp x̂0 to ±clip_x0 at every sampling step; None: the stage's own default (±1 for pixels, none for the
    # prior). unCLIP's prior, which diffuses standardised embeddings, clips at 5.
    clip_x0: float | None = None
    # The reverse step's variance: fixed (the sampler's own) | learned_range (the network's second half of channels
    # v ∈ [−1, 1] interpolates log σ² between the posterior's log σ̃² and log β: Nichol & Dhariwal 2021, Eq. 15;
    # unCLIP's decoder). Guidance then mixes the first half only and keeps the conditional v.
    variance: str = "fixed"

    def __post_init__(self) -> None:
        if self.clip_x0 is not None and not self.clip_x0 > 0:
            raise ValueError(f"clip_x0 must be > 0 or null, got {self.clip_x0}")
        if self.schedule not in ("cosine", "linear"):
            raise ValueError(f"schedule must be cosine or linear, got {self.schedule!r}")
        if self.prediction not in ("eps", "v", "x0"):
            raise ValueError(f"prediction must be eps, v or x0, got {self.prediction!r}")
        if self.variance not in ("fixed", "learned_range"):
            raise ValueError(f"variance must be fixed or learned_range, got {self.variance!r}")
        if self.timesteps < 2:
            raise ValueError(f"timesteps must be ≥ 2, got {self.timesteps}")


@dataclass(frozen=True)
class ClipConfig:
    """A CLIP model: either a custom open_clip config (trained by mav) or a standard name + pretrained tag."""

    kind: ClassVar[str] = "clip"
    model_cfg: dict[str, Any] | None = None  # open_clip.CLIP(**model_cfg); weights in model.safetensors
    name: str | None = None  # e.g. "ViT-B-32"; weights from open_clip's pretrained tag, no safetensors here
    pretrained: str | None = None  # e.g. "laion2b_s34b_b79k"
    # How the text side is read, for models imported from other tools (defaults: open_clip's and mav's own): the
    # id that pads a prompt after its end-of-text token (unCLIP's tokenizer pads with end-of-text itself), and
    # whether the pooled text and the image embeddings are L2-normalised (unCLIP reads the raw projections).
    text_pad_id: int = 0
    normalize_text: bool = True
    normalize_image: bool = True  # L2-normalise the image embedding (unCLIP's decoder reads it raw)

    def __post_init__(self) -> None:
        if (self.model_cfg is None) == (self.name is None):
            raise ValueError("a CLIP config names either model_cfg or name (+ pretrained), not both or neither")

    @property
    def has_weights_file(self) -> bool:
        return self.model_cfg is not None

    @property
    def embed_dim(self) -> int:
        if self.model_cfg is not None:
            return int(self.model_cfg["embed_dim"])
        import open_clip

        return int(open_clip.get_model_config(self.name)["embed_dim"])

    @property
    def text_width(self) -> int:
        if self.model_cfg is not None:
            return int(self.model_cfg["text_cfg"]["width"])
        import open_clip

        return int(open_clip.get_model_config(self.name)["text_cfg"]["width"])

    @property
    def context_length(self) -> int:
        cfg = self.model_cfg if self.model_cfg is not None else _open_clip_cfg(self.name)
        return int(cfg["text_cfg"].get("context_length", 77))

    @property
    def image_size(self) -> int:
        cfg = self.model_cfg if self.model_cfg is not None else _open_clip_cfg(self.name)
        size = cfg["vision_cfg"]["image_size"]
        return int(size if isinstance(size, int) else size[0])


def _open_clip_cfg(name: str | None) -> dict[str, Any]:
    import open_clip

    cfg = open_clip.get_model_config(name)
    if cfg is None:
        raise ModelError(f"open_clip has no model named {name!r}")
    return cfg


@dataclass(frozen=True)
class PriorConfig:
    """The diffusion prior P: CLIP text tokens + pooled text embedding → CLIP image embedding."""

    kind: ClassVar[str] = "prior"
    embed_dim: int = 32  # CLIP joint embedding width (input and output)
    text_dim: int = 64  # width of CLIP's per-token text states
    text_tokens: int = 16  # CLIP context length
    width: int = 128
    layers: int = 2
    heads: int = 4
    # Options an imported prior needs (defaults: mav's own). Karlo's / unCLIP's prior projects the text states
    # without a LayerNorm, attends causally, has q/k/v biases, and diffuses CLIP image embeddings standardised by
    # per-dimension statistics it carries (`clip_mean`, `clip_std`) instead of unit vectors scaled by √D.
    text_norm: bool = True
    causal: bool = False
    qkv_bias: bool = False
    embedding_stats: bool = False
    diffusion: DiffusionConfig = field(default_factory=lambda: DiffusionConfig(prediction="x0"))


@dataclass(frozen=True)
class UNetConfig:
    """The SpaceTime UNet used for D^t, ↑F, SR^t_l and (temporal=False) SR_h."""

    kind: ClassVar[str] = "unet"
    in_channels: int = 3  # the noisy video
    cond_channels: int = 0  # extra input channels: 4 for ↑F (masked RGB + mask), 3 for SR (upsampled input)
    out_channels: int = 3
    widths: tuple[int, ...] = (32, 64)  # channels per resolution level
    blocks_per_level: int = 1
    attention_levels: tuple[int, ...] = (1,)  # indices into widths that get (pseudo-3D) attention
    heads: int = 4
    temporal: bool = True  # False: no temporal layers at all (SR_h)
    image_embed_dim: int = 0  # CLIP image embedding conditioning; 0 = none
    image_tokens: int = 4  # extra context tokens projected from the image embedding
    text_dim: int = 0  # width of CLIP text token states for cross-attention; 0 = none
    fps_cond: bool = False  # embed fps like the timestep (its last layer starts at zero: no effect at first)
    # With fps_cond: the fps embedding also scales and shifts the input of every temporal attention (zero-initialised),
    # so the temporal layers D^t trains on video can read the frame rate without moving the frozen image layers.
    fps_temporal: bool = False
    # With fps_cond and an image embedding: the fps is dropped whenever the embedding is (classifier-free dropout in
    # training) and left out of the unconditional branch when sampling, so guidance amplifies the speed it asks for.
    fps_guidance: bool = False
    sample_size: int = 32  # output resolution (square)
    low_res_size: int = 0  # SR models: the resolution of their input video; 0 otherwise
    num_frames: int = 8  # frames per window it was trained on
    # SR models: diffuse the residual x − (upsampled input) instead of x, so the network models only the detail
    # that bicubic upsampling misses (much faster to learn than reproducing the whole frame from the input).
    # ↑F with mask_fill "blend": diffuse x − (the blend of the given frames), so the network models only how the
    # in-between frames differ from the blend (its baseline), where one object moves instead of two fading.
    residual: bool = False
    # Residual SR: the residual is diffused divided by this (≈ its std over the training data), so the network
    # sees a unit-variance target; the true residual of the shapes world has std ≈ 0.06 (32→64) and 0.04 (64→128).
    residual_scale: float = 1.0
    # SR noise-conditioning augmentation (Imagen, Saharia et al. 2022, §2.5): training adds Gaussian noise of
    # std s ~ U[0, max) to the low-resolution input and gives s to the network as a condition; sampling uses the
    # fixed level `noise_aug`. The residual stays relative to the clean input, so the target never holds the noise.
    noise_aug_max: float = 0.0
    noise_aug: float = 0.0
    # How the network is built, for models imported from other tools (unCLIP / Karlo, `mav.convert.unet`); each
    # default is mav's own design.
    norm_groups: int = 0  # GroupNorm groups; 0: up to 32 groups of at least 4 channels
    head_dim: int = 0  # > 0: each attention has width // head_dim heads (instead of `heads` everywhere)
    time_conditioning: str = "scale_shift"  # ResBlocks: scale_shift (norm·(1+s)+b) | add (to the features, then norm)
    resample: str = "conv"  # conv (strided conv down, nearest + conv up) | resblock (a ResBlock that pools / repeats)
    attention: str = "transformer"  # transformer (self, cross, MLP; LayerNorm) | joint (GroupNorm, one attention
    #                                 over the context tokens and the frame's own)
    context_dim: int = 0  # width of the context tokens; 0: the embedding width 4·widths[0]
    null_token: bool = True  # a learned token always present in the context
    text_norm: str = "before"  # the text states' LayerNorm: before their projection | after it
    image_embed_mlp: bool = True  # image embedding → time embedding by a 2-layer MLP; False: one Linear
    pooled_text_dim: int = 0  # > 0: a Linear of the pooled text embedding is added to the time embedding
    learned_null_image: bool = False  # the unconditional image embedding is a learned vector, not zeros
    # SR models: how the input is upsampled to the output size for the extra channels: bicubic (then clamped to
    # [−1, 1]) | antialias (torch's antialiased bicubic, not clamped: unCLIP's)
    cond_upsample: str = "bicubic"
    # ↑F: what its masked-RGB input channels hold at the frames it is not given: zeros (the paper's zero padding) |
    # blend (the linear blend of the nearest given frames: the same information, already in place at every frame,
    # so the network refines the blend instead of first carrying the given frames across time)
    mask_fill: str = "zeros"
    # Video models: the share ρ of each frame's noise variance that all frames of a clip share, in training and
    # sampling alike (the mixed noise model of Ge et al. 2023, "Preserve Your Own Correlation"). With independent
    # frames the image layers place the object anew in every frame at the top of the schedule, and the temporal
    # layers must pull the frames together; with shared noise they start from one placement. 0: independent.
    frame_noise_correlation: float = 0.0
    # A second network of the same shape denoises the last sampling step (unCLIP's super_res_last); its tensors are
    # the `last_step.` ones of the same weights file. Training trains the first network only.
    last_step_denoiser: bool = False
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)

    def __post_init__(self) -> None:
        if any(i < 0 or i >= len(self.widths) for i in self.attention_levels):
            raise ValueError(f"attention_levels {self.attention_levels} out of range for widths {self.widths}")
        if self.residual and not (self.low_res_size or self.mask_fill == "blend"):
            raise ValueError("residual=True is for SR models (low_res_size > 0) and ↑F with mask_fill='blend'")
        if not self.residual_scale > 0:
            raise ValueError(f"residual_scale must be > 0, got {self.residual_scale}")
        if self.noise_aug_max < 0 or not 0 <= self.noise_aug <= max(self.noise_aug_max, 0.0):
            raise ValueError(f"noise_aug must lie in [0, noise_aug_max]; got noise_aug={self.noise_aug}, "
                             f"noise_aug_max={self.noise_aug_max}")
        if self.noise_aug_max and not self.low_res_size:
            raise ValueError("noise augmentation is for SR models (low_res_size > 0)")
        if not 0.0 <= self.frame_noise_correlation < 1.0:
            raise ValueError(f"frame_noise_correlation must be in [0, 1), got {self.frame_noise_correlation}")
        if self.frame_noise_correlation and not self.temporal:
            raise ValueError("frame_noise_correlation is for video models (temporal=True)")
        if self.fps_temporal and not (self.fps_cond and self.temporal):
            raise ValueError("fps_temporal needs fps_cond=True and temporal=True")
        if self.fps_guidance and not (self.fps_cond and self.image_embed_dim):
            raise ValueError("fps_guidance needs fps_cond=True and an image embedding (image_embed_dim > 0)")
        for name, allowed in (("time_conditioning", ("scale_shift", "add")), ("resample", ("conv", "resblock")),
                              ("attention", ("transformer", "joint")), ("text_norm", ("before", "after")),
                              ("cond_upsample", ("bicubic", "antialias")), ("mask_fill", ("zeros", "blend"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.head_dim < 0 or self.norm_groups < 0 or self.context_dim < 0 or self.pooled_text_dim < 0:
            raise ValueError("head_dim, norm_groups, context_dim and pooled_text_dim must be ≥ 0")
        if self.head_dim and any(w % self.head_dim for i, w in enumerate(self.widths) if i in self.attention_levels):
            raise ValueError(f"head_dim {self.head_dim} does not divide the attention widths")
        if self.learned_null_image and not self.image_embed_dim:
            raise ValueError("learned_null_image needs image_embed_dim > 0")
        if self.diffusion.variance == "learned_range" and self.out_channels != 2 * self.in_channels:
            raise ValueError("a learned-range variance needs out_channels = 2 × in_channels")
        if self.last_step_denoiser and not self.low_res_size:
            raise ValueError("last_step_denoiser is for SR models (low_res_size > 0)")
        if self.diffusion.variance == "learned_range" and self.residual:
            raise ValueError("a residual model samples with the fixed variance; learned_range is for the decoder")

    def heads_at(self, width: int) -> int:
        """Attention heads at a level of this width."""
        return width // self.head_dim if self.head_dim else self.heads

    @property
    def aug_cond(self) -> bool:
        """Whether the network takes the SR noise-augmentation level as a condition."""
        return self.noise_aug_max > 0


CONFIG_CLASSES: dict[str, type] = {
    "clip": ClipConfig,
    "prior": PriorConfig,
    "decoder": UNetConfig,
    "interpolator": UNetConfig,
    "sr_low": UNetConfig,
    "sr_high": UNetConfig,
}

ComponentConfig = ClipConfig | PriorConfig | UNetConfig


def config_to_dict(config: ComponentConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def config_from_dict(component: str, data: dict[str, Any]) -> ComponentConfig:
    """Rebuild a component config from its JSON form; unknown or missing keys are a ModelError."""
    cls = CONFIG_CLASSES[component]
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ModelError(f"{component}/config.json has unknown keys: {', '.join(unknown)}")
    values = dict(data)
    for f in dataclasses.fields(cls):
        if f.name not in values:
            continue
        if f.name == "diffusion":
            values[f.name] = DiffusionConfig(**values[f.name])
        elif isinstance(values[f.name], list):
            values[f.name] = tuple(values[f.name])
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:
        raise ModelError(f"{component}/config.json is invalid: {err}") from None


@dataclass(frozen=True)
class Defaults:
    """Generation defaults stored in model_index.json; every one can be overridden per call."""

    num_frames: int = 8  # base frames from D^t
    fps: float = 8.0  # fps of the base frames
    interpolation_factor: int = 4  # ↑F frame skip k: F → (F−1)·k+1 frames
    sampler: str = "ddim"
    steps: dict[str, int] = field(default_factory=lambda: {"prior": 25, "decoder": 25, "interpolator": 20,
                                                           "sr_low": 15, "sr_high": 10})
    guidance: dict[str, float] = field(default_factory=lambda: {"prior": 2.0, "decoder": 3.0, "interpolator": 1.0,
                                                                "sr_low": 1.0, "sr_high": 1.0})


@dataclass(frozen=True)
class ModelIndex:
    """The contents of model_index.json."""

    components: tuple[str, ...] = COMPONENTS
    defaults: Defaults = field(default_factory=Defaults)
    name: str = ""
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelIndex:
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ModelError(f"model_index.json has format_version {version!r}; this mav reads {FORMAT_VERSION}")
        unknown = [c for c in data.get("components", []) if c not in COMPONENTS]
        if unknown:
            raise ModelError(f"model_index.json names unknown components: {', '.join(unknown)}")
        try:
            defaults = Defaults(**data.get("defaults", {}))
        except TypeError as err:
            raise ModelError(f"model_index.json has bad defaults: {err}") from None
        return cls(components=tuple(data["components"]), defaults=defaults, name=data.get("name", ""),
                   format_version=version)
