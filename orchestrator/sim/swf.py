"""Standard Workload Format traces (Parallel Workloads Archive), gzip or plain.

SWF: 18 whitespace-separated fields a line, `;` header comments, -1 for unknown. We keep
what an HTCondor queue would see: submit time, run time, cores, memory, status. Quirks:
traces that do not start at 0 are shifted; jobs that never ran (run time <= 0, e.g.
cancelled in the queue) are dropped and counted; unknown memory gets a per-core default.
"""

from __future__ import annotations

import gzip
import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from orchestrator.errors import ConfigError

# Field positions (0-based) in an SWF line.
SUBMIT, WAIT, RUN, ALLOC_PROCS, USED_MEM_KB, REQ_PROCS, REQ_MEM_KB, STATUS = 1, 2, 3, 4, 6, 7, 9, 10
STATUS_NAMES = {-1: "unknown", 0: "failed", 1: "completed", 5: "cancelled"}


@dataclass
class Trace:
    """Jobs sorted by submit time; times in seconds from the first submit."""

    name: str
    submit: npt.NDArray[np.float64]
    run: npt.NDArray[np.float64]
    cpus: npt.NDArray[np.int64]
    memory_mb: npt.NDArray[np.int64]
    start_offset: float = 0.0  # the first submit time in the file
    total_lines: int = 0
    dropped: Counter[str] = field(default_factory=Counter)  # reason -> jobs
    status: Counter[str] = field(default_factory=Counter)  # of the kept jobs

    def __len__(self) -> int:
        return len(self.submit)

    def subset(self, keep: npt.NDArray[np.bool_], reason: str) -> Trace:
        """The trace without the jobs where `keep` is false (counted under `reason`)."""
        dropped = Counter(self.dropped)
        if (n := int((~keep).sum())) > 0:
            dropped[reason] += n
        return Trace(self.name, self.submit[keep], self.run[keep], self.cpus[keep],
                     self.memory_mb[keep], self.start_offset, self.total_lines, dropped,
                     self.status)


def _open_text(path: Path) -> io.TextIOBase:
    with path.open("rb") as f:
        magic = f.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace")
    return io.TextIOWrapper(path.open("rb"), encoding="utf-8", errors="replace")


def read_swf(path: str | Path, default_memory_mb_per_core: int = 1024,
             max_jobs: int | None = None) -> Trace:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"trace not found: {p}")
    rows: list[list[float]] = []
    with _open_text(p) as text:
        for n, line in enumerate(text, 1):
            s = line.strip()
            if not s or s.startswith(";"):
                continue
            parts = s.split()
            if len(parts) < 11:
                raise ConfigError(f"{p}:{n}: expected 18 SWF fields, got {len(parts)}")
            try:
                rows.append([float(parts[i]) for i in (SUBMIT, RUN, ALLOC_PROCS, USED_MEM_KB,
                                                       REQ_PROCS, REQ_MEM_KB, STATUS)])
            except ValueError:
                raise ConfigError(f"{p}:{n}: not a number in {s[:60]!r}") from None
            if max_jobs is not None and len(rows) >= max_jobs:
                break
    if not rows:
        raise ConfigError(f"{p}: no jobs in the trace")
    a = np.asarray(rows, dtype=np.float64)
    submit, run, alloc, used_kb, req, req_kb, status = a.T
    procs = np.where(alloc > 0, alloc, np.where(req > 0, req, 1)).astype(np.int64)
    # Memory is per processor in SWF; requested if known, else used, else a default.
    per_core_kb = np.where(req_kb > 0, req_kb, np.where(used_kb > 0, used_kb,
                                                         default_memory_mb_per_core * 1024))
    mem_mb = np.maximum(np.ceil(per_core_kb * procs / 1024), 1).astype(np.int64)
    order = np.argsort(submit, kind="stable")
    offset = float(submit[order[0]])
    trace = Trace(p.name.split(".swf")[0], submit[order] - offset, run[order], procs[order],
                  mem_mb[order], offset, len(rows))
    st = status[order]
    trace = trace.subset(run[order] > 0, "never ran (run time <= 0 or unknown)")
    kept = st[run[order] > 0].astype(np.int64)
    trace.status = Counter({STATUS_NAMES.get(int(k), f"status {int(k)}"): int(v)
                            for k, v in zip(*np.unique(kept, return_counts=True), strict=True)})
    return trace
