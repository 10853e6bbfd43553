"""The autoscaler's pure policy: `plan(Observation, AutoscalerConfig, now) -> Plan`."""

from orchestrator.autoscaler.config import AutoscalerConfig, InstanceShape
from orchestrator.autoscaler.model import Observation, Plan
from orchestrator.autoscaler.policy import POLICIES, get_policy, plan

__all__ = ["POLICIES", "AutoscalerConfig", "InstanceShape", "Observation", "Plan",
           "get_policy", "plan"]
