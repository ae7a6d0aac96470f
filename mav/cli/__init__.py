"""`mav`: thin Typer commands, each checking its inputs and making one call (a Pipeline mode, a training run…).

stdout carries only results (a path per line, or one JSON object per result with --json); progress and messages go
to stderr. Exit codes (DESIGN §5): 0 ok · 1 unexpected · 2 usage · 3 model · 4 file · 5 out of memory · 6 a gate
failed · 130 Ctrl-C.
"""

from __future__ import annotations

import os
import sys

# each module adds its commands to the app; imported in the order `mav --help` lists them
from mav.cli import modes  # noqa: F401, I001
from mav.cli import models  # noqa: F401
from mav.cli import training  # noqa: F401
from mav.cli.app import app
from mav.errors import MavError, OutOfMemory

__all__ = ["app", "main", "run"]

def _fail(message: str, code: int) -> int:
    print(f"mav: error: {message}", file=sys.stderr)
    return code


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (used by `main` and the tests)."""
    from typer.exceptions import Abort

    try:  # Typer ≥ 0.26 vendors Click; older Typer uses Click itself
        from typer._click.exceptions import ClickException, NoArgsIsHelpError
    except ImportError:  # pragma: no cover
        from click.exceptions import ClickException, NoArgsIsHelpError

    try:
        result = app(args=argv, prog_name="mav", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except NoArgsIsHelpError as err:
        print(err.ctx.get_help(), file=sys.stderr)
        return 2
    except ClickException as err:
        return _fail(err.format_message().replace("\n", " "), err.exit_code)
    except MavError as err:
        if os.environ.get("MAV_DEBUG"):
            raise
        return _fail(str(err).replace("\n", " "), err.exit_code)
    except (KeyboardInterrupt, Abort):
        return _fail("interrupted", 130)
    except Exception as err:
        if os.environ.get("MAV_DEBUG"):
            raise
        import torch

        if isinstance(err, torch.OutOfMemoryError):
            return _fail(f"out of memory: {str(err).splitlines()[0]} (try fewer frames, --batch-size 1 or "
                         f"--dtype bf16)", OutOfMemory.exit_code)
        return _fail(f"unexpected {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''} "
                     f"(set MAV_DEBUG=1 for the traceback)", 1)


def main() -> None:
    sys.exit(run())
