"""Where the autoscaler keeps what workers of each type offer (runtime/capacity.py): one
more item in the pool's lease table (`htcpool-<pool>-lease`, key `<pool>#capacity`), so it
needs no grant beyond the lease's own and is gone with the pool."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from orchestrator.autoscaler.planner.model import Capacity
from orchestrator.aws.lease_store import lease_table

# Item values stay small whatever is stored in them (DynamoDB allows 400 KB per item).
MAX_TYPES = 500


class DynamoCapacityStore:
    def __init__(self, dynamodb: Any, pool: str) -> None:
        self.db = dynamodb
        self.table = lease_table(pool)
        self.key = {"pool": {"S": f"{pool}#capacity"}}

    def load(self) -> dict[str, Capacity]:
        reply = self.db.get_item(TableName=self.table, Key=self.key, ConsistentRead=True)
        text = reply.get("Item", {}).get("capacities", {}).get("S")
        if not text:
            return {}
        out: dict[str, Capacity] = {}
        for itype, v in json.loads(text).items():
            try:  # a malformed entry is dropped (re-learned from the workers), not trusted
                cap = Capacity(int(v["cpus"]), int(v["memory_mb"]), int(v.get("gpus", 0)),
                               int(v.get("disk_mb", 0)))
            except (KeyError, TypeError, ValueError):
                continue
            if cap.cpus > 0 and cap.memory_mb > 0:
                out[str(itype)] = cap
        return out

    def save(self, capacities: Mapping[str, Capacity]) -> None:
        data = {t: asdict(c) for t, c in sorted(capacities.items())[:MAX_TYPES]}
        self.db.put_item(TableName=self.table, Item={
            **self.key, "capacities": {"S": json.dumps(data, sort_keys=True)}})
