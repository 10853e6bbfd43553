"""What the autoscaler sees (Observation) and what it decides (Plan).

Pure data: frozen dataclasses and status Enums, no cloud or HTCondor imports, so the live
loop (EC2 + collector + schedd), the simulator and the tests all build the same objects.
Times are epoch seconds (floats); the policy takes `now` explicitly.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from orchestrator.vocabulary import (
    TAG_JOINED,
    TAG_MISSING_SINCE,
    TAG_POOL,
    TAG_ROLE,
    InstanceState,
    Role,
)


class RemovalAction(StrEnum):
    TERMINATE = "terminate"
    STOP = "stop"  # warm pool: a stopped instance starts faster than a new one boots


@dataclass(frozen=True, slots=True)
class Instance:
    """One EC2 instance as the policy sees it (any live instance may appear here: only the
    pool's tagged workers are ever acted on). Terminated instances are left out."""

    instance_id: str
    instance_type: str
    state: InstanceState
    launch_time: float
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def pool(self) -> str | None:
        return self.tags.get(TAG_POOL)

    @property
    def role(self) -> str | None:
        return self.tags.get(TAG_ROLE)

    @property
    def has_joined(self) -> bool:
        return TAG_JOINED in self.tags

    @property
    def missing_since(self) -> float | None:
        try:
            return float(self.tags[TAG_MISSING_SINCE])
        except (KeyError, ValueError):
            return None

    def is_worker_of(self, pool: str) -> bool:
        """Only these may ever be acted on: tagged with our pool and the worker role."""
        return self.pool == pool and self.role == Role.WORKER


@dataclass(frozen=True, slots=True)
class Startd:
    """A worker's startd as the collector reports it, keyed by its `EC2InstanceId`.

    Resources are summed over the machine's slots (partitionable or static).
    `claimed` is true while any slot is claimed; `unclaimed_since` is when the machine
    last became wholly unclaimed (None while claimed, or if unknown). Free resources are
    what no claim holds, also while draining; `drained_by_us` marks a drain the autoscaler
    started (an administrator's is never cancelled).
    """

    instance_id: str
    total_cpus: int
    free_cpus: int
    total_memory_mb: int
    free_memory_mb: int
    total_gpus: int = 0
    free_gpus: int = 0
    claimed: bool = False
    unclaimed_since: float | None = None
    draining: bool = False
    drained_by_us: bool = False
    total_disk_mb: int = 0  # 0: not known (disk is then not planned on it)
    free_disk_mb: int = 0


@dataclass(frozen=True, slots=True)
class Capacity:
    """What a worker of one instance type offers: what its startd advertises (TotalCpus,
    TotalMemory, TotalGpus, TotalDisk), learned from joined workers."""

    cpus: int
    memory_mb: int
    gpus: int = 0
    disk_mb: int = 0


@dataclass(frozen=True, slots=True)
class IdleJobs:
    """Idle jobs with one resource request (one autocluster, or one job if count=1).

    `shapes` names the shapes whose machine ad matches the jobs' Requirements (and whose
    START accepts them), by HTCondor's own ClassAd matching; None when not matched (any
    shape with the resources will do)."""

    request_cpus: int
    request_memory_mb: int
    request_gpus: int = 0
    count: int = 1
    cluster: int | None = None
    qdate: float | None = None
    request_disk_mb: int = 0
    shapes: frozenset[str] | None = None
    # The jobs' Requirements expression (text), for the runtime's matching; the policy
    # reads only `shapes`.
    requirements: str | None = None


@dataclass(frozen=True, slots=True)
class Submitted:
    """`count` jobs still in the queue (idle or running) that were submitted at `qdate`
    (the job ad's QDate) asking for `request_cpus` each: the recent arrivals."""

    qdate: float
    request_cpus: int
    count: int = 1


@dataclass(frozen=True, slots=True)
class Observation:
    pool: str
    instances: tuple[Instance, ...] = ()
    startds: tuple[Startd, ...] = ()
    idle_jobs: tuple[IdleJobs, ...] = ()
    running_jobs: int = 0
    # Jobs in the queue submitted within the observer's window (arrival_window_s), oldest
    # first; finished jobs have left the queue and are not seen, live or simulated.
    submitted: tuple[Submitted, ...] = ()
    # Running jobs as (request_cpus, count), by request: the sizes the pool is serving.
    running_requests: tuple[tuple[int, int], ...] = ()
    # Instances the schedd says run jobs (by their startd's machine name), and how many
    # running jobs are on machines no startd ad maps to an instance: while any are, no
    # instance without a startd ad is replaced, since it may be the one running them.
    busy_instances: frozenset[str] = frozenset()
    unmapped_running: int = 0
    # Schedds that did not answer this pass: their jobs may be running anywhere, so as
    # with unmapped running jobs no instance without a startd ad is replaced meanwhile.
    silent_schedds: tuple[str, ...] = ()
    # What workers of each instance type were seen to offer (runtime/capacity memory):
    # the planner sizes shapes by it, and by nominal less the reserve for the others.
    capacities: Mapping[str, Capacity] = field(default_factory=dict)

    @property
    def jobs_may_be_unseen(self) -> bool:
        """Running jobs the observation cannot place on a startd may exist."""
        return bool(self.unmapped_running or self.silent_schedds)


# --- the plan -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Launch:
    instance_type: str
    count: int
    reason: str
    # Types to try instead, in order, when EC2 has no capacity for this one: each runs
    # whatever it was launched for (planner/binpack.fallbacks).
    fallbacks: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Start:
    """Start a stopped (warm) worker instead of launching a new one."""

    instance_id: str
    instance_type: str
    reason: str


@dataclass(frozen=True, slots=True)
class Drain:
    """Drain in HTCondor first; the executor re-checks before any removal."""

    instance_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Undrain:
    """Cancel the drain of an idle worker the queue needs again: cheaper than a launch."""

    instance_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Removal:
    """Terminate (or stop) a worker. Always preceded by a drain and a re-check that the
    startd is still unclaimed: the executor must skip the removal otherwise."""

    instance_id: str
    action: RemovalAction
    reason: str


@dataclass(frozen=True, slots=True)
class Replacement:
    """An instance that never joined the pool, or joined and has been gone too long:
    terminate it, and launch one like it if the queue still needs its capacity (relaunch).
    Relaunching unconditionally would keep a broken image's instances cycling with no job
    waiting."""

    instance_id: str
    instance_type: str
    reason: str
    relaunch: bool = True


@dataclass(frozen=True, slots=True)
class Unschedulable:
    """Idle jobs no configured shape can run (reported, never launched for)."""

    request_cpus: int
    request_memory_mb: int
    request_gpus: int
    count: int
    clusters: tuple[int, ...]
    reason: str
    request_disk_mb: int = 0


Action = Launch | Start | Undrain | Drain | Removal | Replacement


@dataclass(frozen=True, slots=True)
class Plan:
    launches: tuple[Launch, ...] = ()
    starts: tuple[Start, ...] = ()
    drains: tuple[Drain, ...] = ()
    removals: tuple[Removal, ...] = ()
    undrains: tuple[Undrain, ...] = ()
    replacements: tuple[Replacement, ...] = ()
    unschedulable: tuple[Unschedulable, ...] = ()
    # For metrics: workers wanted after this plan, active now (joined + booting), booting.
    desired_workers: int = 0
    current_workers: int = 0
    booting_workers: int = 0
    # Why nothing (or less than asked) happened; one human line each.
    notes: tuple[str, ...] = ()

    @property
    def is_empty(self) -> bool:
        """True when the plan asks for no change (reports and notes aside)."""
        return not (self.launches or self.starts or self.drains or self.removals
                    or self.replacements or self.undrains)

    def actions(self) -> Iterator[Action]:
        """Every action in the order the executor should perform them."""
        yield from self.replacements
        yield from self.undrains
        yield from self.starts
        yield from self.launches
        yield from self.drains
        yield from self.removals
