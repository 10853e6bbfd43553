"""The two interfaces the executor acts through, each implemented by an adapter:

- `WorkerCloud` by aws/ec2.py's `Cloud` (launch, start, stop, terminate, tag, untag);
- `CondorActuator` by condor/actions.py's `CondorActions` (drain, cancel a drain, re-check
  a worker's slots, invalidate stale startd ads).

fakes.py holds recording fakes of both for unit tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from orchestrator.aws.records import Ec2Instance, LaunchRequest
from orchestrator.condor.records import Slot


class WorkerCloud(Protocol):
    def launch(self, req: LaunchRequest) -> list[Ec2Instance]:
        """Launch `req.count` workers (fallbacks inside); the instances launched."""

    def start(self, ids: Sequence[str]) -> Sequence[Any]:
        """Start stopped workers."""

    def stop(self, ids: Sequence[str]) -> Sequence[Any]:
        """Stop workers (warm pool)."""

    def terminate(self, ids: Sequence[str]) -> Sequence[Any]:
        """Terminate workers."""

    def tag(self, ids: Sequence[str], key: str, value: str) -> None:
        """Set one tag to one value on these instances."""

    def untag(self, ids: Sequence[str], key: str) -> None:
        """Remove one tag from these instances."""


class CondorActuator(Protocol):
    def drain(self, machines: Sequence[str]) -> dict[str, str]:
        """Drain these startds gracefully; errors by machine."""

    def cancel_drain(self, machines: Sequence[str]) -> dict[str, str]:
        """Cancel their drains; errors by machine."""

    def recheck(self, instance_ids: Iterable[str]) -> dict[str, list[Slot]]:
        """Fresh slots of these workers from the collector, by instance id."""

    def invalidate(self, instance_ids: Sequence[str]) -> None:
        """Remove these instances' startd ads from the collector."""
