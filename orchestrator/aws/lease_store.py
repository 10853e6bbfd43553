"""Where the autoscaler's lease is kept: one item in the pool's DynamoDB table
(`htcpool-<pool>-lease`, created by playbooks/aws_resources.yml), written only with
conditional writes, so two candidates can never both succeed. The lease's rules live in
autoscaler/runtime/lease.py."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from orchestrator.aws.session import error_code
from orchestrator.errors import HtcpoolError


def lease_table(pool: str) -> str:
    return f"htcpool-{pool}-lease"


@dataclass(frozen=True)
class StoredLease:
    """The lease item as read. `rvn` (record version number) changes on every write; a
    malformed item (a field missing or of the wrong type) has `valid` False and is
    replaced, never trusted. `raw_rvn` is the stored rvn attribute as DynamoDB returned
    it, for the conditional write that replaces exactly what was read."""

    holder: str
    rvn: str
    ttl_s: float
    valid: bool = True
    raw_rvn: Any = None

    @classmethod
    def from_fields(cls, holder: Any, rvn: Any, ttl_s: Any) -> StoredLease:
        rvn_text = rvn.get("S") if isinstance(rvn, dict) else None
        try:
            ttl = float(ttl_s)
        except (TypeError, ValueError):
            ttl = math.nan
        valid = (isinstance(holder, str) and bool(holder) and isinstance(rvn_text, str)
                 and bool(rvn_text) and math.isfinite(ttl) and 0 < ttl <= 86400)
        return cls(holder=holder if isinstance(holder, str) else repr(holder),
                   rvn=rvn_text if isinstance(rvn_text, str) else repr(rvn),
                   ttl_s=ttl if valid else 0.0, valid=valid, raw_rvn=rvn)


class LeaseStoreError(HtcpoolError):
    """The lease's table cannot be used (missing, or no permission)."""


class DynamoLeaseStore:
    """A LeaseStore (runtime/lease.py) on DynamoDB."""

    def __init__(self, dynamodb: Any, pool: str) -> None:
        self.db = dynamodb
        self.pool = pool
        self.table = lease_table(pool)

    def _call(self, op: str, **kwargs: Any) -> Any:
        import botocore.exceptions

        try:
            return getattr(self.db, op)(TableName=self.table, **kwargs)
        except botocore.exceptions.ClientError as err:
            code = error_code(err)
            if code == "ConditionalCheckFailedException":
                return None
            if code == "ResourceNotFoundException":
                raise LeaseStoreError(f"the lease table {self.table} does not exist (run "
                                      "playbooks/aws_resources.yml)") from err
            raise

    def read(self) -> StoredLease | None:
        reply = self._call("get_item", Key={"pool": {"S": self.pool}}, ConsistentRead=True)
        item = (reply or {}).get("Item")
        if item is None:
            return None
        return StoredLease.from_fields(
            holder=item.get("holder", {}).get("S"), rvn=item.get("rvn"),
            ttl_s=item.get("ttl_s", {}).get("N"))

    def create(self, holder: str, rvn: str, ttl_s: float) -> bool:
        return self._call("put_item", Item=self._item(holder, rvn, ttl_s),
                          ConditionExpression="attribute_not_exists(#p)",
                          ExpressionAttributeNames={"#p": "pool"}) is not None

    def replace(self, seen: StoredLease, holder: str, rvn: str, ttl_s: float) -> bool:
        """Write a new lease only if the stored one is still `seen` (by its rvn)."""
        return self._call("put_item", Item=self._item(holder, rvn, ttl_s),
                          **_unchanged(seen)) is not None

    def delete(self, seen: StoredLease) -> bool:
        return self._call("delete_item", Key={"pool": {"S": self.pool}},
                          **_unchanged(seen)) is not None

    def _item(self, holder: str, rvn: str, ttl_s: float) -> dict[str, Any]:
        return {"pool": {"S": self.pool}, "holder": {"S": holder}, "rvn": {"S": rvn},
                "ttl_s": {"N": f"{ttl_s:.3f}"}}


def _unchanged(seen: StoredLease) -> dict[str, Any]:
    """The condition that the item still has the rvn read (as stored, whatever its type)."""
    if seen.raw_rvn is None:
        return {"ConditionExpression": "attribute_exists(#p) AND attribute_not_exists(#r)",
                "ExpressionAttributeNames": {"#p": "pool", "#r": "rvn"}}
    return {"ConditionExpression": "#r = :r", "ExpressionAttributeNames": {"#r": "rvn"},
            "ExpressionAttributeValues": {":r": seen.raw_rvn}}
