"""mav: Make-A-Video (text-to-video without text-video data) as a package and a command-line suite.

    import mav
    pipe = mav.load_pipeline("path-or-id")          # or None for the embedded default
    video = pipe.generate("a red circle on a blue background", seed=1)
    mav.save_video(video, "out.mp4")

Heavy modules (torch, open_clip, PyAV) load on first use, so `import mav` and `mav --help` stay instant.
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "load_pipeline": ("mav.pipeline", "load_pipeline"),
    "Pipeline": ("mav.pipeline", "Pipeline"),
    "save_video": ("mav.media_write", "save_video"),
    "read_video": ("mav.media", "read_video"),
    "read_image": ("mav.media", "read_image"),
    "Video": ("mav.media", "Video"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'mav' has no attribute {name!r}")


__all__ = [*_LAZY, "__version__"]
