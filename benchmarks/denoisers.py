"""The denoisers under test: mav's SpaceTimeUNet at three sizes, and diffusers' UNet3DConditionModel configured
alike, with one set of inputs both accept.

Sizes (`--config`):
  tiny    the tiny preset's decoder (16², widths 16 32)
  shapes  the default model's decoder (preset "shapes": 32², widths 32 64 96, attention at 16² and 8²)
  large   a benchmark-only config of ≈ 75 M parameters (32², widths 128 256 384, two blocks per level)
  large-wide  large at widths 160 320 480 (≈ 117 M parameters): mav with at least as many parameters as
          diffusers' UNet3DConditionModel has at `large` (≈ 110 M), for the head-to-head at equal or larger size

Every size runs as its decoder config with the CLIP image-embedding and fps conditioning turned off (two small MLPs
on one row per clip: nothing to time) and text cross-attention on, so that both models see the same context:
`CONTEXT_TOKENS` tokens of width `text_dim`. mav projects them to its context width 4·widths[0] and prepends a
learned null token; diffusers attends to them as given.

The diffusers mapping (`diffusers_unet`): block_out_channels = widths, layers_per_block = blocks_per_level,
CrossAttnDownBlock3D at the attention levels and DownBlock3D elsewhere (up blocks mirrored), cross_attention_dim =
text_dim, `heads` heads in every attention of every block (see `set_heads`), sample_size, in/out channels.
GroupNorm: diffusers takes one group count for the whole net, so it gets the largest of 32, 16, … dividing every
width; mav picks groups per width (≥ 4 channels per group). Architectural differences remain, and they are what
the comparison measures: diffusers adds a temporal transformer after conv_in, a stack of four (3, 1, 1) Conv3d
with GroupNorm after every ResNet, and runs temporal attention as a full transformer block (two attentions and a
feed-forward); mav has one temporal Conv1d per convolution and one temporal attention per attention block.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from types import ModuleType

import torch
from torch import Tensor, nn

from benchmarks.harness import autocast, note
from mav.config import UNetConfig
from mav.models.unet import SpaceTimeUNet
from mav.presets import preset

CONTEXT_TOKENS = 16  # the presets' CLIP context length

LARGE = UNetConfig(widths=(128, 256, 384), blocks_per_level=2, attention_levels=(1, 2), heads=8, text_dim=512,
                   sample_size=32, num_frames=16)
LARGE_WIDE = dataclasses.replace(LARGE, widths=(160, 320, 480))

DIFFUSERS_MISSING = ("diffusers is not importable: `pip install -e '.[bench]'` to compare against "
                     "UNet3DConditionModel; timing mav alone")


def bench_config(name: str) -> UNetConfig:
    """The UNet config benchmarked as size `name` (see the module docstring)."""
    decoder = {"large": LARGE, "large-wide": LARGE_WIDE}.get(name) or preset(name).components["decoder"]
    return dataclasses.replace(decoder, image_embed_dim=0, fps_cond=False, fps_temporal=False, cond_channels=0,
                               text_dim=decoder.text_dim or 64)


def mav_unet(config: UNetConfig, seed: int = 0) -> SpaceTimeUNet:
    torch.manual_seed(seed)
    return SpaceTimeUNet(config).eval()


def step_inputs(config: UNetConfig, frames: int, size: int | None = None, batch: int = 1,
                seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """A noisy clip `b c f h w`, timesteps `(b,)` and text context `(b, CONTEXT_TOKENS, text_dim)`."""
    generator = torch.Generator().manual_seed(seed)
    size = size or config.sample_size
    x = torch.randn(batch, config.in_channels, frames, size, size, generator=generator)
    t = torch.randint(0, config.diffusion.timesteps, (batch,), generator=generator)
    context = torch.randn(batch, CONTEXT_TOKENS, config.text_dim, generator=generator)
    return x, t, context


def mav_step(model: nn.Module, x: Tensor, t: Tensor, context: Tensor) -> Tensor:
    return model(x, t, text_tokens=context)


def load_diffusers() -> ModuleType | None:
    """diffusers if it can be imported (the `bench` extra), else None; never imported at module load."""
    try:
        import diffusers
    except ImportError:
        return None
    return diffusers


def shared_groups(widths: tuple[int, ...]) -> int:
    return next(g for g in (32, 16, 8, 4, 2, 1) if all(w % g == 0 for w in widths))


def diffusers_unet(config: UNetConfig, seed: int = 0) -> nn.Module:
    """UNet3DConditionModel with mav's widths, blocks per level, attention levels, heads and context width."""
    from diffusers import UNet3DConditionModel

    down = tuple("CrossAttnDownBlock3D" if level in config.attention_levels else "DownBlock3D"
                 for level in range(len(config.widths)))
    up = tuple(kind.replace("Down", "Up") for kind in reversed(down))
    torch.manual_seed(seed)
    model = UNet3DConditionModel(
        sample_size=config.sample_size, in_channels=config.in_channels, out_channels=config.out_channels,
        down_block_types=down, up_block_types=up, block_out_channels=config.widths,
        layers_per_block=config.blocks_per_level, norm_num_groups=shared_groups(config.widths),
        cross_attention_dim=config.text_dim, attention_head_dim=max(1, config.widths[0] // 8),
    )
    set_heads(model, config.heads)
    return model.eval()


def set_heads(model: nn.Module, heads: int) -> None:
    """Give every attention in the down, mid and up blocks `heads` heads, as mav has at every level.

    UNet3DConditionModel's constructor cannot: inside its blocks `attention_head_dim` acts as the width of a head
    (a block of width w gets w / attention_head_dim heads), one number for all levels, and the same argument also
    sets the width of transformer_in (8 · attention_head_dim; here widths[0], the input width). The head count
    only reshapes q, k and v (AttnProcessor2_0 reads `attn.heads` on every call), so parameters and FLOPs stay
    as built.
    """
    from diffusers.models.attention_processor import Attention

    for blocks in (model.down_blocks, model.mid_block, model.up_blocks):
        for module in blocks.modules():
            if isinstance(module, Attention):
                module.heads = heads


def diffusers_step(model: nn.Module, x: Tensor, t: Tensor, context: Tensor) -> Tensor:
    return model(x, t, encoder_hidden_states=context, return_dict=False)[0]


def wants_diffusers(disabled: bool, doing: str = "timing") -> bool:
    """Whether to run the diffusers baseline: not `disabled` and importable (else a note says so)."""
    if disabled:
        return False
    if load_diffusers() is None:
        note(DIFFUSERS_MISSING.replace("timing", doing))
        return False
    return True


def contenders(config: UNetConfig, with_diffusers: bool) -> dict[str, tuple[nn.Module, Callable[..., Tensor]]]:
    """The models compared at one size, by label: mav's UNet, and diffusers' configured alike if wanted."""
    models = {"mav": (mav_unet(config), mav_step)}
    if with_diffusers:
        models["diffusers"] = (diffusers_unet(config), diffusers_step)
    return models


def stepper(model: nn.Module, step: Callable[..., Tensor], inputs: tuple[Tensor, ...],
            dtype: str) -> Callable[[], None]:
    """One inference step of `model` on `inputs` in `dtype`, as a no-argument callable for the timers."""
    def run() -> None:
        with torch.inference_mode(), autocast(dtype):
            step(model, *inputs)

    return run


def count_flops(step: Callable[..., Tensor], *args: object) -> int:
    """FLOPs of one call, as torch.utils.flop_counter counts them: matmuls, convolutions and attention (2 per
    multiply-add); norms, activations and element-wise ops are not counted."""
    from torch.utils.flop_counter import FlopCounterMode

    register_cpu_attention_flops()
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        step(*args)
    return counter.get_total_flops()


def register_cpu_attention_flops() -> None:
    """FlopCounterMode knows the CUDA attention kernels but not the CPU one that F.scaled_dot_product_attention
    dispatches to here; count it with the same formula (4·b·h·l·m·d), or attention would count as free."""
    from torch.utils.flop_counter import flop_registry, register_flop_formula, sdpa_flop_count

    op = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    if op in flop_registry:
        return

    @register_flop_formula(op)
    def _cpu_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(query_shape, key_shape, value_shape)
