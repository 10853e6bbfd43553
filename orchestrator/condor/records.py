"""Typed records of what the pool's daemons report: startd slots and jobs, their states,
and the attributes each view asks for. Pure data (no htcondor import)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import IntEnum
from typing import Any

from orchestrator.errors import HtcpoolError

SLOT_ATTRS = ("Name", "Machine", "State", "Activity", "LoadAvg", "Memory", "Cpus", "Gpus",
              "Disk", "SlotType", "EC2InstanceId", "HtcpoolPool", "EnteredCurrentState",
              "EnteredCurrentActivity", "OpSys", "Arch", "Draining", "DrainReason",
              "MyAddress", "EC2InstanceType")
# Slot states in which nothing holds the slot; any other (Claimed, Matched, Preempting, a
# state a later HTCondor adds) counts as claimed.
FREE_STATES = frozenset({"Unclaimed", "Drained"})
# ImageSize and MemoryUsage are what the submit default of RequestMemory refers to: a
# projection without them leaves that expression undefined.
JOB_ATTRS = ("ClusterId", "ProcId", "Owner", "JobStatus", "JobBatchName", "RequestCpus",
             "RequestMemory", "RequestGpus", "RequestDisk", "QDate", "EnteredCurrentStatus",
             "RemoteHost", "HoldReason", "ImageSize", "MemoryUsage")
# What the autoscaler reads of the queue, every pass, in a grouped query (`condor_q
# -group-by`, QueryOpt.GroupBy): one ad per distinct value of these, with its JobCount, so
# the idle jobs of one cluster and request are one ad and each running job one (RemoteHost).
# No ProcId: it would make every group one job. The schedd adds the attributes an
# expression among them refers to (ImageSize for the default RequestMemory), and applies a
# constraint to the groups, so one may name only these.
# Requirements is read as its expression's text (ads.RAW_EXPRESSIONS): the autoscaler
# matches it against each shape's machine ad (condor/matching.py).
AUTOSCALER_JOB_ATTRS = ("ClusterId", "JobStatus", "RequestCpus", "RequestMemory",
                        "RequestGpus", "RequestDisk", "Requirements", "QDate", "RemoteHost")



class JobStatus(IntEnum):
    IDLE = 1
    RUNNING = 2
    REMOVED = 3
    COMPLETED = 4
    HELD = 5
    TRANSFERRING_OUTPUT = 6
    SUSPENDED = 7
    UNKNOWN = 0


# Jobs that hold a claim on a machine: running, sending its output back, or suspended.
ON_A_MACHINE = frozenset({JobStatus.RUNNING, JobStatus.TRANSFERRING_OUTPUT,
                          JobStatus.SUSPENDED})
# The autoscaler's queue read: idle jobs and those on a machine.
AUTOSCALER_CONSTRAINT = " || ".join(
    f"JobStatus == {int(s)}" for s in sorted((JobStatus.IDLE, *ON_A_MACHINE)))


_STATUSES: dict[int, JobStatus] = {int(s): s for s in JobStatus}


class CondorError(HtcpoolError):
    """The pool could not be queried (daemon down, command failed, bad output)."""


def _num(value: Any, default: float = 0.0) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else default


def _int(value: Any, default: int = 0) -> int:
    """int(_num(value, default)); a plain int (the usual value) is taken as it is."""
    return value if value.__class__ is int else int(_num(value, default))


def _expression(value: Any) -> str | None:
    """An expression attribute read as text (a literal as its ClassAd spelling)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True)
class Slot:
    name: str
    machine: str
    state: str
    activity: str
    load_avg: float
    memory_mb: int
    cpus: int
    gpus: int
    slot_type: str
    ec2_instance_id: str | None
    pool: str | None
    entered_current_state: int | None
    draining: bool = False
    drain_reason: str | None = None
    address: str | None = None  # MyAddress: the startd's sinful string "<ip:port?...>"
    disk_kb: int = 0  # Disk: KiB free in the slot's execute directory
    instance_type: str | None = None  # EC2InstanceType, as the worker advertises it

    @property
    def claimed(self) -> bool:
        return self.state not in FREE_STATES

    @property
    def address_ip(self) -> str | None:
        """The IP the startd advertises itself at ("<198.18.0.5:9618?...>" -> 198.18.0.5)."""
        if not self.address or not self.address.startswith("<"):
            return None
        host = self.address[1:].split("?", 1)[0].split(">", 1)[0]
        return host.rpartition(":")[0] or None

    @classmethod
    def from_ad(cls, ad: dict[str, Any]) -> Slot:
        ecs = ad.get("EnteredCurrentState")
        state, activity = str(ad.get("State", "")), str(ad.get("Activity", ""))
        draining = ad.get("Draining")
        if not isinstance(draining, bool):  # an older startd: read the drain from its state
            draining = state == "Drained" or activity == "Retiring"
        return cls(name=str(ad.get("Name", "")), machine=str(ad.get("Machine", "")),
                   state=state, activity=activity,
                   load_avg=_num(ad.get("LoadAvg")), memory_mb=_int(ad.get("Memory")),
                   cpus=_int(ad.get("Cpus")), gpus=_int(ad.get("Gpus")),
                   slot_type=str(ad.get("SlotType") or ""),
                   ec2_instance_id=ad.get("EC2InstanceId") or None,
                   pool=ad.get("HtcpoolPool") or None,
                   entered_current_state=int(ecs) if isinstance(ecs, int | float) else None,
                   draining=draining, drain_reason=str(ad.get("DrainReason") or "") or None,
                   address=str(ad.get("MyAddress") or "") or None,
                   disk_kb=_int(ad.get("Disk")),
                   instance_type=str(ad.get("EC2InstanceType") or "") or None)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Job:
    cluster: int
    proc: int
    owner: str
    status: JobStatus
    batch_name: str
    request_cpus: int
    request_memory_mb: int
    request_gpus: int
    qdate: int | None
    remote_host: str | None
    hold_reason: str | None
    # The jobs this record stands for: 1, or a group's JobCount from a grouped query.
    count: int = 1
    request_disk_mb: int = 0  # RequestDisk is in KiB
    requirements: str | None = None  # the Requirements expression's text


    @property
    def id(self) -> str:
        return f"{self.cluster}.{self.proc}"

    @property
    def batch(self) -> str:
        """condor_q's batch: JobBatchName, else the cluster ("ID: 12")."""
        return self.batch_name or f"ID: {self.cluster}"

    @classmethod
    def from_ad(cls, ad: dict[str, Any]) -> Job:
        get = ad.get
        status = _STATUSES.get(_int(get("JobStatus")), JobStatus.UNKNOWN)
        qdate = get("QDate")
        return cls(cluster=_int(get("ClusterId")), proc=_int(get("ProcId")),
                   owner=str(get("Owner", "")), status=status,
                   batch_name=str(get("JobBatchName") or ""),
                   request_cpus=_int(get("RequestCpus"), 1),
                   request_memory_mb=_int(get("RequestMemory")),
                   request_gpus=_int(get("RequestGpus")),
                   qdate=int(qdate) if isinstance(qdate, (int, float)) else None,
                   remote_host=get("RemoteHost") or None,
                   hold_reason=get("HoldReason") or None, count=_int(get("JobCount"), 1),
                   request_disk_mb=-(-_int(get("RequestDisk")) // 1024),
                   requirements=_expression(get("Requirements")))

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["status"] = self.status.name.lower()
        out["id"] = self.id
        return out


@dataclass(frozen=True)
class ScheddQueues:
    """The queues of every schedd the collector lists: the ads of those that answered, and
    why each of the others did not (a schedd that does not answer stops nothing: its jobs
    are unknown, and the autoscaler acts as if they might be anywhere)."""

    ads: list[dict[str, Any]]
    answered: tuple[str, ...] = ()
    silent: dict[str, str] = field(default_factory=dict)  # name -> why

    def require_all(self, where: str) -> list[dict[str, Any]]:
        """The ads, if every schedd answered (a view that must be whole)."""
        if self.silent:
            name, why = sorted(self.silent.items())[0]
            raise CondorError(f"schedd {name} via {where}: {why}")
        return self.ads
