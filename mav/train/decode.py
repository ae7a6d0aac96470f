"""Decoding training files: an image or a random video clip, from a path or in-memory bytes, to uint8 arrays.

Both are resized (shorter side to S) and centre-cropped; anything unreadable raises MediaError naming the file,
which the datasets count, warn about with a DataWarning and skip.
"""

from __future__ import annotations

import io
import struct
import tarfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mav.errors import MediaError
from mav.media import decode_image

MAX_IMAGE_PIXELS = 8192 * 8192  # larger inputs are skipped, not decoded into memory

# Library exceptions that mean "this file is broken", as opposed to a bug in mav.
_DECODE_ERRORS = (
    OSError, ValueError, EOFError, SyntaxError, struct.error, zlib.error, tarfile.TarError,
    Image.DecompressionBombError,
)


class DataWarning(UserWarning):
    """A training file was skipped (unreadable, truncated, too short, …); the run goes on."""


class ClipTooShort(MediaError):
    """The video has fewer frames than the requested clip spans even at frame skip 1."""


def read_image(source: str | Path | io.BytesIO, size: int, name: str | None = None) -> np.ndarray:
    """uint8 (S, S, 3): upright (EXIF), alpha composited on white, shorter side resized to S, centre-cropped.

    Anything unreadable raises MediaError naming the file.
    """
    img = decode_image(source, name=name, max_pixels=MAX_IMAGE_PIXELS)
    scale = size / min(img.width, img.height)
    w, h = max(size, round(img.width * scale)), max(size, round(img.height * scale))
    img = img.resize((w, h), Image.Resampling.BICUBIC, reducing_gap=3.0)
    left, top = (w - size) // 2, (h - size) // 2
    return np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.uint8)


def read_clip(
    source: str | Path | io.BytesIO, num_frames: int, skip: int, size: int, rng: np.random.Generator,
    name: str | None = None,
) -> tuple[np.ndarray, float]:
    """A random clip of `num_frames` frames taking every `skip`-th source frame: (uint8 (F, S, S, 3), fps / skip).

    The shorter side is resized to S and the centre cropped. If the video is too short for `skip`, the largest
    skip that fits is used; shorter than `num_frames` frames → ClipTooShort; unreadable → MediaError.
    """
    import av  # PyAV only for real video files: the procedural world and image folders train without it

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
    except (*_DECODE_ERRORS, av.error.FFmpegError) as err:
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
        import av

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
