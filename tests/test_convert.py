"""Converters: a checkpoint of another implementation, mapped into mav's network, computes what the original does.
The originals are built here with random weights from their own libraries (the test extra), never downloaded."""

from __future__ import annotations

import dataclasses

import open_clip
import pytest
import torch

from mav.conditioning import from_prior_space, to_prior_space
from mav.config import ClipConfig
from mav.convert.clip_text import text_cfg, text_tensors
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

    code = ("import sys, mav.cli, mav.pipeline, mav.convert.clip_text, mav.convert.prior, mav.train.stages; "
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

    with pytest.raises(ModelError, match="learned_range"):
        diffusion_config({"_class_name": "UnCLIPScheduler", "variance_type": "learned_range"})
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
