"""The six training stages and `mav train`: losses fall, ↑F starts as D^t, no text reaches video, resume, torchrun."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from einops import rearrange
from safetensors.torch import load_file

from mav import loading
from mav.cli import run
from mav.diffusion.noise import sample_generators
from mav.train import losses, stages
from mav.train.stages import ORDER, build_stage, record_history

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def ready_model(tiny_model, tmp_path):
    """A copy of the tiny model whose history says every earlier stage ran, so any stage may start."""
    folder = tmp_path / "m"
    shutil.copytree(tiny_model, folder)
    for name in ORDER:
        record_history(folder, stages.STAGE_SPECS[name].component, {"stage": name, "steps": 0})
    return folder


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("stage", ORDER)
def test_loss_falls_when_overfitting_a_fixed_batch(stage, ready_model):
    torch.manual_seed(0)
    run_ = build_stage(stage, ready_model, "shapes", seed=0, steps=10, batch_size=4)
    batch = run_.batch_fn(0, range(4))  # a fixed batch: same samples, same noise and timesteps every step
    params = [p for p in run_.model.parameters() if p.requires_grad]
    # CLIP's batch is a hard-negative triple whose captions may leave words out: slower to fit, and at 3e-3 the
    # tiny CLIP can sit at chance (loss ln 4) for dozens of steps
    optimizer = torch.optim.Adam(params, lr=1e-3 if stage == "clip" else 3e-3)
    losses = []
    for _ in range(50 if stage == "clip" else 30):
        loss = run_.loss_fn(run_.model, batch, 0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], (stage, losses[0], losses[-1])


def test_decoder_stages_train_the_right_layers(ready_model):
    def trainable(run_, video: bool) -> list[bool]:
        return [p.requires_grad for n, p in run_.model.named_parameters() if stages.is_video_parameter(n) == video]

    image = build_stage("decoder-image", ready_model, "shapes", seed=0, steps=1, batch_size=2)
    assert not any(trainable(image, video=True)) and all(trainable(image, video=False))
    video = build_stage("decoder-video", ready_model, "shapes", seed=0, steps=1, batch_size=2)
    assert all(trainable(video, video=True)) and not any(trainable(video, video=False))
    assert any(n.startswith("fps_embed.") for n, p in video.model.named_parameters() if p.requires_grad)
    slow = build_stage("decoder-video", ready_model, "shapes", seed=0, steps=1, batch_size=2,
                       options=stages.StageOptions(spatial_lr_scale=0.1))
    assert all(trainable(slow, video=False))
    assert slow.param_groups[0][1] == 0.1


def test_every_trainable_parameter_gets_a_gradient(ready_model):
    """DDP (find_unused_parameters=False) and exact resume both need this: no trainable parameter sits idle."""
    for stage in ORDER:
        run_ = build_stage(stage, ready_model, "shapes", seed=0, steps=1, batch_size=4)
        run_.loss_fn(run_.model, run_.batch_fn(0, range(4)), 0).backward()
        idle = [n for n, p in run_.model.named_parameters() if p.requires_grad and p.grad is None]
        assert not idle, (stage, idle[:5])


def test_interpolator_starts_as_the_decoder(tiny_model):
    decoder = loading.load_component(tiny_model, "decoder")
    with torch.no_grad():  # a decoder whose weights are not the init, so the check means something
        for p in decoder.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    config = loading.load_config(tiny_model, "interpolator")
    interpolator = stages.interpolator_from_decoder(decoder, config).eval()
    x = torch.randn(2, 3, 5, 16, 16)
    t = torch.tensor([10, 500])
    kwargs = dict(image_embed=torch.randn(2, 32), fps=torch.tensor([8.0, 4.0]))
    cond = torch.randn(2, 4, 5, 16, 16)
    with torch.no_grad():
        assert torch.allclose(interpolator(x, t, cond=cond, **kwargs), decoder(x, t, **kwargs), atol=1e-5)


def test_video_stages_never_see_text(ready_model, monkeypatch):
    seen: list[str] = []
    clip_cls = type(loading.load_component(ready_model, "clip"))
    tokenize = clip_cls.tokenize

    def spy(self, texts):
        seen.extend([texts] if isinstance(texts, str) else texts)
        return tokenize(self, texts)

    monkeypatch.setattr(clip_cls, "tokenize", spy)
    for stage in ("decoder-video", "interpolator"):
        run_ = build_stage(stage, ready_model, "shapes", seed=0, steps=1, batch_size=2)
        batch = run_.batch_fn(0, range(2))
        assert set(batch) == {"video", "fps", "index"}  # structural: no caption field to give
        run_.loss_fn(run_.model, batch, 0)
    assert seen and set(seen) == {""}
    seen.clear()
    run_ = build_stage("decoder-image", ready_model, "shapes", seed=0, steps=1, batch_size=2)
    run_.loss_fn(run_.model, run_.batch_fn(0, range(2)), 0)
    assert any(s for s in seen)  # the image stage does use captions, so the spy is not blind


def test_decoder_image_drops_the_caption_apart_from_the_embedding(ready_model):
    """unCLIP's decoder practice: the caption is dropped on its own (TEXT_DROPOUT of the samples whose embedding
    is kept), so D learns to draw from the embedding alone, which is all D^t's videos give it; the embedding goes
    only together with the caption (the unconditional model classifier-free guidance needs)."""
    run_ = build_stage("decoder-image", ready_model, "shapes", seed=0, steps=1, batch_size=64)
    seen = {}
    forward = run_.model.forward

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return forward(*args, **kwargs)

    run_.model.forward = spy
    with torch.no_grad():
        run_.loss_fn(run_.model, run_.batch_fn(0, range(64)), 0)
    empty_words = int(seen["text_mask"].sum(-1).min())  # the empty prompt: start and end tokens only
    has_text = seen["text_mask"].sum(-1) > empty_words
    keep = seen["image_keep"]
    assert not (has_text & ~keep).any()  # no caption without its embedding
    shares = {"both": (keep & has_text).float().mean(), "embedding only": (keep & ~has_text).float().mean(),
              "neither": (~keep).float().mean()}
    expected = {"both": (1 - losses.CFG_DROPOUT) * (1 - losses.TEXT_DROPOUT),
                "embedding only": (1 - losses.CFG_DROPOUT) * losses.TEXT_DROPOUT, "neither": losses.CFG_DROPOUT}
    for k in shares:
        assert abs(shares[k] - expected[k]) < 0.2, (k, shares, expected)
    assert shares["embedding only"] > 0.2 and shares["both"] > 0.2


def test_high_noise_option_reaches_the_timestep_draw(ready_model, monkeypatch):
    """--high-noise (StageOptions.high_noise) sets the share of noisier-half timesteps the loss draws; by default
    no stage has one, so its draws are the uniform ones."""
    seen: list[float] = []
    draw = losses.draw_timesteps

    def spy(gens, timesteps, high_noise=0.0):
        seen.append(high_noise)
        return draw(gens, timesteps, high_noise)

    monkeypatch.setattr(losses, "draw_timesteps", spy)
    for share in (None, 0.7):
        run_ = build_stage("interpolator", ready_model, "shapes", seed=0, steps=1, batch_size=2,
                           options=stages.StageOptions(high_noise=share))
        run_.loss_fn(run_.model, run_.batch_fn(0, range(2)), 0)
    assert seen == [losses.HIGH_NOISE.get("interpolator", 0.0), 0.7]


def test_decoder_video_noise_shares_the_configured_part_across_frames(ready_model, monkeypatch):
    """D^t trains on the noise it samples from: with `frame_noise_correlation` ρ, the noise its loss adds to a clip
    has frames correlated by ρ (the starting noise of `Decoder.sample` is drawn by the same function)."""
    from mav.pipeline import load_pipeline

    path = ready_model / "decoder" / "config.json"
    path.write_text(json.dumps(dict(json.loads(path.read_text()), frame_noise_correlation=0.5)))
    seen = []
    draw = losses.frame_noise

    def spy(shape, gens, device=None, correlation=0.0):
        seen.append(correlation)
        return draw(shape, gens, device, correlation)

    monkeypatch.setattr(losses, "frame_noise", spy)
    run_ = build_stage("decoder-video", ready_model, "shapes", seed=0, steps=1, batch_size=2)
    with torch.no_grad():
        run_.loss_fn(run_.model, run_.batch_fn(0, range(2)), 0)
    assert seen == [0.5]
    decoder = load_pipeline(ready_model).decoder
    noise = decoder.noise((16, 3, 4, 16, 16), [torch.Generator().manual_seed(k) for k in range(16)])
    corr = torch.corrcoef(noise.permute(2, 0, 1, 3, 4).reshape(4, -1))
    assert abs(float(corr[0, 1:].mean()) - 0.5) < 0.05


def test_residual_interpolator_trains_on_the_difference_from_the_blend(ready_model, monkeypatch):
    """Training and sampling build the same inputs: a residual ↑F's loss is shown the blend of the given frames
    and scores (clip − blend) / residual_scale, the quantity `Interpolator.fill` samples."""
    from mav.conditioning import blend_known_frames

    path = ready_model / "interpolator" / "config.json"
    path.write_text(json.dumps(dict(json.loads(path.read_text()), mask_fill="blend", residual=True,
                                    residual_scale=0.1)))
    seen = {}
    denoise = losses._denoise_loss

    def spy(model, schedule, x0, gens, **kwargs):
        seen.update(x0=x0, cond=kwargs["cond"])
        return denoise(model, schedule, x0, gens, **kwargs)

    monkeypatch.setattr(losses, "_denoise_loss", spy)
    run_ = build_stage("interpolator", ready_model, "shapes", seed=0, steps=1, batch_size=4)
    batch = run_.batch_fn(0, range(4))
    run_.loss_fn(run_.model, batch, 0).backward()
    given = seen["cond"][:, 3, :, 0, 0] > 0
    blend = blend_known_frames(batch["video"], given)
    torch.testing.assert_close(seen["cond"][:, :3], blend)
    torch.testing.assert_close(seen["x0"], (batch["video"] - blend) / 0.1)


def test_random_masks_cover_every_mode():
    gens = [torch.Generator().manual_seed(i) for i in range(200)]
    known = losses.random_known_frames(gens, 9)
    assert known[:, 0].all()  # frame 0 is always shown
    assert (~known).any(1).all()  # every layout leaves something to make
    assert (known.sum(1) == 1).any()  # animation
    assert (known[:, 1] & ~known[:, -1]).any()  # extrapolation (first frames kept)
    assert (~known[:, 1] & known[:, -1]).any()  # interpolation reaching the last frame


@pytest.mark.parametrize("frames", [6, 8, 9, 10])
def test_interpolation_layouts_end_on_a_known_frame(frames):
    """Inference windows always end on a key when one lies ahead, so every interpolation layout ↑F trains on
    does too (the old `known[-1] = known[-1] or …` left the last frame hidden for k ∤ F − 1)."""
    gens = [torch.Generator().manual_seed(i) for i in range(400)]
    known = losses.random_known_frames(gens, frames, factor=4)
    prefix = torch.stack([row[: int(row.sum())].all() for row in known])  # extrapolation / animation layouts
    assert known[~prefix, -1].all()


def test_interpolator_trains_mostly_on_the_layout_and_rate_it_serves():
    """↑F after D^t sees every 4th frame at 30 fps (keys 0, 4, 8 of 9): most training samples must be exactly
    that, not the decoder's frame-skip schedule (where keys were 16–32 native frames apart)."""
    gens = [torch.Generator().manual_seed(i) for i in range(1000)]
    known = losses.random_known_frames(gens, 9, factor=4)
    served = torch.zeros(9, dtype=torch.bool)
    served[::4] = True
    assert (known == served).all(1).float().mean() > 0.5
    from mav.config import Defaults
    from mav.train.skips import SkipChoice

    skips = stages.frame_skips("interpolator", Defaults(num_frames=8, fps=7.5, interpolation_factor=4), 8)
    assert isinstance(skips, SkipChoice)
    rng = np.random.default_rng(0)
    drawn = np.array([skips.sample(rng) for _ in range(2000)])
    assert set(drawn) == {1, 4} and (drawn == 1).mean() > 0.6  # 30 fps mostly, the base 7.5 fps for the rest


def test_decoder_video_trains_around_its_sampling_rate():
    """D^t samples at 7.5 fps (skip 4): its skip schedule moves from high to low fps around that rate."""
    from mav.config import Defaults

    schedule = stages.frame_skips("decoder-video", Defaults(fps=7.5), 8)
    assert 2.0 <= schedule.mean(0.0) < 4.0 < schedule.mean(1.0) <= 6.0


def test_interpolator_loss_scores_only_hidden_frames_and_embeds_a_known_one(ready_model):
    """The loss's gradient reaches only the frames ↑F must make; the CLIP embedding comes from a frame it is
    shown (never a hidden one, which would tell it where the object is)."""
    run_ = build_stage("interpolator", ready_model, "shapes", seed=3, steps=1, batch_size=6)
    batch = run_.batch_fn(0, range(6))
    clip = run_.frozen["clip"]
    seen = {}

    class Recorder(torch.nn.Module):
        def forward(self, x, t, **kwargs):
            seen.update(kwargs)
            seen["out"] = torch.zeros_like(x, requires_grad=True)
            return seen["out"]

    run_.loss_fn(Recorder(), batch, 0).backward()
    known = seen["cond"][:, 3, :, 0, 0] > 0.5  # the mask channel, b f
    grad = seen["out"].grad.abs().sum(dim=(1, 3, 4))  # b f
    assert (grad[known] == 0).all() and (grad[~known] > 0).all()
    with torch.no_grad():
        frames = torch.nn.functional.normalize(
            clip.encode_image(rearrange(batch["video"], "b c f h w -> (b f) c h w")).float(), dim=-1)
    frames = rearrange(frames, "(b f) d -> b f d", b=6)
    for i in range(6):
        if seen["image_embed"][i].abs().sum() == 0:  # classifier-free dropout
            continue
        match = (frames[i] - seen["image_embed"][i]).abs().amax(-1) < 1e-5
        assert match.any() and known[i][match].all()


def test_sr_target_never_holds_the_augmentation_noise(ready_model):
    """SR's residual is relative to the clean input and scaled to unit variance; the noise added to the input is
    given to the network as its level, not hidden in the target."""
    from mav.conditioning import sr_cond

    for stage, key in (("sr-low", "video"), ("sr-high", "image")):
        run_ = build_stage(stage, ready_model, "shapes", seed=0, steps=1, batch_size=4)
        config = run_.model.config
        assert config.aug_cond and config.residual_scale < 1
        batch = run_.batch_fn(0, range(4))
        gens = sample_generators(0, batch["index"])
        target, kwargs = losses.sr_training_inputs(batch, key, config, gens)
        clean = sr_cond(batch[f"{key}_low"], config.sample_size)
        torch.testing.assert_close(target, (batch[key] - clean) / config.residual_scale)
        assert kwargs["aug_level"].shape == (4,) and (kwargs["aug_level"] < config.noise_aug_max).all()
        assert not torch.allclose(kwargs["cond"], clean)  # the network sees the noisy input …
        assert (kwargs["cond"] - clean).abs().amax() < 6 * config.noise_aug_max  # … at the level it is told


def test_clip_batches_hold_hard_negatives(ready_model):
    """CLIP trains on triples of one scene drawn in each shape, so the loss must separate shapes to fall."""
    run_ = build_stage("clip", ready_model, "shapes", seed=0, steps=1, batch_size=6)
    batch = run_.batch_fn(0, range(6))
    from mav.eval.judge import judge_frame

    reads = [judge_frame(((img.permute(1, 2, 0) + 1) * 127.5).round().byte().numpy()) for img in batch["image"]]
    for group in (reads[0:3], reads[3:6]):
        assert len({r["shape"] for r in group}) == 3
        assert len({(r["color"], r["bg"]) for r in group}) == 1


def _train(*args) -> int:
    return run(["train", *map(str, args), "--quiet"])


def test_train_writes_the_component_and_resume_is_exact(ready_model, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(ready_model, other)
    initial = loading.load_component(ready_model, "decoder").state_dict()
    assert _train("decoder-image", "--model", ready_model, "--steps", 2, "--batch-size", 4, "--warmup", 3) == 0
    assert _train("decoder-image", "--model", ready_model, "--steps", 4, "--batch-size", 4, "--warmup", 3,
                  "--resume") == 0
    assert _train("decoder-image", "--model", other, "--steps", 4, "--batch-size", 4, "--warmup", 3) == 0
    resumed, straight = (loading.load_component(f, "decoder").state_dict() for f in (ready_model, other))
    assert resumed.keys() == straight.keys()
    for key in resumed:
        assert torch.allclose(resumed[key], straight[key], atol=1e-6), key
    assert any(not torch.equal(resumed[k], initial[k]) for k in resumed)  # training changed the weights
    assert [h["stage"] for h in stages.history(other, "decoder")][-1] == "decoder-image"


def test_batch_workers_and_time_limit_on_a_real_stage(ready_model, tmp_path):
    inline, ahead, limited = (tmp_path / name for name in ("inline", "ahead", "limited"))
    for folder in (inline, ahead, limited):
        shutil.copytree(ready_model, folder)
    common = ("--steps", 3, "--batch-size", 4, "--warmup", 2, "--schedule", "cosine")
    assert _train("interpolator", "--model", inline, *common) == 0
    assert _train("interpolator", "--model", ahead, *common, "--workers", 2) == 0
    a, b = (loading.load_component(f, "interpolator").state_dict() for f in (inline, ahead))
    assert all(torch.equal(a[k], b[k]) for k in a)  # batches built ahead by worker processes are the same batches
    assert _train("interpolator", "--model", limited, *common, "--max-minutes", 1e-6) == 0
    last = stages.history(limited, "interpolator")[-1]
    assert last["steps"] == 1 and last["planned_steps"] == 3  # stopped after its first step, and says so
    run_dir = stages.default_run_dir(limited, "interpolator")
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["step"] == 1
    assert _train("interpolator", "--model", limited, *common, "--resume") == 0  # and goes on from there
    assert stages.history(limited, "interpolator")[-1]["steps"] == 3


def test_resume_with_another_config_names_the_mismatch(ready_model, capsys):
    assert _train("sr-high", "--model", ready_model, "--steps", 1, "--batch-size", 2) == 0
    assert _train("sr-high", "--model", ready_model, "--steps", 2, "--batch-size", 2, "--lr", 5e-4,
                  "--resume") == 2
    assert "lr" in capsys.readouterr().err


def test_recipe_runs_every_stage_in_order_and_the_model_generates(tiny_model, tmp_path):
    folder = tmp_path / "r"
    shutil.copytree(tiny_model, folder)
    assert _train("recipe", "--preset", "tiny", "--model", folder, "--no-gate") == 0
    for name in ORDER:
        assert stages.completed(folder, name), name
    assert run(["generate", "a red circle", "--model", str(folder), "-o", str(tmp_path / "o.mp4"), "-q"]) == 0
    # --resume skips what is done
    before = _digest(folder)
    assert _train("recipe", "--preset", "tiny", "--model", folder, "--resume", "--no-gate") == 0
    assert _digest(folder) == before

    # exporting: fp16 weights that load and generate, the configs and histories, a summary of every run
    assert _train("sr-high", "--model", folder, "--steps", 2, "--batch-size", 2,
                  "--run-dir", tmp_path / "sr-high-2") == 0
    shipped = tmp_path / "shipped"
    assert run(["export", str(folder), str(shipped)]) == 0
    for component in loading.load_index(folder).components:
        trained, small = (loading.load_component(f, component).state_dict() for f in (folder, shipped))
        for key in trained:
            assert torch.allclose(small[key], trained[key], atol=2e-3, rtol=2e-3), (component, key)
    assert load_file(shipped / "decoder" / "model.safetensors")["conv_in.weight"].dtype == torch.float16
    summary = json.loads((shipped / "metrics_summary.json").read_text())
    assert list(summary) == list(ORDER)
    assert [run["steps"] for run in summary["sr-high"]] == [4, 2]
    assert all("loss_end" in run for runs in summary.values() for run in runs)
    assert run(["generate", "a red circle", "--model", str(shipped), "-o", str(tmp_path / "s.mp4"), "-q"]) == 0


def test_recipe_stops_after_a_stage_cut_by_its_time_limit_and_resume_finishes(tiny_model, tmp_path, capsys):
    folder = tmp_path / "r"
    shutil.copytree(tiny_model, folder)
    assert run(["train", "recipe", "--preset", "tiny", "--model", str(folder), "--no-gate",
                "--max-minutes", "1e-6"]) == 0
    assert "clip stopped at its time limit" in capsys.readouterr().err
    clip = stages.history(folder, "clip")[-1]
    assert (clip["stage"], clip["steps"], clip["planned_steps"]) == ("clip", 1, 4)
    assert not stages.completed(folder, "clip")
    assert all(not stages.history(folder, stages.STAGE_SPECS[name].component) for name in ORDER[1:])  # none ran
    assert _train("recipe", "--preset", "tiny", "--model", folder, "--no-gate", "--resume") == 0
    for name in ORDER:
        assert stages.completed(folder, name), name


def test_recipe_stops_at_the_first_stage_that_misses_its_gate(tiny_model, tmp_path, capsys):
    """A 4-step CLIP cannot read shapes: the recipe measures it, names the gate, its figure and bar, exits 6,
    and trains nothing on top of it; the figures are kept beside the model."""
    folder = tmp_path / "g"
    shutil.copytree(tiny_model, folder)
    assert _train("recipe", "--preset", "tiny", "--model", folder, "--gate-n", 3) == 6
    err = capsys.readouterr().err
    assert "gate clip FAILED" in err and "baseline" in err and "bar ≥ 0.90" in err and "--no-gate" in err
    assert stages.completed(folder, "clip") and not stages.completed(folder, "prior")
    gates = json.loads((tmp_path / "g.runs" / "gates.json").read_text())
    assert list(gates) == ["clip"] and gates["clip"]["passed"] is False
    assert set(gates["clip"]["figures"]) == {"shape", "color", "size"}


@pytest.mark.parametrize("args, code, needle", [
    (["bogus", "--model", "{m}"], 2, "unknown stage"),
    (["recipe", "--preset", "huge", "--model", "{m}"], 2, "unknown preset"),
    (["prior", "--model", "{m}", "--data", "{tmp}/nowhere"], 4, "nowhere"),
    (["prior", "--model", "{m}", "--data", "{tmp}/empty"], 4, "empty"),
    (["decoder-video", "--model", "{m}", "--data", "{tmp}/broken"], 4, "broken"),
    (["prior", "--model", "{m}", "--steps", "0"], 2, "steps"),
    (["prior", "--model", "{m}", "--batch-size", "-1"], 2, "batch"),
    (["prior", "--model", "{tmp}/no-model"], 3, "no-model"),
    (["interpolator", "--model", "{fresh}"], 3, "decoder-video"),
    (["decoder-video", "--model", "{fresh}"], 3, "decoder-image"),
    (["prior", "--model", "{m}", "--data", "{tmp}/videos"], 2, "videos"),
    (["prior", "--model", "{m}", "--min-snr-gamma", "-1"], 2, "--min-snr-gamma must be ≥ 0"),
    (["interpolator", "--model", "{m}", "--high-noise", "1.5"], 2, "--high-noise must be in [0, 1]"),
    (["recipe", "--preset", "tiny", "--model", "{m}", "--gate-n", "0"], 2, "--gate-n"),
    (["prior", "--model", "{m}", "--workers", "-1"], 2, "--workers must be ≥ 0"),
    (["prior", "--model", "{m}", "--max-minutes", "-5"], 2, "--max-minutes must be ≥ 0"),
])
def test_bad_input(args, code, needle, ready_model, tiny_model, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.mp4").write_text("not a video")
    (tmp_path / "videos").mkdir()
    from mav.media import Video
    from mav.media_write import save_video

    save_video(Video(torch.zeros(12, 16, 16, 3, dtype=torch.uint8), 8.0), tmp_path / "videos" / "v.mp4")
    fresh = tmp_path / "fresh"
    shutil.copytree(tiny_model, fresh)
    args = [a.format(m=ready_model, tmp=tmp_path, fresh=fresh) for a in args]
    before = {f: _digest(f) for f in (ready_model, fresh)}
    assert _train(*args) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("mav: error: ") and needle in err[-1], err
    assert {f: _digest(f) for f in (ready_model, fresh)} == before  # nothing of the model folder damaged


def test_torchrun_two_processes_match_one(ready_model, tmp_path):
    """DDP over gloo: both ranks end equal, and equal to one process with the combined batch."""
    one, two = tmp_path / "one", tmp_path / "two"
    shutil.copytree(ready_model, one)
    shutil.copytree(ready_model, two)
    # fp32: bf16 autocast (the default on a CPU with native bf16) rounds a batch of 4 and two of 2 differently
    args = ["train", "sr-high", "--steps", "3", "--batch-size", "4", "--warmup", "0", "--lr", "1e-3", "--quiet",
            "--device", "cpu", "--no-bf16"]
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, "-m", "mav", *args, "--model", str(one)], check=True, env=env, timeout=120,
                   capture_output=True)
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             "-m", "mav", *args, "--model", str(two)], env=env, timeout=180, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    a, b = (loading.load_component(f, "sr_high").state_dict() for f in (one, two))
    for key in a:
        # 1e-4, not less: Adam divides by √v, so for a weight whose gradient is near zero the rounding of the
        # all-reduce (a different summation order) is magnified; a wrong data split moves weights by ~lr = 1e-3.
        assert torch.allclose(a[key], b[key], atol=1e-4), (key, (a[key] - b[key]).abs().max())
    initial = loading.load_component(ready_model, "sr_high").state_dict()
    assert any(not torch.equal(a[k], initial[k]) for k in a)


def test_stages_train_on_real_folders(ready_model, tmp_path):
    """An image–text folder for an image stage, a video folder for a video stage (files the test writes)."""
    from PIL import Image

    from mav.media import Video
    from mav.media_write import save_video

    images, videos = tmp_path / "images", tmp_path / "videos"
    images.mkdir()
    videos.mkdir()
    for i, colour in enumerate([(220, 40, 40), (40, 90, 220), (40, 170, 70)]):
        Image.new("RGB", (40, 30), colour).save(images / f"{i}.png")
        (images / f"{i}.txt").write_text(f"a picture number {i}")
        frames = torch.zeros(12, 24, 24, 3, dtype=torch.uint8)
        frames[..., i] = torch.arange(12).view(12, 1, 1) * 20
        save_video(Video(frames, 12.0), videos / f"{i}.mp4")
    assert _train("decoder-image", "--model", ready_model, "--data", images, "--steps", 2, "--batch-size", 2) == 0
    assert _train("decoder-video", "--model", ready_model, "--data", videos, "--steps", 2, "--batch-size", 2,
                  "--max-skip", 2) == 0
    assert [h.get("data") for h in stages.history(ready_model, "decoder")][-2:] == [str(images), str(videos)]


def test_one_gpu_script_trains_a_lane_and_merges_it(ready_model, tmp_path):
    """examples/train_on_one_gpu.py, run on the CPU at a tiny scale: the decoder lane trains D on images then
    D^t in its own copy, and only the decoder comes back into the merged folder."""
    out = tmp_path / "round"
    script = Path(__file__).resolve().parents[1] / "examples" / "train_on_one_gpu.py"
    done = subprocess.run(
        [sys.executable, str(script), "--model", str(ready_model), "--out", str(out), "--minutes", "0.6",
         "--device", "cpu", "--only", "decoder", "--batch-scale", "0.02", "--calibration-steps", "3",
         "--startup-seconds", "1"],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    merged = out / "model"
    trained = [h["stage"] for h in stages.history(merged, "decoder")][-2:]
    assert trained == ["decoder-image", "decoder-video"]
    assert not torch.equal(*(loading.load_component(f, "decoder").state_dict()["conv_in.weight"]
                             for f in (merged, ready_model)))
    untouched = {k: v for k, v in _digest(merged).items() if not k.startswith("decoder/")}
    assert untouched == {k: v for k, v in _digest(ready_model).items() if not k.startswith("decoder/")}
    for stage in trained:
        assert (out / "runs" / f"decoder-{stage}" / "metrics.jsonl").is_file()
    loading.check_model(merged)
    log = (out / "log.txt").read_text()
    assert "decoder-image: done" in log and "decoder-video: done" in log and "lane decoder: merged" in log
    bad = subprocess.run([sys.executable, str(script), "--model", str(ready_model), "--out", str(tmp_path / "x"),
                          "--minutes", "1", "--only", "decodr"], capture_output=True, text=True)
    assert bad.returncode == 2 and "no lane decodr" in bad.stderr and not (tmp_path / "x").exists()


def test_a_stage_stopped_by_its_time_limit_is_not_complete(tmp_path):
    (tmp_path / "decoder").mkdir()
    record_history(tmp_path, "decoder", {"stage": "decoder-image", "steps": 40, "planned_steps": 100})
    assert not stages.completed(tmp_path, "decoder-image")  # `mav train recipe --resume` trains it on
    record_history(tmp_path, "decoder", {"stage": "decoder-image", "steps": 100})
    assert stages.completed(tmp_path, "decoder-image")
