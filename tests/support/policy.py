"""Builders for autoscaler observations in tests."""

from __future__ import annotations

from orchestrator.autoscaler.planner.model import IdleJobs, Instance, Observation, Startd
from orchestrator.vocabulary import TAG_POOL, TAG_ROLE, InstanceState

POOL = "htcpool"
# The queue's need alone, without the forecast spare (for examples about packing).
QUEUE_ONLY: dict[str, float] = {"arrival_window_s": 0.0, "spare_largest_jobs": 0}


def worker(iid: str, itype: str = "c6i.large", state: InstanceState = InstanceState.RUNNING,
           launched: float = 0.0, pool: str | None = POOL, role: str | None = "worker"
           ) -> Instance:
    tags = {}
    if pool is not None:
        tags[TAG_POOL] = pool
    if role is not None:
        tags[TAG_ROLE] = role
    return Instance(iid, itype, state, launched, tags)


def startd(iid: str, cpus: int = 2, mem: int = 4096, free_cpus: int | None = None,
           free_mem: int | None = None, claimed: bool = False,
           since: float | None = 0.0, draining: bool = False,
           drained_by_us: bool = False) -> Startd:
    fc = cpus if free_cpus is None else free_cpus
    fm = mem if free_mem is None else free_mem
    return Startd(iid, cpus, fc, mem, fm, 0, 0, claimed, None if claimed else since, draining,
                  drained_by_us)


def jobs(n: int, cpus: int = 1, mem: int = 1024, gpus: int = 0) -> IdleJobs:
    return IdleJobs(cpus, mem, gpus, n, cluster=1, qdate=0.0)


def obs(instances: list[Instance] = [], startds: list[Startd] = [],  # noqa: B006
        idle: list[IdleJobs] = [], running: int = 0) -> Observation:  # noqa: B006
    return Observation(POOL, tuple(instances), tuple(startds), tuple(idle), running)
