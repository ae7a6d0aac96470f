"""The training data on disk: which format a `--data` path holds, and finding its files.

An image–text folder (captions from `captions.csv` or a `.txt` beside each image), a video folder, or
WebDataset-style tar shards (a folder of them, one, a glob or a brace range), indexed from their headers alone.
"""

from __future__ import annotations

import csv
import re
import tarfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mav.errors import MediaError
from mav.train.decode import DataWarning

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".m4v", ".avi")
_BRACES = re.compile(r"\{(\d+)\.\.(\d+)\}")  # a shard range such as {00000..00009}


def detect_format(path: str | Path) -> str:
    """"shards" (.tar files: a folder of them, one, a glob or a brace range), "videos" or "images" (a folder).

    Priority when a folder mixes them: shards, then videos, then images.
    """
    text = str(path)
    if _BRACES.search(text) or any(c in text for c in "*?[") or text.endswith(".tar"):
        if shard_paths(text):
            return "shards"
        raise MediaError(f"no .tar shards match {text}")
    folder = existing_dir(path)
    if find_files(folder, (".tar",)):
        return "shards"
    if find_files(folder, VIDEO_SUFFIXES):
        return "videos"
    if find_files(folder, IMAGE_SUFFIXES):
        return "images"
    raise MediaError(
        f"no images ({', '.join(IMAGE_SUFFIXES)}), videos ({', '.join(VIDEO_SUFFIXES)}) or .tar shards in {folder}"
    )


def existing_dir(root: str | Path) -> Path:
    """`root` as a folder, or a MediaError saying that it is missing or not a folder."""
    folder = Path(root).expanduser()
    if not folder.exists():
        raise MediaError(f"dataset folder {folder} does not exist")
    if not folder.is_dir():
        raise MediaError(f"{folder} is not a folder")
    return folder


def find_files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """The files under `folder` (recursively, hidden names left out) ending in one of `suffixes`, sorted."""
    return sorted(
        p for p in folder.rglob("*")
        if p.suffix.lower() in suffixes and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def found_instead(folder: Path, wanted: str) -> str:
    """" (found 3 videos instead)": what else `folder` holds, for the message that it holds no `wanted`."""
    counts = {"images": len(find_files(folder, IMAGE_SUFFIXES)), "videos": len(find_files(folder, VIDEO_SUFFIXES)),
              "tar shards": len(find_files(folder, (".tar",)))}
    others = [f"{n} {what}" for what, n in counts.items() if n and what != wanted]
    return f" (found {', '.join(others)} instead)" if others else ""


def captioned_images(folder: Path) -> tuple[list[tuple[Path, str]], list[Path], int]:
    """(image path, caption) pairs, listed paths that are missing, and images without a caption."""
    csv_path = folder / "captions.csv"
    images = find_files(folder, IMAGE_SUFFIXES)
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


def shard_paths(spec: str | Path) -> list[Path]:
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
        return find_files(path, (".tar",))
    if path.is_file():
        return [path]
    raise MediaError(f"dataset {text} does not exist")


@dataclass(frozen=True)
class TarMember:
    """One sample of a shard: where its media bytes and its caption lie in the .tar file."""

    tar: Path
    key: str
    media: tuple[str, int, int]  # (extension, offset, size) of the image or video bytes
    text: tuple[int, int] | None  # (offset, size) of key.txt


def index_tar(shard: Path, kind: str) -> tuple[list[TarMember], int]:
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
        members.append(TarMember(shard, key, (ext, *parts[ext]), text if kind == "images" else None))
    return members, uncaptioned


def read_exact(f: Any, offset: int, length: int, name: str) -> bytes:
    """`length` bytes of the open file `f` from `offset` (a TarMember's part); fewer is a MediaError."""
    f.seek(offset)
    data = f.read(length)
    if len(data) != length:
        raise MediaError(f"{name}: truncated ({len(data)} of {length} bytes)")
    return data
