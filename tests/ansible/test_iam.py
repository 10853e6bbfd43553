"""The shipped IAM policies are valid JSON and least privilege."""

from __future__ import annotations

import json
from typing import Any

from htcpool_testlib import REPO

IAM = REPO / "iam"


def statements(name: str) -> list[dict[str, Any]]:
    document = json.loads((IAM / name).read_text())
    assert document["Version"] == "2012-10-17"
    return list(document["Statement"])


def as_list(value: Any) -> list[str]:
    return value if isinstance(value, list) else [value]


def test_instance_policy_reads_only_this_pools_parameters() -> None:
    (only,) = statements("instance-policy.json")
    assert only["Effect"] == "Allow"
    assert sorted(as_list(only["Action"])) == ["ssm:GetParameter", "ssm:GetParameters"]
    assert as_list(only["Resource"]) == [
        "arn:aws:ssm:${Region}:${AccountId}:parameter/htcpool/${Pool}/*"]


def test_trust_policy_is_ec2_only() -> None:
    (only,) = statements("instance-trust-policy.json")
    assert only["Principal"] == {"Service": "ec2.amazonaws.com"}
    assert only["Action"] == "sts:AssumeRole"


def test_operator_policy_has_no_wildcard_actions_and_scopes_mutations() -> None:
    for statement in statements("operator-policy.json"):
        actions = as_list(statement["Action"])
        assert all("*" not in action for action in actions), statement["Sid"]
        resources = as_list(statement["Resource"])
        if resources == ["*"]:
            # Only read-only calls that have no resource-level permissions, and
            # ssm:CancelCommand (no resource-level permissions either; it can only stop a
            # command this principal could start, on the pool's instances).
            assert all(a.split(":")[1].startswith(("Describe", "Get", "List"))
                       or a == "ssm:CancelCommand" for a in actions), statement["Sid"]
        destructive = {"ec2:TerminateInstances", "ec2:StopInstances", "ec2:DeregisterImage",
                       "ec2:DeleteSnapshot", "ssm:SendCommand"}
        if destructive & set(actions) and not any("document/" in r for r in resources):
            assert "aws:ResourceTag/htcpool:pool" in json.dumps(statement.get("Condition", {})), \
                statement["Sid"]
