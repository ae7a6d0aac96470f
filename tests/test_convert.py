"""Converters: a checkpoint of another implementation, mapped into mav's network, computes what the original does.
The originals are built here with random weights from their own libraries (the test extra), never downloaded."""

from __future__ import annotations

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
