"""What workers of each instance type offer, learned from the collector and kept where it
survives a restart of the autoscaler (CapacityStore: an item in the pool's table).

A type's capacity is what its joined workers advertise this pass (the smallest of them:
the planner must not count on more than the worst one offers), and the last value seen
while none of its workers is up. Without the store, a restart would forget that a type
cannot hold some queued job and launch one again for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Protocol

from orchestrator.autoscaler.planner.model import Capacity, Observation
from orchestrator.vocabulary import InstanceState

# A change of a type's advertised disk smaller than this share is not a new capacity.
DISK_SLACK = 0.1


class CapacityStore(Protocol):
    def load(self) -> dict[str, Capacity]: ...

    def save(self, capacities: Mapping[str, Capacity]) -> None: ...


def seen_this_pass(obs: Observation) -> dict[str, Capacity]:
    """The smallest resources advertised by the joined workers of each type. The type is
    EC2's (DescribeInstances), not the ad's; ads already passed the address check."""
    types = {i.instance_id: i.instance_type for i in obs.instances
             if i.is_worker_of(obs.pool) and i.state is InstanceState.RUNNING}
    out: dict[str, Capacity] = {}
    for sd in obs.startds:
        itype = types.get(sd.instance_id)
        if itype is None or sd.total_cpus <= 0 or sd.total_memory_mb <= 0:
            continue
        here = Capacity(sd.total_cpus, sd.total_memory_mb, sd.total_gpus, sd.total_disk_mb)
        known = out.get(itype)
        out[itype] = here if known is None else Capacity(
            min(known.cpus, here.cpus), min(known.memory_mb, here.memory_mb),
            min(known.gpus, here.gpus), min(known.disk_mb, here.disk_mb))
    return out


class LearnedCapacities:
    """The runtime's memory of capacities, loaded from the store at the first pass and
    written back when it changes (not in a dry run); a store that fails is reported and
    tried again, never fatal: the planner then falls back to nominal less the reserve."""

    def __init__(self, store: CapacityStore | None,
                 event: Callable[..., None] = lambda *_a, **_k: None) -> None:
        self.store = store
        self.event = event
        self.known: dict[str, Capacity] = {}
        self._loaded = store is None
        self._dirty = False

    def _load(self) -> None:
        if self._loaded or self.store is None:
            return
        try:
            self.known = {**self.store.load(), **self.known}
            self._loaded = True
        except Exception as err:
            self.event("capacity_store", reason=f"cannot read learned capacities: {err}")

    def update(self, obs: Observation, persist: bool = True) -> dict[str, Capacity]:
        self._load()
        for itype, cap in seen_this_pass(obs).items():
            before = self.known.get(itype)
            if before is None or not _same(before, cap):
                self.known[itype] = cap
                self._dirty = True
                self.event("capacity", instance_type=itype, **asdict(cap),
                           reason="what its workers advertise" + (
                               f" (was {asdict(before)})" if before else ""))
        if persist and self._dirty and self._loaded and self.store is not None:
            try:
                self.store.save(self.known)
                self._dirty = False
            except Exception as err:
                self.event("capacity_store", reason=f"cannot save learned capacities: {err}")
        return dict(self.known)


def _same(a: Capacity, b: Capacity) -> bool:
    """Equal resources; disk within DISK_SLACK (TotalDisk is the free space of the execute
    directory, which moves a little with every job's files and logs)."""
    return ((a.cpus, a.memory_mb, a.gpus) == (b.cpus, b.memory_mb, b.gpus)
            and abs(a.disk_mb - b.disk_mb) <= DISK_SLACK * max(a.disk_mb, b.disk_mb))


