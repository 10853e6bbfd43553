"""Interrupts for commands that must clean up after themselves."""

from __future__ import annotations

import signal
from typing import Any


def _interrupt(_sig: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def raise_on_interrupt() -> None:
    """Ctrl-C and SIGTERM both raise KeyboardInterrupt, so the caller's cleanup runs: also
    when started with SIGINT ignored (as a background job of a script is, and Python then
    leaves it ignored) or stopped with `kill` or `timeout`. Main thread only."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
