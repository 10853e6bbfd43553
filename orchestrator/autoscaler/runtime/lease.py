"""One active autoscaler per pool: a lease taken and renewed with conditional writes, and
a fence before every action that changes the pool.

The stored lease (aws/lease_store.py) names its holder, a record version number (rvn)
that every write changes, and the holder's ttl. No clocks are compared across hosts:
- the holder renews every pass with a write conditional on the rvn it wrote last; it may
  act until its own monotonic clock passes the time it sent that write plus ttl, less a
  margin (`fence()` checks this before each launch, drain, start, stop and terminate);
- a candidate that finds a lease held by another remembers its rvn and when (by its own
  monotonic clock) it first saw it; only once that same rvn has been in place for the
  holder's ttl does it take over, with a write conditional on that rvn. A holder that
  renewed in between changed the rvn, so the takeover fails; a holder that did not has
  passed its own deadline before the takeover can succeed.
As in the DynamoDB lock client, a dead holder's lease is taken over after ttl; a clean
exit releases it at once. A malformed stored value is replaced the same way, with a log
line, never a crash.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import Protocol

from orchestrator.aws.lease_store import StoredLease
from orchestrator.errors import HtcpoolError, RefusedError

# Time kept in hand at the fence: an action started this close to the deadline could
# still be in flight when a candidate takes over.
FENCE_MARGIN_S = 10.0


class LeaseHeld(RefusedError):
    """Another autoscaler holds the pool's lease."""


class LeaseLost(HtcpoolError):
    """This autoscaler can no longer be sure it holds the lease: act on nothing."""


class LeaseStore(Protocol):
    def read(self) -> StoredLease | None: ...
    def create(self, holder: str, rvn: str, ttl_s: float) -> bool: ...
    def replace(self, seen: StoredLease, holder: str, rvn: str, ttl_s: float) -> bool: ...
    def delete(self, seen: StoredLease) -> bool: ...


class Lease:
    def __init__(self, store: LeaseStore, ttl_s: float,
                 monotonic: Callable[[], float] = time.monotonic,
                 log: Callable[[str], None] | None = None, holder: str | None = None) -> None:
        if ttl_s <= 2 * FENCE_MARGIN_S:
            raise ValueError(f"lease ttl {ttl_s} s must exceed twice the fence margin")
        self.store = store
        self.ttl_s = ttl_s
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.monotonic = monotonic
        self.log = log or (lambda _m: None)
        self._rvn: str | None = None  # the rvn we wrote last, while we hold the lease
        self._deadline = -1.0  # monotonic: act only before this (less the margin)
        self._seen: tuple[str, float] | None = None  # another's rvn, first seen at

    @property
    def held(self) -> bool:
        return self._rvn is not None and self.monotonic() < self._deadline

    def remaining_s(self) -> float:
        return max(0.0, self._deadline - self.monotonic()) if self._rvn else 0.0

    def fence(self) -> None:
        """Raise LeaseLost unless the lease is surely ours for FENCE_MARGIN_S more."""
        if self._rvn is None or self.monotonic() > self._deadline - FENCE_MARGIN_S:
            raise LeaseLost("the pool's lease is not safely held (not renewed in time); "
                            "acting on nothing until it is renewed")

    def _write(self, seen: StoredLease | None) -> bool:
        rvn = uuid.uuid4().hex
        sent = self.monotonic()
        ok = (self.store.create(self.holder, rvn, self.ttl_s) if seen is None
              else self.store.replace(seen, self.holder, rvn, self.ttl_s))
        if ok:
            self._rvn, self._deadline, self._seen = rvn, sent + self.ttl_s, None
        return ok

    def acquire(self) -> None:
        """Take or renew the lease; LeaseHeld if another autoscaler holds it."""
        current = self.store.read()
        if current is None:
            if self._rvn is not None:
                self.log("the pool's lease was removed while held; taking it again")
            self._rvn = None
            if self._write(None):
                return
            raise LeaseHeld("another autoscaler took the pool's lease first")
        if self._rvn is not None and current.valid and current.rvn == self._rvn:
            if self._write(current):  # renew
                return
            self._rvn = None
            raise LeaseHeld("the pool's lease changed hands while renewing it")
        self._rvn = None  # ours no more, if it was
        now = self.monotonic()
        if self._seen is None or self._seen[0] != current.rvn:
            self._seen = (current.rvn, now)
        waited = now - self._seen[1]
        ttl = current.ttl_s if current.valid else self.ttl_s
        if not current.valid:
            self.log(f"the stored lease is malformed (holder {current.holder!r}, rvn "
                     f"{current.rvn!r}); replacing it once unchanged for {ttl:.0f} s")
        if waited >= ttl:
            if self._write(current):
                self.log(f"took over the pool's lease from {current.holder} (not renewed "
                         f"for {waited:.0f} s)")
                return
            raise LeaseHeld("another autoscaler renewed or took the pool's lease first")
        raise LeaseHeld(f"another autoscaler ({current.holder}) holds the pool's lease; "
                        f"taken over if not renewed for {ttl - waited:.0f} s more")

    def release(self) -> None:
        """Give the lease up now (a clean exit), if it is still ours."""
        if self._rvn is None:
            return
        current = self.store.read()
        if current is not None and current.valid and current.rvn == self._rvn:
            self.store.delete(current)
        self._rvn, self._deadline = None, -1.0
