"""The six training stages and `mav train`: losses fall, ↑F starts as D^t, no text reaches video, resume, torchrun."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mav import hub
from mav.cli import run
from mav.train import stages
from mav.train.ship import ship
from mav.train.stages import ORDER, build_stage, record_history

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def ready_model(tiny_model, tmp_path):
    """A copy of the tiny model whose history says every earlier stage ran, so any stage may start."""
    folder = tmp_path / "m"
    shutil.copytree(tiny_model, folder)
    for name in ORDER:
        record_history(folder, stages.STAGES[name].component, {"stage": name, "steps": 0})
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
    optimizer = torch.optim.Adam(params, lr=3e-3)
    losses = []
    for _ in range(30):
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
    decoder = hub.load_component(tiny_model, "decoder")
    with torch.no_grad():  # a decoder whose weights are not the init, so the check means something
        for p in decoder.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    config = hub.load_config(tiny_model, "interpolator")
    interpolator = stages.interpolator_from_decoder(decoder, config).eval()
    x = torch.randn(2, 3, 5, 16, 16)
    t = torch.tensor([10, 500])
    kwargs = dict(image_embed=torch.randn(2, 32), fps=torch.tensor([8.0, 4.0]))
    cond = torch.randn(2, 4, 5, 16, 16)
    with torch.no_grad():
        assert torch.allclose(interpolator(x, t, cond=cond, **kwargs), decoder(x, t, **kwargs), atol=1e-5)


def test_video_stages_never_see_text(ready_model, monkeypatch):
    seen: list[str] = []
    clip_cls = type(hub.load_component(ready_model, "clip"))
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


def test_random_masks_cover_every_mode():
    gens = [torch.Generator().manual_seed(i) for i in range(200)]
    known = stages.random_known_frames(gens, 9)
    assert known[:, 0].all()  # frame 0 is always shown
    assert (known.sum(1) == 1).any()  # animation
    assert (known[:, 1] & ~known[:, -1]).any()  # extrapolation (first frames kept)
    assert (~known[:, 1] & known[:, -1]).any()  # interpolation reaching the last frame


def _train(*args) -> int:
    return run(["train", *map(str, args), "--quiet"])


def test_train_writes_the_component_and_resume_is_exact(ready_model, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(ready_model, other)
    initial = hub.load_component(ready_model, "decoder").state_dict()
    assert _train("decoder-image", "--model", ready_model, "--steps", 2, "--batch-size", 4, "--warmup", 3) == 0
    assert _train("decoder-image", "--model", ready_model, "--steps", 4, "--batch-size", 4, "--warmup", 3,
                  "--resume") == 0
    assert _train("decoder-image", "--model", other, "--steps", 4, "--batch-size", 4, "--warmup", 3) == 0
    resumed, straight = (hub.load_component(f, "decoder").state_dict() for f in (ready_model, other))
    assert resumed.keys() == straight.keys()
    for key in resumed:
        assert torch.allclose(resumed[key], straight[key], atol=1e-6), key
    assert any(not torch.equal(resumed[k], initial[k]) for k in resumed)  # training changed the weights
    assert [h["stage"] for h in stages.history(other, "decoder")][-1] == "decoder-image"


def test_resume_with_another_config_names_the_mismatch(ready_model, capsys):
    assert _train("sr-high", "--model", ready_model, "--steps", 1, "--batch-size", 2) == 0
    assert _train("sr-high", "--model", ready_model, "--steps", 2, "--batch-size", 2, "--lr", 5e-4,
                  "--resume") == 2
    assert "lr" in capsys.readouterr().err


def test_recipe_runs_every_stage_in_order_and_the_model_generates(tiny_model, tmp_path):
    folder = tmp_path / "r"
    shutil.copytree(tiny_model, folder)
    assert _train("recipe", "--preset", "tiny", "--model", folder) == 0
    for name in ORDER:
        assert stages.completed(folder, name), name
    assert run(["generate", "a red circle", "--model", str(folder), "-o", str(tmp_path / "o.mp4"), "-q"]) == 0
    # --resume skips what is done
    before = _digest(folder)
    assert _train("recipe", "--preset", "tiny", "--model", folder, "--resume") == 0
    assert _digest(folder) == before

    # shipping: fp16 weights that load and generate, the configs and histories, a summary of every run
    assert _train("sr-high", "--model", folder, "--steps", 2, "--batch-size", 2,
                  "--run-dir", tmp_path / "sr-high-2") == 0
    shipped = ship(folder, tmp_path / "shipped")
    for component in hub.load_index(folder).components:
        trained, small = (hub.load_component(f, component).state_dict() for f in (folder, shipped))
        for key in trained:
            assert torch.allclose(small[key], trained[key], atol=2e-3, rtol=2e-3), (component, key)
    assert load_file(shipped / "decoder" / "model.safetensors")["conv_in.weight"].dtype == torch.float16
    summary = json.loads((shipped / "metrics_summary.json").read_text())
    assert list(summary) == list(ORDER)
    assert [run["steps"] for run in summary["sr-high"]] == [4, 2]
    assert all("loss_end" in run for runs in summary.values() for run in runs)
    assert run(["generate", "a red circle", "--model", str(shipped), "-o", str(tmp_path / "s.mp4"), "-q"]) == 0


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
])
def test_bad_input(args, code, needle, ready_model, tiny_model, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.mp4").write_text("not a video")
    (tmp_path / "videos").mkdir()
    from mav.media import Video, save_video

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
    args = ["train", "sr-high", "--steps", "3", "--batch-size", "4", "--warmup", "0", "--lr", "1e-3", "--quiet",
            "--device", "cpu"]
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, "-m", "mav", *args, "--model", str(one)], check=True, env=env, timeout=120,
                   capture_output=True)
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             "-m", "mav", *args, "--model", str(two)], env=env, timeout=180, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    a, b = (hub.load_component(f, "sr_high").state_dict() for f in (one, two))
    for key in a:
        # 1e-4, not less: Adam divides by √v, so for a weight whose gradient is near zero the rounding of the
        # all-reduce (a different summation order) is magnified; a wrong data split moves weights by ~lr = 1e-3.
        assert torch.allclose(a[key], b[key], atol=1e-4), (key, (a[key] - b[key]).abs().max())
    initial = hub.load_component(ready_model, "sr_high").state_dict()
    assert any(not torch.equal(a[k], initial[k]) for k in a)


def test_stages_train_on_real_folders(ready_model, tmp_path):
    """An image–text folder for an image stage, a video folder for a video stage (files the test writes)."""
    from PIL import Image

    from mav.media import Video, save_video

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
