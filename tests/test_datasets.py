"""The training datasets: shapes streams, frame skips, decoding of real files, folders and tar shards."""

from __future__ import annotations

import io
import tarfile
import warnings
from fractions import Fraction

import av
import numpy as np
import pytest
import torch
from PIL import Image

from mav.errors import MediaError, UsageError
from mav.train import decode
from mav.train.datasets import (
    ImageTextFolder,
    ShapesImages,
    ShapesVideos,
    TarShards,
    VideoFolder,
    open_dataset,
    to_video_tensor,
)
from mav.train.decode import DataWarning
from mav.train.formats import detect_format
from mav.train.skips import FrameSkipSchedule, SkipChoice
from mav.world import PALETTE, Scene, random_scene, render_clip


def colours(frames: np.ndarray) -> set[tuple[int, ...]]:
    return {tuple(int(v) for v in c) for c in np.unique(frames.reshape(-1, 3), axis=0)}


# --------------------------------------------------------------------------------------------------------------
# Shapes datasets


def take(dataset, n):
    it = iter(dataset)
    return [next(it) for _ in range(n)]


def test_shapes_datasets_are_deterministic_and_sharded():
    a, b = take(ShapesImages(24, seed=1), 4), take(ShapesImages(24, seed=1), 4)
    assert all(torch.equal(x["image"], y["image"]) and x["caption"] == y["caption"] for x, y in zip(a, b))
    other = take(ShapesImages(24, seed=2), 4)
    assert any(not torch.equal(x["image"], y["image"]) for x, y in zip(a, other))
    x = a[0]
    assert set(x) == {"image", "caption"} and x["image"].shape == (3, 24, 24)
    assert x["image"].min() >= -1 and x["image"].max() <= 1

    single = take(ShapesVideos(16, 4, 2, seed=3), 6)
    ranks = [take(ShapesVideos(16, 4, 2, seed=3, rank=r, world_size=2), 3) for r in (0, 1)]
    for i in range(6):
        assert torch.equal(ranks[i % 2][i // 2]["video"], single[i]["video"])
    assert not torch.equal(ranks[0][0]["video"], ranks[1][0]["video"])
    resumed = take(ShapesVideos(16, 4, 2, seed=3, start=4), 2)
    assert torch.equal(resumed[0]["video"], single[4]["video"])


def test_dataloader_workers_split_the_stream():
    data = ShapesImages(8, seed=5, length=8)
    loader = torch.utils.data.DataLoader(data, batch_size=None, num_workers=2)
    got = sorted(s["caption"] + str(s["image"].sum().item()) for s in loader)
    want = sorted(data[j]["caption"] + str(data[j]["image"].sum().item()) for j in range(8))
    assert got == want


def test_shapes_videos_have_no_text_and_true_renders_at_two_sizes():
    sample = next(iter(ShapesVideos(32, 5, 2, seed=0, low_size=8)))
    assert set(sample) == {"video", "fps", "video_low"}
    assert not any(isinstance(v, str) for v in sample.values())
    assert sample["video"].shape == (3, 5, 32, 32) and sample["fps"] == 15.0
    assert sample["video_low"].shape == (3, 5, 8, 8)
    scene = random_scene(np.random.default_rng([0, 0]))  # the dataset's own draw for sample 0
    assert torch.equal(sample["video_low"], to_video_tensor(render_clip(scene, 5, 2, 8)[0]))
    for value in (sample["video"], sample["video_low"]):  # hard-edged at both sizes: no blended pixels
        frames = ((value.permute(1, 2, 3, 0) + 1) * 127.5).round().to(torch.uint8).numpy()
        assert colours(frames) == {PALETTE[scene.color], PALETTE[scene.bg]}


def test_frame_skip_schedule_moves_to_lower_fps():
    schedule = FrameSkipSchedule(max_skip=8)
    means = [schedule.mean(p) for p in np.linspace(0, 1, 11)]
    assert all(b > a for a, b in zip(means, means[1:]))
    assert means[0] < 2.0 and means[-1] > 5.0
    assert schedule.probs(0.3).sum() == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    draws = [schedule.sample(rng, 0.8) for _ in range(2000)]
    assert set(draws) <= set(range(1, 9)) and np.mean(draws) == pytest.approx(schedule.mean(0.8), abs=0.15)

    videos = ShapesVideos(8, 2, schedule, seed=0, total_samples=400)
    early = np.mean([videos[j]["fps"] for j in range(40)])
    late = np.mean([videos[j]["fps"] for j in range(360, 400)])
    assert early > 2 * late
    with pytest.raises(UsageError, match="total_samples"):
        ShapesVideos(8, 2, schedule)
    with pytest.raises(UsageError, match="progress"):
        schedule.probs(1.5)


# --------------------------------------------------------------------------------------------------------------
# Real data


def write_video(path, frames: np.ndarray, fps: int = 30, codec: str = "libx264", **options: str) -> None:
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "12", **options} if codec == "libx264" else {"crf": "20", "b": "0", **options}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def png_bytes(colour, size=(40, 24), mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, colour).save(buf, format="PNG")
    return buf.getvalue()


MOVING = Scene("yellow", "square", "large", "purple", 0.3, 0.5, vx=0.03, vy=0.01)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("media")
    native = render_clip(MOVING, 45, 1, 64)[0]
    videos = root / "videos"
    (videos / "sub").mkdir(parents=True)
    write_video(videos / "moving.mp4", native, g="5")  # short GOP so the random start really seeks
    write_video(videos / "sub" / "short.webm", native[:20], codec="libvpx-vp9")
    write_video(videos / "tiny.mp4", native[:5])  # fewer frames than the clip: skipped
    (videos / "garbage.mp4").write_bytes(b"\x00not a video" * 50)
    good = (videos / "moving.mp4").read_bytes()
    (videos / "truncated.mov").write_bytes(good[: len(good) // 3])
    # Frame i shows i // 8 and i % 8 as two flat grey halves, so a decoded frame tells its own source index.
    index = np.arange(60)
    counter = np.zeros((60, 32, 32, 3), dtype=np.uint8)
    counter[:, :, :16] = (15 + 30 * (index // 8))[:, None, None, None]
    counter[:, :, 16:] = (15 + 30 * (index % 8))[:, None, None, None]
    for suffix, codec in ((".mp4", "libx264"), (".webm", "libvpx-vp9")):
        (root / f"counter{suffix}").mkdir()
        write_video(root / f"counter{suffix}" / f"counter{suffix}", counter, codec=codec, g="5")
    return root, native, good


def frame_indices(video: torch.Tensor) -> list[int]:
    """(3, f, 8, 8) clip of the counter video → the source index of each frame."""
    level = lambda cols: (((video[:, :, :, cols] + 1) * 127.5).mean(dim=(0, 2, 3)) - 15) / 30  # noqa: E731
    return [8 * round(a) + round(b) for a, b in zip(level(slice(0, 3)).tolist(), level(slice(5, 8)).tolist())]


@pytest.mark.parametrize("suffix", [".mp4", ".webm"])
def test_clip_decoding_takes_every_kth_frame_from_a_random_start(media, suffix):
    root, _, _ = media
    starts = set()
    for seed in range(6):
        data = VideoFolder(root / f"counter{suffix}", size=8, num_frames=8, skip=3, seed=seed, repeat=False)
        (sample,) = list(data)
        index = frame_indices(sample["video"])
        assert index == [index[0] + 3 * i for i in range(8)], index
        assert sample["fps"] == 10.0
        starts.add(index[0])
    assert len(starts) >= 3 and max(starts) > 5  # random starts, reached by seeking past keyframes
    # Too long for skip 9 (needs 64 frames): the largest skip that fits, 8, and its fps.
    (sample,) = list(VideoFolder(root / f"counter{suffix}", size=8, num_frames=8, skip=9, repeat=False))
    assert frame_indices(sample["video"]) == [8 * i + frame_indices(sample["video"])[0] for i in range(8)]
    assert sample["fps"] == 30 / 8


@pytest.mark.parametrize("estimate", [None, 1000])
def test_clip_decoding_without_a_usable_frame_count(media, monkeypatch, estimate):
    """No count (some WebM) or a wrong one (bad container duration): the frames are counted by decoding."""
    monkeypatch.setattr(decode, "_frame_count_estimate", lambda *args: estimate)
    root, _, _ = media
    for seed in range(3):
        (sample,) = list(VideoFolder(root / "counter.mp4", size=8, num_frames=6, skip=4, seed=seed, repeat=False))
        index = frame_indices(sample["video"])
        assert index == [index[0] + 4 * i for i in range(6)] and index[-1] < 60, index
        assert sample["fps"] == 7.5


def test_video_folder_reads_clips_at_the_frame_skip(media):
    root, native, _ = media
    data = VideoFolder(root / "videos", size=32, num_frames=8, skip=3, seed=0, repeat=False)
    assert len(data) == 5
    with pytest.warns(DataWarning, match="skipping"):
        samples = list(data)
    assert data.skipped == 3  # garbage, truncated, too short
    assert len(samples) == 2
    fps = sorted(s["fps"] for s in samples)
    assert fps == [10.0, 15.0]  # mp4 at skip 3; the 20-frame webm only fits 8 frames at skip 2
    for sample in samples:
        assert set(sample) == {"video", "fps"} and sample["video"].shape == (3, 8, 32, 32)
    # The mp4 clip is every 3rd native frame from some start: find the start, check the match is clear.
    mp4 = next(s for s in samples if s["fps"] == 10.0)["video"]
    small = torch.nn.functional.avg_pool2d(to_video_tensor(native).transpose(0, 1), 2).transpose(0, 1)
    errors = [(mp4 - small[:, s : s + 22 : 3]).abs().mean().item() for s in range(45 - 21)]
    assert min(errors) < 0.04 and sorted(errors)[1] > 1.5 * min(errors)  # neighbours differ by 2 px of motion


def test_video_folder_random_starts_differ_and_repeat(media):
    root, _, _ = media
    data = VideoFolder(root / "videos", size=16, num_frames=4, skip=1, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        clips = take(data, 8)
    assert len(clips) == 8  # repeats epochs; bad files are not retried
    assert data.skipped == 2  # garbage, truncated (the 5-frame video fits a 4-frame clip)
    mp4 = [c["video"] for c in clips if c["fps"] == 30.0]
    assert len(mp4) >= 2
    assert any(not torch.allclose(mp4[0], m, atol=0.05) for m in mp4[1:])


@pytest.mark.parametrize("variant", ["csv", "txt"])
def test_image_text_folder(tmp_path, variant):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "red.png").write_bytes(png_bytes((220, 40, 40)))
    (tmp_path / "clear.png").write_bytes(png_bytes((0, 0, 255, 0), mode="RGBA"))  # transparent → white
    Image.new("RGB", (30, 50), (40, 90, 220)).save(tmp_path / "blue.jpg", quality=95)
    (tmp_path / "broken.png").write_bytes(png_bytes((0, 0, 0))[:60])
    (tmp_path / "nocaption.png").write_bytes(png_bytes((0, 0, 0)))
    captions = {"a/red.png": "a red, wide image", "clear.png": "nothing", "blue.jpg": "blue", "broken.png": "x"}
    if variant == "csv":
        rows = "".join(f'"{p}","{c}"\n' for p, c in captions.items())
        (tmp_path / "captions.csv").write_text("path,caption\n" + rows + "missing.png,gone\n")
    else:
        for p, c in captions.items():
            (tmp_path / p).with_suffix(".txt").write_text(c + "\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = ImageTextFolder(tmp_path, size=16, repeat=False)
        samples = {s["caption"]: s["image"] for s in data}
    assert any(issubclass(w.category, DataWarning) and "broken.png" in str(w.message) for w in caught)
    assert set(samples) == {"a red, wide image", "nothing", "blue"}
    assert data.skipped == (2 if variant == "csv" else 1)  # the broken image (+ the missing csv row)
    assert data.uncaptioned == 1
    expect = {"a red, wide image": (220, 40, 40), "nothing": (255, 255, 255), "blue": (40, 90, 220)}
    for text, image in samples.items():
        assert image.shape == (3, 16, 16)
        rgb = ((image + 1) * 127.5).mean(dim=(1, 2))
        assert torch.allclose(rgb, torch.tensor(expect[text], dtype=torch.float32), atol=3), text
    assert detect_format(tmp_path) == "images"


def test_tar_shards_images_and_videos(tmp_path, media):
    _, _, mp4 = media
    shards = tmp_path / "shards"
    shards.mkdir()

    def add(tar, name, data):
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))

    with tarfile.open(shards / "00000.tar", "w") as tar:
        add(tar, "000000000.png", png_bytes((40, 170, 70)))
        add(tar, "000000000.txt", b"a green thing")
        add(tar, "000000001.jpg", png_bytes((0, 0, 0))[:50])  # corrupt
        add(tar, "000000001.txt", b"broken")
        add(tar, "000000002.png", png_bytes((0, 0, 0)))  # no caption
    with tarfile.open(shards / "00001.tar", "w") as tar:
        add(tar, "clips/000000003.mp4", mp4)
        add(tar, "clips/000000003.txt", b"text that video stages must never see")
        add(tar, "000000004.png", png_bytes((235, 205, 40)))
        add(tar, "000000004.txt", "un cercle jaune ☀".encode())
    (shards / "00002.tar").write_bytes(b"not a tar at all" * 100)

    assert detect_format(shards) == "shards"
    with pytest.warns(DataWarning):
        images = open_dataset(shards, "images", size=8, repeat=False)
        got = {s["caption"]: s["image"] for s in images}
    assert set(got) == {"a green thing", "un cercle jaune ☀"}
    assert images.uncaptioned == 1 and images.skipped == 2  # the broken shard + the corrupt member
    assert torch.allclose(((got["a green thing"] + 1) * 127.5).mean(dim=(1, 2)), torch.tensor([40.0, 170, 70]), atol=3)

    videos = TarShards(str(shards / "{00000..00001}.tar"), "videos", size=16, num_frames=6, skip=2, repeat=False)
    clips = list(videos)
    assert len(clips) == 1 and set(clips[0]) == {"video", "fps"}
    assert clips[0]["video"].shape == (3, 6, 16, 16) and clips[0]["fps"] == 15.0


def test_empty_and_unusable_datasets_are_clear_errors(tmp_path, media):
    root, _, _ = media
    empty = tmp_path / "empty"
    empty.mkdir()
    for kind in ("images", "videos"):
        with pytest.raises(MediaError, match="no "):
            open_dataset(empty, kind)
    with pytest.raises(MediaError, match="no images"):
        detect_format(empty)
    with pytest.raises(MediaError, match="does not exist"):
        open_dataset(tmp_path / "nowhere", "videos")
    with pytest.raises(MediaError, match="found 5 videos"):  # 3 mp4, a mov, a webm in a sub-folder
        ImageTextFolder(root / "videos")
    with pytest.raises(UsageError, match="kind"):
        open_dataset("shapes", "audio")
    with pytest.raises(UsageError, match="num_frames"):
        open_dataset("shapes", "videos", num_frames=0)

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.mp4").write_bytes(b"junk" * 10)
    (broken / "b.webm").write_bytes(b"junk" * 10)
    data = VideoFolder(broken, size=8, num_frames=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        with pytest.raises(MediaError, match="all 2 failed"):
            list(data)


def test_open_dataset_shapes():
    images = open_dataset("shapes", "images", size=16, seed=4)
    videos = open_dataset("shapes", "videos", size=16, num_frames=3, skip=2, seed=4)
    assert isinstance(images, ShapesImages) and isinstance(videos, ShapesVideos)
    assert set(next(iter(videos))) == {"video", "fps"}


def test_skip_choice_draws_only_its_skips():
    choice = SkipChoice((1, 4), (3.0, 1.0))
    rng = np.random.default_rng(0)
    drawn = np.array([choice.sample(rng) for _ in range(4000)])
    assert set(drawn) == {1, 4} and abs((drawn == 1).mean() - 0.75) < 0.03
    clip = ShapesVideos(16, 5, choice, seed=0)[0]
    assert clip["fps"] in (30.0, 7.5)
    with pytest.raises(UsageError):
        SkipChoice((0, 2), (1.0, 1.0))
