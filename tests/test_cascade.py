"""The cascade's stage objects and the UNet inputs that training and sampling share."""

from __future__ import annotations

import pytest
import torch

import mav
from mav.conditioning import Text, unet_inputs
from mav.config import UNetConfig


@pytest.fixture(scope="module")
def pipe(tiny_model):
    return mav.load_pipeline(tiny_model, device="cpu")


def _text(b: int) -> Text:
    return Text(torch.randn(b, 5, 8), torch.randn(b, 4), torch.ones(b, 5, dtype=torch.bool))


def test_unet_inputs_give_a_decoder_what_it_uses():
    config = UNetConfig(image_embed_dim=4, text_dim=8, fps_cond=True)
    text, embed = _text(2), torch.randn(2, 4)
    kwargs = unet_inputs(config, 2, embed=embed, text=text, fps=7.5)
    assert set(kwargs) == {"image_embed", "text_tokens", "text_mask", "fps"}
    assert kwargs["image_embed"] is embed and kwargs["text_tokens"] is text.tokens and kwargs["text_mask"] is text.mask
    assert torch.equal(kwargs["fps"], torch.tensor([7.5, 7.5]))
    rates = torch.tensor([8.0, 4.0])  # training: one rate per clip, passed through as it is
    assert unet_inputs(config, 2, embed=embed, text=text, fps=rates)["fps"] is rates
    unconditional = unet_inputs(config, 2)  # no embedding: zeros; no text, no fps: left out
    assert set(unconditional) == {"image_embed"} and torch.equal(unconditional["image_embed"], torch.zeros(2, 4))


def test_unet_inputs_leave_out_what_the_config_does_not_use():
    # an SR config: it takes the augmentation level, but no embedding, text or fps
    sr = UNetConfig(cond_channels=3, low_res_size=4, noise_aug_max=0.1)
    cond, level = torch.randn(2, 3, 1, 8, 8), torch.full((2,), 0.02)
    kwargs = unet_inputs(sr, 2, embed=torch.randn(2, 4), text=_text(2), fps=8.0, cond=cond, aug_level=level)
    assert set(kwargs) == {"cond", "aug_level"}
    assert "aug_level" not in unet_inputs(UNetConfig(cond_channels=3), 2, cond=cond, aug_level=level)


def test_pipeline_has_one_stage_object_per_component(pipe):
    assert set(pipe.stages) == {"prior", "decoder", "interpolator", "sr_low", "sr_high"}
    for name, stage in pipe.stages.items():
        assert stage.name == name and stage.model is pipe.models[name] and getattr(pipe, name) is stage
        assert stage.runtime is pipe.runtime


def test_settings_and_timings_reach_every_stage(pipe):
    pipe.configure(sampler="ddpm")
    try:
        assert all(stage.runtime.sampler == "ddpm" for stage in pipe.stages.values())
    finally:
        pipe.configure(sampler="ddim")
    pipe.timings = {}  # what `mav.eval` does between calls
    low = torch.zeros(1, 3, 2, 32, 32)
    pipe.sr_high.sample(low, [torch.Generator().manual_seed(0)], steps=1)
    assert set(pipe.timings) == {"sr_high"} and pipe.timings["sr_high"] > 0
