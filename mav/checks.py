"""Every check that needs neither a model nor torch, so that a mistake is answered at once (in well under a
second) and before any heavy work: option values, prompts, input and output files, training options, and the
requests a model's configs say it cannot serve.

The CLI and the Python API (`Pipeline`'s modes, `mav.train`) call the same functions, so both give the same
one-line messages and exit codes (`mav.errors`). Importing this module imports neither torch nor numpy.
"""

from __future__ import annotations

import os
import re
import secrets
import string
import sys
import tempfile
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mav.errors import MediaError, OutOfMemory, UsageError

MAX_SEED = 2**32 - 1
SAMPLERS = ("ddim", "ddpm", "dpmpp")
DTYPE_NAMES = ("fp32", "bf16", "fp16")
# The stages that sample, in cascade order (per-stage --steps / --guidance-scale), and those a run can stop after.
SAMPLING_STAGES = ("prior", "decoder", "interpolator", "sr_low", "sr_high")
UNTIL_STAGES = SAMPLING_STAGES[1:]
SR_STAGES = ("sr_low", "sr_high")
# The training stages, in the order a recipe runs them.
TRAINING_STAGES = ("clip", "prior", "decoder-image", "decoder-video", "interpolator", "sr-low", "sr-high")
DATA_FORMATS = ("images", "videos", "shards")
# `mav eval --stage`: the per-stage gates, in cascade order; and the most held-out scenes an evaluation draws.
GATES = ("clip", "prior", "decoder-image", "decoder", "interpolator", "sr-low", "sr-high")
EVAL_MAX_N = 10_000

VIDEO_SUFFIXES = (".mp4", ".webm", ".gif")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
STILL_SUFFIXES = (*IMAGE_SUFFIXES, ".bmp", ".tif", ".tiff")
FRAME_PATTERN = "frame_{:05d}.png"


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (its strerror for OS errors, without errno and file name), for
    one-line errors."""
    text = (getattr(err, "strerror", None) or str(err)).strip().splitlines()
    return text[0] if text else type(err).__name__


# ---------------------------------------------------------------------------------------------------------------
# Option values


def at_least(option: str, value: float | None, minimum: float = 1) -> None:
    """UsageError unless `value` (when given) is ≥ `minimum`."""
    if value is not None and value < minimum:
        raise UsageError(f"{option} must be ≥ {minimum:g}, got {value:g}")


def seed(value: int | None) -> int:
    """A seed in 0…2³²−1, or a fresh random one (always reported back to the user)."""
    if value is None:
        return secrets.randbelow(MAX_SEED + 1)
    if not 0 <= value <= MAX_SEED:
        raise UsageError(f"--seed must be in 0…{MAX_SEED}, got {value}")
    return value


def prompt_seeds(base: int, count: int) -> list[int]:
    """Result i of a call uses seed base + i (wrapping at 2³²), so any one result can be made again alone."""
    return [(base + i) % (MAX_SEED + 1) for i in range(count)]


def per_stage(option: str, value: str | int | float | dict | None, cast, minimum: float):
    """`--steps` / `--guidance-scale`: 'N' → N for all stages; 'decoder=30,sr_low=10' → a dict; each value checked
    against `minimum`. A number or a dict (the Python API) is checked the same way."""
    if value is None:
        return None
    if isinstance(value, dict):
        out = {}
        for stage, number in value.items():
            out[_stage_name(option, stage)] = _number(option, number, cast, minimum)
        return out
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _number(option, value, cast, minimum)
    text = str(value)
    if "=" not in text:
        return _number(option, text, cast, minimum)
    out = {}
    for item in text.split(","):
        stage, _, number = item.partition("=")
        out[_stage_name(option, stage)] = _number(option, number, cast, minimum)
    return out


def _stage_name(option: str, stage: str) -> str:
    name = str(stage).strip().replace("-", "_")
    if name not in SAMPLING_STAGES:
        raise UsageError(f"{option}: unknown stage {name!r}; stages are {', '.join(SAMPLING_STAGES)}")
    return name


def _number(option: str, text, cast, minimum: float):
    try:
        number = cast(text)
        if cast is int and isinstance(text, float) and text != number:
            raise ValueError
    except (TypeError, ValueError):
        raise UsageError(f"{option} must be a number or stage=number pairs, got {text!r}") from None
    at_least(option, number, minimum)
    return number


def sampler(name: str | None) -> str | None:
    if name is not None and name not in SAMPLERS:
        raise UsageError(f"--sampler must be one of {', '.join(SAMPLERS)}, got {name!r}")
    return name


def device_name(name: str) -> str:
    """The form of `--device` (whether CUDA is there is asked of torch later, still before any model loads)."""
    if name in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", name or ""):
        return name
    raise UsageError(f"--device must be auto, cpu, cuda or cuda:N, got {name!r}")


def dtype_name(name: str, device: str = "auto") -> str:
    if name not in DTYPE_NAMES:
        raise UsageError(f"--dtype must be one of {', '.join(DTYPE_NAMES)}, got {name!r}")
    if name == "fp16" and device == "cpu":
        raise UsageError("--dtype fp16 needs a CUDA device; on the CPU use bf16 or fp32")
    return name


def until(name: str) -> str:
    if name not in UNTIL_STAGES:
        raise UsageError(f"--until must be one of {', '.join(UNTIL_STAGES)}, got {name!r}")
    return name


def fps(value: float | None) -> float | None:
    if value is not None and not value > 0:
        raise UsageError(f"--fps must be > 0, got {value:g}")
    return value


def strength(value: float) -> float:
    if not 0.0 < value <= 1.0:
        raise UsageError(f"--strength must be in (0, 1], got {value:g}")
    return value


def sr_stages(names: Sequence[str] | None) -> tuple[str, ...]:
    """`mav upscale --stage`: sr_low and/or sr_high (default both), in cascade order."""
    chosen = [s.replace("-", "_") for s in (names or SR_STAGES)]
    for s in chosen:
        if s not in SR_STAGES:
            raise UsageError(f"--stage must be sr_low or sr_high, got {s!r}")
    return tuple(s for s in SR_STAGES if s in chosen)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AVX-512 BF16 or AMX); without, torch emulates bf16 matmuls
    at a small fraction of fp32's speed. Linux's /proc/cpuinfo tells; elsewhere assume it does (no warning)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return True
    return any(flag in flags for flag in ("avx512_bf16", "amx_bf16"))


def bf16_warning(dtype: str, device: str) -> str | None:
    """The one-line warning for `--dtype bf16` on a CPU that would run it slower than fp32, else None."""
    if dtype != "bf16" or device.startswith("cuda"):
        return None
    if device == "auto" and may_have_cuda():
        return None
    if cpu_has_native_bf16():
        return None
    return ("--dtype bf16 on this CPU (no AVX-512 BF16 or AMX) is emulated and much slower than fp32; "
            "use --dtype fp32 here")


def may_have_cuda() -> bool:
    """Without importing torch: an NVIDIA driver is loaded (so `--device auto` may pick CUDA)."""
    return Path("/proc/driver/nvidia/version").exists() or bool(os.environ.get("CUDA_VISIBLE_DEVICES"))


# ---------------------------------------------------------------------------------------------------------------
# Prompts


def prompt(text: str | None) -> str | None:
    """An optional prompt: None stays None, an empty one is refused."""
    if text is not None and not text.strip():
        raise UsageError("prompt is empty")
    return None if text is None else text.strip()


def prompts(texts: Sequence[str]) -> list[str]:
    if not texts:
        raise UsageError("no prompt given")
    return [prompt(t) for t in texts]


def read_prompts(text: str | None, prompts_file: str | None) -> list[str]:
    """The prompt argument, a prompts file (`-` for stdin), or stdin when it is not a terminal."""
    if text is not None and prompts_file is not None:
        raise UsageError("give either a prompt or --prompts-file, not both")
    if text is not None:
        return [prompt(text)]
    if prompts_file is None and sys.stdin is not None and sys.stdin.isatty():
        raise UsageError("no prompt given: pass PROMPT, --prompts-file FILE, or pipe prompts on stdin")
    if prompts_file is None or prompts_file == "-":
        content, source = (sys.stdin.read() if sys.stdin is not None else ""), "stdin"
    else:
        path = Path(prompts_file)
        if not path.is_file():
            raise MediaError(f"prompts file {path} does not exist or is not a file")
        try:
            content, source = path.read_text(encoding="utf-8"), str(path)
        except (OSError, UnicodeDecodeError) as err:
            raise MediaError(f"cannot read prompts file {path}: {first_line(err)}") from None
    lines = [line.strip() for line in content.splitlines() if line.strip() and not line.strip().startswith("#")]
    if not lines:
        raise UsageError(f"no prompts in {source} (empty, or only blank and # lines)")
    return lines


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


# ---------------------------------------------------------------------------------------------------------------
# Training and evaluation options


def gates(spec: str) -> list[str]:
    """`--stage clip,prior` or `all` → the gates to run, each checked."""
    if spec == "all":
        return list(GATES)
    names = [g.strip() for g in spec.split(",")]
    for name in names:
        if name not in GATES:
            raise UsageError(f"--stage must be one of {', '.join(GATES)} (comma-separated) or all, got {name!r}")
    return names


def eval_count(n: int) -> int:
    if not 1 <= n <= EVAL_MAX_N:
        raise UsageError(f"-n must be in 1…{EVAL_MAX_N}, got {n}")
    return n


def training_stage(name: str, *, recipe: bool = True) -> str:
    if name in TRAINING_STAGES or (recipe and name == "recipe"):
        return name
    extra = " (or recipe)" if recipe else ""
    raise UsageError(f"unknown stage {name!r}; stages, in order: {', '.join(TRAINING_STAGES)}{extra}")


def data_source(data: str, data_format: str | None = None) -> str:
    """`--data`: 'shapes' (the procedural world), or a folder or shard pattern that exists and is not empty."""
    if data_format not in (None, *DATA_FORMATS):
        raise UsageError(f"--data-format must be {', '.join(DATA_FORMATS[:-1])} or {DATA_FORMATS[-1]}, "
                         f"got {data_format!r}")
    if data == "shapes":
        return data
    p = Path(data).expanduser()
    if not p.exists() and not any(ch in data for ch in "*?[{"):
        raise MediaError(f"--data {data}: no such file or folder (use 'shapes' for the procedural world)")
    if p.is_dir() and not any(not f.name.startswith(".") for f in p.iterdir()):
        raise MediaError(f"--data {data} is an empty folder")
    return data


# ---------------------------------------------------------------------------------------------------------------
# Requests a model (by its configs) or this machine cannot serve


def factor_served(factor: int | None, configs: Mapping[str, Any]) -> None:
    """↑F fills gaps of at most its window − 1 frames (the layouts it was trained on); a larger factor would leave
    windows with a single key frame, i.e. silent extrapolation."""
    cfg = configs.get("interpolator")
    if factor is None or factor <= 1 or cfg is None:
        return
    if factor > cfg.num_frames - 1:
        raise UsageError(f"--factor {factor}: this model's ↑F fills gaps of at most {cfg.num_frames - 1} frames "
                         f"(its window is {cfg.num_frames}); use --factor ≤ {cfg.num_frames - 1}, or raise the "
                         f"frame rate in two passes")


def input_frames(count: int | None, minimum: int, path: str | os.PathLike, what: str) -> None:
    if count is not None and count < minimum:
        raise MediaError(f"{path} has {count} frame{'s' if count != 1 else ''}; {what} needs at least {minimum}")


def unet_bytes(cfg: Any, frames: int, batch: int) -> int:
    """A rough upper bound of the activation memory of one no-grad call of a SpaceTime UNet over `frames`
    frames at once: the skip activations it holds, a working set at full resolution, and the attention scores of
    each attention level (spatial: tokens² per frame; temporal: frames² per token)."""
    total = 4 * cfg.widths[0] * cfg.sample_size ** 2 * frames
    for level, width in enumerate(cfg.widths):
        tokens = (cfg.sample_size >> level) ** 2
        total += (cfg.blocks_per_level + 1) * width * tokens * frames
        if level in cfg.attention_levels:
            total += cfg.heads * tokens * tokens * frames
            if cfg.temporal:
                total += cfg.heads * tokens * frames * frames
    return 4 * batch * total


def video_bytes(frames: int, height: int, width: int, batch: int = 1) -> int:
    """A finished batch of videos in float32 and uint8, with a working copy."""
    return batch * frames * 3 * height * width * (4 * 2 + 1)


def frames_fit(what: str, frames: int | None, width: int, height: int, available: int | None,
               advice: str) -> None:
    """OutOfMemory (exit 5) before any work when a video of `frames` frames of width × height, held as uint8 and
    float32 with a working copy, would not fit in `available` bytes."""
    if frames is None or available is None:
        return
    need = video_bytes(frames, height, width)
    if need > available:
        raise OutOfMemory(f"{what}: {frames} frames of {width}×{height} would need about {need / 2**30:.1f} GiB "
                          f"({available / 2**30:.1f} GiB free); {advice}")


def available_memory() -> int | None:
    """Bytes this machine can still give (Linux's MemAvailable), or None when it does not say."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def generation_fits(configs: Mapping[str, Any], *, num_frames: int, factor: int, batch: int,
                    available: int | None, option: str = "--num-frames") -> None:
    """OutOfMemory (exit 5) before any work when D^t's frames, all denoised at once, and the finished videos
    would not fit in `available` bytes. ↑F and SR work in windows of fixed size, so they are not the limit."""
    decoder = configs.get("decoder") or configs.get("interpolator")
    if decoder is None or available is None:
        return
    out_frames = (num_frames - 1) * max(factor, 1) + 1
    size = max(getattr(c, "sample_size", 0) for c in configs.values())
    need = unet_bytes(decoder, num_frames, 2 * batch) + video_bytes(out_frames, size, size, batch)
    if need > available:
        raise OutOfMemory(f"{option} {num_frames} would need about {need / 2**30:.1f} GiB ({available / 2**30:.1f} "
                          f"GiB free): D^t denoises all base frames at once; ask for fewer frames and make a long "
                          f"video with `mav extrapolate`")
