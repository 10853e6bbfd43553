"""One active autoscaler per pool: a lease that expires with its holder.

The lease is a JSON value {"holder": ..., "expires": epoch} in a store (aws/lease_store.py:
`/htcpool/<pool>/autoscaler-lease` in SSM Parameter Store). A
candidate takes it when it is absent, expired or already its own, then reads it back: if
two candidates raced, the later write wins and the other sees a foreign holder and stands
by. The holder renews every pass; a holder that dies stops renewing and the lease lapses
after `ttl_s`.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from orchestrator.errors import HtcpoolError


class LeaseHeld(HtcpoolError):
    """Another autoscaler holds the pool's lease."""


class LeaseStore(Protocol):
    def read(self) -> str | None: ...
    def write(self, value: str) -> None: ...
    def delete(self) -> None: ...


class Lease:
    def __init__(self, store: LeaseStore, ttl_s: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.clock = clock

    def _read(self) -> dict[str, Any] | None:
        value = self.store.read()
        if value is None:
            return None
        try:
            data = json.loads(value)
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def acquire(self) -> None:
        """Take or renew the lease; LeaseHeld if a live autoscaler has it."""
        now = self.clock()
        current = self._read()
        if current is not None and current.get("holder") != self.holder \
                and float(current.get("expires", 0)) > now:
            until = time.strftime("%H:%M:%S", time.localtime(float(current["expires"])))
            raise LeaseHeld(f"another autoscaler ({current.get('holder')}) holds the lease of "
                            f"this pool until {until}")
        self.store.write(json.dumps({"holder": self.holder, "expires": now + self.ttl_s}))
        after = self._read()
        if after is None or after.get("holder") != self.holder:
            raise LeaseHeld(f"another autoscaler ({after and after.get('holder')}) took the lease")

    def release(self) -> None:
        current = self._read()
        if current is not None and current.get("holder") == self.holder:
            self.store.delete()
