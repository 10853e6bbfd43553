"""Bin-packing of idle jobs: first onto capacity the pool already has or is booting, then
onto new instances of the cheapest shape for what is left (first-fit decreasing).

Jobs are handled as groups of identical requests, so 10,000 idle jobs of a few shapes cost
a few hundred bin visits, not 10,000 x bins.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from orchestrator.autoscaler.planner.config import InstanceShape
from orchestrator.autoscaler.planner.model import IdleJobs

# Clusters named per group in reports of unschedulable jobs: enough to find them with
# condor_q, few enough that a group of thousands of clusters stays one short log line.
CLUSTERS_LISTED = 20


@dataclass(slots=True)
class JobGroup:
    cpus: int
    memory_mb: int
    gpus: int
    count: int
    clusters: list[int] = field(default_factory=list)
    ready: int = 0  # of count, jobs idle long enough to launch for
    disk_mb: int = 0
    # Shapes whose machine ad matches these jobs (None: any shape with the resources).
    shapes: frozenset[str] | None = None

    def runs_on(self, shape: str) -> bool:
        return self.shapes is None or shape in self.shapes

    def like(self, count: int) -> JobGroup:
        """The same request, `count` jobs."""
        return JobGroup(self.cpus, self.memory_mb, self.gpus, count, self.clusters,
                        disk_mb=self.disk_mb, shapes=self.shapes)


@dataclass(slots=True)
class Bin:
    """Free capacity on one machine; `owner` is an instance id, or a shape name if new."""

    owner: str
    cpus: int
    memory_mb: int
    gpus: int
    jobs: int = 0
    # group position -> jobs of that group placed here (to re-place them elsewhere)
    contents: dict[int, int] = field(default_factory=dict)
    shape: str = ""  # its instance type ("" for owner); jobs go only onto shapes they match
    disk_mb: int | None = None  # free disk; None when not known (not checked)

    @property
    def type(self) -> str:
        return self.shape or self.owner


def aggregate(idle: Iterable[IdleJobs], ready_before: float | None = None) -> list[JobGroup]:
    """Identical requests merged, biggest first (GPUs, then cores, then memory). Jobs
    queued at or before `ready_before` (or of unknown qdate) count as ready."""
    groups: dict[tuple[int, int, int, int, frozenset[str] | None], JobGroup] = {}
    for j in idle:
        if j.count <= 0:
            continue
        # A request of 0 cores still takes a slot: count it as one core.
        key = (max(j.request_cpus, 1), max(j.request_memory_mb, 0), max(j.request_gpus, 0),
               max(j.request_disk_mb, 0), j.shapes)
        g = groups.get(key)
        if g is None:
            g = groups[key] = JobGroup(key[0], key[1], key[2], 0, disk_mb=key[3],
                                       shapes=key[4])
        g.count += j.count
        if ready_before is None or j.qdate is None or j.qdate <= ready_before:
            g.ready += j.count
        if j.cluster is not None and len(g.clusters) < CLUSTERS_LISTED:
            g.clusters.append(j.cluster)
    # Among equal requests, those that run on fewer shapes go first: placed after a group
    # that runs anywhere, they would find the open machines of their shapes already full.
    return sorted(groups.values(), key=lambda g: (
        g.gpus, g.cpus, g.memory_mb, g.disk_mb,
        -len(g.shapes) if g.shapes is not None else -math.inf), reverse=True)


def how_many(cpus: int, memory_mb: int, gpus: int, g: JobGroup,
             disk_mb: int | None = None) -> int:
    """How many jobs of group `g` fit into the given free resources (disk only when
    known)."""
    k = cpus // g.cpus
    if g.memory_mb > 0:
        k = min(k, memory_mb // g.memory_mb)
    if g.gpus > 0:
        k = min(k, gpus // g.gpus)
    if g.disk_mb > 0 and disk_mb is not None:
        k = min(k, disk_mb // g.disk_mb)
    return max(k, 0)


def shape_disk(shape: InstanceShape) -> int | None:
    return shape.disk_mb or None


def _place(g: JobGroup, gi: int, bins: list[Bin]) -> None:
    """First fit of as many of `g`'s jobs as possible; full bins are dropped from the list."""
    keep: list[Bin] = []
    for b in bins:
        if g.count > 0 and g.runs_on(b.type):
            k = min(how_many(b.cpus, b.memory_mb, b.gpus, g, b.disk_mb), g.count)
            if k > 0:
                b.cpus -= k * g.cpus
                b.memory_mb -= k * g.memory_mb
                b.gpus -= k * g.gpus
                if b.disk_mb is not None:
                    b.disk_mb -= k * g.disk_mb
                b.jobs += k
                b.contents[gi] = b.contents.get(gi, 0) + k
                g.count -= k
        if b.cpus > 0:
            keep.append(b)
    bins[:] = keep


def fit_existing(groups: Sequence[JobGroup], bins: list[Bin]) -> set[str]:
    """Place jobs onto existing bins in place; returns the owners that took any job."""
    open_bins = [b for b in bins if b.cpus > 0]
    for gi, g in enumerate(groups):
        if not open_bins:
            break
        _place(g, gi, open_bins)
    return {b.owner for b in bins if b.jobs > 0}


def best_shape(g: JobGroup, shapes: Sequence[InstanceShape], min_cpus: float = 0,
               spot: bool = False) -> tuple[InstanceShape, int] | None:
    """The shape with the lowest price per job actually placed (a 64-core machine is cheap
    per core but not for two jobs). Ties go to the smallest of at least `min_cpus` cores
    (finer scale-in; a pool short of instance slots asks for larger machines), else to
    the largest."""
    best: tuple[float, tuple[int, float], int, InstanceShape, int] | None = None
    for i, s in enumerate(shapes):
        if not g.runs_on(s.name):
            continue
        k = how_many(s.cpus, s.memory_mb, s.gpus, g, shape_disk(s))
        if k <= 0:
            continue
        price = s.price(spot)
        score = round(price / min(k, g.count), 9)
        size = (0, price) if s.cpus >= min_cpus else (1, -price)
        cand = (score, size, i, s, k)
        if best is None or cand[:3] < best[:3]:
            best = cand
    return None if best is None else (best[3], best[4])


def pack_new(groups: Sequence[JobGroup], shapes: Sequence[InstanceShape],
             min_cpus: float = 0, spot: bool = False) -> tuple[list[Bin], list[JobGroup]]:
    """Open new bins for what is left. Returns (new bins in opening order, groups no shape
    can run). Groups' counts are consumed."""
    opened: list[Bin] = []
    open_bins: list[Bin] = []
    unschedulable: list[JobGroup] = []
    for gi, g in enumerate(groups):
        if g.count <= 0:
            continue
        if open_bins:
            _place(g, gi, open_bins)
        while g.count > 0:
            choice = best_shape(g, shapes, min_cpus, spot)
            if choice is None:
                unschedulable.append(g.like(g.count))
                g.count = 0
                break
            shape, k = choice
            # Full machines of this shape, then choose again for the remainder (a smaller
            # shape may suit it better than a mostly empty big one).
            n_bins = max(g.count // k, 1)
            for _ in range(n_bins):
                take = min(k, g.count)
                disk = shape_disk(shape)
                b = Bin(shape.name, shape.cpus - take * g.cpus,
                        shape.memory_mb - take * g.memory_mb, shape.gpus - take * g.gpus, take,
                        {gi: take}, disk_mb=None if disk is None else disk - take * g.disk_mb)
                g.count -= take
                opened.append(b)
                if b.cpus > 0:
                    open_bins.append(b)
    return opened, unschedulable


def groups_held_by(groups: Sequence[JobGroup], bins: Iterable[Bin]) -> list[JobGroup]:
    """The jobs `bins` hold, as groups again (same order as `groups`)."""
    counts = [0] * len(groups)
    for b in bins:
        for gi, k in b.contents.items():
            counts[gi] += k
    return [g.like(n) for g, n in zip(groups, counts, strict=True) if n > 0]
