"""Reading images and videos, and moving pixels between files and model tensors (writing them: `mav.media_write`).

Files hold uint8 RGB, channel last: an image is `(h, w, 3)`, a video's frames `(f, h, w, 3)`. Models see float
pixels in [-1, 1], channel first: `(3, h, w)`, `(3, f, h, w)` or `b c f h w`.
Every bad file is a `MediaError` (exit 4) whose one-line message names the path.
"""

from __future__ import annotations

import io
import math
import os
import re
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from mav.checks import FRAME_PATTERN, IMAGE_SUFFIXES, first_line, input_media
from mav.errors import MavError, MediaError

# Refuse larger images before decoding a single pixel: 40 MP of uint8 RGB is 120 MB, more as float.
MAX_PIXELS = 40_000_000

# What Pillow raises on a bad file, reading or writing.
PIL_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error)


# ---------------------------------------------------------------------------------------------------------
# Pixels ↔ tensors


def to_unit(pixels: Tensor | np.ndarray) -> Tensor:
    """uint8 [0, 255] → float32 [-1, 1]:  x = u / 127.5 − 1, any layout (a numpy array is copied: decoded arrays
    may be read-only)."""
    if isinstance(pixels, np.ndarray):
        pixels = torch.tensor(pixels)
    return pixels.to(torch.float32) / 127.5 - 1.0


def to_uint8(x: Tensor) -> Tensor:
    """float [-1, 1] → uint8:  u = round((clamp(x, −1, 1) + 1) · 127.5); exact inverse of `to_unit`."""
    x = x.detach().to("cpu", torch.float32)
    if not torch.isfinite(x).all():
        raise MavError("cannot convert pixels that contain NaN or infinity (the model output diverged)")
    return ((x.clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)


@dataclass
class Video:
    """Decoded video: `frames` uint8 `(f, h, w, 3)` RGB and its frame rate in frames per second."""

    frames: Tensor
    fps: float
    meta: dict = field(default_factory=dict)  # what made it: prompt, seed, per-stage seconds, skipped stages

    def __post_init__(self) -> None:
        if self.frames.dtype != torch.uint8 or self.frames.ndim != 4 or self.frames.shape[-1] != 3:
            shape = tuple(self.frames.shape)
            raise ValueError(f"frames must be uint8 (f, h, w, 3), got {self.frames.dtype} {shape}")
        if min(self.frames.shape[:3]) < 1:
            raise ValueError(f"a video needs at least one frame of at least 1×1, got {tuple(self.frames.shape)}")
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"fps must be a positive number, got {self.fps}")
        self.fps = float(self.fps)

    @property
    def num_frames(self) -> int:
        return self.frames.shape[0]

    @property
    def height(self) -> int:
        return self.frames.shape[1]

    @property
    def width(self) -> int:
        return self.frames.shape[2]

    def to_tensor(self) -> Tensor:
        """Float32 `(3, f, h, w)` in [-1, 1], the layout models use (add `b` with `[None]`)."""
        return rearrange(to_unit(self.frames), "f h w c -> c f h w").contiguous()

    @classmethod
    def from_tensor(cls, x: Tensor, fps: float) -> Video:
        """Inverse of `to_tensor`: `x` is `(3, f, h, w)` in [-1, 1] on any device and dtype; clamped, rounded."""
        if x.ndim != 4 or x.shape[0] != 3:
            raise ValueError(f"expected a (3, f, h, w) tensor, got {tuple(x.shape)}")
        return cls(rearrange(to_uint8(x), "c f h w -> f h w c").contiguous(), fps)


def image_to_tensor(image: Tensor) -> Tensor:
    """uint8 `(h, w, 3)` → float32 `(3, h, w)` in [-1, 1]."""
    if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected a uint8 (h, w, 3) image, got {image.dtype} {tuple(image.shape)}")
    return rearrange(to_unit(image), "h w c -> c h w").contiguous()


def image_from_tensor(x: Tensor) -> Tensor:
    """float `(3, h, w)` in [-1, 1] → uint8 `(h, w, 3)`; clamped, rounded."""
    if x.ndim != 3 or x.shape[0] != 3:
        raise ValueError(f"expected a (3, h, w) tensor, got {tuple(x.shape)}")
    return rearrange(to_uint8(x), "c h w -> h w c").contiguous()


def resize_video(x: Tensor, size: int | tuple[int, int], mode: str = "bicubic") -> Tensor:
    """Resize every frame of `x` `(c, f, h, w)` or `(b, c, f, h, w)` to `size` (side or `(h, w)`), same layout.

    bicubic and bilinear are antialiased, so downsampling does not alias; "area" averages, "nearest" copies.
    Pixels are in [-1, 1], so bicubic overshoot at edges is clamped back into that range.
    """
    if mode not in ("bicubic", "bilinear", "area", "nearest"):
        raise ValueError(f"mode must be bicubic, bilinear, area or nearest, got {mode!r}")
    if x.ndim not in (4, 5):
        raise ValueError(f"expected (c, f, h, w) or (b, c, f, h, w), got {tuple(x.shape)}")
    h, w = (size, size) if isinstance(size, int) else size
    if h < 1 or w < 1:
        raise ValueError(f"size must be positive, got {size}")
    if tuple(x.shape[-2:]) == (h, w):
        return x
    video = x if x.ndim == 5 else x[None]
    b = video.shape[0]
    frames = rearrange(video, "b c f h w -> (b f) c h w").float()
    antialias = {"antialias": True} if mode in ("bicubic", "bilinear") else {}
    frames = F.interpolate(frames, size=(h, w), mode=mode, **antialias).clamp(-1.0, 1.0)
    out = rearrange(frames, "(b f) c h w -> b c f h w", b=b).to(x.dtype)
    return out if x.ndim == 5 else out[0]


def center_crop_square(x: Tensor | Video) -> Tensor | Video:
    """Crop the largest centred square.

    A `Video` gives a `Video`. A uint8 tensor is media layout, channel last (`(h, w, 3)` or `(f, h, w, 3)`);
    a float tensor is model layout, channel first (`(…, h, w)`).
    """
    if isinstance(x, Video):
        return Video(center_crop_square(x.frames), x.fps)
    channel_last = x.dtype == torch.uint8
    if channel_last and (x.ndim < 3 or x.shape[-1] != 3):
        raise ValueError(f"a uint8 image or video must be (…, h, w, 3), got {tuple(x.shape)}")
    h, w = x.shape[-3:-1] if channel_last else x.shape[-2:]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    if channel_last:
        return x[..., top : top + side, left : left + side, :]
    return x[..., top : top + side, left : left + side]


# ---------------------------------------------------------------------------------------------------------
# Reading


def _input_file(path: str | os.PathLike, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise MediaError(f"{what} not found: {p}")
    if p.is_dir() and what == "image":
        raise MediaError(f"{p} is a folder, not an image file")
    return p


def _check_pixels(p: Path | str, width: int, height: int, max_pixels: int, what: str = "image") -> None:
    if width * height > max_pixels:
        raise MediaError(
            f"{what} too large: {p} is {width}×{height} ({width * height / 1e6:.1f} megapixels; "
            f"the limit is {max_pixels / 1e6:g})"
        )


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode → RGB; transparent pixels are composited onto white."""
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        # Pillow's own conversion clips 16-bit values at 255 instead of scaling them.
        gray = (np.asarray(im, dtype=np.float64) / 257.0).round().clip(0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, im.convert("RGBA")).convert("RGB")
    return im.convert("RGB")


def decode_image(source: str | os.PathLike | io.BytesIO, *, name: str | None = None,
                 max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode an image file (a path, or its bytes) into an upright RGB Pillow image: EXIF orientation applied,
    transparency composited onto white, grayscale, 16-bit, palette and CMYK made RGB, an animated image's first
    frame. Images above `max_pixels` are refused before their pixels are decoded; anything unreadable is a
    MediaError naming `name` (default: the path)."""
    name = name or str(source)
    try:
        with warnings.catch_warnings():
            # Pillow warns above its own limit; ours is lower and checked right after the header is read.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as im:
                _check_pixels(name, im.width, im.height, max_pixels)
                im.load()  # a truncated file opens fine and only fails here
                return _to_rgb(ImageOps.exif_transpose(im))
    except Image.DecompressionBombError as e:
        raise MediaError(f"image too large: {name} ({first_line(e)})") from e
    except UnidentifiedImageError as e:
        raise MediaError(f"not an image (format not recognised): {name}") from e
    except PIL_ERRORS as e:
        raise MediaError(f"cannot read image {name}: {first_line(e)}") from e


def read_image(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> Tensor:
    """Read an image file as uint8 `(h, w, 3)` RGB, upright (see `decode_image`)."""
    p = _input_file(path, "image")
    return torch.from_numpy(np.array(decode_image(p, max_pixels=max_pixels), dtype=np.uint8))


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _read_frames_folder(p: Path, max_frames: int | None, fps: float | None, max_pixels: int) -> Video:
    files = sorted(
        (f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".")),
        key=lambda f: _natural_key(f.name),
    )
    if not files:
        raise MediaError(f"no frames in {p} (expected image files such as {FRAME_PATTERN.format(0)})")
    if fps is None:
        try:
            with Image.open(files[0]) as im:
                fps = float(im.info["fps"])
        except (KeyError, *PIL_ERRORS):
            fps = math.nan
        if not (math.isfinite(fps) and fps > 0):
            raise MediaError(f"the frames in {p} do not record a frame rate; give one explicitly")
    frames = [read_image(f, max_pixels) for f in files[:max_frames]]
    if any(frame.shape != frames[0].shape for frame in frames):
        raise MediaError(f"the frames in {p} do not all have the same size")
    return Video(torch.stack(frames), fps)


def read_video(
    path: str | os.PathLike,
    max_frames: int | None = None,
    *,
    fps: float | None = None,
    max_pixels: int = MAX_PIXELS,
) -> Video:
    """Decode a video file (anything PyAV reads, animated GIF included) or a folder of frames.

    Reads at most `max_frames` frames from the start. The frame rate comes from the stream; a folder of frames
    records it in its PNG text (as `save_video` writes it) or takes `fps`. Still images are refused here: use
    `read_image`.
    """
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be ≥ 1, got {max_frames}")
    p = _input_file(path, "video")
    if p.is_dir():
        return _read_frames_folder(p, max_frames, fps, max_pixels)

    import av

    frames = []
    try:
        with av.open(str(p)) as container:
            if container.format.name == "image2" or container.format.name.endswith("_pipe"):
                raise MediaError(f"{p} is a still image, not a video")
            if not container.streams.video:
                raise MediaError(f"no video stream in {p}")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            _check_pixels(p, stream.codec_context.width, stream.codec_context.height, max_pixels, "video")
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            for frame in container.decode(stream):
                frames.append(frame.to_ndarray(format="rgb24"))
                if max_frames is not None and len(frames) >= max_frames:
                    break
    except EOFError as e:  # PyAV's EOFError: the container ends before its first packet
        raise MediaError(f"no frames could be decoded from {p} (empty or truncated video)") from e
    except (av.FFmpegError, OSError, ValueError) as e:
        raise MediaError(f"cannot read video {p} (not a video, or truncated): {first_line(e)}") from e
    if not frames:
        raise MediaError(f"no frames could be decoded from {p} (empty or truncated video)")
    if fps is None and (not rate or rate <= 0):
        raise MediaError(f"cannot tell the frame rate of {p}; give one explicitly")
    return Video(torch.from_numpy(np.stack(frames)), float(rate) if fps is None else fps)


def read_media(path: str | os.PathLike, *, image_fps: float = 8.0, allow_image: bool = True) -> Video:
    """An image (as a one-frame video at `image_fps`) or a video, told apart by the file's header."""
    if input_media(path, image=allow_image) == "image":
        return Video(read_image(path).unsqueeze(0), image_fps)
    return read_video(path)
