"""`mav import` on a tiny unCLIP model in the diffusers layout, built offline from the reference libraries with
Karlo's classes and block types; the reference is read back component by component (`Class.from_pretrained(
folder, subfolder=…)`), as current diffusers can no longer load the pipeline itself."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest
import torch

from mav import loading
from mav.cli import run
from test_convert import _randomised

diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")

WIDTH = 32  # CLIP text width = projection = the prior's embedding = the decoder's CLIP width (768 in Karlo)
TEXT = dict(vocab_size=49408, hidden_size=WIDTH, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            max_position_embeddings=77, projection_dim=WIDTH, hidden_act="quick_gelu", bos_token_id=49406,
            eos_token_id=49407, pad_token_id=49407)
VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=16,
              patch_size=8, projection_dim=WIDTH, hidden_act="quick_gelu")
PRIOR = dict(num_attention_heads=2, attention_head_dim=8, num_layers=2, embedding_dim=WIDTH, num_embeddings=77,
             additional_embeddings=4)
DECODER = dict(sample_size=16, layers_per_block=2, block_out_channels=(32, 64), in_channels=3, out_channels=6,
               down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
               up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
               mid_block_type="UNetMidBlock2DSimpleCrossAttn", cross_attention_dim=24, class_embed_type="identity",
               attention_head_dim=16, resnet_time_scale_shift="scale_shift", norm_num_groups=8)
TEXT_PROJ = dict(clip_extra_context_tokens=3, clip_embeddings_dim=WIDTH, time_embed_dim=128, cross_attention_dim=24)
SR = dict(sample_size=32, layers_per_block=2, block_out_channels=(32, 64), in_channels=6, out_channels=3,
          down_block_types=("ResnetDownsampleBlock2D",) * 2, up_block_types=("ResnetUpsampleBlock2D",) * 2,
          add_attention=False, norm_num_groups=8)


def _tokenizer(folder: Path):
    """Karlo's CLIPTokenizer, built offline from the BPE vocabulary open_clip ships (pads with end-of-text)."""
    from open_clip.tokenizer import SimpleTokenizer, default_bpe

    simple = SimpleTokenizer()
    merges = gzip.open(default_bpe()).read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
    # open_clip names the two special tokens <start_of_text> and <end_of_text>; OpenAI's vocabulary, Karlo's
    names = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
    vocab = {names.get(token, token): i for token, i in simple.encoder.items()}
    tokenizer = transformers.CLIPTokenizer(vocab=vocab, merges=[tuple(m.split()) for m in merges],
                                           pad_token="<|endoftext|>")
    tokenizer.save_pretrained(folder)
    return tokenizer


@pytest.fixture(scope="module")
def karlo(tmp_path_factory):
    """A tiny Karlo: (folder, image-variations folder)."""
    root = tmp_path_factory.mktemp("karlo")
    folder, variations = root / "karlo-tiny", root / "karlo-tiny-image-variations"
    unclip = diffusers.pipelines.deprecated.unclip
    parts = {
        "text_encoder": _randomised(
            transformers.CLIPTextModelWithProjection(transformers.CLIPTextConfig(**TEXT)), 0),
        "prior": _randomised(diffusers.PriorTransformer(**PRIOR), 1),
        "decoder": _randomised(diffusers.UNet2DConditionModel(**DECODER), 2),
        "text_proj": _randomised(unclip.UnCLIPTextProjModel(**TEXT_PROJ), 3),
        "super_res_first": _randomised(diffusers.UNet2DModel(**SR), 4),
        "super_res_last": _randomised(diffusers.UNet2DModel(**SR), 5),
        "prior_scheduler": diffusers.UnCLIPScheduler(variance_type="fixed_small_log", prediction_type="sample",
                                                     clip_sample_range=5.0),
        "decoder_scheduler": diffusers.UnCLIPScheduler(variance_type="learned_range"),
        "super_res_scheduler": diffusers.UnCLIPScheduler(variance_type="fixed_small_log"),
    }
    for name, part in parts.items():
        part.save_pretrained(folder / name)
    _tokenizer(folder / "tokenizer")
    libraries = {"text_encoder": "transformers", "tokenizer": "transformers", "text_proj": "unclip"}
    index = {"_class_name": "UnCLIPPipeline", "_diffusers_version": "0.14.0"}
    for name in [*parts, "tokenizer"]:
        kind = "CLIPTokenizer" if name == "tokenizer" else type(parts[name]).__name__
        index[name] = [libraries.get(name, "diffusers"), kind]
    (folder / "model_index.json").write_text(json.dumps(index))
    (folder / "README.md").write_text("---\nlicense: creativeml-openrail-m\n---\n# tiny karlo\n")
    image = _randomised(transformers.CLIPVisionModelWithProjection(transformers.CLIPVisionConfig(**VISION)), 6)
    image.save_pretrained(variations / "image_encoder")
    return folder, variations


@pytest.fixture(scope="module")
def imported(karlo, tmp_path_factory):
    folder, variations = karlo
    out = tmp_path_factory.mktemp("mav") / "karlo-video"
    assert run(["import", str(folder), "-o", str(out), "--image-encoder", str(variations), "-q"]) == 0
    return out


def test_import_writes_a_mav_video_model(imported):
    index = json.loads((imported / "model_index.json").read_text())
    assert index["components"] == ["clip", "prior", "decoder", "interpolator", "sr_low"]
    assert index["defaults"]["interpolation_factor"] == 1 and index["defaults"]["sampler"] == "ddpm"
    assert json.loads((imported / "imported.json").read_text())["license"] == "creativeml-openrail-m"
    configs = loading.check_model(imported)  # every header and config checks without torch
    assert configs["decoder"].temporal and configs["decoder"].fps_cond
    assert configs["sr_low"].last_step_denoiser and configs["sr_low"].sample_size == 32


def test_imported_components_compute_what_karlo_does(karlo, imported):
    folder, variations = karlo
    clip = loading.load_component(imported, "clip")
    text_encoder = transformers.CLIPTextModelWithProjection.from_pretrained(folder, subfolder="text_encoder").eval()
    tokenizer = transformers.CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer")
    prompts = ["a dog wearing a superhero cape", ""]
    ids = clip.tokenize(prompts)
    want_ids = tokenizer(prompts, padding="max_length", max_length=77, return_tensors="pt")
    assert torch.equal(ids, want_ids.input_ids)
    with torch.no_grad():
        tokens, pooled, mask = clip.encode_text(ids)
        want = text_encoder(ids)
    assert torch.equal(mask, want_ids.attention_mask.bool())
    torch.testing.assert_close(tokens, want.last_hidden_state, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pooled, want.text_embeds, atol=1e-5, rtol=1e-5)
    image_encoder = transformers.CLIPVisionModelWithProjection.from_pretrained(variations, subfolder="image_encoder")
    pixels = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(clip.model.encode_image(pixels), image_encoder.eval()(pixels).image_embeds,
                                   atol=1e-5, rtol=1e-5)

    prior = loading.load_component(imported, "prior")
    reference = diffusers.PriorTransformer.from_pretrained(folder, subfolder="prior").eval()
    x, t = torch.randn(2, WIDTH), torch.tensor([3, 900])
    with torch.no_grad():
        torch.testing.assert_close(prior(x, t, text_tokens=tokens, text_embed=pooled, text_mask=mask),
                                   reference(x, t, proj_embedding=pooled, encoder_hidden_states=tokens,
                                             attention_mask=mask).predicted_image_embedding, atol=1e-5, rtol=1e-5)

    decoder = loading.load_component(imported, "decoder")
    unet = diffusers.UNet2DConditionModel.from_pretrained(folder, subfolder="decoder").eval()
    proj = diffusers.pipelines.deprecated.unclip.UnCLIPTextProjModel.from_pretrained(folder,
                                                                                    subfolder="text_proj").eval()
    image, video = torch.randn(2, WIDTH), torch.randn(2, 3, 4, 16, 16)
    with torch.no_grad():
        got = decoder(video, t, image_embed=image, text_tokens=tokens, text_mask=mask, text_pooled=pooled,
                      fps=torch.tensor([8.0, 8.0]))
        context, extra = proj(image_embeddings=image, prompt_embeds=pooled, text_encoder_hidden_states=tokens,
                              do_classifier_free_guidance=False)
        attention = torch.nn.functional.pad(mask, (3, 0), value=True)
        for frame in range(4):
            want = unet(video[:, :, frame], t, encoder_hidden_states=context, class_labels=extra,
                        attention_mask=attention).sample
            torch.testing.assert_close(got[:, :, frame], want, atol=1e-4, rtol=1e-4)

    sr = loading.load_component(imported, "sr_low")
    first = diffusers.UNet2DModel.from_pretrained(folder, subfolder="super_res_first").eval()
    last = diffusers.UNet2DModel.from_pretrained(folder, subfolder="super_res_last").eval()
    x, up = torch.randn(2, 3, 2, 32, 32), torch.randn(2, 3, 2, 32, 32)
    with torch.no_grad():
        for net, reference in ((sr, first), (sr.last_step, last)):
            got = net(x, t, cond=up, fps=torch.tensor([8.0, 8.0]))
            for frame in range(2):
                want = reference(torch.cat([x[:, :, frame], up[:, :, frame]], dim=1), t).sample
                torch.testing.assert_close(got[:, :, frame], want, atol=1e-4, rtol=1e-4)


def test_generate_runs_on_the_imported_model(imported, tmp_path):
    out = tmp_path / "dog.mp4"
    assert run(["generate", "a dog wearing a superhero cape", "--model", str(imported), "-o", str(out),
                "--steps", "2", "--seed", "0", "--frame-chunk", "3", "-q"]) == 0
    from mav.media import read_video

    video = read_video(out)
    assert (video.num_frames, video.height, video.width) == (8, 32, 32)
    # C_y's image tower (from the image encoder) conditions the decoder on a raw embedding
    from PIL import Image

    Image.new("RGB", (24, 20), (200, 60, 40)).save(tmp_path / "photo.png")
    assert run(["animate-image", str(tmp_path / "photo.png"), "--model", str(imported), "-o",
                str(tmp_path / "photo.mp4"), "--steps", "2", "--seed", "0", "-q"]) == 0
    assert read_video(tmp_path / "photo.mp4").num_frames == 8


def test_import_refuses_what_it_cannot_do(karlo, imported, tmp_path, capsys):
    folder, variations = karlo
    # an existing model is not replaced without --overwrite (before any work)
    assert run(["import", str(folder), "-o", str(imported), "--image-encoder", str(variations), "-q"]) == 4
    assert "--overwrite" in capsys.readouterr().err
    # not an unCLIP model
    other = tmp_path / "sd"
    other.mkdir()
    (other / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    assert run(["import", str(other), "-o", str(tmp_path / "x"), "--image-encoder", str(variations), "-q"]) == 3
    err = capsys.readouterr().err.strip()
    assert "not an unCLIP model" in err and "StableDiffusionPipeline" in err and len(err.splitlines()) == 1
    # a part without weights
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    for f in (broken / "decoder").glob("diffusion_pytorch_model.*"):
        f.unlink()
    assert run(["import", str(broken), "-o", str(tmp_path / "y"), "--image-encoder", str(variations), "-q"]) == 3
    err = capsys.readouterr().err.strip()
    assert "decoder" in err and "no weights" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "y").exists() and not list(tmp_path.glob(".y.*"))


def test_import_from_the_hub_cache_offline(karlo, tmp_path):
    """A Hub id goes through huggingface_hub's snapshot_download, here on a local cache with --offline."""
    from test_hub import make_cache

    folder, variations = karlo
    cache = tmp_path / "cache"
    make_cache(cache, folder, repo="kakaobrain/karlo-tiny")
    make_cache(cache, variations, repo="kakaobrain/karlo-tiny-image-variations")
    out = tmp_path / "from-hub"
    assert run(["import", "kakaobrain/karlo-tiny", "-o", str(out), "--image-encoder",
                "kakaobrain/karlo-tiny-image-variations", "--offline", "--cache-dir", str(cache), "--dtype", "fp16",
                "-q"]) == 0
    assert loading.check_model(out)["decoder"].attention == "joint"
    assert json.loads((out / "imported.json").read_text())["dtype"] == "fp16"
    assert run(["import", "kakaobrain/not-cached", "-o", str(tmp_path / "z"), "--offline", "--cache-dir",
                str(cache), "-q"]) == 3


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_imported_model_trains_motion_under_fsdp2(imported, tmp_path):
    """`torchrun --nproc_per_node=2 -m mav train decoder-video --fsdp` (gloo, 2 CPU processes) on the imported
    model: its first-step loss is the single-process loss on the same global batch, and an FSDP2 checkpoint
    resumes."""
    import os
    import subprocess
    import sys

    one, two = tmp_path / "one", tmp_path / "two"
    shutil.copytree(imported, one)
    shutil.copytree(imported, two)
    args = ["train", "decoder-video", "--data", "shapes", "--batch-size", "4", "--warmup", "0", "--lr", "1e-3",
            "--log-every", "1", "--checkpoint-every", "1", "--quiet", "--device", "cpu"]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]), OMP_NUM_THREADS="1")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "mav"]
    subprocess.run([sys.executable, "-m", "mav", *args, "--steps", "2", "--model", str(one)], check=True, env=env,
                   timeout=300, capture_output=True)
    # FSDP2's options pass through: here reshard_after_forward=False
    result = subprocess.run([*torchrun, *args, "--steps", "2", "--fsdp", "--no-fsdp-reshard", "--model", str(two)],
                            env=env, timeout=300, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    single, sharded = (_metrics(tmp_path / f"{name}.runs" / "decoder-video") for name in ("one", "two"))
    assert sharded[0]["step"] == single[0]["step"] == 0
    assert sharded[0]["loss"] == pytest.approx(single[0]["loss"], rel=1e-5)
    # resume the sharded run from its step-2 checkpoint for one more step
    result = subprocess.run([*torchrun, *args, "--steps", "3", "--fsdp", "--resume", "--model", str(two)], env=env,
                            timeout=300, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    steps = [m["step"] for m in _metrics(tmp_path / "two.runs" / "decoder-video")]
    assert steps == [0, 2, 3]  # logged at the first step and at each run's end; the resumed run went on from 2
    before, after = (loading.load_component(f, "decoder").state_dict() for f in (imported, two))
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all("temporal" in k or k.startswith("fps_embed.") for k in changed)


class _Payload:
    """What plain pickle would run on load; torch's weights-only loader must refuse it."""

    def __reduce__(self):
        return (print, ("code ran",))


def test_bin_weights_load_through_the_weights_only_loader(karlo, imported, tmp_path, capsys):
    from safetensors.torch import load_file

    from mav.models.unet import is_temporal_parameter

    folder, variations = karlo
    source = tmp_path / "karlo-bin"
    shutil.copytree(folder, source)
    weights = source / "decoder" / "diffusion_pytorch_model.safetensors"
    torch.save(load_file(weights), source / "decoder" / "diffusion_pytorch_model.bin")
    weights.unlink()
    out = tmp_path / "from-bin"
    assert run(["import", str(source), "-o", str(out), "--image-encoder", str(variations), "-q"]) == 0
    got, want = (loading.load_component(f, "decoder").state_dict() for f in (out, imported))
    spatial = [k for k in want if not is_temporal_parameter(k) and not k.startswith("fps_embed.")]
    assert spatial and all(torch.equal(got[k], want[k]) for k in spatial)
    # a .bin that holds more than tensors is refused, and nothing runs
    torch.save({"conv_in.weight": _Payload()}, source / "decoder" / "diffusion_pytorch_model.bin")
    assert run(["import", str(source), "-o", str(tmp_path / "evil"), "--image-encoder", str(variations),
                "-q"]) == 3
    captured = capsys.readouterr()
    assert "code ran" not in captured.out + captured.err and "plain tensors" in captured.err


def test_imported_prior_trains_in_its_standardised_space(imported, tmp_path):
    """The prior's training target is the embedding standardised by Karlo's fixed statistics, which stay fixed."""
    model = tmp_path / "m"
    shutil.copytree(imported, model)
    assert run(["train", "prior", "--model", str(model), "--data", "shapes", "--steps", "2", "--batch-size", "2",
                "--warmup", "0", "--lr", "1e-3", "--quiet", "--device", "cpu"]) == 0
    before, after = (loading.load_component(f, "prior").state_dict() for f in (imported, model))
    assert torch.equal(before["clip_mean"], after["clip_mean"]) and torch.equal(before["clip_std"], after["clip_std"])
    assert not torch.equal(before["out.weight"], after["out.weight"])
    # what the loss diffuses: the raw image embedding standardised by the prior's statistics
    from mav.conditioning import image_embedding, to_prior_space
    from mav.train import losses, stages

    seen = {}
    original = losses._denoise_loss

    def spy(net, schedule, x0, gens, **kwargs):
        seen["x0"] = x0
        return original(net, schedule, x0, gens, **kwargs)

    run_ = stages.build_stage("prior", model, "shapes", seed=0, steps=1, batch_size=2)
    batch = run_.batch_fn(0, range(2))
    losses._denoise_loss = spy
    try:
        run_.loss_fn(run_.model, batch, 0)
    finally:
        losses._denoise_loss = original
    clip = loading.load_component(model, "clip")
    with torch.no_grad():
        want = to_prior_space(image_embedding(clip, batch["image"]), run_.model.stats)
    torch.testing.assert_close(seen["x0"], want)
