"""The command line end to end on a tiny random model: every documented form, and every bad input."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mav.cli import run
from mav.media import read_video

# The tiny preset: D^t makes 4 frames at 16² and 4 fps, ↑F ×2 → 7 frames at 8 fps, SR^t_l → 32², SR_h → 64².
TINY_FRAMES, TINY_FPS, TINY_SIZE = 7, 8.0, 64


def mav(*args, stdin: str | None = None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    return run([str(a) for a in args])


def check_video(path: Path, frames: int, size: int, fps: float) -> None:
    video = read_video(path)
    assert (video.num_frames, video.height, video.width) == (frames, size, size)
    # GIF stores delays in whole centiseconds: 8 fps is written as 12 cs and reads back as 8.33 fps
    expected = 100 / round(100 / fps) if path.suffix == ".gif" else fps
    assert video.fps == pytest.approx(expected, rel=0.02)


# ---------------------------------------------------------------------------------------------------------------
# The forms the issue lists


def test_init_writes_all_components(tmp_path):
    assert mav("init", tmp_path / "m", "--preset", "tiny") == 0
    names = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert names == ["clip", "decoder", "interpolator", "model_index.json", "prior", "sr_high", "sr_low"]
    for comp in ("clip", "prior", "decoder", "interpolator", "sr_low", "sr_high"):
        assert (tmp_path / "m" / comp / "model.safetensors").stat().st_size > 0


def test_generate(tiny_model, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    assert mav("generate", "a red circle", "--model", tiny_model, "-o", out, "--seed", 1) == 0
    assert capsys.readouterr().out.strip() == str(out)
    check_video(out, TINY_FRAMES, TINY_SIZE, TINY_FPS)


def test_generate_prompts_file_json(tiny_model, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("prompts.txt").write_text("a red circle\n# a comment\n\nblue square on a black background\n")
    code = mav("generate", "--model", tiny_model, "--prompts-file", "prompts.txt", "-o", "out/{index}-{seed}.mp4",
               "--json", "--seed", 5, "--until", "decoder")
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    results = [json.loads(line) for line in lines]
    assert [r["prompt"] for r in results] == ["a red circle", "blue square on a black background"]
    assert [r["seed"] for r in results] == [5, 6]
    assert [r["path"] for r in results] == ["out/0-5.mp4", "out/1-6.mp4"]
    for r in results:
        assert set(r) >= {"path", "prompt", "seed", "frames", "fps", "size", "seconds"}
        assert (r["frames"], r["size"], r["fps"]) == (4, [16, 16], 4.0)
        check_video(tmp_path / r["path"], 4, 16, 4.0)


def test_generate_prompts_from_stdin(tiny_model, tmp_path, capsys, monkeypatch):
    out = tmp_path / "s-{index}.gif"
    code = mav("generate", "--model", tiny_model, "-o", out, "--until", "decoder", "--seed", 0,
               stdin="one\ntwo\n", monkeypatch=monkeypatch)
    assert code == 0
    assert (tmp_path / "s-0.gif").exists() and (tmp_path / "s-1.gif").exists()


def test_animate_image(tiny_model, media, tmp_path):
    out = tmp_path / "anim.mp4"
    assert mav("animate-image", media / "a.png", "--model", tiny_model, "-o", out, "--seed", 3) == 0
    check_video(out, TINY_FRAMES, TINY_SIZE, TINY_FPS)


def test_interpolate_two_images(tiny_model, media, tmp_path):
    out = tmp_path / "inter.gif"
    assert mav("interpolate", media / "a.png", media / "b.png", "--model", tiny_model, "-o", out) == 0
    check_video(out, TINY_FRAMES, TINY_SIZE, TINY_FPS)


def test_interpolate_video_factor(tiny_model, media, tmp_path):
    out = tmp_path / "smooth.mp4"
    assert mav("interpolate", media / "clip.mp4", "--factor", 4, "--model", tiny_model, "-o", out) == 0
    check_video(out, (8 - 1) * 4 + 1, 32, 32.0)


def test_extrapolate(tiny_model, media, tmp_path):
    out = tmp_path / "longer.mp4"
    assert mav("extrapolate", media / "clip.mp4", "--frames", 16, "--model", tiny_model, "-o", out) == 0
    check_video(out, 8 + 16, 32, 8.0)
    # the input frames are kept
    original, extended = read_video(media / "clip.mp4"), read_video(out)
    diff = (original.frames.float() - extended.frames[:8].float()).abs().mean()
    assert diff < 4.0


def test_variations(tiny_model, media, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert mav("variations", media / "clip.mp4", "-n", 2, "--model", tiny_model, "-o", "var-{index}.mp4",
               "--seed", 2) == 0
    base_fps = 8.0 * 7 / 3  # 8 input frames at 8 fps resampled to the 4 base frames
    for i in range(2):
        check_video(tmp_path / f"var-{i}.mp4", TINY_FRAMES, TINY_SIZE, base_fps * 2)
    a, b = read_video(tmp_path / "var-0.mp4"), read_video(tmp_path / "var-1.mp4")
    assert not torch.equal(a.frames, b.frames)


def test_upscale(tiny_model, media, tmp_path):
    out = tmp_path / "big.mp4"
    assert mav("upscale", media / "clip.mp4", "--model", tiny_model, "-o", out) == 0
    check_video(out, 8, TINY_SIZE, 8.0)  # 32² input: SR^t_l (→32²) has nothing to add, SR_h takes it to 64²


def test_info_json(tiny_model, capsys):
    assert mav("info", "--model", tiny_model, "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data["components"]) == {"clip", "prior", "decoder", "interpolator", "sr_low", "sr_high"}
    assert all(c["parameters"] > 0 for c in data["components"].values())


def test_same_seed_same_frames(tiny_model, tmp_path):
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        seed = 9 if name != "c.mp4" else 10
        assert mav("generate", "x", "--model", tiny_model, "-o", tmp_path / name, "--seed", seed, "--until",
                   "interpolator") == 0
    a, b, c = (read_video(tmp_path / n).frames for n in ("a.mp4", "b.mp4", "c.mp4"))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_python_dash_m_entry_point(tiny_model, tmp_path):
    """The real process: `python -m mav`, a one-line error on stderr, and the exit code."""
    result = subprocess.run([sys.executable, "-m", "mav", "generate", "  ", "--model", str(tiny_model)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == "mav: error: prompt is empty"
    assert result.stdout == ""


# ---------------------------------------------------------------------------------------------------------------
# Bad input: one line on stderr, the documented exit code, no output file


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("mav: error: ")
    return err[0]


@pytest.mark.parametrize("args, code", [
    (["generate", ""], 2),
    (["generate", "   "], 2),
    (["generate", "x", "--num-frames", "0"], 2),
    (["generate", "x", "--num-frames", "-3"], 2),
    (["generate", "x", "--steps", "0"], 2),
    (["generate", "x", "--steps", "decoder=-1"], 2),
    (["generate", "x", "--steps", "banana=3"], 2),
    (["generate", "x", "--factor", "0"], 2),
    (["generate", "x", "--fps", "-1"], 2),
    (["generate", "x", "--guidance-scale", "-1"], 2),
    (["generate", "x", "--seed", "-1"], 2),
    (["generate", "x", "--seed", str(2**32)], 2),
    (["generate", "x", "--dtype", "fp16", "--device", "cpu"], 2),
    (["generate", "x", "--sampler", "euler"], 2),
    (["generate", "x", "-o", "out.xyz"], 4),
    (["extrapolate", "{clip}", "--frames", "0"], 2),
    (["variations", "{clip}", "-n", "0"], 2),
    (["variations", "{clip}", "-n", "-2"], 2),
    (["interpolate", "{clip}", "--factor", "0"], 2),
    (["animate-image", "{missing}.png"], 4),
    (["animate-image", "{folder}"], 4),
    (["animate-image", "{text}.png"], 4),
    (["animate-image", "{truncated}.png"], 4),
    (["upscale", "{missing}.mp4"], 4),
    (["upscale", "{text}.mp4"], 4),
    (["extrapolate", "{truncated}.mp4"], 4),
    (["extrapolate", "{empty}.mp4"], 4),
    (["generate", "x", "--model", "{missing}"], 3),
    (["generate", "x", "--model", "nobody/nothing-here", "--offline"], 3),
    (["init", "{tmp}/m", "--preset", "huge"], 2),
])
def test_bad_input(args, code, tiny_model, media, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder").mkdir()
    (tmp_path / "text.png").write_text("not an image")
    (tmp_path / "text.mp4").write_text("not a video")
    (tmp_path / "empty.mp4").write_bytes(b"")
    png = (media / "a.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(png[: len(png) // 2])
    mp4 = (media / "clip.mp4").read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(mp4[: len(mp4) // 2])
    fields = {"clip": media / "clip.mp4", "missing": tmp_path / "missing", "folder": tmp_path / "folder",
              "text": tmp_path / "text", "truncated": tmp_path / "truncated", "empty": tmp_path / "empty",
              "tmp": tmp_path}
    args = [a.format(**fields) for a in args]
    if "--model" not in args and args[0] != "init":
        args += ["--model", str(tiny_model)]
    before = set(tmp_path.rglob("*"))
    assert run(args) == code
    _one_line_error(capsys)
    assert set(tmp_path.rglob("*")) == before  # no output, no temporary file


def test_empty_prompts_file_and_stdin(tiny_model, tmp_path, capsys, monkeypatch):
    (tmp_path / "empty.txt").write_text("\n# only a comment\n")
    assert mav("generate", "--prompts-file", tmp_path / "empty.txt", "--model", tiny_model) == 2
    _one_line_error(capsys)
    assert mav("generate", "--model", tiny_model, stdin="", monkeypatch=monkeypatch) == 2
    _one_line_error(capsys)
    assert mav("generate", "--prompts-file", "-", "--model", tiny_model, stdin="  \n",
               monkeypatch=monkeypatch) == 2
    _one_line_error(capsys)


def test_huge_image(tiny_model, tmp_path, capsys):
    from PIL import Image

    Image.new("RGB", (9000, 9000), (10, 20, 30)).save(tmp_path / "huge.png")
    assert mav("animate-image", tmp_path / "huge.png", "--model", tiny_model, "-o", tmp_path / "o.mp4") == 4
    assert "large" in _one_line_error(capsys)
    assert not (tmp_path / "o.mp4").exists()


def test_zero_frame_video(tiny_model, tmp_path, capsys):
    import av

    with av.open(str(tmp_path / "zero.mp4"), "w") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width = stream.height = 32
    assert mav("upscale", tmp_path / "zero.mp4", "--model", tiny_model, "-o", tmp_path / "o.mp4") == 4
    _one_line_error(capsys)
    assert not (tmp_path / "o.mp4").exists()


def test_output_exists_needs_overwrite(tiny_model, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"precious")
    assert mav("generate", "x", "--model", tiny_model, "-o", out, "--until", "decoder") == 4
    _one_line_error(capsys)
    assert out.read_bytes() == b"precious"
    assert mav("generate", "x", "--model", tiny_model, "-o", out, "--until", "decoder", "--overwrite") == 0
    check_video(out, 4, 16, 4.0)


def test_unwritable_output_folder(tiny_model, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert mav("generate", "x", "--model", tiny_model, "-o", tmp_path / "file" / "out.mp4") == 4
    _one_line_error(capsys)
    # a missing folder is made, but only once the video is ready
    out = tmp_path / "new" / "folder" / "o.mp4"
    assert mav("generate", "x", "--model", tiny_model, "-o", out, "--until", "decoder") == 0
    check_video(out, 4, 16, 4.0)


def test_several_outputs_need_a_field(tiny_model, media, tmp_path, capsys):
    assert mav("variations", media / "clip.mp4", "-n", 2, "--model", tiny_model, "-o", tmp_path / "v.mp4") == 2
    assert "{index}" in _one_line_error(capsys)
    assert not (tmp_path / "v.mp4").exists()


@pytest.mark.parametrize("damage, needle", [
    ("missing_weights", "decoder"),
    ("missing_config", "config.json"),
    ("bin_weights", "safetensors"),
    ("corrupt_weights", "decoder"),
    ("wrong_shape", "shape"),
    ("bad_noise_correlation", "frame_noise_correlation"),
])
def test_broken_model_folder(damage, needle, tiny_model, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "broken"
    shutil.copytree(tiny_model, folder)
    weights = folder / "decoder" / "model.safetensors"
    if damage == "missing_weights":
        weights.unlink()
        index = json.loads((folder / "model_index.json").read_text())
        assert "decoder" in index["components"]
    elif damage == "missing_config":
        (folder / "decoder" / "config.json").unlink()
    elif damage == "bin_weights":
        torch.save(load_file(weights), folder / "decoder" / "model.bin")
        weights.unlink()
    elif damage == "corrupt_weights":
        weights.write_bytes(weights.read_bytes()[:100])
    elif damage == "wrong_shape":
        tensors = load_file(weights)
        key = next(k for k, v in tensors.items() if v.dim() == 4)
        tensors[key] = torch.zeros(*tensors[key].shape[:-1], tensors[key].shape[-1] + 1)
        save_file(tensors, weights)
    elif damage == "bad_noise_correlation":
        config = folder / "decoder" / "config.json"
        config.write_text(json.dumps(dict(json.loads(config.read_text()), frame_noise_correlation=1.0)))
    out = tmp_path / "out.mp4"
    assert mav("generate", "x", "--model", folder, "-o", out) == 3
    assert needle in _one_line_error(capsys)
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message when no GPU is present")
def test_cuda_without_gpu(tiny_model, tmp_path, capsys):
    assert mav("generate", "x", "--model", tiny_model, "--device", "cuda", "-o", tmp_path / "o.mp4") == 2
    assert "cuda" in _one_line_error(capsys).lower()


def test_compile_routes_sampling_through_torch_compile(tiny_model, tmp_path, monkeypatch):
    """--compile hands every denoiser to torch.compile and samples through what it returns; same video.
    (torch.compile is replaced by a recording pass-through: a real CPU compile takes minutes.)"""
    compiled, called = [], []

    def fake_compile(model):
        compiled.append(type(model).__name__)

        def run(*args, **kwargs):
            called.append(type(model).__name__)
            return model(*args, **kwargs)
        return run

    monkeypatch.setattr(torch, "compile", fake_compile)
    plain, fast = tmp_path / "plain.mp4", tmp_path / "fast.mp4"
    assert run(["generate", "a red circle", "--model", str(tiny_model), "-o", str(plain), "--seed", "3", "-q"]) == 0
    assert not compiled
    assert run(["generate", "a red circle", "--model", str(tiny_model), "-o", str(fast), "--seed", "3", "-q",
                "--compile"]) == 0
    assert sorted(compiled) == sorted(["DiffusionPrior", *["SpaceTimeUNet"] * 4])
    assert set(called) == {"DiffusionPrior", "SpaceTimeUNet"}
    assert torch.equal(read_video(plain).frames, read_video(fast).frames)


def test_bf16_warning_is_not_hidden_by_quiet(tiny_model, tmp_path, capsys, monkeypatch):
    from mav.checks import options

    monkeypatch.setattr(options, "cpu_has_native_bf16", lambda: False)
    assert mav("generate", "a red circle", "--model", tiny_model, "-o", tmp_path / "a.mp4", "--seed", 1,
               "--device", "cpu", "--dtype", "bf16", "-q") == 0
    captured = capsys.readouterr()
    assert "mav: warning:" in captured.err and captured.out.strip() == str(tmp_path / "a.mp4")


def test_interpolate_refuses_a_one_frame_video_before_loading(tiny_model, tmp_path, capsys):
    from mav.media import Video
    from mav.media_write import save_video

    save_video(Video(torch.zeros(1, 16, 16, 3, dtype=torch.uint8), 8.0), tmp_path / "one.mp4")
    assert mav("interpolate", tmp_path / "one.mp4", "--factor", 2, "--model", tiny_model, "-o",
               tmp_path / "x.mp4") == 4
    assert "needs at least 2" in capsys.readouterr().err and not (tmp_path / "x.mp4").exists()
