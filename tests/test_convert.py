"""Converters: a checkpoint of another implementation, mapped into mav's network, computes what the original does.
The originals are built here with random weights from their own libraries (the test extra), never downloaded."""

from __future__ import annotations

import dataclasses

import open_clip
import pytest
import torch

from mav.conditioning import from_prior_space, to_prior_space
from mav.config import ClipConfig
from mav.convert.clip import text_cfg, text_tensors
from mav.errors import ModelError
from mav.models.clip import ClipModel

transformers = pytest.importorskip("transformers")

HF_TEXT = dict(vocab_size=120, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
               max_position_embeddings=16, projection_dim=24, hidden_act="quick_gelu", layer_norm_eps=1e-5,
               bos_token_id=0, eos_token_id=2, pad_token_id=1)


def test_clip_text_encoder_from_transformers_matches_it():
    torch.manual_seed(0)
    hf = transformers.CLIPTextModelWithProjection(transformers.CLIPTextConfig(**HF_TEXT)).eval()
    cfg, embed_dim, quick_gelu = text_cfg(HF_TEXT)
    vision = {"image_size": 16, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16}
    model_cfg = {"embed_dim": embed_dim, "vision_cfg": vision, "text_cfg": cfg, "quick_gelu": quick_gelu}
    clip = ClipModel(ClipConfig(model_cfg=model_cfg)).eval()
    missing, unexpected = clip.model.load_state_dict(text_tensors(hf.state_dict(), cfg["layers"]), strict=False)
    assert not unexpected and all(k.startswith("visual.") or k == "logit_scale" for k in missing), missing
    # [SOT] text [EOT] then padding; the end-of-text id is the largest, as in CLIP's vocabulary
    ids = torch.randint(3, HF_TEXT["vocab_size"] - 1, (3, HF_TEXT["max_position_embeddings"]))
    for row, end in enumerate((5, 9, 15)):
        ids[row, end] = HF_TEXT["vocab_size"] - 1
        ids[row, end + 1:] = 0
    with torch.no_grad():
        want = hf(input_ids=ids)
        tokens, pooled, _ = clip.encode_text(ids)
    torch.testing.assert_close(tokens, want.last_hidden_state, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pooled, torch.nn.functional.normalize(want.text_embeds, dim=-1), atol=1e-5, rtol=1e-5)
    assert isinstance(clip.model, open_clip.CLIP)


def test_clip_text_converter_names_what_it_cannot_map():
    hf = transformers.CLIPTextModelWithProjection(transformers.CLIPTextConfig(**HF_TEXT))
    state = dict(hf.state_dict())
    del state["text_model.encoder.layers.1.mlp.fc2.bias"]
    with pytest.raises(ModelError, match=r"layers\.1\.mlp\.fc2\.bias"):
        text_tensors(state, 2)
    state = dict(hf.state_dict(), **{"text_model.extra.weight": torch.zeros(1)})
    with pytest.raises(ModelError, match=r"text_model\.extra\.weight"):
        text_tensors(state, 2)
    with pytest.raises(ModelError, match="activation 'relu'"):
        text_cfg(dict(HF_TEXT, hidden_act="relu"))


DIFFUSERS_PRIOR = dict(num_attention_heads=2, attention_head_dim=8, num_layers=2, embedding_dim=12,
                       num_embeddings=5, additional_embeddings=4)


def test_prior_from_diffusers_matches_it():
    diffusers = pytest.importorskip("diffusers")
    from mav.convert.prior import prior_config, prior_tensors
    from mav.models.prior import DiffusionPrior

    torch.manual_seed(0)
    reference = diffusers.PriorTransformer(**DIFFUSERS_PRIOR).eval()
    with torch.no_grad():  # diffusers starts its positions, query and statistics at zero: make them count
        for p in reference.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    config = prior_config(dict(reference.config))
    prior = DiffusionPrior(config).eval()
    prior.load_state_dict(prior_tensors(reference.state_dict(), config.layers), strict=True)
    b, d, length = 3, DIFFUSERS_PRIOR["embedding_dim"], DIFFUSERS_PRIOR["num_embeddings"]
    x, embed, states = torch.randn(b, d), torch.randn(b, d), torch.randn(b, length, d)
    t = torch.tensor([0, 411, 999])
    mask = torch.ones(b, length, dtype=torch.bool)
    mask[1, 3:], mask[2, 1:] = False, False
    with torch.no_grad():
        want = reference(x, t, proj_embedding=embed, encoder_hidden_states=states,
                         attention_mask=mask).predicted_image_embedding
        got = prior(x, t, text_tokens=states, text_embed=embed, text_mask=mask)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(from_prior_space(to_prior_space(embed, prior.stats), prior.stats), embed)


def test_prior_converter_refuses_what_it_cannot_express():
    from mav.convert.prior import prior_config

    with pytest.raises(ModelError, match="norm_in_type='layer'"):
        prior_config(dict(DIFFUSERS_PRIOR, norm_in_type="layer"))
    with pytest.raises(ModelError, match="time_embed_dim=7"):
        prior_config(dict(DIFFUSERS_PRIOR, time_embed_dim=7))


def test_mav_never_imports_the_reference_libraries():
    import subprocess
    import sys

    code = ("import sys, mav.cli, mav.pipeline, mav.convert.clip, mav.convert.prior, mav.convert.unet, "
            "mav.convert.unclip, mav.train.stages; "
            "print(sorted(m for m in ('transformers', 'diffusers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_prior_sampling_reproduces_diffusers_unclip_loop():
    """P's sampling call on a converted prior, with the converted scheduler, against the loop of diffusers'
    UnCLIPPipeline (classifier-free guidance, UnCLIPScheduler steps, post-processing) on the same noise."""
    diffusers = pytest.importorskip("diffusers")
    from mav.cascade import Prior, Runtime
    from mav.conditioning import Text
    from mav.convert.prior import prior_config, prior_tensors
    from mav.convert.schedule import diffusion_config
    from mav.models.prior import DiffusionPrior

    torch.manual_seed(0)
    reference = diffusers.PriorTransformer(**DIFFUSERS_PRIOR).eval()
    with torch.no_grad():
        for p in reference.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    scheduler = diffusers.UnCLIPScheduler(variance_type="fixed_small_log", prediction_type="sample",
                                          clip_sample=True, clip_sample_range=5.0)
    diffusion, sampler = diffusion_config(dict(scheduler.config, _class_name="UnCLIPScheduler"))
    config = dataclasses.replace(prior_config(dict(reference.config)), diffusion=diffusion)
    model = DiffusionPrior(config).eval()
    model.load_state_dict(prior_tensors(reference.state_dict(), config.layers))
    d, length, steps, scale = DIFFUSERS_PRIOR["embedding_dim"], DIFFUSERS_PRIOR["num_embeddings"], 6, 4.0
    text = Text(torch.randn(1, length, d), torch.randn(1, d), torch.tensor([[True, True, True, False, False]]))
    negative = Text(torch.randn(1, length, d), torch.randn(1, d), torch.tensor([[True, True, False, False, False]]))

    # diffusers' loop, its schedule in float64 as mav's is: in float32, 1 − ᾱ₀ (β₀ ≈ 4e-5) keeps only 4 digits,
    # which scales its last x̂0 by ≈ 1.0005 — rounding in the reference, not a different method
    scheduler.betas = scheduler.betas.double()
    scheduler.alphas = 1.0 - scheduler.betas
    scheduler.alphas_cumprod = torch.cumprod(scheduler.alphas, dim=0)
    scheduler.one = scheduler.one.double()
    generator = torch.Generator().manual_seed(7)
    latents = torch.randn((1, d), generator=generator).double()
    scheduler.set_timesteps(steps)
    with torch.no_grad():
        for i, t in enumerate(scheduler.timesteps):
            out = reference(torch.cat([latents.float()] * 2), timestep=t,
                            proj_embedding=torch.cat([negative.pooled, text.pooled]),
                            encoder_hidden_states=torch.cat([negative.tokens, text.tokens]),
                            attention_mask=torch.cat([negative.mask, text.mask])).predicted_image_embedding
            uncond, cond = out.double().chunk(2)
            prev = None if i + 1 == steps else scheduler.timesteps[i + 1]
            latents = scheduler.step(uncond + scale * (cond - uncond), timestep=t, sample=latents,
                                     prev_timestep=prev, generator=generator).prev_sample
        want = reference.post_process_latents(latents.float())
    runtime = Runtime(device=torch.device("cpu"), sampler=sampler)
    got = Prior(model, runtime).sample(text, negative, [torch.Generator().manual_seed(7)], steps=steps,
                                      guidance=scale)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_scheduler_converter_refuses_what_mav_cannot_sample():
    from mav.convert.schedule import diffusion_config

    with pytest.raises(ModelError, match="fixed_large"):
        diffusion_config({"_class_name": "UnCLIPScheduler", "variance_type": "fixed_large"})
    with pytest.raises(ModelError, match="beta_schedule 'linear'"):
        diffusion_config({"beta_schedule": "linear"})


def test_clip_reads_text_as_unclip_does():
    """unCLIP pads prompts with the end-of-text token and feeds the prior the raw (unnormalised) projection:
    `text_pad_id` and `normalize_text` make mav's C_x produce exactly those ids and states."""
    torch.manual_seed(0)
    hf = transformers.CLIPTextModelWithProjection(transformers.CLIPTextConfig(**dict(
        HF_TEXT, vocab_size=49408, max_position_embeddings=77, eos_token_id=2))).eval()
    cfg, embed_dim, quick_gelu = text_cfg(dict(HF_TEXT, vocab_size=49408, max_position_embeddings=77))
    vision = {"image_size": 16, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16}
    eot = 49407
    config = ClipConfig(model_cfg={"embed_dim": embed_dim, "vision_cfg": vision, "text_cfg": cfg,
                                   "quick_gelu": quick_gelu}, text_pad_id=eot, normalize_text=False)
    clip = ClipModel(config).eval()
    clip.model.load_state_dict(text_tensors(hf.state_dict(), cfg["layers"]), strict=False)
    ids = clip.tokenize(["a red circle", "a large blue square on a green background"])
    first_eot = (ids == eot).int().argmax(dim=1)
    assert all(bool((row[int(e):] == eot).all()) for row, e in zip(ids, first_eot))
    with torch.no_grad():
        tokens, pooled, mask = clip.encode_text(ids)
        want = hf(input_ids=ids)
    torch.testing.assert_close(pooled, want.text_embeds, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(tokens, want.last_hidden_state, atol=1e-5, rtol=1e-5)
    assert mask.sum(1).tolist() == (first_eot + 1).tolist()


# Karlo's decoder and SR at toy widths: the same block types and options, two levels
DIFFUSERS_DECODER = dict(sample_size=16, layers_per_block=2, block_out_channels=(32, 64), in_channels=3,
                         out_channels=6, down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
                         up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
                         mid_block_type="UNetMidBlock2DSimpleCrossAttn", cross_attention_dim=24,
                         class_embed_type="identity", attention_head_dim=16, resnet_time_scale_shift="scale_shift",
                         norm_num_groups=8)
DIFFUSERS_TEXT_PROJ = dict(clip_extra_context_tokens=3, clip_embeddings_dim=12, time_embed_dim=128,
                           cross_attention_dim=24)
DIFFUSERS_SR = dict(sample_size=32, layers_per_block=2, block_out_channels=(32, 64), in_channels=6, out_channels=3,
                    down_block_types=("ResnetDownsampleBlock2D",) * 2, up_block_types=("ResnetUpsampleBlock2D",) * 2,
                    add_attention=False, norm_num_groups=8)


def _randomised(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every parameter random (diffusers starts some at zero, which would hide a wrong mapping)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    return module.eval()


def _karlo_decoder(diffusers):
    unet = _randomised(diffusers.UNet2DConditionModel(**DIFFUSERS_DECODER), 0)
    proj = _randomised(diffusers.pipelines.deprecated.unclip.UnCLIPTextProjModel(**DIFFUSERS_TEXT_PROJ), 1)
    return unet, proj


def _decoder_inputs(b: int = 2, length: int = 7):
    torch.manual_seed(2)
    d = DIFFUSERS_TEXT_PROJ["clip_embeddings_dim"]
    mask = torch.ones(b, length, dtype=torch.bool)
    mask[0, 4:] = False
    return torch.randn(b, d), torch.randn(b, d), torch.randn(b, length, d), mask


def _reference_decoder(unet, proj, x, t, image, pooled, states, mask):
    """diffusers' UnCLIPPipeline decoder call (text projection, extended mask) on images b c h w."""
    context, extra = proj(image_embeddings=image, prompt_embeds=pooled, text_encoder_hidden_states=states,
                          do_classifier_free_guidance=False)
    mask = torch.nn.functional.pad(mask, (proj.clip_extra_context_tokens, 0), value=True)
    return unet(x, t, encoder_hidden_states=context, class_labels=extra, attention_mask=mask).sample


def _mav_decoder(unet, proj, frames: int = 3):
    from mav.config import DiffusionConfig
    from mav.convert.unet import decoder_config, unet_tensors
    from mav.models.unet import SpaceTimeUNet, is_temporal_parameter

    config = decoder_config(dict(unet.config), dict(proj.config), DiffusionConfig(variance="learned_range",
                                                                                 prediction="eps"),
                            num_frames=frames)
    model = SpaceTimeUNet(config).eval()
    missing, unexpected = model.load_state_dict(unet_tensors(config, unet.state_dict(), proj.state_dict()),
                                                strict=False)
    assert not unexpected
    assert missing and all(is_temporal_parameter(k) or k.startswith("fps_embed.") for k in missing), missing
    return model


def test_karlo_decoder_inflated_equals_diffusers_on_every_frame():
    diffusers = pytest.importorskip("diffusers")
    unet, proj = _karlo_decoder(diffusers)
    model = _mav_decoder(unet, proj)
    image, pooled, states, mask = _decoder_inputs()
    b, f = 2, 3
    video, t = torch.randn(b, 3, f, 16, 16), torch.tensor([17, 640])
    with torch.no_grad():
        got = model(video, t, image_embed=image, text_tokens=states, text_mask=mask, text_pooled=pooled,
                    fps=torch.tensor([30.0, 7.5]))
        for frame in range(f):
            want = _reference_decoder(unet, proj, video[:, :, frame], t, image, pooled, states, mask)
            torch.testing.assert_close(got[:, :, frame], want, atol=1e-4, rtol=1e-4)
        # the unconditional side: Karlo's learned image embedding stands in for a missing one
        uncond = _reference_decoder(unet, proj, video[:, :, 0], t,
                                    proj.learned_classifier_free_guidance_embeddings.expand(b, -1), pooled, states,
                                    mask)
        torch.testing.assert_close(model(video[:, :, 0], t, text_tokens=states, text_mask=mask, text_pooled=pooled),
                                   uncond, atol=1e-4, rtol=1e-4)


def test_karlo_sr_inflated_equals_diffusers_on_every_frame():
    diffusers = pytest.importorskip("diffusers")
    from mav.conditioning import sr_cond
    from mav.config import DiffusionConfig
    from mav.convert.unet import super_res_config, unet_tensors
    from mav.models.unet import SpaceTimeUNet

    reference = _randomised(diffusers.UNet2DModel(**DIFFUSERS_SR), 3)
    config = super_res_config(dict(reference.config), DiffusionConfig(prediction="eps"), low_res_size=16)
    model = SpaceTimeUNet(config).eval()
    missing, unexpected = model.load_state_dict(unet_tensors(config, reference.state_dict()), strict=False)
    assert not unexpected and missing
    torch.manual_seed(4)
    low, x, t = torch.rand(2, 3, 3, 16, 16) * 2.4 - 1.2, torch.randn(2, 3, 3, 32, 32), torch.tensor([0, 999])
    cond = sr_cond(low, 32, config.cond_upsample)
    with torch.no_grad():
        got = model(x, t, cond=cond, fps=torch.tensor([30.0, 30.0]))
        for frame in range(3):
            # the pipeline's input: antialiased bicubic, unclamped
            up = torch.nn.functional.interpolate(low[:, :, frame], size=[32, 32], mode="bicubic",
                                                 align_corners=False, antialias=True)
            want = reference(torch.cat([x[:, :, frame], up], dim=1), t).sample
            torch.testing.assert_close(got[:, :, frame], want, atol=1e-4, rtol=1e-4)


def test_inflated_decoder_learns_motion_only_in_its_temporal_layers():
    """One optimizer step on the temporal layers alone: the image path (temporal layers skipped) still equals
    Karlo's decoder, the video path no longer does: the inflation adds real layers, not a copy."""
    diffusers = pytest.importorskip("diffusers")
    unet, proj = _karlo_decoder(diffusers)
    model = _mav_decoder(unet, proj)
    image, pooled, states, mask = _decoder_inputs()
    video, t = torch.randn(2, 3, 3, 16, 16), torch.tensor([17, 640])
    kwargs = dict(image_embed=image, text_tokens=states, text_mask=mask, text_pooled=pooled,
                  fps=torch.tensor([30.0, 7.5]))
    spatial = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD(list(model.temporal_parameters()), lr=0.1)
    model.train()
    model(video, t, **kwargs).square().mean().backward()
    optimizer.step()
    model.eval()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, spatial[k])}
    assert changed and all("temporal" in k for k in changed)
    with torch.no_grad():
        image_path = model(video, t, temporal=False, **kwargs)
        video_path = model(video, t, **kwargs)
        want = _reference_decoder(unet, proj, video[:, :, 1], t, image, pooled, states, mask)
    torch.testing.assert_close(image_path[:, :, 1], want, atol=1e-4, rtol=1e-4)
    assert (video_path[:, :, 1] - want).abs().max() > 1e-2


def _float64(scheduler):
    """The reference scheduler's ᾱ in float64, as mav's (see the prior's sampling test)."""
    scheduler.betas = scheduler.betas.double()
    scheduler.alphas = 1.0 - scheduler.betas
    scheduler.alphas_cumprod = torch.cumprod(scheduler.alphas, dim=0)
    scheduler.one = scheduler.one.double()
    return scheduler


def test_decoder_sampling_reproduces_diffusers_unclip_loop():
    """D^t's sampling call on the converted decoder (one frame), with the converted learned-range scheduler,
    against the decoder loop of diffusers' UnCLIPPipeline: guidance on eps only with the conditional variance, the
    learned unconditional image embedding, the negative prompt's states, the same noise."""
    diffusers = pytest.importorskip("diffusers")
    from mav.cascade import Decoder, Runtime
    from mav.conditioning import Text
    from mav.convert.schedule import diffusion_config

    unet, proj = _karlo_decoder(diffusers)
    scheduler = _float64(diffusers.UnCLIPScheduler(variance_type="learned_range", prediction_type="epsilon",
                                                   clip_sample=True, clip_sample_range=1.0))
    diffusion, sampler = diffusion_config(dict(scheduler.config, _class_name="UnCLIPScheduler"))
    model = _mav_decoder(unet, proj)
    model.config = dataclasses.replace(model.config, diffusion=diffusion)
    image, pooled, states, mask = _decoder_inputs(b=2)
    text, negative = Text(states[:1], pooled[:1], mask[:1]), Text(states[1:], pooled[1:], mask[1:])
    steps, scale = 5, 8.0

    generator = torch.Generator().manual_seed(11)
    latents = torch.randn((1, 3, 16, 16), generator=generator).double()
    scheduler.set_timesteps(steps)
    with torch.no_grad():
        context, extra = proj(image_embeddings=image[:1], prompt_embeds=torch.cat([negative.pooled, text.pooled]),
                              text_encoder_hidden_states=torch.cat([negative.tokens, text.tokens]),
                              do_classifier_free_guidance=True)
        attention = torch.nn.functional.pad(torch.cat([negative.mask, text.mask]), (3, 0), value=True)
        for i, t in enumerate(scheduler.timesteps):
            out = unet(torch.cat([latents.float()] * 2), t, encoder_hidden_states=context, class_labels=extra,
                       attention_mask=attention).sample.double()
            uncond, cond = out.chunk(2)
            eps = uncond[:, :3] + scale * (cond[:, :3] - uncond[:, :3])
            prev = None if i + 1 == steps else scheduler.timesteps[i + 1]
            # the network's output stays float32, so the step's noise is drawn as mav draws it (torch.randn gives
            # other numbers in float64)
            latents = scheduler.step(torch.cat([eps, cond[:, 3:]], dim=1).float(), t, latents, prev_timestep=prev,
                                     generator=generator).prev_sample
    want = latents.float().clamp(-1, 1)
    runtime = Runtime(device=torch.device("cpu"), sampler=sampler)
    got = Decoder(model, runtime).sample(image[:1], text, negative, [torch.Generator().manual_seed(11)],
                                         num_frames=1, fps=30.0, steps=steps, guidance=scale)
    torch.testing.assert_close(got[:, :, 0].clamp(-1, 1), want, atol=1e-4, rtol=1e-4)


def test_sr_sampling_reproduces_diffusers_unclip_loop_with_its_last_step_network():
    """SR^t_l's sampling call on Karlo-style super_res_first / super_res_last, against the super-resolution loop
    of diffusers' UnCLIPPipeline (antialiased bicubic input, no guidance, the last network on the final step)."""
    diffusers = pytest.importorskip("diffusers")
    from mav.cascade import Runtime, SRLow
    from mav.convert.schedule import diffusion_config
    from mav.convert.unet import super_res_config, super_res_tensors
    from mav.models.unet import SpaceTimeUNet

    first = _randomised(diffusers.UNet2DModel(**DIFFUSERS_SR), 5)
    last = _randomised(diffusers.UNet2DModel(**DIFFUSERS_SR), 6)
    scheduler = _float64(diffusers.UnCLIPScheduler(variance_type="fixed_small_log", prediction_type="epsilon",
                                                   clip_sample=True, clip_sample_range=1.0))
    diffusion, sampler = diffusion_config(dict(scheduler.config, _class_name="UnCLIPScheduler"))
    config = super_res_config(dict(first.config), diffusion, low_res_size=16, last_step=True)
    model = SpaceTimeUNet(config).eval()
    missing, unexpected = model.load_state_dict(super_res_tensors(config, first.state_dict(), last.state_dict()),
                                                strict=False)
    assert not unexpected and missing
    torch.manual_seed(8)
    small, steps = (torch.rand(1, 3, 16, 16) * 2 - 1), 4

    generator = torch.Generator().manual_seed(13)
    latents = torch.randn((1, 3, 32, 32), generator=generator).double()
    up = torch.nn.functional.interpolate(small, size=[32, 32], mode="bicubic", align_corners=False, antialias=True)
    scheduler.set_timesteps(steps)
    with torch.no_grad():
        for i, t in enumerate(scheduler.timesteps):
            unet = last if i == steps - 1 else first
            out = unet(torch.cat([latents.float(), up], dim=1), t).sample
            prev = None if i + 1 == steps else scheduler.timesteps[i + 1]
            latents = scheduler.step(out, t, latents, prev_timestep=prev, generator=generator).prev_sample
    want = latents.float().clamp(-1, 1)
    runtime = Runtime(device=torch.device("cpu"), sampler=sampler)
    got = SRLow(model, runtime).sample(small[:, :, None], [torch.Generator().manual_seed(13)], fps=30.0,
                                       steps=steps)
    torch.testing.assert_close(got[:, :, 0].clamp(-1, 1), want, atol=1e-4, rtol=1e-4)


HF_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=16,
                 patch_size=8, projection_dim=24, hidden_act="quick_gelu", layer_norm_eps=1e-5)


def test_clip_image_encoder_from_transformers_matches_it():
    from mav.convert.clip import vision_cfg, vision_tensors

    torch.manual_seed(0)
    hf = _randomised(transformers.CLIPVisionModelWithProjection(transformers.CLIPVisionConfig(**HF_VISION)), 9)
    vision, embed_dim, quick_gelu = vision_cfg(HF_VISION)
    text, _, _ = text_cfg(HF_TEXT)
    clip = ClipModel(ClipConfig(model_cfg={"embed_dim": embed_dim, "vision_cfg": vision, "text_cfg": text,
                                           "quick_gelu": quick_gelu}, normalize_image=False)).eval()
    missing, unexpected = clip.model.load_state_dict(vision_tensors(hf.state_dict(), 2), strict=False)
    assert not unexpected and not any(k.startswith("visual.") for k in missing)
    pixels = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        want = hf(pixel_values=pixels).image_embeds
        got = clip.model.encode_image(pixels)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    images = torch.rand(2, 3, 16, 16) * 2 - 1  # encode_image: mav's preprocessing, then the raw embedding
    with torch.no_grad():
        torch.testing.assert_close(clip.encode_image(images), clip.model.encode_image(clip.preprocess(images)))


def test_frame_chunks_change_memory_not_results():
    """`frame_chunk` runs the spatial layers a few frames at a time: the same output as all at once."""
    diffusers = pytest.importorskip("diffusers")
    unet, proj = _karlo_decoder(diffusers)
    model = _mav_decoder(unet, proj)
    with torch.no_grad():  # temporal layers that do something, so a chunk boundary inside them would show
        for p in model.temporal_parameters():
            p.add_(torch.randn_like(p) * 0.05)
    image, pooled, states, mask = _decoder_inputs()
    video, t = torch.randn(2, 3, 5, 16, 16), torch.tensor([17, 640])
    kwargs = dict(image_embed=image, text_tokens=states, text_mask=mask, text_pooled=pooled,
                  fps=torch.tensor([30.0, 7.5]))
    with torch.no_grad():
        whole = model(video, t, **kwargs)
        model.frame_chunk = 3  # 10 rows of (b f) in chunks of 3, 3, 3, 1
        torch.testing.assert_close(model(video, t, **kwargs), whole, atol=1e-5, rtol=1e-5)
