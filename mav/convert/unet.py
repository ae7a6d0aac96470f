"""diffusers' unCLIP UNets (Karlo's decoder and super-resolution) → mav's SpaceTime UNet, inflated to pseudo-3D.

The decoder is a `UNet2DConditionModel` (ResnetDownsampleBlock2D / SimpleCrossAttnDownBlock2D levels, the
mirrored up blocks, UNetMidBlock2DSimpleCrossAttn) together with the `UnCLIPTextProjModel` that turns the CLIP image
embedding and the pooled text into time-embedding terms and extra context tokens. The SR UNets are
`UNet2DModel`s with ResNet levels only. mav's UNet expresses both with the options of `UNetConfig` that default
to mav's own design (`resample="resblock"`, `attention="joint"`, `time_conditioning`, `head_dim`, …).

Inflation: the converted spatial tensors are loaded into a pseudo-3D UNet whose temporal layers keep their own
initialisation (Dirac temporal convolutions, zero-output temporal attention, zero fps embedding), so at import
the video model is the image model frame by frame. Configurations mav cannot express are refused by name.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import Tensor

from mav.config import DiffusionConfig, UNetConfig
from mav.errors import ModelError

_DOWN = {"ResnetDownsampleBlock2D": False, "SimpleCrossAttnDownBlock2D": True}  # block type → has attention
_UP = {"ResnetUpsampleBlock2D": False, "SimpleCrossAttnUpBlock2D": True}
_MID = {"UNetMidBlock2DSimpleCrossAttn": True, "UNetMidBlock2D": False}
# what mav's UNet assumes of a diffusers UNet config: field → the values it may have (a missing field has the
# first one, diffusers' default)
_REQUIRED: dict[str, tuple] = {
    "act_fn": ("silu",), "center_input_sample": (False,), "flip_sin_to_cos": (True,), "freq_shift": (0,),
    "norm_eps": (1e-5,), "time_embedding_type": ("positional",), "dual_cross_attention": (False,),
    "only_cross_attention": (False,), "mid_block_scale_factor": (1, 1.0), "resnet_skip_time_act": (False,),
    "resnet_out_scale_factor": (1.0, 1), "conv_in_kernel": (3,), "conv_out_kernel": (3,),
    "time_embedding_act_fn": (None,), "timestep_post_act": (None,), "time_cond_proj_dim": (None,),
    "addition_embed_type": (None,), "encoder_hid_dim": (None,), "class_embeddings_concat": (False,),
    "cross_attention_norm": (None,), "num_class_embeds": (None,), "time_embedding_dim": (None,),
}
_RESNET = {"norm1": "norm1", "conv1": "conv1.spatial", "time_emb_proj": "emb_proj", "norm2": "norm2",
           "conv2": "conv2.spatial", "conv_shortcut": "skip"}
# the text projection model's tensors → mav's (the context tokens' rows are reordered, see `unet_tensors`)
_TEXT_PROJ = {"embedding_proj": "pooled_proj", "clip_image_embeddings_project_to_time_embeddings": "image_embed_proj.0",
              "encoder_hidden_states_proj": "text_proj.0", "text_encoder_hidden_states_norm": "text_proj.1"}


def _check_fields(config: Mapping[str, Any], what: str) -> None:
    for key, allowed in _REQUIRED.items():
        value = config.get(key, allowed[0])
        if value not in allowed:
            raise ModelError(f"{what} config {key}={value!r}: mav's UNet supports only {allowed[0]!r}")


def _levels(config: Mapping[str, Any], what: str) -> tuple[tuple[int, ...], tuple[int, ...], bool]:
    """(widths, attention levels, mid attention) of a diffusers UNet config, checked for what mav can build."""
    widths = tuple(int(w) for w in config["block_out_channels"])
    down, up = list(config["down_block_types"]), list(config["up_block_types"])
    if len(down) != len(widths) or len(up) != len(widths):
        raise ModelError(f"{what} config: {len(widths)} block_out_channels but {len(down)} down and {len(up)} up "
                         "block types")
    for kind in down + up:
        if kind not in _DOWN and kind not in _UP:
            raise ModelError(f"{what} config: block type {kind} is not supported; mav maps "
                             f"{', '.join([*_DOWN, *_UP])}")
    attention = tuple(i for i, kind in enumerate(down) if _DOWN.get(kind))
    mirrored = tuple(len(up) - 1 - i for i, kind in enumerate(up) if _UP.get(kind))
    if sorted(mirrored) != list(attention) or any(k not in _DOWN for k in down) or any(k not in _UP for k in up):
        # (a down type among the up blocks, or the reverse, is also a mismatch)
        raise ModelError(f"{what} config: the up blocks {up} do not mirror the down blocks {down}")
    mid = config.get("mid_block_type", "UNetMidBlock2D")
    if mid not in _MID:
        raise ModelError(f"{what} config: mid_block_type {mid} is not supported; mav maps {', '.join(_MID)}")
    # UNet2DModel's UNetMidBlock2D has an attention unless add_attention is False
    has_mid_attention = bool(config.get("add_attention", True)) if mid == "UNetMidBlock2D" else _MID[mid]
    if has_mid_attention != bool(attention):
        raise ModelError(f"{what} config: mav's UNet has a mid-block attention exactly when its levels have "
                         f"attention; this one has {mid} (attention: {has_mid_attention}) and levels {attention}")
    return widths, attention, has_mid_attention


def _head_dim(config: Mapping[str, Any], what: str) -> int:
    value = config.get("attention_head_dim", 8)
    values = set(value) if isinstance(value, (list, tuple)) else {value}
    if len(values) != 1 or config.get("num_attention_heads") is not None:
        raise ModelError(f"{what} config: attention_head_dim {value!r} (num_attention_heads "
                         f"{config.get('num_attention_heads')!r}): mav needs one head width for every level")
    return int(values.pop())


def decoder_config(unet: Mapping[str, Any], text_proj: Mapping[str, Any], diffusion: DiffusionConfig, *,
                   num_frames: int = 8) -> UNetConfig:
    """Karlo's decoder (`UNet2DConditionModel` + `UnCLIPTextProjModel` configs) → an inflated D^t config:
    pseudo-3D, fps-conditioned (the fps embedding starts at zero), with unCLIP's conditioning."""
    what = "the decoder's"
    _check_fields(unet, what)
    try:
        widths, attention, _ = _levels(unet, what)
        if unet.get("class_embed_type") != "identity":
            raise ModelError(f"{what} config class_embed_type={unet.get('class_embed_type')!r}: an unCLIP decoder "
                             "takes its CLIP terms as class_embed_type 'identity'")
        emb_dim = 4 * widths[0]
        if int(text_proj["time_embed_dim"]) != emb_dim:
            raise ModelError(f"the text projection's time_embed_dim {text_proj['time_embed_dim']} is not the "
                             f"decoder's 4 × {widths[0]}")
        if int(text_proj["cross_attention_dim"]) != int(unet["cross_attention_dim"]):
            raise ModelError("the text projection's cross_attention_dim differs from the decoder's")
        clip_dim = int(text_proj.get("clip_embeddings_dim", 768))
        in_channels, out_channels = int(unet.get("in_channels", 4)), int(unet.get("out_channels", 4))
        time_shift = unet.get("resnet_time_scale_shift", "default")
        if time_shift not in ("default", "scale_shift"):
            raise ModelError(f"{what} config resnet_time_scale_shift={time_shift!r} is not supported")
        return UNetConfig(
            in_channels=in_channels, out_channels=out_channels, widths=widths,
            blocks_per_level=int(unet.get("layers_per_block", 2)), attention_levels=attention,
            head_dim=_head_dim(unet, what), norm_groups=int(unet.get("norm_num_groups", 32)),
            time_conditioning="scale_shift" if time_shift == "scale_shift" else "add", resample="resblock",
            attention="joint", context_dim=int(unet["cross_attention_dim"]), null_token=False, text_norm="after",
            image_embed_mlp=False, image_embed_dim=clip_dim,
            image_tokens=int(text_proj.get("clip_extra_context_tokens", 4)),
            text_dim=clip_dim, pooled_text_dim=clip_dim, learned_null_image=True, fps_cond=True, fps_temporal=True,
            temporal=True, sample_size=int(unet.get("sample_size", 64)), num_frames=num_frames, diffusion=diffusion)
    except (KeyError, TypeError, ValueError) as err:
        raise ModelError(f"{what} config.json lacks or mangles {err}") from None


def super_res_config(unet: Mapping[str, Any], diffusion: DiffusionConfig, *, low_res_size: int,
                     temporal: bool = True, num_frames: int = 8, last_step: bool = False) -> UNetConfig:
    """Karlo's super-resolution (`UNet2DModel`, the upsampled frame as extra input channels) → an SR config,
    pseudo-3D when `temporal` (SR^t_l), with unCLIP's antialiased, unclamped bicubic conditioning; `last_step`:
    a second network of the same config for the final step (Karlo's super_res_last)."""
    what = "the super-resolution UNet's"
    _check_fields(unet, what)
    try:
        widths, attention, _ = _levels(unet, what)
        if attention:
            raise ModelError(f"{what} config has attention levels {attention}; mav maps unCLIP's ResNet-only SR")
        if unet.get("class_embed_type") is not None:
            raise ModelError(f"{what} config class_embed_type={unet['class_embed_type']!r} is not supported")
        in_channels, out_channels = int(unet.get("in_channels", 3)), int(unet.get("out_channels", 3))
        if in_channels != 2 * out_channels:
            raise ModelError(f"{what} config: in_channels {in_channels} is not the noisy image plus its upsampled "
                             f"input ({2 * out_channels})")
        time_shift = unet.get("resnet_time_scale_shift", "default")
        if time_shift not in ("default", "scale_shift"):
            raise ModelError(f"{what} config resnet_time_scale_shift={time_shift!r} is not supported")
        return UNetConfig(
            in_channels=out_channels, cond_channels=in_channels - out_channels, out_channels=out_channels,
            widths=widths, blocks_per_level=int(unet.get("layers_per_block", 2)), attention_levels=(),
            norm_groups=int(unet.get("norm_num_groups", 32)),
            time_conditioning="scale_shift" if time_shift == "scale_shift" else "add", resample="resblock",
            temporal=temporal, fps_cond=temporal, fps_temporal=False, sample_size=int(unet["sample_size"]),
            low_res_size=low_res_size, cond_upsample="antialias", num_frames=num_frames, diffusion=diffusion,
            last_step_denoiser=last_step)
    except (KeyError, TypeError, ValueError) as err:
        raise ModelError(f"{what} config.json lacks or mangles {err}") from None


def _block_names(config: UNetConfig) -> Iterator[tuple[str, str]]:
    """(diffusers prefix, mav prefix) of every ResNet (`res`) and attention (`attn`) in the order both build them."""
    levels = len(config.widths)
    k = 0
    for level in range(levels):
        for j in range(config.blocks_per_level):
            yield f"down_blocks.{level}.resnets.{j}", f"down.{k}.res"
            if level in config.attention_levels:
                yield f"down_blocks.{level}.attentions.{j}", f"down.{k}.attn"
            k += 1
        if level < levels - 1:
            yield f"down_blocks.{level}.downsamplers.0", f"down.{k}"
            k += 1
    yield "mid_block.resnets.0", "mid.0.res"
    if config.attention_levels:
        yield "mid_block.attentions.0", "mid.0.attn"
    yield "mid_block.resnets.1", "mid.1.res"
    k = 0
    for i, level in enumerate(reversed(range(levels))):
        for j in range(config.blocks_per_level + 1):
            yield f"up_blocks.{i}.resnets.{j}", f"up.{k}.res"
            if level in config.attention_levels:
                yield f"up_blocks.{i}.attentions.{j}", f"up.{k}.attn"
            k += 1
        if level > 0:
            yield f"up_blocks.{i}.upsamplers.0", f"up.{k}"
            k += 1


class _Reader:
    """Takes tensors out of a state dict by name, so that what is left over can be reported."""

    def __init__(self, state: Mapping[str, Tensor], what: str) -> None:
        self.state, self.what, self.used = state, what, set()

    def has(self, name: str) -> bool:
        return name in self.state

    def take(self, name: str) -> Tensor:
        if name not in self.state:
            raise ModelError(f"{self.what} weights have no {name}")
        self.used.add(name)
        return self.state[name]

    def check_all_used(self) -> None:
        extra = sorted(set(self.state) - self.used)
        if extra:
            raise ModelError(f"{self.what} weights hold tensors mav does not map: {', '.join(extra[:5])}")


def unet_tensors(config: UNetConfig, state: Mapping[str, Tensor],
                 text_proj: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
    """A diffusers UNet's tensors (and, for the decoder, its text projection model's) → mav SpaceTimeUNet tensors
    of its spatial layers. Every tensor is used; a missing one is a ModelError naming it, and so is one mav has
    no place for. The temporal layers are not in the result: they keep their initialisation (the inflation)."""
    unet = _Reader(state, "the UNet's")
    out: dict[str, Tensor] = {}
    for kind in ("weight", "bias"):
        for a, b in (("time_embedding.linear_1", "time_embed.mlp.0"), ("time_embedding.linear_2", "time_embed.mlp.2"),
                     ("conv_in", "conv_in"), ("conv_norm_out", "norm_out"), ("conv_out", "conv_out")):
            out[f"{b}.{kind}"] = unet.take(f"{a}.{kind}")
        for src, dst in _block_names(config):
            if ".attentions." in src:
                out[f"{dst}.norm_joint.{kind}"] = unet.take(f"{src}.group_norm.{kind}")
                out[f"{dst}.joint_attn.to_qkv.{kind}"] = torch.cat([unet.take(f"{src}.to_{p}.{kind}") for p in "qkv"])
                out[f"{dst}.joint_attn.to_context_kv.{kind}"] = torch.cat(
                    [unet.take(f"{src}.add_{p}_proj.{kind}") for p in "kv"])
                out[f"{dst}.joint_attn.to_out.{kind}"] = unet.take(f"{src}.to_out.0.{kind}")
                continue
            for a, b in _RESNET.items():
                if a == "conv_shortcut" and not unet.has(f"{src}.{a}.{kind}"):
                    continue
                out[f"{dst}.{b}.{kind}"] = unet.take(f"{src}.{a}.{kind}")
    unet.check_all_used()
    if text_proj is not None:
        proj = _Reader(text_proj, "the text projection's")
        out["null_image"] = proj.take("learned_classifier_free_guidance_embeddings")
        for kind in ("weight", "bias"):
            for a, b in _TEXT_PROJ.items():
                out[f"{b}.{kind}"] = proj.take(f"{a}.{kind}")
            # diffusers reads the extra tokens' projection as (b, d, m) and permutes it to (b, m, d); mav reads
            # (b, m, d) directly, so the rows are reordered from d·m + i to i·d + j
            rows = proj.take(f"clip_extra_context_tokens_proj.{kind}")
            tokens, width = config.image_tokens, config.context_dim
            out[f"image_to_tokens.{kind}"] = (rows.reshape(width, tokens, *rows.shape[1:]).transpose(0, 1)
                                              .reshape(rows.shape).contiguous())
        proj.check_all_used()
    return out


def super_res_tensors(config: UNetConfig, first: Mapping[str, Tensor],
                      last: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
    """Karlo's SR tensors → mav's: super_res_first as the SR network, super_res_last (when the config has a
    last-step network) under `last_step.`. The two must have the same config (Karlo's have)."""
    if config.last_step_denoiser != (last is not None):
        raise ModelError("the SR config and the weights disagree on a last-step network (super_res_last)")
    out = unet_tensors(config, first)
    if last is not None:
        out.update({f"last_step.{k}": v for k, v in unet_tensors(config, last).items()})
    return out


__all__ = ["decoder_config", "super_res_config", "super_res_tensors", "unet_tensors"]
