"""Training data: the shapes world and real data as sharded, seeded streams of sample dicts.

Image samples are `{"image": (3, S, S) float in [-1, 1], "caption": str}` (CLIP, P and the image stages).
Video samples are `{"video": (3, F, S, S) float in [-1, 1], "fps": float}` and carry no text at all: the video
stages never see captions (the paper's premise), and the absence is structural rather than a flag.

Every dataset is a `torch.utils.data.IterableDataset` over a global stream of sample positions j = 0, 1, 2, …;
DDP rank r of W with DataLoader worker w of N reads the positions j ≡ r·N + w (mod W·N), so ranks and workers
never repeat each other, and sample j is a pure function of (seed, j) — a run replays exactly, and `start`
resumes it. Broken real files are skipped with a `DataWarning` and counted in `skipped` (per process).
"""

from __future__ import annotations

import csv
import io
import re
import struct
import tarfile
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
from einops import rearrange
from PIL import Image, ImageOps
from torch import Tensor
from torch.utils.data import IterableDataset, get_worker_info

from mav.errors import MediaError, UsageError
from mav.train.shapes import SHAPES, Scene, random_scene, render_clip

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".m4v", ".avi")
MAX_IMAGE_PIXELS = 8192 * 8192  # larger inputs are skipped, not decoded into memory

# Library exceptions that mean "this file is broken", as opposed to a bug in mav.
_DECODE_ERRORS = (
    OSError, ValueError, EOFError, SyntaxError, struct.error, zlib.error, tarfile.TarError,
    Image.DecompressionBombError, av.error.FFmpegError,
)


class DataWarning(UserWarning):
    """A training file was skipped (unreadable, truncated, too short, …); the run goes on."""


class ClipTooShort(MediaError):
    """The video has fewer frames than the requested clip spans even at frame skip 1."""


# --------------------------------------------------------------------------------------------------------------
# Frame-skip schedule


@dataclass(frozen=True)
class FrameSkipSchedule:
    """Frame skip k for the video stage, moving from small skips (high fps, little motion between frames) early
    in training to large skips (low fps) late.

    A Beta distribution discretised over the allowed skips 1..max_skip, its mean moving with progress p ∈ [0, 1]:
        μ(p) = start + (end − start)·p,   α = μ·κ,   β = (1 − μ)·κ,
        P(k_i | p) ∝ u_i^(α−1) · (1 − u_i)^(β−1),   u_i = (i + ½) / max_skip.
    """

    max_skip: int = 8
    start: float = 0.1
    end: float = 0.7
    concentration: float = 6.0

    def __post_init__(self) -> None:
        if self.max_skip < 1:
            raise UsageError(f"max_skip must be ≥ 1, got {self.max_skip}")
        for name, value in (("start", self.start), ("end", self.end)):
            if not 0.0 < value < 1.0:
                raise UsageError(f"the schedule's {name} mean must lie in (0, 1), got {value}")
        if self.concentration <= 0:
            raise UsageError(f"concentration must be > 0, got {self.concentration}")

    @property
    def skips(self) -> np.ndarray:
        return np.arange(1, self.max_skip + 1)

    def probs(self, progress: float) -> np.ndarray:
        """P(k) for k = 1..max_skip at training progress p ∈ [0, 1]."""
        if not 0.0 <= progress <= 1.0:
            raise UsageError(f"progress must lie in [0, 1], got {progress}")
        mean = self.start + (self.end - self.start) * progress
        alpha, beta = mean * self.concentration, (1.0 - mean) * self.concentration
        u = (np.arange(self.max_skip) + 0.5) / self.max_skip
        log_p = (alpha - 1.0) * np.log(u) + (beta - 1.0) * np.log1p(-u)
        p = np.exp(log_p - log_p.max())
        return p / p.sum()

    def mean(self, progress: float) -> float:
        """E[k] at progress p."""
        return float((self.skips * self.probs(progress)).sum())

    def sample(self, rng: np.random.Generator, progress: float) -> int:
        return int(rng.choice(self.skips, p=self.probs(progress)))


@dataclass(frozen=True)
class SkipChoice:
    """A fixed distribution over frame skips, whatever the training progress: the frame rates a stage serves.

    ↑F, for one, is sampled at the model's output rate (base fps × its factor) and, in the keyframe modes, at the
    base rate; it trains on those skips rather than on the decoder's schedule.
    """

    skips: tuple[int, ...]
    weights: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.skips or len(self.skips) != len(self.weights):
            raise UsageError(f"a SkipChoice needs one weight per skip, got {self.skips} and {self.weights}")
        if any(int(k) != k or k < 1 for k in self.skips):
            raise UsageError(f"frame skips must be integers ≥ 1, got {self.skips}")
        if any(w < 0 for w in self.weights) or sum(self.weights) <= 0:
            raise UsageError(f"skip weights must be ≥ 0 with a positive sum, got {self.weights}")

    def sample(self, rng: np.random.Generator, progress: float = 0.0) -> int:
        p = np.asarray(self.weights, dtype=np.float64)
        return int(self.skips[int(rng.choice(len(self.skips), p=p / p.sum()))])


Skip = int | FrameSkipSchedule | SkipChoice


# --------------------------------------------------------------------------------------------------------------
# Tensors


def to_image_tensor(image: np.ndarray) -> Tensor:
    """uint8 (h, w, 3) → float (3, h, w) in [-1, 1]."""
    x = torch.tensor(image, dtype=torch.float32) / 127.5 - 1.0  # a copy: decoded arrays may be read-only
    return rearrange(x, "h w c -> c h w")


def to_video_tensor(frames: np.ndarray) -> Tensor:
    """uint8 (f, h, w, 3) → float (3, f, h, w) in [-1, 1]."""
    x = torch.tensor(frames, dtype=torch.float32) / 127.5 - 1.0
    return rearrange(x, "f h w c -> c f h w")


def subsample(video: Tensor, fps: float, k: int) -> tuple[Tensor, float]:
    """Every k-th frame of a (…, c, f, h, w) clip and its frame rate: the low-fps input of ↑F from its dense
    ground truth (a dense clip of (F − 1)·k + 1 frames keeps F frames)."""
    if k < 1:
        raise UsageError(f"k must be ≥ 1, got {k}")
    return video[..., ::k, :, :], fps / k


# --------------------------------------------------------------------------------------------------------------
# Streams


def _check_common(size: int, seed: int, rank: int, world_size: int, start: int) -> None:
    if size < 1:
        raise UsageError(f"size must be ≥ 1, got {size}")
    if seed < 0:
        raise UsageError(f"seed must be ≥ 0, got {seed}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise UsageError(f"rank must lie in [0, world_size), got rank {rank} of world_size {world_size}")
    if start < 0:
        raise UsageError(f"start must be ≥ 0, got {start}")


def _check_video(num_frames: int, skip: Skip, total_samples: int | None) -> None:
    if num_frames < 1:
        raise UsageError(f"num_frames must be ≥ 1, got {num_frames}")
    if isinstance(skip, FrameSkipSchedule):
        if total_samples is None or total_samples < 1:
            raise UsageError("a FrameSkipSchedule needs total_samples (the run's length in samples, all ranks)")
    elif not isinstance(skip, SkipChoice) and (int(skip) != skip or skip < 1):
        raise UsageError(f"skip must be an integer ≥ 1, a FrameSkipSchedule or a SkipChoice, got {skip!r}")


class _Stream(IterableDataset):
    """Sample positions j of this rank and worker; sample j draws all its randomness from rng(seed, j)."""

    def __init__(self, seed: int, rank: int, world_size: int, start: int) -> None:
        super().__init__()
        self.seed, self.rank, self.world_size, self.start = seed, rank, world_size, start

    def _positions(self, stop: int | None) -> Iterator[int]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        j, step = self.start + self.rank * workers + worker, self.world_size * workers
        while stop is None or j < stop:
            yield j
            j += step

    def _rng(self, j: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, j])

    def _draw_skip(self, skip: Skip, rng: np.random.Generator, j: int) -> int:
        if isinstance(skip, FrameSkipSchedule):
            return skip.sample(rng, min(1.0, j / self.total_samples))
        if isinstance(skip, SkipChoice):
            return skip.sample(rng)
        return int(skip)


class ShapesImages(_Stream):
    """Captioned still images of the shapes world: {"image": (3, S, S) in [-1, 1], "caption": str}.

    `low_size` adds "image_low", the same scene truly rendered at that resolution. `shape_groups=True` makes
    every three consecutive samples one scene drawn as a circle, a square and a triangle (same colours, size and
    place): hard negatives for contrastive training, which otherwise separates the shapes last, if at all.
    """

    def __init__(
        self, size: int = 64, seed: int = 0, *, rank: int = 0, world_size: int = 1, start: int = 0,
        length: int | None = None, low_size: int | None = None, shape_groups: bool = False,
    ) -> None:
        _check_common(size, seed, rank, world_size, start)
        super().__init__(seed, rank, world_size, start)
        self.size, self.length, self.low_size, self.shape_groups = size, length, low_size, shape_groups

    def scene(self, j: int) -> tuple[Scene, np.random.Generator]:
        """Sample j's scene and the generator its caption draws from."""
        rng = self._rng(j)
        if not self.shape_groups:
            return random_scene(rng, moving=False), rng
        group = random_scene(np.random.default_rng([self.seed, j // 3, 1]), moving=False)
        shape = SHAPES[(SHAPES.index(group.shape) + j % 3) % 3]
        return replace(group, shape=shape), rng

    def __getitem__(self, j: int) -> dict[str, Any]:
        scene, rng = self.scene(j)
        sample = {"image": to_image_tensor(scene.render(self.size)), "caption": scene.caption(rng)}
        if self.low_size is not None:
            sample["image_low"] = to_image_tensor(scene.render(self.low_size))
        return sample

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for j in self._positions(self.length):
            yield self[j]


class ShapesVideos(_Stream):
    """Moving shapes, no captions: {"video": (3, F, S, S) in [-1, 1], "fps": 30 / k}.

    skip: a fixed frame skip k, or a FrameSkipSchedule whose progress is j / total_samples.
    `low_size` adds "video_low", the same clip truly rendered at that resolution (SR pairs).
    """

    def __init__(
        self, size: int = 64, num_frames: int = 16, skip: Skip = 1, seed: int = 0, *,
        rank: int = 0, world_size: int = 1, start: int = 0, length: int | None = None,
        total_samples: int | None = None, low_size: int | None = None,
    ) -> None:
        _check_common(size, seed, rank, world_size, start)
        _check_video(num_frames, skip, total_samples)
        super().__init__(seed, rank, world_size, start)
        self.size, self.num_frames, self.skip, self.length = size, num_frames, skip, length
        self.total_samples, self.low_size = total_samples, low_size

    def __getitem__(self, j: int) -> dict[str, Any]:
        rng = self._rng(j)
        scene = random_scene(rng, moving=True)
        k = self._draw_skip(self.skip, rng, j)
        frames, fps = render_clip(scene, self.num_frames, k, self.size)
        sample: dict[str, Any] = {"video": to_video_tensor(frames), "fps": fps}
        if self.low_size is not None:
            sample["video_low"] = to_video_tensor(render_clip(scene, self.num_frames, k, self.low_size)[0])
        return sample

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for j in self._positions(self.length):
            yield self[j]


class _FileStream(_Stream):
    """A finite list of items read in a fresh seeded permutation every epoch; broken items are skipped."""

    what = "files"

    def __init__(self, root: str, items: list, seed: int, rank: int, world_size: int, start: int,
                 repeat: bool, skipped: int = 0) -> None:
        super().__init__(seed, rank, world_size, start)
        if not items:
            raise MediaError(f"no usable {self.what} in {root}")
        self.root, self.items, self.repeat, self.skipped = root, items, repeat, skipped
        self._bad: set[int] = set()
        self._order: tuple[int, np.ndarray | None] = (-1, None)  # (epoch, its permutation of the items)

    def __len__(self) -> int:
        return len(self.items)

    def _item_at(self, j: int) -> int:
        epoch, pos = divmod(j, len(self.items))
        if self._order[0] != epoch:
            self._order = (epoch, np.random.default_rng([self.seed, epoch, 1]).permutation(len(self.items)))
        return int(self._order[1][pos])

    def _load(self, item: Any, rng: np.random.Generator, j: int) -> dict[str, Any]:
        raise NotImplementedError

    def __getitem__(self, j: int) -> dict[str, Any]:
        """Global sample j (epochs wrap around), for step-indexed training: a broken item is counted, warned
        about once and replaced by the next usable item, so sample j is the same on every run."""
        first = self._item_at(j)
        for offset in range(len(self.items)):
            index = (first + offset) % len(self.items)
            if index in self._bad:
                continue
            try:
                return self._load(self.items[index], self._rng(j), j)
            except MediaError as err:
                self._bad.add(index)
                self.skipped += 1
                warnings.warn(f"skipping {err}", DataWarning, stacklevel=2)
        raise MediaError(f"no usable {self.what} in {self.root}: all {len(self.items)} failed to load")

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for j in self._positions(None if self.repeat else len(self.items)):
            index = self._item_at(j)
            if index in self._bad:
                continue
            try:
                sample = self._load(self.items[index], self._rng(j), j)
            except MediaError as err:
                self._bad.add(index)
                self.skipped += 1
                warnings.warn(f"skipping {err}", DataWarning, stacklevel=2)
                if len(self._bad) == len(self.items):
                    raise MediaError(
                        f"no usable {self.what} in {self.root}: all {len(self.items)} failed to load (last: {err})"
                    ) from err
                continue
            yield sample


class ImageTextFolder(_FileStream):
    """A folder of images with captions, from `captions.csv` (columns path,caption; paths relative to the
    folder) or else a `.txt` beside each image. Images without a caption are left out (counted in
    `uncaptioned`). Yields {"image": (3, S, S) in [-1, 1], "caption": str}; images are resized (shorter side)
    and centre-cropped to S.
    """

    what = "captioned images"

    def __init__(
        self, root: str | Path, size: int = 64, seed: int = 0, *, rank: int = 0, world_size: int = 1,
        start: int = 0, repeat: bool = True,
    ) -> None:
        _check_common(size, seed, rank, world_size, start)
        folder = _existing_dir(root)
        items, missing, self.uncaptioned = _captioned_images(folder)
        for path in missing:
            warnings.warn(f"skipping {path}: listed in captions.csv but missing", DataWarning, stacklevel=2)
        if not items:
            found = f" ({self.uncaptioned} images have no caption)" if self.uncaptioned else ""
            raise MediaError(
                f"no captioned images in {folder}: expected captions.csv (columns path,caption) or a .txt "
                f"beside each image{found or _found_instead(folder, 'images')}"
            )
        super().__init__(str(folder), items, seed, rank, world_size, start, repeat, skipped=len(missing))
        self.size = size

    def _load(self, item: tuple[Path, str], rng: np.random.Generator, j: int) -> dict[str, Any]:
        path, text = item
        return {"image": to_image_tensor(read_image(path, self.size)), "caption": text}


class VideoFolder(_FileStream):
    """A folder (searched recursively) of mp4 / webm / mov / … videos, no captions.

    Yields {"video": (3, F, S, S) in [-1, 1], "fps": source fps / k}: F frames, every k-th source frame from a
    random start, resized (shorter side) and centre-cropped to S. A video too short for skip k is read at the
    largest skip that fits (its fps says so); one shorter than F frames is skipped.
    """

    what = "videos"

    def __init__(
        self, root: str | Path, size: int = 64, num_frames: int = 16, skip: Skip = 1,
        seed: int = 0, *, rank: int = 0, world_size: int = 1, start: int = 0, repeat: bool = True,
        total_samples: int | None = None,
    ) -> None:
        _check_common(size, seed, rank, world_size, start)
        _check_video(num_frames, skip, total_samples)
        folder = _existing_dir(root)
        items = _files(folder, VIDEO_SUFFIXES)
        if not items:
            raise MediaError(f"no videos ({', '.join(VIDEO_SUFFIXES)}) in {folder}{_found_instead(folder, 'videos')}")
        super().__init__(str(folder), items, seed, rank, world_size, start, repeat)
        self.size, self.num_frames, self.skip, self.total_samples = size, num_frames, skip, total_samples

    def _load(self, item: Path, rng: np.random.Generator, j: int) -> dict[str, Any]:
        k = self._draw_skip(self.skip, rng, j)
        frames, fps = read_clip(item, self.num_frames, k, self.size, rng)
        return {"video": to_video_tensor(frames), "fps": fps}


@dataclass(frozen=True)
class _TarMember:
    tar: Path
    key: str
    media: tuple[str, int, int]  # (extension, offset, size) of the image or video bytes
    text: tuple[int, int] | None  # (offset, size) of key.txt


class TarShards(_FileStream):
    """WebDataset-style shards (`00000.tar` … holding `key.jpg|png|mp4|…` and `key.txt`).

    kind "images" yields captioned images (members without a .txt are left out, counted in `uncaptioned`);
    kind "videos" yields caption-free clips exactly like VideoFolder (any .txt is ignored). `spec` is a folder
    of .tar files, one .tar file, a glob ("shards/*.tar") or a brace range ("shards/{00000..00009}.tar").
    The shards' member index is read once, at construction (headers only).
    """

    def __init__(
        self, spec: str | Path, kind: str = "images", size: int = 64, num_frames: int = 16,
        skip: Skip = 1, seed: int = 0, *, rank: int = 0, world_size: int = 1, start: int = 0,
        repeat: bool = True, total_samples: int | None = None,
    ) -> None:
        _check_common(size, seed, rank, world_size, start)
        _check_kind(kind)
        if kind == "videos":
            _check_video(num_frames, skip, total_samples)
        self.what = "captioned images" if kind == "images" else "videos"
        shards = _shard_paths(spec)
        if not shards:
            raise MediaError(f"no .tar shards found at {spec}")
        items, broken, self.uncaptioned = [], 0, 0
        for shard in shards:
            try:
                members, uncaptioned = _index_tar(shard, kind)
            except MediaError as err:
                broken += 1
                warnings.warn(f"skipping {err}", DataWarning, stacklevel=2)
                continue
            items += members
            self.uncaptioned += uncaptioned
        if not items:
            raise MediaError(
                f"no usable {self.what} in the {len(shards)} shard(s) at {spec}: a shard holds key.jpg|png + key.txt "
                f"for images, key.mp4|webm|mov for videos"
            )
        super().__init__(str(spec), items, seed, rank, world_size, start, repeat, skipped=broken)
        self.kind, self.size, self.num_frames, self.skip = kind, size, num_frames, skip
        self.total_samples = total_samples

    def _load(self, item: _TarMember, rng: np.random.Generator, j: int) -> dict[str, Any]:
        ext, offset, length = item.media
        name = f"{item.tar}:{item.key}{ext}"
        with open(item.tar, "rb") as f:
            data = _read_exact(f, offset, length, name)
            text = _read_exact(f, *item.text, f"{item.tar}:{item.key}.txt") if item.text else None
        if self.kind == "images":
            try:
                caption = text.decode("utf-8").strip() if text is not None else ""
            except UnicodeDecodeError as err:
                raise MediaError(f"{item.tar}:{item.key}.txt: not UTF-8 text ({err})") from err
            return {"image": to_image_tensor(read_image(io.BytesIO(data), self.size, name=name)), "caption": caption}
        k = self._draw_skip(self.skip, rng, j)
        frames, fps = read_clip(io.BytesIO(data), self.num_frames, k, self.size, rng, name=name)
        return {"video": to_video_tensor(frames), "fps": fps}


# --------------------------------------------------------------------------------------------------------------
# Decoding


def read_image(source: str | Path | io.BytesIO, size: int, name: str | None = None) -> np.ndarray:
    """uint8 (S, S, 3): upright (EXIF), alpha composited on white, shorter side resized to S, centre-cropped.

    Anything unreadable raises MediaError naming the file.
    """
    name = name or str(source)
    try:
        with Image.open(source) as img:
            if img.width * img.height > MAX_IMAGE_PIXELS:
                raise MediaError(f"{name}: image too large ({img.width}×{img.height})")
            img.load()  # a truncated file opens fine and fails only here
            img = ImageOps.exif_transpose(img)
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                rgba = img.convert("RGBA")
                img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
            img = img.convert("RGB")
            scale = size / min(img.width, img.height)
            w, h = max(size, round(img.width * scale)), max(size, round(img.height * scale))
            img = img.resize((w, h), Image.Resampling.BICUBIC, reducing_gap=3.0)
            left, top = (w - size) // 2, (h - size) // 2
            return np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.uint8)
    except MediaError:
        raise
    except _DECODE_ERRORS as err:
        raise MediaError(f"{name}: not a readable image ({type(err).__name__}: {err})") from err


def read_clip(
    source: str | Path | io.BytesIO, num_frames: int, skip: int, size: int, rng: np.random.Generator,
    name: str | None = None,
) -> tuple[np.ndarray, float]:
    """A random clip of `num_frames` frames taking every `skip`-th source frame: (uint8 (F, S, S, 3), fps / skip).

    The shorter side is resized to S and the centre cropped. If the video is too short for `skip`, the largest
    skip that fits is used; shorter than `num_frames` frames → ClipTooShort; unreadable → MediaError.
    """
    name = name or str(source)
    try:
        with av.open(source) as container:
            if not container.streams.video:
                raise MediaError(f"{name}: no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            if not rate or float(rate) <= 0:
                raise MediaError(f"{name}: unknown frame rate")
            src_fps = float(rate)
            total = _frame_count_estimate(container, stream, src_fps)
            frames = None
            if total is not None:
                k = _fitting_skip(total, num_frames, skip)
                if k is not None:
                    first = int(rng.integers(0, total - (num_frames - 1) * k))
                    frames = _decode_indices(container, stream, src_fps, [first + i * k for i in range(num_frames)])
            if frames is None:  # no usable length estimate, or it was wrong: count the frames by decoding
                container.seek(0)
                total = sum(1 for _ in container.decode(stream))
                k = _fitting_skip(total, num_frames, skip)
                if k is None:
                    raise ClipTooShort(f"{name}: {total} frames, shorter than the {num_frames}-frame clip")
                first = int(rng.integers(0, total - (num_frames - 1) * k))
                wanted = range(first, first + (num_frames - 1) * k + 1, k)
                container.seek(0)
                frames = []
                for index, frame in enumerate(container.decode(stream)):
                    if index in wanted:
                        frames.append(frame)
                    if len(frames) == num_frames:
                        break
                if len(frames) < num_frames:
                    raise MediaError(f"{name}: decoding stopped early ({len(frames)} of {num_frames} frames)")
            return np.stack([_frame_to_array(f, size) for f in frames]), src_fps / k
    except MediaError:
        raise
    except _DECODE_ERRORS as err:
        raise MediaError(f"{name}: not a readable video ({type(err).__name__}: {err})") from err


def _fitting_skip(total: int, num_frames: int, skip: int) -> int | None:
    """The largest k ≤ skip whose clip, spanning (F − 1)·k + 1 frames, fits in `total` frames."""
    if total < num_frames:
        return None
    return skip if num_frames == 1 else min(skip, (total - 1) // (num_frames - 1))


def _frame_count_estimate(container: Any, stream: Any, fps: float) -> int | None:
    if stream.frames:
        return int(stream.frames)
    if stream.duration is not None and stream.time_base is not None:
        return int(float(stream.duration * stream.time_base) * fps)
    if container.duration is not None:
        return int(container.duration / av.time_base * fps)
    return None  # e.g. WebM often reports no count and no stream duration


def _decode_indices(container: Any, stream: Any, fps: float, wanted: list[int]) -> list | None:
    """The frames at source indices `wanted` (ascending), seeking to the keyframe before the first; None if the
    stream ends early or has no timestamps (the caller then decodes everything)."""
    t0 = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    if wanted[0] > 0:
        container.seek(int((t0 + wanted[0] / fps) / stream.time_base), stream=stream, backward=True)
    out, i = [], 0
    for frame in container.decode(stream):
        if frame.time is None:
            return None
        index = round((frame.time - t0) * fps)
        # A gap in the timestamps repeats the frame before it rather than shifting the whole clip.
        while i < len(wanted) and index >= wanted[i]:
            out.append(frame)
            i += 1
        if i == len(wanted):
            return out
    return None


def _frame_to_array(frame: Any, size: int) -> np.ndarray:
    """A decoded frame → uint8 (S, S, 3): scaled (shorter side to S) by swscale, upright, centre-cropped."""
    scale = size / min(frame.width, frame.height)
    w, h = max(size, round(frame.width * scale)), max(size, round(frame.height * scale))
    array = frame.to_ndarray(width=w, height=h, format="rgb24", interpolation="AREA")
    rotation = frame.rotation or 0
    if rotation % 90 == 0 and rotation % 360:
        array = np.rot90(array, k=rotation // 90)  # display matrix: rotate counter-clockwise by `rotation`
    h, w = array.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(array[top : top + size, left : left + size])


# --------------------------------------------------------------------------------------------------------------
# Finding files


def _check_kind(kind: str) -> None:
    if kind not in ("images", "videos"):
        raise UsageError(f"kind must be images or videos, got {kind!r}")


def _existing_dir(root: str | Path) -> Path:
    folder = Path(root).expanduser()
    if not folder.exists():
        raise MediaError(f"dataset folder {folder} does not exist")
    if not folder.is_dir():
        raise MediaError(f"{folder} is not a folder")
    return folder


def _files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*")
        if p.suffix.lower() in suffixes and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _found_instead(folder: Path, wanted: str) -> str:
    counts = {"images": len(_files(folder, IMAGE_SUFFIXES)), "videos": len(_files(folder, VIDEO_SUFFIXES)),
              "tar shards": len(_files(folder, (".tar",)))}
    others = [f"{n} {what}" for what, n in counts.items() if n and what != wanted]
    return f" (found {', '.join(others)} instead)" if others else ""


def _captioned_images(folder: Path) -> tuple[list[tuple[Path, str]], list[Path], int]:
    """(image path, caption) pairs, listed paths that are missing, and images without a caption."""
    csv_path = folder / "captions.csv"
    images = _files(folder, IMAGE_SUFFIXES)
    if csv_path.is_file():
        try:
            with open(csv_path, newline="", encoding="utf-8-sig") as f:
                reader = csv.DictReader(f)
                if not reader.fieldnames or not {"path", "caption"} <= set(reader.fieldnames):
                    raise MediaError(f"{csv_path}: needs a header with columns path,caption, got {reader.fieldnames}")
                rows = [(row["path"], row["caption"] or "") for row in reader]
        except (OSError, UnicodeDecodeError, csv.Error) as err:
            raise MediaError(f"{csv_path}: not a readable CSV file ({err})") from err
        pairs, missing = [], []
        for rel, text in rows:
            path = (folder / rel) if not Path(rel).is_absolute() else Path(rel)
            if path.is_file():
                pairs.append((path, text.strip()))
            else:
                missing.append(path)
        listed = {p.resolve() for p, _ in pairs}
        return pairs, missing, sum(1 for p in images if p.resolve() not in listed)
    pairs = []
    for path in images:
        txt = path.with_suffix(".txt")
        if txt.is_file():
            try:
                pairs.append((path, txt.read_text(encoding="utf-8").strip()))
            except (OSError, UnicodeDecodeError) as err:
                warnings.warn(f"skipping {path}: caption {txt} unreadable ({err})", DataWarning, stacklevel=3)
    return pairs, [], len(images) - len(pairs)


_BRACES = re.compile(r"\{(\d+)\.\.(\d+)\}")


def _shard_paths(spec: str | Path) -> list[Path]:
    """.tar files named by a folder, a file, a glob or a brace range such as {00000..00009}."""
    text = str(spec)
    match = _BRACES.search(text)
    if match:
        lo, hi, width = int(match[1]), int(match[2]), len(match[1])
        paths = [Path(text[: match.start()] + f"{i:0{width}d}" + text[match.end():]) for i in range(lo, hi + 1)]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise MediaError(f"{len(missing)} shard(s) of {text} do not exist, e.g. {missing[0]}")
        return paths
    path = Path(text).expanduser()
    if any(c in text for c in "*?["):
        return sorted(p for p in path.parent.glob(path.name) if p.is_file())
    if path.is_dir():
        return _files(path, (".tar",))
    if path.is_file():
        return [path]
    raise MediaError(f"dataset {text} does not exist")


def _index_tar(shard: Path, kind: str) -> tuple[list[_TarMember], int]:
    """Members grouped by key (the name up to the first dot of its basename), read from headers only."""
    groups: dict[str, dict[str, tuple[int, int]]] = {}
    try:
        with tarfile.open(shard, mode="r:") as tar:
            for info in tar:
                if not info.isfile():
                    continue
                head, _, base = info.name.rpartition("/")
                stem, dot, ext = base.partition(".")
                if not dot or stem.startswith("."):
                    continue
                key = f"{head}/{stem}" if head else stem
                groups.setdefault(key, {})["." + ext.lower()] = (info.offset_data, info.size)
    except (tarfile.TarError, OSError, EOFError) as err:
        if not groups:
            raise MediaError(f"{shard}: not a readable tar shard ({err})") from err
        warnings.warn(f"{shard}: truncated after {len(groups)} samples ({err})", DataWarning, stacklevel=3)
    suffixes = IMAGE_SUFFIXES if kind == "images" else VIDEO_SUFFIXES
    members, uncaptioned = [], 0
    for key, parts in groups.items():
        ext = next((e for e in suffixes if e in parts), None)
        if ext is None:
            continue
        text = parts.get(".txt")
        if kind == "images" and text is None:
            uncaptioned += 1
            continue
        members.append(_TarMember(shard, key, (ext, *parts[ext]), text if kind == "images" else None))
    return members, uncaptioned


def _read_exact(f: Any, offset: int, length: int, name: str) -> bytes:
    f.seek(offset)
    data = f.read(length)
    if len(data) != length:
        raise MediaError(f"{name}: truncated ({len(data)} of {length} bytes)")
    return data


# --------------------------------------------------------------------------------------------------------------
# Entry points


def detect_format(path: str | Path) -> str:
    """"shards" (.tar files: a folder of them, one, a glob or a brace range), "videos" or "images" (a folder).

    Priority when a folder mixes them: shards, then videos, then images.
    """
    text = str(path)
    if _BRACES.search(text) or any(c in text for c in "*?[") or text.endswith(".tar"):
        if _shard_paths(text):
            return "shards"
        raise MediaError(f"no .tar shards match {text}")
    folder = _existing_dir(path)
    if _files(folder, (".tar",)):
        return "shards"
    if _files(folder, VIDEO_SUFFIXES):
        return "videos"
    if _files(folder, IMAGE_SUFFIXES):
        return "images"
    raise MediaError(
        f"no images ({', '.join(IMAGE_SUFFIXES)}), videos ({', '.join(VIDEO_SUFFIXES)}) or .tar shards in {folder}"
    )


def open_dataset(
    spec: str | Path, kind: str = "images", *, size: int = 64, num_frames: int = 16,
    skip: Skip = 1, seed: int = 0, rank: int = 0, world_size: int = 1, start: int = 0,
    total_samples: int | None = None, repeat: bool = True,
) -> IterableDataset:
    """The dataset behind `--data SPEC`: "shapes" (the procedural world), an image–text folder, a video folder
    or WebDataset tar shards. kind "images" yields {"image", "caption"}; kind "videos" yields {"video", "fps"}."""
    _check_kind(kind)
    common = dict(seed=seed, rank=rank, world_size=world_size, start=start)
    video = dict(num_frames=num_frames, skip=skip, total_samples=total_samples)
    if str(spec) == "shapes":
        if kind == "images":
            return ShapesImages(size, **common)
        return ShapesVideos(size, **video, **common)
    if detect_format(spec) == "shards":
        return TarShards(spec, kind, size, **video, repeat=repeat, **common)
    if kind == "images":
        return ImageTextFolder(spec, size, repeat=repeat, **common)
    return VideoFolder(spec, size, **video, repeat=repeat, **common)
