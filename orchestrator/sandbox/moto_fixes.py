"""Replies moto leaves out and AWS sends, which the AWS modules htcpool's playbooks use
read: applied wherever moto serves htcpool (the sandbox server, the tests' moto servers).

- DynamoDB DescribeTable/CreateTable: `TableId` (community.aws.dynamodb_table reads it).
- KMS EnableKey/DisableKey/CancelKeyDeletion/ScheduleKeyDeletion given a key ARN (as
  amazon.aws.kms_key gives it; moto looks up raw key ids only and fails with a 500).
- RunInstances with an instance profile and a count above one: EC2 gives every instance
  the profile; moto only the first (the others would have no role, so no credentials, and
  would not look launched by the pool).
"""

from __future__ import annotations

import uuid
from typing import Any

_applied = False


def apply() -> None:
    global _applied
    if _applied:
        return
    _applied = True
    from moto.dynamodb.models.table import Table

    orig_describe = Table.describe

    def describe(self: Any, base_key: str = "TableDescription") -> dict[str, Any]:
        result: dict[str, Any] = orig_describe(self, base_key=base_key)
        result[base_key].setdefault("TableId", str(uuid.uuid5(uuid.NAMESPACE_URL,
                                                              str(self.table_arn))))
        return result

    Table.describe = describe  # type: ignore[method-assign]

    from moto.kms.models import KmsBackend

    for name in ("enable_key", "disable_key", "cancel_key_deletion", "schedule_key_deletion"):
        setattr(KmsBackend, name, _by_key_arn(getattr(KmsBackend, name)))

    from moto.ec2.models import EC2Backend

    orig_run = EC2Backend.run_instances

    def run_instances(self: Any, image_id: str, count: int, user_data: Any,
                      security_group_names: list[str], **kwargs: Any) -> Any:
        reservation = orig_run(self, image_id, count, user_data, security_group_names, **kwargs)
        name, arn = kwargs.get("iam_instance_profile_name"), kwargs.get("iam_instance_profile_arn")
        if name or arn:
            for instance in reservation.instances[1:]:  # moto's handler does the first
                self.associate_iam_instance_profile(
                    instance_id=instance.id, iam_instance_profile_name=name,
                    iam_instance_profile_arn=arn)
        return reservation

    EC2Backend.run_instances = run_instances  # type: ignore[method-assign]


def _by_key_arn(method: Any) -> Any:
    def wrapper(self: Any, key_id: str, *args: Any) -> Any:
        return method(self, self.get_key_id(key_id), *args)

    return wrapper
