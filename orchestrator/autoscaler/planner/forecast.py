"""Spare cores forecast from what the queue shows. Pure and clock-free (`now` passed in).

A job that arrives at a pool with no free cores of its size waits a cold start (boot plus
negotiation, about 80 s). Two observed signals say how much room the next arrivals need:
- the arrival rate: cores asked by jobs submitted over the last `arrival_window_s` (still
  queued or running), times `arrival_lead_s` (one cold start), for streams and bursts;
- the sizes being served: room for `spare_largest_jobs` more jobs as large as the largest
  idle or running one. Sizes recur (a user's jobs ask alike), and a rate alone would keep
  2 cores for a stream of 64-core jobs.
Both come from the queue, so the forecast is zero once the queue is empty, and the idle
timeout then scales the pool in as before.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from orchestrator.autoscaler.planner.config import AutoscalerConfig
from orchestrator.autoscaler.planner.model import Observation, Submitted


def recent(submitted: Iterable[Submitted], cfg: AutoscalerConfig, now: float
           ) -> list[Submitted]:
    """The arrivals inside the window (an observer may pass older ones too)."""
    if cfg.arrival_window_s <= 0:
        return []
    since = now - cfg.arrival_window_s
    return [s for s in submitted if since <= s.qdate <= now and s.count > 0]


def arrival_rate_spare(submitted: Iterable[Submitted], cfg: AutoscalerConfig, now: float
                       ) -> int:
    """Cores the window's arrival rate brings in one lead time (0 when it is empty)."""
    window = recent(submitted, cfg, now)
    if not window:
        return 0
    cores = sum(max(s.request_cpus, 1) * s.count for s in window)
    return math.ceil(cores * cfg.arrival_lead_s / cfg.arrival_window_s)


def largest_request(obs: Observation, cfg: AutoscalerConfig) -> int:
    """Cores of the largest idle or running job (0 with an empty queue). Idle jobs no
    shape can run are left out: they are reported, not forecast."""
    requests = {(j.request_cpus, j.request_memory_mb, j.request_gpus)
                for j in obs.idle_jobs if j.count > 0}  # few distinct ones among many jobs
    idle = [c for c, m, g in requests if any(
        s.cpus >= c and s.memory_mb >= m and s.gpus >= g for s in cfg.shapes)]
    running = [c for c, n in obs.running_requests if n > 0]
    return max((max(c, 1) for c in idle + running), default=0)


def forecast_spare(obs: Observation, cfg: AutoscalerConfig, now: float,
                   largest: int | None = None) -> int:
    """Free cores to keep for the arrivals the queue predicts, at most spare_max_cores.
    `largest` is largest_request(obs, cfg), if the caller has it already."""
    rate = arrival_rate_spare(obs.submitted, cfg, now)
    sizes = cfg.spare_largest_jobs * (largest_request(obs, cfg) if largest is None else largest)
    return min(max(rate, sizes), cfg.spare_max_cores)


def next_change(submitted: Iterable[Submitted], cfg: AutoscalerConfig, now: float) -> float:
    """When the oldest arrival in the window leaves it (the forecast may drop then);
    inf if the window is empty. The simulator wakes the policy then."""
    window = recent(submitted, cfg, now)
    if not window:
        return math.inf
    return min(s.qdate for s in window) + cfg.arrival_window_s
