"""Progress reporting on stderr: a rich bar per stage on a terminal, a plain line per stage otherwise."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

StepCallback = Callable[[int, int], None]


class Reporter:
    """Receives stage starts, steps and ends. The base class reports nothing (library use, `-q`)."""

    @contextmanager
    def stage(self, name: str, total: int) -> Iterator[StepCallback]:
        yield lambda i, n: None

    def message(self, text: str) -> None:
        pass


class PlainReporter(Reporter):
    """One line per finished stage: what CI logs and batch jobs want."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stderr

    @contextmanager
    def stage(self, name: str, total: int) -> Iterator[StepCallback]:
        start, reached = time.perf_counter(), [total]

        def advance(i: int, n: int) -> None:
            reached[0] = i
        yield advance
        steps = f"{total}" if reached[0] >= total else f"{reached[0]} of {total}"  # a run stopped early says so
        print(f"{name}: {steps} steps in {time.perf_counter() - start:.1f} s", file=self.stream, flush=True)

    def message(self, text: str) -> None:
        print(text, file=self.stream, flush=True)


class RichReporter(Reporter):
    """A live progress bar per stage on a terminal."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)

    @contextmanager
    def stage(self, name: str, total: int) -> Iterator[StepCallback]:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        columns = (TextColumn("{task.description:<14}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=self.console, transient=False) as bar:
            task = bar.add_task(name, total=total)
            yield lambda i, n: bar.update(task, completed=i, total=n)

    def message(self, text: str) -> None:
        self.console.print(text, highlight=False, markup=False)


def reporter_for(quiet: bool) -> Reporter:
    if quiet:
        return Reporter()
    return RichReporter() if sys.stderr.isatty() else PlainReporter()
