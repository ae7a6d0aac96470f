"""The cascade's stage objects and the UNet inputs that training and sampling share."""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil

import pytest
import torch

import mav
from mav.cascade.decoder import Decoder
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


def test_a_model_that_guides_on_fps_drops_it_with_the_embedding():
    """Training's classifier-free dropout (keep) drops the fps too, and D^t's unconditional side has none."""
    config = UNetConfig(image_embed_dim=4, text_dim=8, fps_cond=True, fps_guidance=True)
    keep = torch.tensor([True, False])
    assert unet_inputs(config, 2, embed=torch.randn(2, 4), fps=7.5, keep=keep)["fps_keep"] is keep
    assert "fps_keep" not in unet_inputs(dataclasses.replace(config, fps_guidance=False), 2, fps=7.5, keep=keep)


def test_the_decoder_leaves_the_fps_out_of_its_unconditional_side_only_when_it_guides_on_fps(pipe):
    embed = torch.randn(2, pipe.decoder.config.image_embed_dim)
    cond, uncond = pipe.decoder.conditions(embed, None, None, 7.5)
    assert "fps_keep" not in cond and "fps_keep" not in uncond  # a model trained without it samples as before
    model = copy.deepcopy(pipe.decoder.model)
    model.config = dataclasses.replace(model.config, fps_guidance=True)
    cond, uncond = Decoder(model, pipe.runtime).conditions(embed, None, None, 7.5)
    assert cond["fps_keep"].all() and not uncond["fps_keep"].any()
    assert torch.equal(cond["fps"], uncond["fps"])


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


def test_unet_config_checks_the_interpolator_residual():
    with pytest.raises(ValueError, match="mask_fill"):
        UNetConfig(cond_channels=4, residual=True)  # a residual from zeros means nothing: it needs the blend
    with pytest.raises(ValueError, match="mask_fill"):
        UNetConfig(cond_channels=4, mask_fill="nearest")
    assert UNetConfig(cond_channels=4, residual=True, mask_fill="blend").residual


def test_unet_config_checks_the_frame_noise_correlation():
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        UNetConfig(frame_noise_correlation=1.0)  # every frame the same noise: nothing left to tell frames apart
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        UNetConfig(frame_noise_correlation=-0.1)
    with pytest.raises(ValueError, match="video models"):
        UNetConfig(temporal=False, frame_noise_correlation=0.5)
    assert UNetConfig(frame_noise_correlation=0.5).frame_noise_correlation == 0.5


def test_residual_interpolator_samples_the_difference_from_the_blend(tiny_model, tmp_path, monkeypatch):
    """A residual ↑F diffuses how the frames it makes differ from the blend of the given ones: with a network whose
    x̂0 is always a zero residual, fill() returns exactly the blend, window by window, and keeps the given frames."""
    from mav.conditioning import blend_known_frames

    folder = tmp_path / "m"
    shutil.copytree(tiny_model, folder)
    path = folder / "interpolator" / "config.json"
    path.write_text(json.dumps(dict(json.loads(path.read_text()), mask_fill="blend", residual=True,
                                    residual_scale=0.1)))
    inter = mav.load_pipeline(folder, device="cpu").interpolator
    schedule = inter.schedule

    def zero_residual(x_t, t, **kwargs):
        rgb, given = kwargs["cond"][:, :3], kwargs["cond"][:, 3, :, 0, 0] > 0
        torch.testing.assert_close(rgb, blend_known_frames(rgb, given))  # the network is shown the blend
        sigma = schedule.sqrt_one_minus_alphas_cumprod[t.cpu()].float().view(-1, 1, 1, 1, 1)
        return schedule.target(torch.zeros_like(x_t), x_t / sigma, t.cpu())

    monkeypatch.setattr(inter.model, "forward", zero_residual)
    g = torch.Generator().manual_seed(0)
    video = torch.rand(1, 3, 9, 16, 16, generator=g) * 2 - 1
    known = torch.zeros(9, dtype=torch.bool)
    known[::4] = True
    out = inter.fill(video, known, fps=8.0, embed=None, text=None, gens=[g], steps=3, guidance=1.0)
    torch.testing.assert_close(out, blend_known_frames(video, known[None]), atol=1e-5, rtol=0)
    assert torch.equal(out[:, :, known], video[:, :, known])
