"""Input and output files, checked before any work: inputs told apart by their first bytes (the suffix can lie)
and read only as far as their headers, output paths tried for writing, output templates expanded."""

from __future__ import annotations

import os
import re
import string
import tempfile
import unicodedata
from collections.abc import Sequence
from pathlib import Path

from mav.checks.options import first_line
from mav.errors import MediaError, UsageError

VIDEO_SUFFIXES = (".mp4", ".webm", ".gif")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
STILL_SUFFIXES = (*IMAGE_SUFFIXES, ".bmp", ".tif", ".tiff")
FRAME_PATTERN = "frame_{:05d}.png"


# ---------------------------------------------------------------------------------------------------------------
# Input files, told apart by their first bytes (the suffix can lie)

_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"II*\x00", b"MM\x00*")
_VIDEO_MAGIC = (b"\x1a\x45\xdf\xa3",)  # Matroska / WebM (EBML)
_MP4_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip")


def sniff(path: Path) -> str | None:
    """'image', 'video', 'gif' (either) or None, from the file's header."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as err:
        raise MediaError(f"cannot read {path}: {first_line(err)}") from None
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head.startswith(_IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return "image"
    if head.startswith(_VIDEO_MAGIC) or head[4:8] in _MP4_BOXES or (head[:4] == b"RIFF" and head[8:12] == b"AVI "):
        return "video"
    if len(head) > 0 and head[0] == 0x47 and path.suffix.lower() in (".ts", ".m2ts"):  # MPEG-TS sync byte
        return "video"
    return None


def input_media(path: str | os.PathLike, *, image: bool = True, video: bool = True, what: str = "input") -> str:
    """Check an input before anything heavy: it exists, and is an image, a video or a folder of frames as the
    mode allows. Returns 'image', 'video' or 'frames' (a folder of frame images, read as a video)."""
    p = Path(path).expanduser()
    allowed = " or ".join(k for k, ok in (("an image", image), ("a video", video)) if ok)
    if not p.exists():
        raise MediaError(f"{what} not found: {p}")
    if p.is_dir():
        if not video:
            raise MediaError(f"{p} is a folder, not an image file")
        if not any(f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".") for f in p.iterdir()):
            raise MediaError(f"{p} is a folder without frames (expected {allowed} file, or image files such as "
                             f"{FRAME_PATTERN.format(0)})")
        return "frames"
    if not p.is_file():
        raise MediaError(f"{p} is not a regular file")
    kind = sniff(p)
    if kind == "gif":  # an animated GIF is a video; a still one an image: both read either way
        kind = "video" if video else "image"
    if kind is None:
        raise MediaError(f"{p} is not {allowed} (its header is not one mav reads)")
    if kind == "image" and not image:
        raise MediaError(f"{p} is an image; this needs a video (a file, or a folder of frames)")
    if kind == "video" and not video:
        raise MediaError(f"{p} is a video; this needs an image")
    return kind


def probe(path: str | os.PathLike, kind: str) -> tuple[int | None, int, int]:
    """(frames, width, height) of an input as far as its header says, without decoding pixels: 1 frame for an
    image; frames None when a video's container does not say (the count is then checked once it is read)."""
    p = Path(path).expanduser()
    if kind == "frames":
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith("."))
        _, width, height = probe(files[0], "image")
        return len(files), width, height
    if kind == "image":
        from PIL import Image  # reads the header only; no torch

        try:
            with Image.open(p) as im:
                return 1, im.width, im.height
        except (OSError, ValueError, SyntaxError) as err:
            raise MediaError(f"cannot read image {p}: {first_line(err)}") from None
    import av  # PyAV: no torch, and only the header is read

    try:
        with av.open(str(p)) as container:
            if not container.streams.video:
                raise MediaError(f"no video stream in {p}")
            stream = container.streams.video[0]
            return int(stream.frames) or None, stream.codec_context.width, stream.codec_context.height
    except (av.FFmpegError, OSError, ValueError, EOFError) as err:
        raise MediaError(f"cannot read video {p} (not a video, or truncated): {first_line(err)}") from None


# ---------------------------------------------------------------------------------------------------------------
# Output paths


def is_folder_output(path: str | os.PathLike) -> bool:
    """A video output that is a folder of PNG frames: the path ends with "/" or has no suffix."""
    text = os.fspath(path)
    return text.endswith(("/", os.sep)) or Path(text).suffix == ""


def is_frames_folder(p: Path) -> bool:
    """An existing folder that a frames output may replace: empty, or holding only frame PNGs."""
    return all(re.fullmatch(r"frame_\d+\.png", f.name) and f.is_file() for f in p.iterdir())


def output(path: str | os.PathLike, overwrite: bool = False, *, kind: str = "video",
           make_parents: bool = False) -> Path:
    """Validate an output path before any heavy work and return it as a `Path`.

    kind "video": `.mp4`, `.webm`, `.gif`, or a PNG-frames folder (path ends with "/" or has no suffix; pass the
    same string on to `save_video`, since a `Path` drops the trailing "/"). kind "image": `.png`, `.jpg`,
    `.jpeg`, `.webp`. An existing output needs `overwrite`; the parent folder must exist and take a new file
    (with `make_parents`, its nearest existing ancestor must: the caller creates the rest later). Whether a
    folder takes a file is tried, not read from its permission bits, which do not bind root or describe
    read-only and virtual file systems.
    """
    if kind not in ("video", "image"):
        raise ValueError(f"kind must be video or image, got {kind!r}")
    if not os.fspath(path).strip():
        raise MediaError("the output path is empty")
    p = Path(path).expanduser()
    folder = kind == "video" and is_folder_output(path)
    allowed = VIDEO_SUFFIXES if kind == "video" else IMAGE_SUFFIXES
    if not folder and p.suffix.lower() not in allowed:
        extra = " or a folder (a path ending with '/')" if kind == "video" else ""
        raise MediaError(f"unknown output suffix {p.suffix!r} in {p}: use {', '.join(allowed)}{extra}")
    if p.exists() or p.is_symlink():
        if not overwrite:
            raise MediaError(f"{p} already exists; pass --overwrite to replace it")
        if folder and not (p.is_dir() and is_frames_folder(p)):
            raise MediaError(f"refusing to replace {p}: it is not a folder of frame_*.png files")
        if not folder and p.is_dir():
            raise MediaError(f"refusing to replace {p}: it is a folder")
    parent = p.absolute().parent
    if make_parents:
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
    if not parent.exists():
        raise MediaError(f"output folder {parent} does not exist")
    if not parent.is_dir():
        raise MediaError(f"{parent} is not a folder, so {p.name} cannot be written in it")
    _try_write(parent)
    return p


def model_output(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """A model folder to create (`mav import`): absent, empty, or replaced with `overwrite`; a file is never
    replaced; the nearest existing ancestor must take a new folder."""
    if not os.fspath(path).strip():
        raise MediaError("the output folder is empty")
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise MediaError(f"{p} exists and is not a folder")
    if p.is_dir() and any(p.iterdir()) and not overwrite:
        raise MediaError(f"{p} exists and is not empty; pass --overwrite to replace it")
    parent = p.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise MediaError(f"{parent} is not a folder, so {p.name} cannot be created in it")
    _try_write(parent)
    return p


def _try_write(folder: Path) -> None:
    try:
        fd, probe = tempfile.mkstemp(prefix=".mav-probe-", dir=folder)
    except OSError as err:
        raise MediaError(f"cannot write in output folder {folder}: {first_line(err)}") from None
    os.close(fd)
    os.unlink(probe)


def outputs(template: str, seeds: Sequence[int], slugs: Sequence[str], overwrite: bool) -> list[str]:
    """Expand `-o` for each result and check every output before any heavy work (missing folders are made
    when each result is saved)."""
    count = len(seeds)
    if count > 1 and not template_fields(template) & {"index", "seed", "slug"}:
        raise UsageError(f"-o {template!r} would write {count} videos to one file; add {{index}}, e.g. "
                         f"'out/{{index}}-{{seed}}.mp4'")
    paths = [expand_template(template, index=i, seed=seeds[i], slug=slugs[i]) for i in range(count)]
    if len({os.path.normpath(p) for p in paths}) != len(paths):
        raise UsageError(f"-o {template!r} gives the same file name to several videos; add {{index}}")
    for p in paths:
        output(p, overwrite=overwrite, make_parents=True)
    return paths


def slugify(text: str, max_length: int = 60) -> str:
    """A file-name-safe form of a prompt: "A red circle, moving!" → "a-red-circle-moving".

    Letters of any script are kept; everything else becomes "-". Cut at a word boundary to `max_length`.
    """
    lowered = unicodedata.normalize("NFKC", text).lower()
    slug = re.sub(r"[\W_]+", "-", lowered).strip("-")
    if len(slug) > max_length:
        cut = slug[:max_length]
        slug = (cut.rsplit("-", 1)[0] if "-" in cut else cut).strip("-")
    return slug or "untitled"


def expand_template(template: str, **fields: object) -> str:
    """Fill an output template with `str.format`, e.g. `"out/{index:03d}-{seed}-{slug}.mp4"`; a template naming
    any other field, or malformed, is a `UsageError`."""
    names = ", ".join("{" + name + "}" for name in sorted(fields))
    try:
        return template.format(**fields)
    except KeyError as e:
        raise UsageError(f"unknown field {{{e.args[0]}}} in output template {template!r}; use {names}") from None
    except (IndexError, ValueError, AttributeError, TypeError) as e:
        raise UsageError(f"bad output template {template!r} ({first_line(e)}); use named fields: {names}") from None


def template_fields(template: str) -> set[str]:
    """The fields a template uses, e.g. to check it varies per output: "{seed}-{index:02d}" → {seed, index}."""
    try:
        return {name.split(".")[0].split("[")[0] for _, name, _, _ in string.Formatter().parse(template) if name}
    except ValueError as e:
        raise UsageError(f"bad output template {template!r} ({first_line(e)})") from None
