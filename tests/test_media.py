"""mav.media: format round trips, atomic writes, bad inputs and outputs, image modes, pixel ↔ tensor helpers."""

from __future__ import annotations

import os
import struct
import tempfile
import zlib
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from mav import checks, media_write
from mav.checks import expand_template as expand_output_template
from mav.checks import output as check_output
from mav.checks import slugify
from mav.errors import MavError, MediaError, UsageError
from mav.media import (
    Video,
    center_crop_square,
    image_from_tensor,
    image_to_tensor,
    read_image,
    read_video,
    resize_video,
)
from mav.media_write import save_image, save_video


def make_video(num_frames: int = 6, height: int = 32, width: int = 48, fps: float = 8.0) -> Video:
    """Smooth gradients plus a moving block: easy to encode, and every frame differs (GIF merges duplicates)."""
    y = torch.linspace(0, 255, height)[:, None].expand(height, width)
    x = torch.linspace(0, 255, width)[None, :].expand(height, width)
    frames = torch.zeros(num_frames, height, width, 3)
    for i in range(num_frames):
        frames[i, ..., 0] = x
        frames[i, ..., 1] = y
        frames[i, 4 : 4 + height // 3, 2 + 3 * i : 2 + 3 * i + width // 4, 2] = 220.0
    return Video(frames.round().to(torch.uint8), fps)


def mean_abs_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().mean().item()


def listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


# ---------------------------------------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize(
    ("name", "max_error"),
    [("clip.mp4", 4.0), ("clip.webm", 5.0), ("clip.gif", 6.0), ("frames/", 0.0), ("frames", 0.0)],
)
def test_round_trip(tmp_path: Path, name: str, max_error: float) -> None:
    video = make_video()
    out = save_video(video, tmp_path / name if not name.endswith("/") else f"{tmp_path}/{name}")
    assert out == tmp_path / name.rstrip("/")
    assert listing(tmp_path) == [name.rstrip("/")]  # no temporary file left beside it

    back = read_video(out)
    assert (back.num_frames, back.height, back.width) == (6, 32, 48)
    if name.endswith(".gif"):  # 125 ms is stored as 12 or 13 centiseconds
        assert abs(1 / back.fps - 1 / video.fps) <= 0.005 + 1e-9
    else:
        assert back.fps == pytest.approx(video.fps)
    assert mean_abs_error(back.frames, video.frames) <= max_error
    if max_error == 0.0:
        assert listing(out) == [f"frame_{i:05d}.png" for i in range(6)]


@pytest.mark.parametrize(("fps", "delay_ms"), [(8.0, 120), (12.0, 80), (10.0, 100), (75.0, 20)])
def test_gif_delay_is_the_nearest_centisecond(tmp_path: Path, fps: float, delay_ms: int) -> None:
    out = save_video(make_video(num_frames=2, height=8, width=16, fps=fps), tmp_path / "a.gif")
    with Image.open(out) as gif:
        assert gif.info["duration"] == delay_ms and gif.info["loop"] == 0  # 75 fps: browsers need ≥ 2 cs


def test_mp4_fractional_fps_and_faststart(tmp_path: Path) -> None:
    out = save_video(make_video(fps=7.5), tmp_path / "a.mp4")
    assert read_video(out).fps == pytest.approx(7.5)
    data = out.read_bytes()
    assert 0 <= data.find(b"moov") < data.find(b"mdat")  # +faststart: index before the media data
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert stream.average_rate == Fraction(15, 2)


def test_odd_size_mp4_is_padded_by_edge_replication(tmp_path: Path) -> None:
    video = make_video(num_frames=3, height=17, width=23)
    back = read_video(save_video(video, tmp_path / "odd.mp4"))
    assert (back.num_frames, back.height, back.width) == (3, 18, 24)
    # the picture stays at the top left (tiny saturated frames cost yuv420p a few levels)...
    assert mean_abs_error(back.frames[:, :17, :23], video.frames) < 8.0
    assert mean_abs_error(back.frames[:, 1:, 1:], video.frames) > 10.0
    # ...and the added row and column repeat their neighbour
    assert mean_abs_error(back.frames[:, 17, :23], video.frames[:, 16]) < 4.0
    assert mean_abs_error(back.frames[:, :17, 23], video.frames[:, :, 22]) < 4.0


def test_odd_size_webm_and_gif_keep_their_size(tmp_path: Path) -> None:
    video = make_video(num_frames=2, height=17, width=23)
    for name in ("odd.webm", "odd.gif"):
        back = read_video(save_video(video, tmp_path / name))
        assert (back.height, back.width) == (17, 23)


def test_read_video_max_frames(tmp_path: Path) -> None:
    out = save_video(make_video(num_frames=6), tmp_path / "a.webm")
    assert read_video(out, max_frames=2).num_frames == 2
    assert read_video(save_video(make_video(), f"{tmp_path}/f/"), max_frames=3).num_frames == 3


def test_frames_folder_without_fps_needs_one(tmp_path: Path) -> None:
    folder = tmp_path / "user_frames"
    folder.mkdir()
    for i in (1, 2, 10):  # natural order: 1, 2, 10 rather than 1, 10, 2
        Image.new("RGB", (8, 8), (i * 20, 0, 0)).save(folder / f"img{i}.png")
    with pytest.raises(MediaError, match="frame rate"):
        read_video(folder)
    video = read_video(folder, fps=12)
    assert video.fps == 12 and video.frames[:, 0, 0, 0].tolist() == [20, 40, 200]


def test_save_and_read_image(tmp_path: Path) -> None:
    image = make_video(num_frames=1).frames[0]
    assert torch.equal(read_image(save_image(image, tmp_path / "a.png")), image)
    assert mean_abs_error(read_image(save_image(image, tmp_path / "a.jpg")), image) < 3.0
    assert listing(tmp_path) == ["a.jpg", "a.png"]
    with pytest.raises(MediaError, match="already exists"):
        save_image(image, tmp_path / "a.png")
    with pytest.raises(MediaError, match="unknown output suffix"):
        save_image(image, tmp_path / "a.mp4")


# ---------------------------------------------------------------------------------------------------------
# Atomic writes


@pytest.mark.parametrize("name", ["clip.mp4", "clip.webm", "clip.gif", "frames/"])
def test_interrupt_mid_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    real = media_write._iter_frames

    def interrupted(video: Video):
        for i, frame in enumerate(real(video)):
            if i == 3:
                raise KeyboardInterrupt
            yield frame

    monkeypatch.setattr(media_write, "_iter_frames", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_video(make_video(), f"{tmp_path}/{name}")
    assert listing(tmp_path) == []


def test_interrupt_keeps_the_previous_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "clip.mp4"
    out.write_bytes(b"previous")

    def interrupted(video: Video):
        yield np.zeros((32, 48, 3), np.uint8)
        raise KeyboardInterrupt

    monkeypatch.setattr(media_write, "_iter_frames", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_video(make_video(), out, overwrite=True)
    assert listing(tmp_path) == ["clip.mp4"] and out.read_bytes() == b"previous"


def test_encoder_failure_is_media_error_leaving_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = dict(media_write._ENCODERS)
    bad[".mp4"] = ("mp4", "libx264", {"crf": "18", "profile": "no-such-profile"}, {})
    monkeypatch.setattr(media_write, "_ENCODERS", bad)
    with pytest.raises(MediaError, match="clip.mp4"):
        save_video(make_video(), tmp_path / "clip.mp4")
    assert listing(tmp_path) == []


def test_output_created_meanwhile_is_not_clobbered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "clip.gif"
    real = media_write._write_gif

    def racing(video: Video, tmp: Path) -> None:
        out.write_bytes(b"someone else's")
        real(video, tmp)

    monkeypatch.setattr(media_write, "_write_gif", racing)
    with pytest.raises(MediaError, match="already exists"):
        save_video(make_video(), out)
    assert listing(tmp_path) == ["clip.gif"] and out.read_bytes() == b"someone else's"


def test_frames_folder_created_meanwhile_is_not_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = media_write._write_frames

    def racing(video: Video, tmp: Path) -> None:
        (tmp_path / "frames").mkdir()
        (tmp_path / "frames" / "frame_00000.png").write_bytes(b"someone else's")
        real(video, tmp)

    monkeypatch.setattr(media_write, "_write_frames", racing)
    with pytest.raises(MediaError, match="already exists"):
        save_video(make_video(num_frames=2), f"{tmp_path}/frames/")
    assert listing(tmp_path) == ["frames"] and listing(tmp_path / "frames") == ["frame_00000.png"]


def test_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "clip.gif"
    save_video(make_video(num_frames=2), out)
    with pytest.raises(MediaError, match="already exists"):
        save_video(make_video(num_frames=3), out)
    assert read_video(out).num_frames == 2
    save_video(make_video(num_frames=3), out, overwrite=True)
    assert read_video(out).num_frames == 3
    assert listing(tmp_path) == ["clip.gif"]


def test_overwrite_frames_folder(tmp_path: Path) -> None:
    folder = f"{tmp_path}/frames/"
    save_video(make_video(num_frames=5), folder)
    save_video(make_video(num_frames=2), folder, overwrite=True)
    assert listing(tmp_path / "frames") == ["frame_00000.png", "frame_00001.png"]
    assert listing(tmp_path) == ["frames"]
    (tmp_path / "frames" / "notes.txt").write_text("mine")
    with pytest.raises(MediaError, match="not a folder of frame"):  # never deletes a folder of other files
        save_video(make_video(num_frames=2), folder, overwrite=True)
    assert (tmp_path / "frames" / "notes.txt").read_text() == "mine"


# ---------------------------------------------------------------------------------------------------------
# Bad outputs


def test_check_output_accepts(tmp_path: Path) -> None:
    assert check_output(tmp_path / "a.MP4") == tmp_path / "a.MP4"
    assert check_output(f"{tmp_path}/frames.v2/") == tmp_path / "frames.v2"
    assert check_output(tmp_path / "frames") == tmp_path / "frames"
    assert check_output(tmp_path / "a.jpg", kind="image") == tmp_path / "a.jpg"
    assert listing(tmp_path) == []


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("clip.mov", "unknown output suffix '.mov'"),
        ("clip.png", "unknown output suffix '.png'"),
        ("missing/clip.mp4", "does not exist"),
        ("a_file/clip.mp4", "is not a folder"),
        ("existing.mp4", "already exists"),
        ("existing_folder/", "already exists"),
    ],
)
def test_bad_outputs(tmp_path: Path, name: str, message: str) -> None:
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "existing.mp4").write_bytes(b"x")
    (tmp_path / "existing_folder").mkdir()
    before = listing(tmp_path)
    path = f"{tmp_path}/{name}"
    with pytest.raises(MediaError, match=message) as err:
        check_output(path)
    assert err.value.exit_code == 4 and str(tmp_path) in str(err.value)
    with pytest.raises(MediaError, match=message):
        save_video(make_video(num_frames=2), path)
    assert listing(tmp_path) == before


def test_overwrite_refuses_a_folder_for_a_file(tmp_path: Path) -> None:
    (tmp_path / "clip.mp4").mkdir()
    with pytest.raises(MediaError, match="it is a folder"):
        check_output(tmp_path / "clip.mp4", overwrite=True)


def test_unwritable_output_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    if os.geteuid() == 0:  # root writes anywhere; make the trial write fail as it would for anyone else
        def refuse(**_):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(tempfile, "mkstemp", refuse)
    else:
        locked.chmod(0o500)
    try:
        with pytest.raises(MediaError, match="cannot write in output folder .*Permission denied"):
            save_video(make_video(num_frames=2), locked / "clip.mp4")
    finally:
        locked.chmod(0o700)
    assert listing(locked) == []


# ---------------------------------------------------------------------------------------------------------
# Bad inputs


def forged_png(path: Path, width: int, height: int) -> Path:
    """A valid 1×1 PNG whose header claims `width`×`height`: only a size check before decoding survives it."""
    Image.new("RGB", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


def truncated(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def test_bad_images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "cut.jpg", quality=95)
    (tmp_path / "text.png").write_text("not an image\n")
    (tmp_path / "folder").mkdir()
    cases = {
        tmp_path / "missing.png": "not found",
        tmp_path / "folder": "is a folder",
        tmp_path / "text.png": "not an image",
        truncated(tmp_path / "cut.jpg"): "truncated",
        forged_png(tmp_path / "big.png", 8000, 8000): "too large.*8000×8000",  # ours: 64 MP > 40 MP
        forged_png(tmp_path / "bomb.png", 20000, 20000): "too large",  # 400 MP
    }
    for path, message in cases.items():
        with pytest.raises(MediaError, match=message) as err:
            read_image(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(MediaError, match="too large"):
        read_image(tmp_path / "bomb.png", max_pixels=10**9)  # Pillow's own DecompressionBombError
    Image.new("RGB", (100, 60)).save(tmp_path / "small.png")
    with pytest.raises(MediaError, match="too large"):
        read_image(tmp_path / "small.png", max_pixels=5000)


def test_bad_videos(tmp_path: Path) -> None:
    (tmp_path / "text.mp4").write_text("not a video\n" * 20)
    (tmp_path / "empty_folder").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "still.png")
    save_video(make_video(num_frames=12), tmp_path / "cut.mp4")
    save_video(make_video(num_frames=12), tmp_path / "cut.webm")
    with av.open(str(tmp_path / "zero.mkv"), "w", format="matroska") as container:  # a stream, no frames
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        container.start_encoding()
    cases = {
        tmp_path / "missing.mp4": "not found",
        tmp_path / "text.mp4": "not a video",
        tmp_path / "empty_folder": "no frames",
        tmp_path / "still.png": "still image",
        truncated(tmp_path / "cut.mp4"): "truncated",
        truncated(tmp_path / "cut.webm"): "truncated",  # opens, but its first frame is cut off
        tmp_path / "zero.mkv": "no frames",
    }
    for path, message in cases.items():
        with pytest.raises(MediaError, match=message) as err:
            read_video(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value)


# ---------------------------------------------------------------------------------------------------------
# Image modes


def test_exif_rotated_jpeg_comes_out_upright(tmp_path: Path) -> None:
    stored = np.zeros((10, 20, 3), np.uint8)
    stored[:, :10] = (255, 0, 0)  # left half red
    stored[:, 10:] = (0, 0, 255)
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = 6  # orientation: display rotated 90° clockwise
    image.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    upright = read_image(tmp_path / "phone.jpg")
    assert upright.shape == (20, 10, 3)
    assert upright[:8, :, 0].float().mean() > 200 and upright[:8, :, 2].float().mean() < 50  # left became top
    assert upright[12:, :, 2].float().mean() > 200


def test_transparency_is_composited_on_white(tmp_path: Path) -> None:
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (200, 0, 0, 255)
    rgba[0, 1] = (200, 0, 0, 0)
    rgba[1, 0] = (0, 0, 0, 128)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    out = read_image(tmp_path / "rgba.png")
    assert out[0, 0].tolist() == [200, 0, 0]
    assert out[0, 1].tolist() == [255, 255, 255]
    assert out[1, 0].tolist() == [127, 127, 127]

    la = np.array([[[50, 255], [50, 0]]], np.uint8)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    assert read_image(tmp_path / "la.png").tolist() == [[[50, 50, 50], [255, 255, 255]]]

    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    palette.putpixel((1, 0), 1)
    palette.save(tmp_path / "p.png", transparency=0)
    assert read_image(tmp_path / "p.png").tolist() == [[[255, 255, 255], [10, 20, 30]]]


def test_other_modes_become_rgb(tmp_path: Path) -> None:
    Image.fromarray(np.array([[0, 100, 255]], np.uint8), "L").save(tmp_path / "gray.png")
    gray = read_image(tmp_path / "gray.png")
    assert gray.shape == (1, 3, 3) and gray.dtype == torch.uint8
    assert gray[0, :, 0].tolist() == [0, 100, 255] and torch.equal(gray[..., 0], gray[..., 2])

    Image.fromarray(np.array([[0, 32896, 65535]], np.uint16)).save(tmp_path / "gray16.png")
    assert read_image(tmp_path / "gray16.png")[0, :, 0].tolist() == [0, 128, 255]  # scaled, not clipped

    Image.new("CMYK", (4, 4), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    red = read_image(tmp_path / "cmyk.jpg").float().mean(dim=(0, 1))
    assert red[0] > 200 and red[1] < 60 and red[2] < 60

    first, second = Image.new("RGB", (6, 4), (255, 0, 0)), Image.new("RGB", (6, 4), (0, 0, 255))
    first.save(tmp_path / "anim.gif", save_all=True, append_images=[second], duration=100)
    anim = read_image(tmp_path / "anim.gif")
    assert anim.shape == (4, 6, 3) and anim[..., 0].min() > 200 and anim[..., 2].max() < 50


# ---------------------------------------------------------------------------------------------------------
# Tensors


def test_to_tensor_from_tensor_round_trip_is_exact() -> None:
    every_value = torch.arange(256, dtype=torch.uint8).reshape(4, 8, 8, 1).expand(4, 8, 8, 3).contiguous()
    video = Video(every_value, fps=8)
    x = video.to_tensor()
    assert x.shape == (3, 4, 8, 8) and x.dtype == torch.float32
    assert x.min() == -1.0 and x.max() == 1.0
    back = Video.from_tensor(x, fps=8)
    assert torch.equal(back.frames, every_value) and back.fps == 8.0
    bf16 = Video.from_tensor(x.to(torch.bfloat16), 8).frames  # bf16 output lands within one level
    assert (bf16.int() - every_value.int()).abs().max() <= 1
    image = every_value[0]
    assert torch.equal(image_from_tensor(image_to_tensor(image)), image)


def test_from_tensor_clamps_rounds_and_rejects_nan() -> None:
    x = torch.tensor([-3.0, -1.0, 0.0, 0.003, 1.0, 7.0]).reshape(1, 1, 1, 6).expand(3, 1, 1, 6)
    assert Video.from_tensor(x, 8).frames[0, 0, :, 0].tolist() == [0, 0, 128, 128, 255, 255]
    with pytest.raises(MavError, match="NaN"):
        Video.from_tensor(torch.full((3, 1, 2, 2), float("nan")), 8)
    with pytest.raises(ValueError):
        Video.from_tensor(torch.zeros(1, 3, 1, 2, 2), 8)
    with pytest.raises(ValueError):
        Video(torch.zeros(0, 2, 2, 3, dtype=torch.uint8), 8)
    with pytest.raises(ValueError):
        Video(torch.zeros(1, 2, 2, 3, dtype=torch.uint8), 0)


def test_resize_video() -> None:
    x = torch.rand(3, 2, 16, 24) * 2 - 1
    assert resize_video(x, 8).shape == (3, 2, 8, 8)
    assert resize_video(x[None], (32, 40)).shape == (1, 3, 2, 32, 40)
    up = resize_video(x, 64)
    assert up.min() >= -1 and up.max() <= 1  # bicubic overshoot clamped
    # antialiasing: a single bright pixel keeps about its 1/16 share at 4× down wherever it lies (without it,
    # bicubic gives it either ~0 or ~0.7)
    for pos in range(4, 12):
        impulse = torch.full((3, 1, 16, 16), -1.0)
        impulse[:, :, pos, pos] = 1.0
        share = (resize_video(impulse, 4) + 1).sum(dim=(-1, -2)) / 2
        assert ((share > 0.04) & (share < 0.1)).all()
    constant = torch.full((1, 3, 2, 9, 9), 0.25)
    assert torch.allclose(resize_video(constant, 5, mode="area"), torch.full((1, 3, 2, 5, 5), 0.25))
    frame_by_frame = torch.stack([resize_video(x[:, i : i + 1], 8)[:, 0] for i in range(2)], dim=1)
    assert torch.allclose(resize_video(x, 8), frame_by_frame)  # frames never mix
    with pytest.raises(ValueError):
        resize_video(x[0], 8)


def test_center_crop_square() -> None:
    image = torch.arange(4 * 6 * 3, dtype=torch.uint8).reshape(4, 6, 3)
    assert torch.equal(center_crop_square(image), image[:, 1:5])
    video = make_video(num_frames=2, height=32, width=48)
    cropped = center_crop_square(video)
    assert isinstance(cropped, Video) and cropped.frames.shape == (2, 32, 32, 3) and cropped.fps == video.fps
    assert torch.equal(cropped.frames, video.frames[:, :, 8:40])
    x = torch.rand(1, 3, 2, 10, 6)
    assert torch.equal(center_crop_square(x), x[..., 2:8, :])


# ---------------------------------------------------------------------------------------------------------
# Output names


def test_slugify() -> None:
    assert slugify("A red circle, moving LEFT!") == "a-red-circle-moving-left"
    assert slugify("  ../../etc/passwd  ") == "etc-passwd"
    assert slugify("一只红色的猫") == "一只红色的猫"
    assert slugify("!!!") == "untitled"
    long = slugify("word " * 40, max_length=22)
    assert long == "word-word-word-word" and len(long) <= 22


def test_expand_output_template() -> None:
    fields = {"index": 3, "seed": 42, "prompt": slugify("A red circle")}
    assert expand_output_template("out/{index:03d}-{seed}-{prompt}.mp4", **fields) == "out/003-42-a-red-circle.mp4"
    for bad in ("{colour}.mp4", "{}.mp4", "{seed.mp4", "{index:q}.mp4"):
        with pytest.raises(UsageError) as err:
            expand_output_template(bad, **fields)
        assert err.value.exit_code == 2 and bad in str(err.value)
    with pytest.raises(UsageError, match=r"unknown field \{colour\}.*\{index\}, \{prompt\}, \{seed\}"):
        expand_output_template("{colour}.mp4", **fields)


def test_template_fields() -> None:
    assert checks.template_fields("out/{seed}-{index:02d}-{prompt}.mp4") == {"seed", "index", "prompt"}
    assert checks.template_fields("out.mp4") == set()
    with pytest.raises(UsageError):
        checks.template_fields("{seed.mp4")


def test_import_is_light() -> None:
    import subprocess
    import sys

    code = "import sys, mav.media, mav.media_write; assert 'av' not in sys.modules, 'PyAV imported at import time'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])
