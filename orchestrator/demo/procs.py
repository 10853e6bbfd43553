"""Threads and child processes of the demo: playbooks off the main thread (so Ctrl-C
stays ours), and ending our own children after Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def off_main_thread(fn: Callable[[], T]) -> T:
    """Run a playbook step in a thread. ansible-runner, called on the main thread, takes
    over SIGINT and SIGTERM for good (it turns them into a cancel flag that only its own
    run reads), so Ctrl-C would no longer reach the demo; in a thread it leaves them alone,
    and the main thread, waiting here, gets the KeyboardInterrupt."""
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(fn())
        except BaseException as exc:  # handed to the main thread (or dropped after Ctrl-C)
            error.append(exc)

    thread = threading.Thread(target=target, name="playbook", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.2)
    if error:
        raise error[0]
    return result[0]


def end_children(keep: set[int]) -> None:
    """Our own child processes (ansible-playbook runs in its own session under pexpect),
    except `keep` (the sandbox server, which `control.down` stops in order)."""
    me = str(os.getpid())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in keep:
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if stat.rsplit(")", 1)[1].split()[1] == me:
            with contextlib.suppress(OSError):
                os.killpg(int(entry.name), signal.SIGTERM)
            with contextlib.suppress(OSError):
                os.kill(int(entry.name), signal.SIGTERM)
