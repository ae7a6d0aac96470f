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

import io
import warnings
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from einops import rearrange
from torch import Tensor
from torch.utils.data import IterableDataset, get_worker_info

from mav.errors import MediaError, UsageError
from mav.train.decode import DataWarning, read_clip, read_image
from mav.train.formats import (
    VIDEO_SUFFIXES, TarMember, captioned_images, detect_format, existing_dir, find_files, found_instead, index_tar,
    read_exact, shard_paths,
)
from mav.train.skips import FrameSkipSchedule, Skip, SkipChoice
from mav.media import to_unit
from mav.world import SHAPES, Scene, random_scene, render_clip


def to_image_tensor(image: np.ndarray) -> Tensor:
    """uint8 (h, w, 3) → float (3, h, w) in [-1, 1]."""
    return rearrange(to_unit(image), "h w c -> c h w")


def to_video_tensor(frames: np.ndarray) -> Tensor:
    """uint8 (f, h, w, 3) → float (3, f, h, w) in [-1, 1]."""
    return rearrange(to_unit(frames), "f h w c -> c f h w")


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


def _check_kind(kind: str) -> None:
    if kind not in ("images", "videos"):
        raise UsageError(f"kind must be images or videos, got {kind!r}")


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
        folder = existing_dir(root)
        items, missing, self.uncaptioned = captioned_images(folder)
        for path in missing:
            warnings.warn(f"skipping {path}: listed in captions.csv but missing", DataWarning, stacklevel=2)
        if not items:
            found = f" ({self.uncaptioned} images have no caption)" if self.uncaptioned else ""
            raise MediaError(
                f"no captioned images in {folder}: expected captions.csv (columns path,caption) or a .txt "
                f"beside each image{found or found_instead(folder, 'images')}"
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
        folder = existing_dir(root)
        items = find_files(folder, VIDEO_SUFFIXES)
        if not items:
            raise MediaError(f"no videos ({', '.join(VIDEO_SUFFIXES)}) in {folder}{found_instead(folder, 'videos')}")
        super().__init__(str(folder), items, seed, rank, world_size, start, repeat)
        self.size, self.num_frames, self.skip, self.total_samples = size, num_frames, skip, total_samples

    def _load(self, item: Path, rng: np.random.Generator, j: int) -> dict[str, Any]:
        k = self._draw_skip(self.skip, rng, j)
        frames, fps = read_clip(item, self.num_frames, k, self.size, rng)
        return {"video": to_video_tensor(frames), "fps": fps}


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
        shards = shard_paths(spec)
        if not shards:
            raise MediaError(f"no .tar shards found at {spec}")
        items, broken, self.uncaptioned = [], 0, 0
        for shard in shards:
            try:
                members, uncaptioned = index_tar(shard, kind)
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

    def _load(self, item: TarMember, rng: np.random.Generator, j: int) -> dict[str, Any]:
        ext, offset, length = item.media
        name = f"{item.tar}:{item.key}{ext}"
        with open(item.tar, "rb") as f:
            data = read_exact(f, offset, length, name)
            text = read_exact(f, *item.text, f"{item.tar}:{item.key}.txt") if item.text else None
        if self.kind == "images":
            try:
                caption = text.decode("utf-8").strip() if text is not None else ""
            except UnicodeDecodeError as err:
                raise MediaError(f"{item.tar}:{item.key}.txt: not UTF-8 text ({err})") from err
            return {"image": to_image_tensor(read_image(io.BytesIO(data), self.size, name=name)), "caption": caption}
        k = self._draw_skip(self.skip, rng, j)
        frames, fps = read_clip(io.BytesIO(data), self.num_frames, k, self.size, rng, name=name)
        return {"video": to_video_tensor(frames), "fps": fps}


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
