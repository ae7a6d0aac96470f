"""The Python API: load_pipeline → generate → save_video, determinism, batches and missing components."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import mav
from mav.errors import ModelError, UsageError


@pytest.fixture(scope="module")
def pipe(tiny_model):
    return mav.load_pipeline(tiny_model, device="cpu")


def test_generate_returns_frames_and_fps(pipe, tmp_path):
    video = pipe.generate("a red circle", seed=1)
    assert video.frames.dtype == torch.uint8
    assert tuple(video.frames.shape) == (7, 64, 64, 3)
    assert video.fps == 8.0
    assert video.meta["seed"] == 1 and video.meta["prompt"] == "a red circle"
    path = mav.save_video(video, tmp_path / "out.webm")
    back = mav.read_video(path)
    assert back.num_frames == 7 and back.fps == pytest.approx(8.0)


def test_same_seed_identical_and_batch_independent(pipe):
    one = pipe.generate("green square", seed=4, until="interpolator")
    again = pipe.generate("green square", seed=4, until="interpolator")
    assert torch.equal(one.frames, again.frames)
    batch = pipe.generate(["red circle", "green square"], seed=3, until="interpolator")
    assert [v.meta["seed"] for v in batch] == [3, 4]
    # prompt i of a batch uses seed + i and does not depend on its batch neighbours
    assert (batch[1].frames.int() - one.frames.int()).abs().max() <= 1


def test_until_stops_the_cascade(pipe):
    sizes = {}
    for stage in ("decoder", "interpolator", "sr_low", "sr_high"):
        v = pipe.generate("x", seed=0, until=stage)
        sizes[stage] = (v.num_frames, v.height, v.fps)
    assert sizes == {"decoder": (4, 16, 4.0), "interpolator": (7, 16, 8.0), "sr_low": (7, 32, 8.0),
                     "sr_high": (7, 64, 8.0)}


def test_controls(pipe):
    v = pipe.generate("x", seed=0, num_frames=3, fps=6.0, interpolation_factor=3, until="interpolator",
                      steps={"decoder": 2, "interpolator": 1}, guidance=5.0)
    assert (v.num_frames, v.fps) == ((3 - 1) * 3 + 1, 18.0)
    with pytest.raises(UsageError):
        pipe.generate("  ")
    with pytest.raises(UsageError):
        pipe.generate("x", seed=-1)
    with pytest.raises(UsageError):
        pipe.generate("x", until="prior")


def test_negative_prompt_changes_the_result(pipe):
    a = pipe.generate("x", seed=0, until="decoder", guidance=4.0)
    b = pipe.generate("x", seed=0, until="decoder", guidance=4.0, negative_prompt="blue")
    assert not torch.equal(a.frames, b.frames)


def test_samplers_all_run(pipe):
    for name in ("ddim", "ddpm", "dpmpp"):
        pipe.configure(sampler=name)
        v = pipe.generate("x", seed=0, until="decoder")
        assert v.num_frames == 4
    pipe.configure(sampler="ddim")
    with pytest.raises(UsageError):
        pipe.configure(sampler="euler")


def test_sr_high_uses_one_initial_noise_for_all_frames(pipe):
    """Identical input frames must come out identical: SR_h is per frame and starts every frame from one noise."""
    low = torch.zeros(1, 3, 3, 32, 32)
    low[:, 0] = 0.5
    gens = [torch.Generator().manual_seed(0)]
    out = pipe.sr_high.sample(low, gens, steps=2)
    assert out.shape == (1, 3, 3, 64, 64)
    assert torch.allclose(out[:, :, 0], out[:, :, 1], atol=1e-5)
    assert torch.allclose(out[:, :, 0], out[:, :, 2], atol=1e-5)


def test_interpolator_fill_keeps_known_frames_and_fills_the_rest(pipe):
    video = torch.rand(1, 3, 13, 16, 16) * 2 - 1
    known = torch.zeros(13, dtype=torch.bool)
    known[::4] = True
    before = video.clone()
    out = pipe.interpolator.fill(video, known, fps=8.0, embed=None, text=None,
                                 gens=[torch.Generator().manual_seed(0)], steps=1, guidance=1.0)
    assert torch.equal(out[:, :, known], before[:, :, known])
    assert not torch.equal(out[:, :, ~known], before[:, :, ~known])


def test_missing_component_is_skipped_and_named(tiny_model, tmp_path):
    folder = tmp_path / "partial"
    shutil.copytree(tiny_model, folder)
    index = json.loads((folder / "model_index.json").read_text())
    index["components"] = [c for c in index["components"] if c not in ("sr_high", "interpolator")]
    (folder / "model_index.json").write_text(json.dumps(index))
    shutil.rmtree(folder / "sr_high")
    partial = mav.load_pipeline(folder, device="cpu")
    assert set(partial.skipped) == {"sr_high", "interpolator"}
    v = partial.generate("x", seed=0)
    assert (v.num_frames, v.height) == (4, 32)  # no ↑F, no SR_h: the base frames after SR^t_l
    assert set(v.meta["skipped"]) == {"sr_high", "interpolator"}
    with pytest.raises(ModelError, match="interpolator"):
        partial.animate_image(mav.Video(torch.zeros(1, 16, 16, 3, dtype=torch.uint8), 8.0))


def test_python_api_modes(pipe, media):
    anim = pipe.animate_image(media / "a.png", seed=0)
    assert anim.num_frames == 7
    inter = pipe.interpolate(media / "a.png", media / "b.png", seed=0)
    assert inter.num_frames == 7
    longer = pipe.extrapolate(media / "clip.mp4", 5, seed=0)
    assert longer.num_frames == 13
    variants = pipe.variations(media / "a.png", 2, strength=0.5, seed=0, until="decoder")
    assert len(variants) == 2 and variants[0].num_frames == 4
    big = pipe.upscale(media / "clip.mp4", seed=0, stages=("sr_high",))
    assert (big.num_frames, big.height) == (8, 64)


class _ZeroResidualOracle(torch.nn.Module):
    """The exact denoiser of a data distribution that is all zeros: what a residual SR net predicts when the
    upsampled input is already right."""

    def __init__(self, config, schedule) -> None:
        super().__init__()
        self.config, self.schedule = config, schedule

    def forward(self, x_t, t, **kwargs):
        sigma = self.schedule.sqrt_one_minus_alphas_cumprod.to(x_t)[t].view(-1, *[1] * (x_t.dim() - 1))
        return self.schedule.target(torch.zeros_like(x_t), x_t / sigma, t)


@pytest.mark.parametrize("stage", ["sr_low", "sr_high"])
def test_residual_sr_adds_its_sample_to_the_upsampled_input(pipe, monkeypatch, stage):
    """With `residual`, the stage samples x − bicubic(input): a zero residual must give back bicubic exactly."""
    from mav.conditioning import sr_cond

    sr = pipe.stages[stage]
    config = sr.config
    assert config.residual
    monkeypatch.setattr(sr, "model", _ZeroResidualOracle(config, sr.schedule))
    low = torch.rand(1, 3, 8, config.low_res_size, config.low_res_size) * 2 - 1
    gens = [torch.Generator().manual_seed(0)]
    if stage == "sr_low":
        out = sr.sample(low, gens, fps=8.0, steps=3)
    else:
        out = sr.sample(low, gens, steps=3)
    assert torch.allclose(out, sr_cond(low, config.sample_size), atol=1e-4)
