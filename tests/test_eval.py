"""Evaluation: the pixel judge on true renders and on noise, the metric functions, and `mav eval` end to end."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from mav.cli import run
from mav.conditioning import frame_skip
from mav.eval import gates as gate_fns
from mav.eval.judge import judge_frame, judge_video, label_components
from mav.eval.metrics import (ATTRIBUTES, FULL, PARTIAL, PSNR_CAP, eval_scene, linear_blend, motion, partial_prompt, psnr,
                              score_videos)
from mav.pipeline import load_pipeline
from mav.world import PALETTE, SHAPES, SIZES, Scene, parse_prompt, random_scene, render_clip

ATTRS = ("color", "shape", "size", "bg")


def true_clips(count: int, size: int, frames: int = 6, moving: bool = True, seed: int = 1):
    scenes = [random_scene(np.random.default_rng([seed, j]), moving=moving) for j in range(count)]
    return scenes, [render_clip(s, frames, 1, size)[0] for s in scenes]


def noise_clips(count: int, size: int, frames: int = 6):
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, size=(frames, size, size, 3), dtype=np.uint8) for _ in range(count)]


# ---------------------------------------------------------------------------------------------------------------
# The judge


@pytest.mark.parametrize("size", [32, 64, 128])
def test_judge_reads_true_renders(size):
    scenes, clips = true_clips(60 if size < 128 else 30, size)
    correct = dict.fromkeys(ATTRS, 0)
    frames = single = 0
    for scene, clip in zip(scenes, clips):
        reading = judge_video(clip)
        single += int(reading.single.sum())
        frames += len(reading)
        for t in range(len(reading)):
            got = reading.attributes(t)
            for a in ATTRS:
                correct[a] += got[a] == getattr(scene, a)
    for a in ATTRS:
        assert correct[a] / frames >= 0.98, (a, correct[a] / frames)
    assert single == frames  # presence: exactly one object in every frame


def test_judge_every_attribute_combination_at_64():
    names = list(PALETTE)
    for color in names:
        for bg in names:
            if color == bg:
                continue
            for shape in SHAPES:
                for size in SIZES:
                    scene = Scene(color, shape, size, bg, x=0.4, y=0.6)
                    assert judge_frame(scene.render(64)) == scene.attributes, scene


@pytest.mark.parametrize("size", [32, 128])
def test_judge_finds_nothing_in_noise(size):
    readings = [judge_video(c) for c in noise_clips(4, size)]
    found = np.concatenate([r.found for r in readings])
    assert found.mean() < 0.05
    assert np.concatenate([r.single for r in readings]).mean() < 0.05
    assert all(r.attributes(0)["shape"] is None for r in readings if not r.found[0])


def test_judge_centroid_and_motion():
    scene = Scene("red", "square", "small", "blue", x=0.5, y=0.25)
    reading = judge_video(scene.render(64))
    assert reading.centroid[0] == pytest.approx([32.0, 16.0], abs=0.51)
    _, moving = true_clips(20, 32, frames=8, moving=True)
    _, still = true_clips(20, 32, frames=8, moving=False)
    m = motion([judge_video(c) for c in moving])
    s = motion([judge_video(c) for c in still])
    assert m["moving_fraction"] == 1.0 and m["mean_displacement_frac"] >= 0.015
    assert s["moving_fraction"] == 0.0 and s["mean_displacement_px"] == 0.0
    assert s["smoothness"] is None  # only moving videos have a smoothness


def test_constant_velocity_is_smooth():
    scene = Scene("white", "circle", "small", "black", x=0.3, y=0.3, vx=0.02, vy=0.01)  # no bounce in 8 frames
    m = motion([judge_video(render_clip(scene, 8, 1, 128)[0])])
    assert m["mean_displacement_px"] == pytest.approx(math.hypot(0.02, 0.01) * 128, rel=0.1)
    assert m["smoothness"] < 0.2


def test_a_jump_fails_steady_motion_that_the_mean_step_lets_through():
    """An object that glides at the world's speed but jumps across the frame once between two frames: its mean
    step is still within the true range's tolerance, its longest step is not."""
    scene = Scene("white", "circle", "small", "black", x=0.2, y=0.3, vx=0.02, vy=0.0)  # 0.08 S per frame at skip 4
    clip = render_clip(scene, 8, 4, 32)[0]
    jumped = clip.copy()
    jumped[5:] = render_clip(replace(scene, x=0.2, y=0.75), 3, 4, 32)[0]  # 0.45 S (14 px) down between frames 4, 5
    glide, jump = (motion([judge_video(c)], fps=7.5) for c in (clip, jumped))
    assert glide["true_speed_fraction"] == 1.0 and glide["steady_fraction"] == 1.0
    assert jump["true_speed_fraction"] == 1.0 and jump["steady_fraction"] == 0.0


def test_label_components_four_connected_per_frame():
    mask = np.zeros((2, 8, 8), dtype=bool)
    mask[0, 1:3, 1:3] = True  # a block
    mask[0, 3, 3] = True  # touches the block only diagonally: its own component
    mask[0, 5:8, 0] = mask[0, 7, 0:6] = mask[0, 5:8, 5] = True  # a U, joined only through its bottom
    mask[1, 1:3, 1:3] = True  # same block in the next frame: a different label
    labels = label_components(mask)
    assert (labels[~mask] == -1).all()
    assert len(np.unique(labels[0][mask[0]])) == 3
    assert labels[0, 5, 0] == labels[0, 5, 5]
    assert labels[0, 1, 1] != labels[1, 1, 1]


# ---------------------------------------------------------------------------------------------------------------
# Metric functions


def test_psnr_known_values():
    a = np.full((2, 4, 4, 3), 100, dtype=np.uint8)
    assert psnr(a, a) == PSNR_CAP
    assert psnr(a, a + 5) == pytest.approx(20 * math.log10(255 / 5))  # MSE = 25
    assert psnr(a, a + 10) == pytest.approx(psnr(a, a + 5) - 20 * math.log10(2))
    with pytest.raises(ValueError):
        psnr(a, a[:1])


def test_linear_blend():
    frames = np.stack([np.full((2, 2, 3), v, dtype=np.uint8) for v in (0, 99, 100, 77, 200, 5)])
    known = np.array([True, False, False, False, True, False])
    out = linear_blend(frames, known)
    assert [int(f[0, 0, 0]) for f in out] == [0, 50, 100, 150, 200, 200]


@pytest.mark.parametrize("layout", ["100010001", "100000000", "111000000", "100100100", "001000010"])
def test_mask_fill_blend_is_the_linear_blend_baseline(layout):
    """↑F's "blend" fill puts the baseline it is judged against in its input: the torch blend of the conditioning
    equals mav.eval.metrics.linear_blend on every layout (interpolation, animation, extrapolation, no ends known),
    and the known frames and the mask channel are kept as they are."""
    import torch

    from mav.conditioning import frame_mask_cond

    known = np.array([c == "1" for c in layout])
    frames = np.random.default_rng(0).integers(0, 256, (9, 4, 4, 3)).astype(np.uint8)
    video = torch.from_numpy(frames).double().permute(3, 0, 1, 2)[None]
    cond = frame_mask_cond(video, torch.from_numpy(known), "blend")[0]
    blended = np.round(cond[:3].permute(1, 2, 3, 0).numpy())
    assert np.array_equal(blended, linear_blend(frames, known).astype(np.float64))
    assert torch.equal(cond[3, :, 0, 0], torch.from_numpy(known).double())
    zeros = frame_mask_cond(video, torch.from_numpy(known))[0]
    assert not zeros[:3, torch.from_numpy(~known)].any() and torch.equal(zeros[:3, known], video[0][:, known])


def test_score_videos_true_renders_near_perfect():
    scenes = [eval_scene(3, FULL, i)[0] for i in range(12)]
    full = [s.describe() for s in scenes]
    partial = [partial_prompt(*eval_scene(3, PARTIAL, i)) for i in range(12)]
    partial_scenes = [eval_scene(3, PARTIAL, i)[0] for i in range(12)]
    for prompts, sc in ((full, scenes), (partial, partial_scenes)):
        clips = [render_clip(s, 6, 2, 64)[0] for s in sc]
        report = score_videos(clips, prompts)
        acc = report["faithfulness"]["accuracy"]
        assert all(v is None or v >= 0.98 for v in acc.values()), acc
        assert report["presence"]["single_object"] == 1.0
        assert report["motion"]["moving_fraction"] == 1.0
    assert all(v == 1.0 for v in score_videos([render_clip(s, 6, 2, 64)[0] for s in scenes],
                                              full)["faithfulness"]["accuracy"].values())


def test_score_videos_noise_near_zero():
    prompts = [eval_scene(4, FULL, i)[0].describe() for i in range(6)]
    report = score_videos(noise_clips(6, 64), prompts)
    acc = report["faithfulness"]["accuracy"]
    for a in ("color", "shape", "size", "all"):
        assert acc[a] < 0.05, (a, acc)
    assert acc["bg"] < 0.4  # the border majority of noise is a random colour
    assert report["presence"]["single_object"] < 0.05


def test_partial_prompts_name_a_proper_subset():
    for i in range(40):
        scene, rng = eval_scene(0, PARTIAL, i)
        prompt = partial_prompt(scene, rng)
        named = {k: v for k, v in parse_prompt(prompt).items() if v is not None}
        assert named["shape"] == scene.shape, prompt
        assert len(named) < 4, prompt
        assert all(getattr(scene, k) == v for k, v in named.items()), prompt


def test_eval_scenes_are_not_training_scenes():
    train = {random_scene(np.random.default_rng([0, j])).x for j in range(500)}  # ShapesVideos' rng(seed 0, j)
    held_out = {eval_scene(s, sec, i)[0].x for s in (0, 1) for sec in (FULL, PARTIAL) for i in range(100)}
    assert not train & held_out
    assert eval_scene(0, FULL, 5)[0] == eval_scene(0, FULL, 5)[0]  # deterministic


# ---------------------------------------------------------------------------------------------------------------
# `mav eval`


def test_mav_eval_json_end_to_end(tiny_model, capsys):
    assert run(["eval", "--model", str(tiny_model), "-n", "1", "--steps", "1", "--json", "-q"]) == 0
    report = json.loads(capsys.readouterr().out)
    for kind in ("full", "partial"):
        section = report["faithfulness"][kind]
        assert section["skipped"] is None and section["videos"] == 1 and section["frames"] == 7
        assert set(section["accuracy"]) == {*ATTRS, "all"}
    assert report["presence"]["frames"] == 14 and report["motion"]["videos"] == 2
    assert math.isfinite(report["interpolation"]["psnr"]) and math.isfinite(report["interpolation"]["psnr_linear"])
    for stage in ("sr_low", "sr_high"):
        sr = report["super_resolution"][stage]
        assert sr["skipped"] is None and sr["psnr_bicubic"] > 15 and math.isfinite(sr["psnr"])
    ext = report["extrapolation"]
    assert ext["skipped"] is None and ext["known"] == 4 and ext["frames"] == 8
    assert set(report["timing"]["stages"]) == {"prior", "decoder", "interpolator", "sr_low", "sr_high"}
    assert report["timing"]["total"] > 0


def test_mav_eval_skips_missing_stages(tiny_model, tmp_path, capsys):
    folder = tmp_path / "partial"
    shutil.copytree(tiny_model, folder)
    index = json.loads((folder / "model_index.json").read_text())
    index["components"] = [c for c in index["components"] if c != "sr_high"]
    (folder / "model_index.json").write_text(json.dumps(index))
    shutil.rmtree(folder / "sr_high")
    assert run(["eval", "--model", str(folder), "-n", "1", "--steps", "1", "--until", "decoder", "--json",
                "-q"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["faithfulness"]["full"]["skipped"] is None
    assert report["super_resolution"]["sr_high"]["skipped"] == "the model has no sr_high"
    assert report["interpolation"]["skipped"] == "past --until decoder"
    assert report["extrapolation"]["skipped"] == "past --until decoder"
    # the table names the skipped sections
    assert run(["eval", "--model", str(folder), "-n", "1", "--steps", "1", "--until", "decoder", "-q"]) == 0
    out = capsys.readouterr().out
    assert "text faithfulness" in out and "skipped (past --until decoder)" in out
    assert "the model has no sr_high" in out


@pytest.mark.parametrize("args, message", [(["-n", "0"], "-n must be in"), (["--until", "sr"], "--until must be"),
                                           (["--steps", "0"], "--steps must be"), (["--seed", "-1"], "--seed")])
def test_mav_eval_bad_input(args, message, tmp_path, capsys):
    # checked before any model loads: the folder does not even exist
    assert run(["eval", "--model", str(tmp_path / "absent"), *args]) == 2
    assert message in capsys.readouterr().err


def test_mav_eval_stage_gates_every_stage_against_its_baseline(tiny_model, capsys):
    """An untrained model misses every learned bar: `mav eval --stage all` reports each figure beside its baseline
    and exits 6 naming the first failure."""
    assert run(["eval", "--model", str(tiny_model), "--stage", "all", "-n", "2", "--json", "-q"]) == 6
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    gates = {g["gate"]: g for g in report["gates"]}
    assert list(gates) == ["clip", "prior", "decoder-image", "decoder", "interpolator", "sr-low", "sr-high"]
    assert not gates["clip"]["passed"] and "gate clip FAILED" in captured.err
    for name in ("sr-low", "sr-high"):
        sr = gates[name]
        assert sr["baselines"]["psnr_db"] > 15 and math.isfinite(sr["figures"]["psnr_db"])
        assert math.isfinite(sr["figures"]["x0_psnr_db"]) and not sr["passed"]
    # SR^t_l sees a moving object in every frame, so the single-frame bound that sets SR_h's bar is not its own
    assert gates["sr-low"]["bars"]["psnr_db"] == "≥ baseline + 2 dB"
    assert "perfect sampler" in gates["sr-high"]["bars"]["psnr_db"]
    assert gates["interpolator"]["baselines"]["psnr_db"] > 15
    inter = gates["interpolator"]  # ↑F's x̂0 from the keys alone, beside the blend of the same scenes
    assert math.isfinite(inter["figures"]["x0_psnr_db"]) and inter["baselines"]["x0_psnr_db"] > 15
    assert gates["decoder-image"]["baselines"]["shape"] == pytest.approx(1 / 3)
    assert set(gates["decoder-image"]["figures"]) == {*ATTRIBUTES, *(f"{a}, no caption" for a in ATTRIBUTES),
                                                        *(f"{a} via P" for a in ATTRIBUTES)}
    # P is judged in CLIP space, so its gate means something before any decoder is trained
    assert set(gates["prior"]["figures"]) == {"cosine", "shape", "color", "size"}
    assert set(gates["decoder"]["figures"]) == {"true_speed_videos", "steady_videos", "single_object", "fps_response"}
    assert gates["decoder"]["baselines"]["true_speed_videos"] == 1.0  # the true clips move like the world
    assert gates["decoder"]["baselines"]["steady_videos"] == 1.0  # and never jump
    assert gates["decoder"]["baselines"]["fps_response"] > 2  # and step farther at a quarter of the frame rate


def test_mav_eval_stage_bad_input(tmp_path, capsys):
    assert run(["eval", "--model", str(tmp_path / "absent"), "--stage", "vae"]) == 2
    assert "--stage must be one of" in capsys.readouterr().err


def test_decoder_image_gate_reads_the_true_embedding_with_and_without_its_caption(tiny_model, monkeypatch):
    """The no-caption rows decode the same true embeddings as the captioned rows, with empty captions, and score
    what those images show."""
    calls, real = [], gate_fns._decode_images

    def spy(pipe, embed, captions, seed, section):
        images = real(pipe, embed, captions, seed, section)
        calls.append((embed.clone(), list(captions), images))
        return images

    monkeypatch.setattr(gate_fns, "_decode_images", spy)
    result = gate_fns.run_gate(load_pipeline(tiny_model, device="cpu"), "decoder-image", n=3)
    (true_embed, captions, _), (alone_embed, no_captions, alone_images) = calls[:2]
    assert all(captions) and no_captions == ["", "", ""] and torch.equal(true_embed, alone_embed)
    expected = gate_fns._attribute_accuracy(alone_images, gate_fns._scenes("decoder-image", 0, 3, moving=False))
    assert {a: result.figures[f"{a}, no caption"] for a in ATTRIBUTES} == expected


@pytest.mark.parametrize("follows_fps", [True, False])
def test_decoder_gate_fps_row_needs_the_speed_to_follow_the_fps(tiny_model, monkeypatch, follows_fps):
    """The decoder gate's fps row passes clips that are the world's at whatever fps D^t is given, and fails clips
    that move the same at every fps (an fps embedding D^t does not use)."""
    pipe = load_pipeline(tiny_model, device="cpu")
    size, frames = pipe.models["decoder"].config.sample_size, pipe.defaults.num_frames

    def clips(scenes, fps):
        return [judge_video(render_clip(sc, frames, frame_skip(fps), size)[0]) for sc in scenes]

    def world(pipe, scenes, embed, gens, fps):
        return clips(scenes, fps if follows_fps else pipe.defaults.fps), clips(scenes, fps)

    monkeypatch.setattr(gate_fns, "_decoder_clips", world)
    result = gate_fns.run_gate(pipe, "decoder", n=8)
    assert result.baselines["fps_response"] > 2
    assert result.checks["fps_response"] is follows_fps
    assert result.figures["fps_response"] == (pytest.approx(result.baselines["fps_response"]) if follows_fps
                                              else pytest.approx(1.0))
