"""What the runtime remembers between passes, where EC2 or HTCondor can briefly forget:
instances it just launched that DescribeInstances does not list yet (eventual
consistency), schedds the collector stops listing (a restarted collector hears from each
schedd again only at its next update), and the offset between this host's clock and
EC2's. None of it is needed for safety after a restart: it only keeps a pass from acting
on a view that lags."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterable

from orchestrator.aws.records import Ec2Instance
from orchestrator.condor.records import ScheddQueues
from orchestrator.vocabulary import InstanceState

# How long a launched instance that EC2 does not list yet is still counted as booting.
UNLISTED_LAUNCH_S = 300.0
# Skew between this host's clock and EC2's worth a log line.
SKEW_WARN_S = 5.0


class RecentLaunches:
    def __init__(self) -> None:
        self._pending: dict[str, tuple[Ec2Instance, float]] = {}

    def add(self, instances: Iterable[Ec2Instance], now: float) -> None:
        for inst in instances:
            self._pending[inst.id] = (inst, now)

    def merge(self, listed: list[Ec2Instance], now: float) -> list[Ec2Instance]:
        """`listed` plus the instances launched lately that it lacks, as pending; an
        instance once listed (in any state) is forgotten."""
        seen = {i.id for i in listed}
        for iid in list(self._pending):
            at = self._pending[iid][1]
            if iid in seen or now - at > UNLISTED_LAUNCH_S:
                del self._pending[iid]
        when = datetime.datetime.fromtimestamp
        extra = [dataclasses.replace(inst, state=InstanceState.PENDING,
                                     launch_time=when(at, tz=datetime.UTC).isoformat())
                 for inst, at in self._pending.values()]
        return listed + extra if extra else listed


class KnownSchedds:
    """Schedds seen lately; one the collector stops listing counts as silent until it is
    listed again or `forget_after_s` has passed (it was removed from the pool)."""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}

    def silent(self, queues: ScheddQueues, now: float, forget_after_s: float
               ) -> dict[str, str]:
        listed = set(queues.answered) | set(queues.silent)
        for name in listed - {"-"}:
            self._seen[name] = now
        out = dict(queues.silent)
        for name, at in list(self._seen.items()):
            if name in listed:
                continue
            if now - at > forget_after_s:
                del self._seen[name]
            elif name not in queues.answered:
                out[name] = "not listed by the collector (restarted?) since " \
                            f"{now - at:.0f} s"
        if "-" in queues.answered and len(out) == 1 and not queues.silent:
            # The collector lists no schedd and the local one answered: when the pool has
            # one schedd (the central manager's), that is the one remembered.
            out.clear()
        return out


class Ec2Clock:
    """EC2's time, from the Date of its last reply and this host's clock."""

    def __init__(self) -> None:
        self.offset_s = 0.0  # this host's clock minus EC2's
        self._logged = 0.0

    def update(self, server_time: tuple[float, float] | None) -> bool:
        """Take the last reply's time; True when the skew changed enough to log."""
        if server_time is None:
            return False
        server, local = server_time
        self.offset_s = local - server
        if abs(self.offset_s) > SKEW_WARN_S and abs(self.offset_s - self._logged) > 2.0:
            self._logged = self.offset_s
            return True
        return False

    def now(self, local: float) -> float:
        return local - self.offset_s
