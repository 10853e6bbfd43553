"""Recording fakes of the executor's ports and an in-memory lease store, for unit tests:
they record what was asked (as cluster-autoscaler's test cloud provider does), so tests
assert on requests. End-to-end tests use the sandbox, never these."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator.aws.lease_store import StoredLease
from orchestrator.aws.records import Ec2Instance, LaunchRequest
from orchestrator.condor.records import Slot
from orchestrator.vocabulary import TAG_POOL, TAG_ROLE, InstanceState


def fake_instance(iid: str, instance_type: str = "c6i.large", pool: str = "p",
                  role: str = "worker") -> Ec2Instance:
    return Ec2Instance(id=iid, name=iid, image_id="ami-1", instance_type=instance_type,
                       state=InstanceState.PENDING, monitoring="disabled",
                       private_ip="198.18.0.9", private_dns=None, public_ip=None,
                       zone="us-east-1a", subnet_id="subnet-1", launch_time=None,
                       tags={TAG_POOL: pool, TAG_ROLE: role})


@dataclass
class RecordingCloud:
    """A WorkerCloud that records every request; launches return new pending instances."""

    launches: list[LaunchRequest] = field(default_factory=list)
    terminated: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    started: list[str] = field(default_factory=list)
    # (call, ids, key, value): "tag" or "untag", in order
    tag_calls: list[tuple[str, list[str], str, str | None]] = field(default_factory=list)
    launched: int = 0

    def launch(self, req: LaunchRequest) -> list[Ec2Instance]:
        self.launches.append(req)
        out = [fake_instance(f"i-new{self.launched + n}", req.instance_types[0])
               for n in range(req.count)]
        self.launched += req.count
        return out

    def terminate(self, ids: Sequence[str]) -> list[Any]:
        self.terminated += ids
        return []

    def stop(self, ids: Sequence[str]) -> list[Any]:
        self.stopped += ids
        return []

    def start(self, ids: Sequence[str]) -> list[Any]:
        self.started += ids
        return []

    def tag(self, ids: Sequence[str], key: str, value: str) -> None:
        self.tag_calls.append(("tag", sorted(ids), key, value))

    def untag(self, ids: Sequence[str], key: str) -> None:
        self.tag_calls.append(("untag", sorted(ids), key, None))


@dataclass
class RecordingCondor:
    """A CondorActuator: `slots` is what a re-check finds per instance id; `on_drain`, if
    set, runs on each drain (a test can make the startd claimed at that moment)."""

    slots: dict[str, list[Slot]] = field(default_factory=dict)
    drained: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    invalidated: list[str] = field(default_factory=list)
    failing: set[str] = field(default_factory=set)  # machines whose commands fail
    on_drain: Callable[[str], None] | None = None

    def drain(self, machines: Sequence[str]) -> dict[str, str]:
        self.drained += machines
        if self.on_drain is not None:
            for m in machines:
                self.on_drain(m)
        return {m: "condor_drain failed" for m in machines if m in self.failing}

    def cancel_drain(self, machines: Sequence[str]) -> dict[str, str]:
        self.cancelled += machines
        return {m: "condor_drain failed" for m in machines if m in self.failing}

    def recheck(self, instance_ids: Iterable[str]) -> dict[str, list[Slot]]:
        return {i: list(self.slots.get(i, [])) for i in instance_ids}

    def invalidate(self, instance_ids: Sequence[str]) -> None:
        self.invalidated += instance_ids


class MemoryLeaseStore:
    """A LeaseStore in memory with DynamoDB's conditional-write semantics (one lock makes
    each write atomic, as the service does), for races between Lease objects in tests."""

    def __init__(self) -> None:
        import threading

        self.item: dict[str, Any] | None = None
        self.writes = 0
        self._lock = threading.Lock()

    def read(self) -> StoredLease | None:
        with self._lock:
            item = None if self.item is None else dict(self.item)
        if item is None:
            return None
        return StoredLease.from_fields(item.get("holder"), item.get("rvn"), item.get("ttl_s"))

    def create(self, holder: str, rvn: str, ttl_s: float) -> bool:
        with self._lock:
            if self.item is not None:
                return False
            self._put(holder, rvn, ttl_s)
            return True

    def replace(self, seen: StoredLease, holder: str, rvn: str, ttl_s: float) -> bool:
        with self._lock:
            if self.item is None or self.item.get("rvn") != seen.raw_rvn:
                return False
            self._put(holder, rvn, ttl_s)
            return True

    def delete(self, seen: StoredLease) -> bool:
        with self._lock:
            if self.item is None or self.item.get("rvn") != seen.raw_rvn:
                return False
            self.item = None
            return True

    def _put(self, holder: str, rvn: str, ttl_s: float) -> None:
        self.item = {"holder": holder, "rvn": {"S": rvn}, "ttl_s": f"{ttl_s}"}
        self.writes += 1
