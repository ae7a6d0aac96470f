"""ClipModel on a tiny custom open_clip config: tokenizer, text and image encoders, loading, errors."""

from __future__ import annotations

import time

import open_clip
import pytest
import torch
import torch.nn.functional as F

from mav.config import ClipConfig
from mav.errors import ModelError
from mav.models.clip import ClipModel
from mav.presets import tiny_clip_cfg

SOT, EOT = 49406, 49407


@pytest.fixture(scope="module")
def clip() -> ClipModel:
    torch.manual_seed(0)
    return ClipModel(ClipConfig(model_cfg=tiny_clip_cfg())).eval()


def test_properties(clip):
    assert (clip.embed_dim, clip.text_width, clip.context_length, clip.image_size) == (32, 32, 16, 32)
    assert clip.config.model_cfg == tiny_clip_cfg()


def test_tokenize_pads_and_truncates(clip):
    ids = clip.tokenize(["a red circle", "", "word " * 40])
    assert ids.shape == (3, 16) and ids.dtype == torch.long
    assert ids[:, 0].tolist() == [SOT] * 3
    assert ids[0, 4] == EOT and (ids[0, 5:] == 0).all()
    assert ids[1, :2].tolist() == [SOT, EOT] and (ids[1, 2:] == 0).all()
    assert ids[2, -1] == EOT and (ids[2] != 0).all()  # cut to fit, still ends with EOT
    assert torch.equal(clip.tokenize("a red circle"), ids[:1])


def test_encode_text(clip):
    ids = clip.tokenize(["a red circle!", "", "a blue square on a green background"])
    with torch.no_grad():
        tokens, pooled, mask = clip.encode_text(ids)
        reference = F.normalize(clip.model.encode_text(ids), dim=-1)
    assert tokens.shape == (3, 16, 32) and pooled.shape == (3, 32) and mask.shape == (3, 16)
    assert mask.dtype == torch.bool
    torch.testing.assert_close(pooled, reference, rtol=0, atol=1e-6)
    torch.testing.assert_close(pooled.norm(dim=-1), torch.ones(3))
    # [SOT] a red circle ! [EOT] = 6 real tokens; "" = [SOT][EOT]
    assert mask.sum(dim=1).tolist() == [6, 2, int((ids[2] != 0).sum())]
    assert mask[0, :6].all() and not mask[0, 6:].any()
    assert (pooled[0] - pooled[2]).abs().max() > 1e-3
    assert torch.isfinite(tokens).all()


def test_token_mask_keeps_id_zero_inside_the_text():
    ids = torch.tensor([[SOT, 5, 0, 7, EOT, 0, 0, 0]])  # id 0 is the BPE token "!"
    assert ClipModel.token_mask(ids).tolist() == [[True] * 5 + [False] * 3]


def test_encode_image_any_size(clip):
    torch.manual_seed(1)
    images = torch.rand(2, 3, 24, 40) * 2 - 1  # non-square, smaller than image_size
    with torch.no_grad():
        embed = clip.encode_image(images)
        big = clip.encode_image(torch.rand(1, 3, 80, 64) * 2 - 1)
    assert embed.shape == (2, 32) and big.shape == (1, 32)
    torch.testing.assert_close(embed.norm(dim=-1), torch.ones(2))
    assert (embed[0] - embed[1]).abs().max() > 1e-3
    assert clip.preprocess(images).shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match="b 3 h w"):
        clip.encode_image(torch.zeros(1, 1, 32, 32))


def test_state_dict_and_meta_load(clip):
    """The hub builds on the meta device and loads with assign=True: the causal mask must come back."""
    state = clip.state_dict()
    assert all(k.startswith("model.") for k in state)
    assert "model.attn_mask" not in state
    with torch.device("meta"):
        empty = ClipModel(ClipConfig(model_cfg=tiny_clip_cfg()))
    empty.load_state_dict(state, assign=True, strict=True)
    ids = clip.tokenize(["a yellow triangle", "purple"])
    with torch.no_grad():
        for a, b in zip(clip.encode_text(ids), empty.eval().encode_text(ids)):
            assert torch.equal(a, b)


def test_contrastive_loss_trains(clip):
    torch.manual_seed(0)
    model = ClipModel(ClipConfig(model_cfg=tiny_clip_cfg()))
    images = torch.rand(4, 3, 32, 32) * 2 - 1
    ids = model.tokenize(["red", "green", "blue", "black"])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        loss = model(images, ids)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1, losses
    reference = open_clip.loss.ClipLoss()(model.encode_image(images), model.encode_text(ids)[1],
                                          model.model.logit_scale.exp())
    torch.testing.assert_close(model.contrastive_loss(images, ids), reference)


@pytest.mark.parametrize("config, match", [
    (ClipConfig(name="no-such-model", pretrained="x"), "no model named 'no-such-model'"),
    (ClipConfig(name="ViT-B-32", pretrained="no-such-tag"), "no pretrained tag 'no-such-tag'.*laion2b_s34b_b79k"),
    (ClipConfig(name="ViT-B-32"), "needs a pretrained tag for ViT-B-32; choose one of: openai"),
    (ClipConfig(model_cfg=tiny_clip_cfg()), "own model_cfg"),
])
def test_from_pretrained_errors(config, match, tmp_path):
    with pytest.raises(ModelError, match=match):
        ClipModel.from_pretrained(config, cache_dir=tmp_path, offline=True)


def test_from_pretrained_offline_miss_is_fast(tmp_path):
    start = time.perf_counter()
    with pytest.raises(ModelError, match="not in the local Hugging Face cache.*offline"):
        ClipModel.from_pretrained(ClipConfig(name="ViT-B-32", pretrained="laion2b_s34b_b79k"), cache_dir=tmp_path,
                                  offline=True)
    assert time.perf_counter() - start < 5


def test_from_pretrained_reads_the_hub_cache(tmp_path, monkeypatch, clip):
    """A pretrained tag resolved offline from a Hugging Face cache laid out as the hub writes it."""
    from safetensors.torch import save_file

    name, sha = "mav-test-tiny", "0" * 40
    monkeypatch.setitem(open_clip.factory._MODEL_CONFIGS, name, tiny_clip_cfg())
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, name,
                        {"acme": open_clip.pretrained._pcfg(hf_hub="acme/tiny-clip/")})
    repo = tmp_path / "models--acme--tiny-clip"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(sha)
    (repo / "snapshots" / sha).mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in clip.model.state_dict().items()},
              str(repo / "snapshots" / sha / "open_clip_model.safetensors"))

    loaded = ClipModel.from_pretrained(ClipConfig(name=name, pretrained="acme"), cache_dir=tmp_path, offline=True)
    assert not loaded.training and loaded.config.name == name
    ids = clip.tokenize(["an orange circle"])
    images = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_text(ids)[1], clip.encode_text(ids)[1])
        torch.testing.assert_close(loaded.encode_image(images), clip.encode_image(images))
