"""The policies by name: observed state in, plan out. Pure (no cloud, no HTCondor, no
clock): the live loop and the simulator both call `plan()` with the time passed in.

A strategy is chosen by name (`AutoscalerConfig.policy`); an unknown name is an error. Each
also says which timers can change its plan with nothing else changing (`Timers`), so the
simulator wakes it exactly then, whatever the strategy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from orchestrator.autoscaler.planner.baselines import (
    PARALLELCLUSTER_IDLE_S,
    plan_naive,
    plan_parallelcluster,
)
from orchestrator.autoscaler.planner.binpack import plan_binpack
from orchestrator.autoscaler.planner.config import AutoscalerConfig
from orchestrator.autoscaler.planner.model import Observation, Plan
from orchestrator.errors import ConfigError

PolicyFn = Callable[[Observation, AutoscalerConfig, float], Plan]


@dataclass(frozen=True)
class Timers:
    """Durations after which a plan may differ though nothing else changed (0: none)."""

    idle_timeout_s: float  # an unclaimed worker becomes removable
    surplus_idle_s: float = 0.0  # an unclaimed worker beyond the need becomes removable
    launch_delay_s: float = 0.0  # an idle job becomes old enough to launch for
    arrival_window_s: float = 0.0  # an arrival leaves the forecast's window


@dataclass(frozen=True)
class Strategy:
    name: str
    plan: PolicyFn
    timers: Callable[[AutoscalerConfig], Timers]


def _binpack_timers(cfg: AutoscalerConfig) -> Timers:
    return Timers(cfg.idle_timeout_s, cfg.surplus_idle_s, cfg.launch_delay_s,
                  cfg.arrival_window_s)


STRATEGIES: dict[str, Strategy] = {s.name: s for s in (
    Strategy("binpack", plan_binpack, _binpack_timers),
    # The old rule acts on counts alone: only the idle timeout's tick is a timer.
    Strategy("naive", plan_naive, lambda cfg: Timers(cfg.idle_timeout_s)),
    # ParallelCluster-like: its own idle timeout, the queue's need only.
    Strategy("parallelcluster", plan_parallelcluster,
             lambda cfg: Timers(PARALLELCLUSTER_IDLE_S)),
)}


def get_strategy(name: str) -> Strategy:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ConfigError(f"unknown autoscaler policy {name!r} "
                          f"(choose from {', '.join(sorted(STRATEGIES))})") from None


def plan(observation: Observation, config: AutoscalerConfig, now: float) -> Plan:
    """Decide what to launch, start, drain, remove and replace, with a reason for each."""
    return get_strategy(config.policy).plan(observation, config, now)
