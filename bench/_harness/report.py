"""What every bench prints: progress on stderr, the machine it ran on, and one JSON object on
the last line of stdout; plus the run loop that stops on a signal, temp homes and option tables."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def log_stamped(message: str) -> None:
    """`log` with the wall-clock time in front."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def load_average() -> list[float] | None:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def machine(
    *, cores_key: str = "cpu_count", usable: bool = True, load: bool = True
) -> dict[str, Any]:
    """Platform, cores (under `cores_key`), usable CPUs (`usable`), Python and the load
    average now (`load`, as `load_average_at_start`): the keys each bench has always printed."""
    out: dict[str, Any] = {"platform": platform.platform(), cores_key: os.cpu_count()}
    if usable:
        out["cpus_usable"] = (
            len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        )
    out["python"] = platform.python_version()
    if load:
        out["load_average_at_start"] = load_average()
    return out


def print_json(result: Any, **dumps: Any) -> None:
    """The result: one JSON object, the last line of stdout."""
    print(json.dumps(result, **dumps))


def run_cancellable(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` on a new loop; SIGINT/SIGTERM cancel it, so it ends through its context
    managers and every child process is stopped."""
    loop = asyncio.new_event_loop()
    task = loop.create_task(main)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        return loop.run_until_complete(task)
    finally:
        loop.close()


@dataclass
class TempHome:
    """A fresh temp directory (`root`) with the pssync home in it (`home`, `root/.pssync`)."""

    prefix: str
    root: Path = field(init=False)

    def __post_init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix=self.prefix))

    @property
    def home(self) -> Path:
        return self.root / ".pssync"

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


Option = tuple[str, Any, Any] | tuple[str, Any, Any, str]
"""(flag, type, default) or (flag, type, default, help)."""


def add_options(parser: argparse.ArgumentParser, options: Iterable[Option]) -> None:
    """Typed options with defaults, one tuple each."""
    for flag, kind, default, *help_ in options:
        parser.add_argument(flag, type=kind, default=default, help=help_[0] if help_ else None)


def add_flags(parser: argparse.ArgumentParser, flags: dict[str, str | None]) -> None:
    """`store_true` flags: flag -> help."""
    for flag, help_ in flags.items():
        parser.add_argument(flag, action="store_true", help=help_)
