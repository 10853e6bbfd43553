"""Summaries of slots and jobs for `htcpool pool status` and `htcpool queue` (pure functions)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from orchestrator.condor.records import Job, JobStatus, Slot


@dataclass
class MachineRow:
    machine: str
    slots: int = 0
    cpus: int = 0
    memory_mb: int = 0
    load_avg: float = 0.0
    ec2_instance_id: str | None = None
    states: Counter[str] = field(default_factory=Counter)
    activities: Counter[str] = field(default_factory=Counter)


@dataclass
class PoolSummary:
    machines: list[MachineRow]
    slots: int
    cpus: int
    memory_mb: int
    by_state: Counter[str]
    by_activity: Counter[str]

    def to_json(self) -> dict[str, Any]:
        return {"machines": [{**asdict(m), "states": dict(m.states),
                              "activities": dict(m.activities)} for m in self.machines],
                "totals": {"machines": len(self.machines), "slots": self.slots,
                           "cpus": self.cpus, "memory_mb": self.memory_mb,
                           "by_state": dict(self.by_state),
                           "by_activity": dict(self.by_activity)}}


def summarize_pool(slots: Iterable[Slot]) -> PoolSummary:
    rows: dict[str, MachineRow] = {}
    by_state: Counter[str] = Counter()
    by_activity: Counter[str] = Counter()
    cpus = memory = count = 0
    for slot in slots:
        row = rows.setdefault(slot.machine, MachineRow(slot.machine))
        row.slots += 1
        row.cpus += slot.cpus
        row.memory_mb += slot.memory_mb
        row.load_avg += slot.load_avg
        row.ec2_instance_id = row.ec2_instance_id or slot.ec2_instance_id
        row.states[slot.state] += 1
        row.activities[slot.activity] += 1
        by_state[slot.state] += 1
        by_activity[slot.activity] += 1
        cpus += slot.cpus
        memory += slot.memory_mb
        count += 1
    return PoolSummary(sorted(rows.values(), key=lambda r: r.machine), count, cpus, memory,
                       by_state, by_activity)


@dataclass
class QueueRow:
    owner: str
    batch: str = ""
    idle: int = 0
    running: int = 0
    held: int = 0
    other: int = 0

    @property
    def total(self) -> int:
        return self.idle + self.running + self.held + self.other

    def add(self, job: Job) -> None:
        if job.status is JobStatus.IDLE:
            self.idle += 1
        elif job.status is JobStatus.RUNNING:
            self.running += 1
        elif job.status is JobStatus.HELD:
            self.held += 1
        else:
            self.other += 1

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "total": self.total}


@dataclass
class QueueSummary:
    owners: list[QueueRow]
    batches: list[QueueRow]
    totals: QueueRow

    def to_json(self) -> dict[str, Any]:
        return {"owners": [r.to_json() for r in self.owners],
                "batches": [r.to_json() for r in self.batches],
                "totals": self.totals.to_json()}


def summarize_queue(jobs: Iterable[Job]) -> QueueSummary:
    owners: dict[str, QueueRow] = {}
    batches: dict[tuple[str, str], QueueRow] = {}
    totals = QueueRow(owner="")
    for job in jobs:
        owners.setdefault(job.owner, QueueRow(job.owner)).add(job)
        batches.setdefault((job.owner, job.batch), QueueRow(job.owner, job.batch)).add(job)
        totals.add(job)
    return QueueSummary(sorted(owners.values(), key=lambda r: r.owner),
                        sorted(batches.values(), key=lambda r: (r.owner, r.batch)), totals)
