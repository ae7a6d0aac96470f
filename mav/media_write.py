"""Writing images and videos to disk, atomically.

Outputs are chosen by suffix: `.mp4` (H.264, yuv420p, crf 18, +faststart), `.webm` (VP9), `.gif` (Pillow,
loops forever) or a folder of PNG frames (`frame_00000.png` …) when the path ends with "/" or has no suffix.
Every output is written under a hidden temporary name beside the target and renamed into place, so a failure
or Ctrl-C leaves no partial file: an existing output always means a finished one.
Every failed write is a `MediaError` (exit 4) whose one-line message names the path.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from PIL import Image, PngImagePlugin
from torch import Tensor

from mav import files
from mav.checks import FRAME_PATTERN, first_line, is_folder_output, output
from mav.errors import MediaError
from mav.media import PIL_ERRORS, Video

# suffix → (container format, codec, codec options, container options)
_ENCODERS = {
    ".mp4": ("mp4", "libx264", {"crf": "18", "preset": "medium"}, {"movflags": "+faststart"}),
    # b=0 makes crf a constant-quality target; cpu-used 2 and row-mt keep VP9 from being painfully slow.
    ".webm": ("webm", "libvpx-vp9", {"crf": "24", "b": "0", "cpu-used": "2", "row-mt": "1"}, {}),
}


# ---------------------------------------------------------------------------------------------------------
# Atomic writes


def _reserve(final: Path, folder: bool) -> Path:
    """Create a hidden, unused name beside `final` with the same suffix (codecs pick the format from it)."""
    tmp = files.sibling(final, "partial", keep_suffix=True)
    if folder:
        os.mkdir(tmp)
    else:  # O_EXCL and mode 0o666 (minus umask) give the permissions a normal file would get
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    return tmp


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    elif p.exists() or p.is_symlink():
        p.unlink(missing_ok=True)


def _commit(tmp: Path, final: Path, overwrite: bool, folder: bool) -> None:
    if not folder and tmp.stat().st_size == 0:
        raise MediaError(f"writing {final} produced an empty file")
    if folder:
        if not final.exists():
            os.rename(tmp, final)
            return
        if not overwrite:  # it appeared while the frames were being written
            raise MediaError(f"{final} already exists; pass --overwrite to replace it")
        files.replace_folder(tmp, final)
    elif overwrite:
        os.replace(tmp, final)
    else:
        try:  # a hard link fails if `final` appeared meanwhile, so a concurrent writer is never clobbered
            os.link(tmp, final)
        except FileExistsError:
            raise MediaError(f"{final} already exists; pass --overwrite to replace it") from None
        except OSError:  # file systems without hard links
            if final.exists():
                raise MediaError(f"{final} already exists; pass --overwrite to replace it") from None
            os.replace(tmp, final)


def _write_errors() -> tuple[type[BaseException], ...]:
    """What a failed write raises: file-system and Pillow errors, and PyAV's once PyAV is loaded."""
    av = sys.modules.get("av")
    return (*PIL_ERRORS, *((av.FFmpegError,) if av is not None else ()))


@contextmanager
def _atomic(final: Path, overwrite: bool, folder: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; rename it to `final` on success, delete it on any error or Ctrl-C."""
    tmp = _reserve(final, folder)
    try:
        yield tmp
        _commit(tmp, final, overwrite, folder)
    except _write_errors() as e:
        raise MediaError(f"cannot write {final}: {first_line(e)}") from e
    finally:
        _remove(tmp)


# ---------------------------------------------------------------------------------------------------------
# Writing


def _iter_frames(video: Video) -> Iterator[np.ndarray]:
    """The frames as contiguous uint8 `(h, w, 3)` arrays, one at a time."""
    frames = video.frames.cpu()
    for i in range(video.num_frames):
        yield np.ascontiguousarray(frames[i].numpy())


def _pad_even(frame: np.ndarray) -> np.ndarray:
    """H.264 with yuv420p needs even sides: repeat the last row / column where one is odd."""
    h, w = frame.shape[:2]
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge") if h % 2 or w % 2 else frame


def _write_av(video: Video, tmp: Path, suffix: str) -> None:
    import av

    fmt, codec, options, container_options = _ENCODERS[suffix]
    even = codec == "libx264"
    height, width = video.height, video.width
    if even:
        height, width = height + height % 2, width + width % 2
    with av.open(str(tmp), "w", format=fmt, container_options=container_options) as container:
        # PyAV wants a rational rate; limit_denominator(1001) keeps NTSC rates such as 30000/1001 exact.
        stream = container.add_stream(codec, rate=Fraction(video.fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = dict(options)
        for frame in _iter_frames(video):
            picture = av.VideoFrame.from_ndarray(_pad_even(frame) if even else frame, format="rgb24")
            for packet in stream.encode(picture):
                container.mux(packet)
        for packet in stream.encode():  # flush delayed frames
            container.mux(packet)


def _write_gif(video: Video, tmp: Path) -> None:
    images = [Image.fromarray(frame) for frame in _iter_frames(video)]
    # GIF delays are whole centiseconds and browsers slow down anything under 2 cs, so ~50 fps is the maximum.
    delay_cs = max(2, round(100 / video.fps))
    images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=delay_cs * 10, loop=0)


def _write_frames(video: Video, folder: Path) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("fps", repr(video.fps))  # lets read_video recover the frame rate of a frames folder
    for i, frame in enumerate(_iter_frames(video)):
        Image.fromarray(frame).save(folder / FRAME_PATTERN.format(i), format="PNG", pnginfo=info)


def save_video(video: Video, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write `video` by the suffix of `path` (see the module docstring) atomically; return the final path.

    mp4 frames with an odd width or height are padded to even by repeating the last row / column, because
    H.264 in yuv420p cannot encode odd sizes; the file is then at most one pixel larger on each side. A GIF
    stores its frame delay in whole centiseconds (8 fps becomes 100/12 ≈ 8.33), and Pillow merges identical
    consecutive frames into one longer frame.
    """
    p = output(path, overwrite)
    folder = is_folder_output(path)
    with _atomic(p, overwrite, folder) as tmp:
        if folder:
            _write_frames(video, tmp)
        elif p.suffix.lower() == ".gif":
            _write_gif(video, tmp)
        else:
            _write_av(video, tmp, p.suffix.lower())
    return p


def save_image(image: Tensor, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write a uint8 `(h, w, 3)` image to `.png`, `.jpg`/`.jpeg` (quality 95) or `.webp` atomically."""
    if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected a uint8 (h, w, 3) image, got {image.dtype} {tuple(image.shape)}")
    p = output(path, overwrite, kind="image")
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}[p.suffix.lower()]
    options = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    with _atomic(p, overwrite) as tmp:
        Image.fromarray(np.ascontiguousarray(image.cpu().numpy())).save(tmp, format=fmt, **options)
    return p
