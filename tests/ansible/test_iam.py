"""The shipped IAM policies are valid JSON and least privilege."""

from __future__ import annotations

import json
from typing import Any

from tests.support.ansible import REPO

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


def test_central_manager_autoscaler_policy_acts_only_on_this_pools_workers() -> None:
    """The autoscaler's role on the central manager: reads unscoped, launches only
    pool-tagged workers from the pool's images, starts/stops/terminates only the pool's
    workers (never the central manager), tags without re-tagging pool or role, passes only
    the workers' role, and writes only its lease."""
    by_sid = {s["Sid"]: s for s in statements("central-manager-autoscaler-policy.json")}
    for statement in by_sid.values():
        assert statement["Effect"] == "Allow"
        actions = as_list(statement["Action"])
        assert all("*" not in action for action in actions), statement["Sid"]
        if as_list(statement["Resource"]) == ["*"]:
            assert all(a.startswith("ec2:Describe") for a in actions), statement["Sid"]
        condition = statement.get("Condition", {})
        if {"ec2:StartInstances", "ec2:StopInstances", "ec2:TerminateInstances",
                "ec2:DeleteTags"} & set(actions):
            assert condition["StringEquals"]["aws:ResourceTag/htcpool:pool"] == "${Pool}"
        if {"ec2:StartInstances", "ec2:StopInstances", "ec2:TerminateInstances"} & set(actions):
            assert condition["StringEquals"]["aws:ResourceTag/htcpool:role"] == "worker"
        if "ec2:CreateTags" in actions:
            scoped = condition["StringEquals"]
            assert scoped.get("ec2:CreateAction") == "RunInstances" \
                or scoped.get("aws:ResourceTag/htcpool:pool") == "${Pool}", statement["Sid"]
        if "ec2:RunInstances" in actions and any(
                r.endswith((":instance/*", ":volume/*", "::image/*"))
                for r in as_list(statement["Resource"])):
            assert "htcpool:pool" in json.dumps(condition), statement["Sid"]
        assert not [a for a in actions if a.startswith("iam:") and a != "iam:PassRole"]
    launch = by_sid["LaunchOnlyWorkersTaggedForThisPool"]["Condition"]["StringEquals"]
    assert launch == {"aws:RequestTag/htcpool:pool": "${Pool}",
                      "aws:RequestTag/htcpool:role": "worker"}
    retag = by_sid["BookkeepingTagsOnThisPoolsInstancesOnly"]["Condition"]
    assert set(retag["ForAllValues:StringNotEquals"]["aws:TagKeys"]) == {
        "htcpool:pool", "htcpool:role", "htcpool:launched-by"}
    pass_role = by_sid["PassOnlyTheWorkerInstanceRoleToEc2"]
    assert as_list(pass_role["Resource"]) == [
        "arn:aws:iam::${AccountId}:role/htcpool-${Pool}-instance"]
    assert pass_role["Condition"] == {
        "StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}
    writes = [s for s in by_sid.values() if {"ssm:PutParameter", "ssm:DeleteParameter"}
              & set(as_list(s["Action"]))]
    assert [as_list(s["Resource"]) for s in writes] == [
        ["arn:aws:ssm:${Region}:${AccountId}:parameter/htcpool/${Pool}/autoscaler-lease"]]


def test_operator_may_manage_and_pass_both_instance_roles() -> None:
    (roles,) = [s for s in statements("operator-policy.json") if s["Sid"] == "PoolInstanceRole"]
    assert "iam:PassRole" in roles["Action"]
    for name in ("instance", "central-manager"):
        assert f"arn:aws:iam::${{AccountId}}:role/htcpool-${{Pool}}-{name}" in roles["Resource"]
        assert f"arn:aws:iam::${{AccountId}}:instance-profile/htcpool-${{Pool}}-{name}" \
            in roles["Resource"]
