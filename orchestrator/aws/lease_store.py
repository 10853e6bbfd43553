"""Where the autoscaler's lease is kept: one SSM parameter per pool
(`/htcpool/<pool>/autoscaler-lease`). The lease's rules live in autoscaler/runtime/lease.py."""

from __future__ import annotations

from typing import Any

from orchestrator.vocabulary import parameter_prefix


class SsmLeaseStore:
    def __init__(self, ssm: Any, pool: str) -> None:
        self.ssm = ssm
        self.name = f"{parameter_prefix(pool)}/autoscaler-lease"

    def read(self) -> str | None:
        """The stored value, None if there is none."""
        try:
            return str(self.ssm.get_parameter(Name=self.name)["Parameter"]["Value"])
        except self.ssm.exceptions.ParameterNotFound:
            return None

    def write(self, value: str) -> None:
        self.ssm.put_parameter(Name=self.name, Type="String", Overwrite=True, Value=value)

    def delete(self) -> None:
        self.ssm.delete_parameter(Name=self.name)
