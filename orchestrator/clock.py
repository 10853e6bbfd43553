"""This host's wall clock as htcpool reads it.

`HTCPOOL_TEST_CLOCK_OFFSET_S` shifts it (seconds, may be negative): the tests use it to
run an autoscaler on a host whose clock is wrong, which must not change what it decides
(the autoscaler times replacements and idle workers by EC2's clock)."""

from __future__ import annotations

import math
import os
import time


def _offset() -> float:
    try:
        value = float(os.environ.get("HTCPOOL_TEST_CLOCK_OFFSET_S", "0") or 0)
    except ValueError:
        return 0.0
    return value if math.isfinite(value) and abs(value) <= 86400 * 365 else 0.0


OFFSET_S = _offset()


def wall() -> float:
    """Seconds since the epoch, by this host's clock."""
    return time.time() + OFFSET_S
