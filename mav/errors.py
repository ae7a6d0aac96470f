"""Errors that reach the user as one line and a documented exit code (DESIGN §5).

0 ok · 1 unexpected · 2 usage / bad value · 3 model · 4 input/output file · 5 out of memory · 6 a stage missed its
gate (`mav eval --stage`, `mav train recipe`) · 130 interrupted.
"""

from __future__ import annotations


class MavError(Exception):
    """Base class: `str(err)` is the one-line message, `exit_code` the process exit status."""

    exit_code = 1


class UsageError(MavError):
    """A bad option value or argument (exit 2)."""

    exit_code = 2


class ModelError(MavError):
    """A model that is missing, corrupt, mismatched or not cached offline (exit 3)."""

    exit_code = 3


class MediaError(MavError):
    """An input or output file that cannot be read or written (exit 4)."""

    exit_code = 4


class OutOfMemory(MavError):
    """The device ran out of memory (exit 5)."""

    exit_code = 5


class GateFailed(MavError):
    """A trained stage did not reach its bar against its baseline (exit 6); a recipe stops before building on it."""

    exit_code = 6
