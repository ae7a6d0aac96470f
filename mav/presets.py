"""The named presets: a complete set of component configs plus generation defaults, for `mav init DIR --preset NAME`."""

from __future__ import annotations

from dataclasses import dataclass

from mav.config import ClipConfig, ComponentConfig, Defaults, PriorConfig, UNetConfig


@dataclass(frozen=True)
class Preset:
    components: dict[str, ComponentConfig]
    defaults: Defaults


def tiny_clip_cfg(embed_dim: int = 32, width: int = 32, image_size: int = 32, context_length: int = 16,
                  patch_size: int = 8) -> dict:
    return {
        "embed_dim": embed_dim,
        "vision_cfg": {"image_size": image_size, "layers": 2, "width": width, "patch_size": patch_size,
                       "head_width": 16},
        "text_cfg": {"context_length": context_length, "vocab_size": 49408, "width": width, "heads": 2,
                     "layers": 2},
    }


# ↑F of mav's own presets: the blend of the given frames in its input and the residual from it diffused, scaled
# to about unit variance (0.11 is the std of clip − blend on the hidden frames of shapes-world clips, keys 4 apart).
# The tiny preset keeps the paper's zero padding, so that both forms stay tested.
INTERPOLATOR_RESIDUAL = dict(mask_fill="blend", residual=True, residual_scale=0.12)


def _tiny() -> Preset:
    clip = ClipConfig(model_cfg=tiny_clip_cfg())
    embed, text_w, ctx = 32, 32, 16
    base = dict(widths=(16, 32), blocks_per_level=1, attention_levels=(1,), heads=2)
    return Preset(
        components={
            "clip": clip,
            "prior": PriorConfig(embed_dim=embed, text_dim=text_w, text_tokens=ctx, width=32, layers=2, heads=2),
            "decoder": UNetConfig(**base, image_embed_dim=embed, image_tokens=2, text_dim=text_w, fps_cond=True,
                                  fps_temporal=True, sample_size=16, num_frames=4),
            "interpolator": UNetConfig(**base, cond_channels=4, image_embed_dim=embed, image_tokens=2,
                                       text_dim=text_w, fps_cond=True, fps_temporal=True, sample_size=16,
                                       num_frames=8),
            "sr_low": UNetConfig(**base, cond_channels=3, fps_cond=True, sample_size=32, low_res_size=16,
                                 residual=True, residual_scale=0.08, noise_aug_max=0.1, noise_aug=0.02,
                                 num_frames=8),
            "sr_high": UNetConfig(widths=(16, 32), blocks_per_level=1, attention_levels=(), heads=2,
                                  cond_channels=3, temporal=False, sample_size=64, low_res_size=32, residual=True,
                                  residual_scale=0.06, noise_aug_max=0.1, noise_aug=0.02, num_frames=1),
        },
        defaults=Defaults(num_frames=4, fps=4.0, interpolation_factor=2,
                          steps={"prior": 4, "decoder": 4, "interpolator": 3, "sr_low": 2, "sr_high": 2}),
    )


def _small() -> Preset:
    """A CPU-trainable size: 8 frames at 32², ↑F ×4 → 29 frames, SR 32 → 64 → 128."""
    embed, text_w, ctx = 64, 64, 16
    return Preset(
        components={
            "clip": ClipConfig(model_cfg=tiny_clip_cfg(embed_dim=embed, width=text_w, image_size=32,
                                                       context_length=ctx)),
            "prior": PriorConfig(embed_dim=embed, text_dim=text_w, text_tokens=ctx, width=192, layers=4, heads=4),
            "decoder": UNetConfig(widths=(64, 128, 192), blocks_per_level=2, attention_levels=(1, 2), heads=4,
                                  image_embed_dim=embed, image_tokens=4, text_dim=text_w, fps_cond=True,
                                  fps_temporal=True, sample_size=32, num_frames=8),
            "interpolator": UNetConfig(widths=(64, 128, 192), blocks_per_level=2, attention_levels=(1, 2), heads=4,
                                       cond_channels=4, image_embed_dim=embed, image_tokens=4, text_dim=text_w,
                                       fps_cond=True, fps_temporal=True, sample_size=32, num_frames=9,
                                       **INTERPOLATOR_RESIDUAL),
            "sr_low": UNetConfig(widths=(32, 64, 128), blocks_per_level=1, attention_levels=(2,), heads=4,
                                 cond_channels=3, fps_cond=True, sample_size=64, low_res_size=32, residual=True,
                                 residual_scale=0.08, noise_aug_max=0.1, noise_aug=0.02, num_frames=8),
            "sr_high": UNetConfig(widths=(32, 64, 96), blocks_per_level=1, attention_levels=(), heads=4,
                                  cond_channels=3, temporal=False, sample_size=128, low_res_size=64, residual=True,
                                  residual_scale=0.06, noise_aug_max=0.1, noise_aug=0.02, num_frames=1),
        },
        defaults=Defaults(num_frames=8, fps=7.5, interpolation_factor=4),
    )


def _shapes() -> Preset:
    """The embedded default: sized to train on a 2-core CPU in about an hour and a half (see README).

    8 base frames at 32², ↑F ×4 → 29 frames at 30 fps, SR^t_l 32 → 64, SR_h 64 → 128.
    """
    embed, text_w, ctx = 64, 64, 16
    base = dict(widths=(32, 64, 96), blocks_per_level=1, attention_levels=(1, 2), heads=4, image_embed_dim=embed,
                image_tokens=2, text_dim=text_w, fps_cond=True, fps_temporal=True, sample_size=32)
    return Preset(
        components={
            # patch 4: 8×8 patches of a 32² image, fine enough to tell a circle from a square (patch 8 was not)
            "clip": ClipConfig(model_cfg=tiny_clip_cfg(embed_dim=embed, width=text_w, image_size=32,
                                                       context_length=ctx, patch_size=4)),
            "prior": PriorConfig(embed_dim=embed, text_dim=text_w, text_tokens=ctx, width=128, layers=3, heads=4),
            # the frames of a clip share half their noise (PYoCo's mixed model; TRAINING.md §8)
            "decoder": UNetConfig(**base, num_frames=8, frame_noise_correlation=0.5),
            # ↑F diffuses how the in-between frames differ from the blend of the given ones (TRAINING.md §4)
            "interpolator": UNetConfig(**base, cond_channels=4, num_frames=9, **INTERPOLATOR_RESIDUAL),
            "sr_low": UNetConfig(widths=(24, 48), blocks_per_level=1, attention_levels=(), heads=4, cond_channels=3,
                                 fps_cond=True, sample_size=64, low_res_size=32, residual=True, residual_scale=0.08,
                                 noise_aug_max=0.1, noise_aug=0.02, num_frames=8),
            "sr_high": UNetConfig(widths=(16, 32), blocks_per_level=1, attention_levels=(), heads=2,
                                  cond_channels=3, temporal=False, sample_size=128, low_res_size=64, residual=True,
                                  residual_scale=0.06, noise_aug_max=0.1, noise_aug=0.02, num_frames=1),
        },
        defaults=Defaults(num_frames=8, fps=7.5, interpolation_factor=4,
                          steps={"prior": 20, "decoder": 25, "interpolator": 10, "sr_low": 8, "sr_high": 6},
                          guidance={"prior": 2.0, "decoder": 3.0, "interpolator": 1.0, "sr_low": 1.0,
                                    "sr_high": 1.0}),
    )


PRESETS = {"tiny": _tiny, "small": _small, "shapes": _shapes}


def preset(name: str) -> Preset:
    from mav.errors import UsageError

    if name not in PRESETS:
        raise UsageError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name]()
