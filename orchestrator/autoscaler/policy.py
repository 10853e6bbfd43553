"""The autoscaler policy: observed state in, plan out. Pure (no cloud, no HTCondor, no
clock): the live loop and the simulator both call `plan()` with the time passed in.

Strategies are chosen by name (`AutoscalerConfig.policy`); an unknown name is an error.
"""

from __future__ import annotations

from collections.abc import Callable

from orchestrator.autoscaler.baselines import plan_naive, plan_parallelcluster
from orchestrator.autoscaler.binpack import plan_binpack
from orchestrator.autoscaler.config import AutoscalerConfig
from orchestrator.autoscaler.model import Observation, Plan
from orchestrator.errors import ConfigError

PolicyFn = Callable[[Observation, AutoscalerConfig, float], Plan]

POLICIES: dict[str, PolicyFn] = {
    "binpack": plan_binpack,
    "naive": plan_naive,
    "parallelcluster": plan_parallelcluster,
}


def get_policy(name: str) -> PolicyFn:
    try:
        return POLICIES[name]
    except KeyError:
        raise ConfigError(f"unknown autoscaler policy {name!r} "
                          f"(choose from {', '.join(sorted(POLICIES))})") from None


def plan(observation: Observation, config: AutoscalerConfig, now: float) -> Plan:
    """Decide what to launch, start, drain, remove and replace, with a reason for each."""
    return get_policy(config.policy)(observation, config, now)
