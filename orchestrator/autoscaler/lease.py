"""One active autoscaler per pool: a lease in SSM Parameter Store that expires with its holder.

The lease is `/htcpool/<pool>/autoscaler-lease` = {"holder": ..., "expires": epoch}. A
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
from typing import Any

from orchestrator.errors import HtcpoolError


class LeaseHeld(HtcpoolError):
    """Another autoscaler holds the pool's lease."""


class Lease:
    def __init__(self, ssm: Any, pool: str, ttl_s: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.ssm = ssm
        self.name = f"/htcpool/{pool}/autoscaler-lease"
        self.ttl_s = ttl_s
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.clock = clock

    def _read(self) -> dict[str, Any] | None:
        try:
            value = self.ssm.get_parameter(Name=self.name)["Parameter"]["Value"]
        except self.ssm.exceptions.ParameterNotFound:
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
        self.ssm.put_parameter(Name=self.name, Type="String", Overwrite=True,
                               Value=json.dumps({"holder": self.holder,
                                                 "expires": now + self.ttl_s}))
        after = self._read()
        if after is None or after.get("holder") != self.holder:
            raise LeaseHeld(f"another autoscaler ({after and after.get('holder')}) took the lease")

    def release(self) -> None:
        current = self._read()
        if current is not None and current.get("holder") == self.holder:
            self.ssm.delete_parameter(Name=self.name)
