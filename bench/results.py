"""Write one benchmark's section of bench/RESULTS.md, leaving the other sections alone."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import subprocess
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
HEADER = ("# Benchmark results\n\nEach section is written by the script it names; rerun it to "
          "refresh the numbers. Times are wall-clock seconds unless stated.\n")


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    kernel = platform.release()
    return f"{os.cpu_count()} cores ({cpu}), {mem_kb / 2**20:.0f} GiB RAM, Linux {kernel}"


def git_revision() -> str:
    proc = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          cwd=RESULTS.parent)
    return proc.stdout.strip() or "unknown"


def uncommitted() -> str:
    """" and uncommitted changes" if the working tree has any (a run measured them too)."""
    proc = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True,
                          cwd=RESULTS.parent)
    return " and uncommitted changes" if proc.stdout.strip() else ""


def update_section(name: str, title: str, body: str) -> None:
    text = RESULTS.read_text() if RESULTS.exists() else HEADER
    block = f"<!-- BEGIN {name} -->\n## {title}\n\n{body.rstrip()}\n<!-- END {name} -->\n"
    pattern = re.compile(rf"<!-- BEGIN {re.escape(name)} -->.*?<!-- END {re.escape(name)} -->\n",
                         re.S)
    text = pattern.sub(lambda _m: block, text) if pattern.search(text) else \
        text.rstrip() + "\n\n" + block
    RESULTS.write_text(text)
