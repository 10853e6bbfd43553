"""The simulated schedd's idle jobs: one FIFO per (cores, memory), like autoclusters.

Job ids grow with submit time (the trace is sorted), so each FIFO is a sorted list with a
head pointer, and "jobs submitted before t" is a bisection.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator

from orchestrator.autoscaler.planner.model import IdleJobs

Key = tuple[int, int]


class JobQueue:
    def __init__(self, submit: list[float]) -> None:
        self.submit = submit
        self._jobs: dict[Key, list[int]] = {}
        self._head: dict[Key, int] = {}

    def push(self, key: Key, job: int) -> None:
        q = self._jobs.get(key)
        if q is None:
            q = self._jobs[key] = []
            self._head[key] = 0
        q.append(job)

    def count(self, key: Key) -> int:
        return len(self._jobs[key]) - self._head[key]

    def pop(self, key: Key) -> int:
        q, h = self._jobs[key], self._head[key]
        job = q[h]
        h += 1
        if h == len(q):
            del self._jobs[key], self._head[key]
        elif h > 4096 and 2 * h > len(q):  # compact now and then, keeps memory bounded
            del q[:h]
            h = 0
        if key in self._head:
            self._head[key] = h
        return job

    def by_age(self) -> list[tuple[float, Key]]:
        """Groups with idle jobs, the one with the oldest job first (negotiation order)."""
        return sorted((self.submit[q[self._head[k]]], k) for k, q in self._jobs.items())

    def groups(self) -> Iterator[Key]:
        return iter(list(self._jobs))

    def observe(self, now: float, ready_after_s: float) -> tuple[IdleJobs, ...]:
        """The schedd's view: per group, jobs idle at least `ready_after_s` and the rest,
        each entry's qdate the newest of its jobs (so every job's age is on the right side
        of the threshold, as with one entry per job)."""
        boundary = bisect.bisect_right(self.submit, now - ready_after_s)
        out: list[IdleJobs] = []
        for (c, m), q in self._jobs.items():
            h = self._head[(c, m)]
            pos = bisect.bisect_left(q, boundary, lo=h)
            if pos > h:
                out.append(IdleJobs(c, m, 0, pos - h, None, self.submit[q[pos - 1]]))
            if pos < len(q):
                out.append(IdleJobs(c, m, 0, len(q) - pos, None, self.submit[q[-1]]))
        return tuple(out)

    def next_ready(self, now: float, ready_after_s: float) -> float:
        """When the next job not yet idle `ready_after_s` will be (inf if none)."""
        if ready_after_s <= 0:
            return math.inf
        boundary = bisect.bisect_right(self.submit, now - ready_after_s)
        best = math.inf
        for k, q in self._jobs.items():
            pos = bisect.bisect_left(q, boundary, lo=self._head[k])
            if pos < len(q):
                best = min(best, self.submit[q[pos]] + ready_after_s)
        return best
