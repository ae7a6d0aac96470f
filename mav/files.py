"""Writing files so that a reader never sees half of one: everything mav writes (videos, model folders, JSON
records, checkpoints) is written under a hidden temporary name beside its target and renamed into place, so a
failure, a full disk or Ctrl-C leaves either the old file or the new one, and no temporary behind. Torch-free.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def sibling(path: Path, kind: str, *, keep_suffix: bool = False) -> Path:
    """A hidden, unused name beside `path`: `.name.<random>.kind` (with `keep_suffix`, `.stem.<random>.kind.suffix`,
    for writers that pick the format from the suffix)."""
    token = uuid.uuid4().hex[:12]
    if keep_suffix:
        return path.with_name(f".{path.stem}.{token}.{kind}{path.suffix}")
    return path.with_name(f".{path.name}.{token}.{kind}")


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write; on success it is flushed to disk and renamed to `path`
    (replacing any old file), on any error or Ctrl-C it is deleted."""
    path = Path(path)
    tmp = sibling(path, "tmp")
    # created here with mode 0o666 minus the umask, the permissions a normal file gets; a writer that makes its
    # file private (safetensors writes a new 0o600 file in its place) gets those permissions back before the rename
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    mode = tmp.stat().st_mode & 0o777
    try:
        yield tmp
        os.chmod(tmp, mode)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: str | os.PathLike, data: Any, *, sort_keys: bool = False) -> None:
    """`data` as indented JSON with a final newline, atomically."""
    text = json.dumps(data, indent=2, sort_keys=sort_keys) + "\n"
    with atomic_file(path) as tmp:
        tmp.write_text(text)


def replace_folder(new: Path, folder: Path) -> None:
    """Rename the finished folder `new` to `folder`; an existing `folder` is moved aside first (os.rename cannot
    replace a non-empty folder), put back if the rename fails, and deleted after."""
    if not folder.exists():
        os.rename(new, folder)
        return
    old = sibling(folder, "old")
    os.rename(folder, old)
    try:
        os.rename(new, folder)
    except BaseException:
        os.rename(old, folder)
        raise
    shutil.rmtree(old, ignore_errors=True)
