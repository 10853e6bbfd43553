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


def operator_statements() -> list[dict[str, Any]]:
    """Both of the operator's policies (one would exceed IAM's 6,144 characters)."""
    return statements("operator-policy.json") + statements("operator-roles-and-key-policy.json")


def as_list(value: Any) -> list[str]:
    return value if isinstance(value, list) else [value]


def test_instance_policy_reads_only_this_pools_parameters() -> None:
    """The workers' role: GetParameters on its own pool's path, and kms:Decrypt only through
    SSM, only for those parameters, only with the pool's key (whose key policy must allow it
    as well)."""
    read, decrypt = statements("instance-policy.json")
    assert read["Effect"] == decrypt["Effect"] == "Allow"
    assert as_list(read["Action"]) == ["ssm:GetParameters"]
    assert as_list(read["Resource"]) == [
        "arn:aws:ssm:${Region}:${AccountId}:parameter/htcpool/${Pool}/*"]
    assert as_list(decrypt["Action"]) == ["kms:Decrypt"]
    assert decrypt["Condition"] == {
        "StringEquals": {"kms:ViaService": "ssm.${Region}.amazonaws.com"},
        "StringLike": {"kms:EncryptionContext:PARAMETER_ARN":
                       "arn:aws:ssm:${Region}:${AccountId}:parameter/htcpool/${Pool}/*"},
        "ForAnyValue:StringEquals": {"kms:ResourceAliases": "alias/htcpool-${Pool}"}}


def test_the_ssm_agent_policy_reads_no_parameter() -> None:
    """What replaced AmazonSSMManagedInstanceCore (ssm:GetParameter(s) on every parameter of
    the account): the agent's registration, polling and session channels only."""
    actions = {a for s in statements("instance-ssm-agent-policy.json")
               for a in as_list(s["Action"])}
    assert "ssm:UpdateInstanceInformation" in actions
    assert {a.split(":")[0] for a in actions} == {"ssm", "ec2messages", "ssmmessages"}
    assert not [a for a in actions if "Parameter" in a or "Document" in a], actions


def test_the_pools_key_is_used_by_the_operator_and_the_workers_only() -> None:
    """iam/pool-key-policy.json: the operator administers the key; it and the workers' role
    use it only through SSM, only for the pool's parameters; no one else (no statement for
    the account as a whole, no "*")."""
    by_sid = {s["Sid"]: s for s in statements("pool-key-policy.json")}
    admin = by_sid.pop("TheOperatorAdministersTheKey")
    assert admin["Principal"] == {"AWS": "${OperatorArn}"}
    assert not {"kms:Encrypt", "kms:Decrypt"} & set(as_list(admin["Action"]))
    users = {}
    for sid, stmt in by_sid.items():
        assert stmt["Effect"] == "Allow"
        # The account root with aws:PrincipalArn: KMS then also requires the caller's IAM
        # policy to allow (iam/operator-policy.json, iam/instance-policy.json).
        assert stmt["Principal"] == {"AWS": "arn:aws:iam::${AccountId}:root"}, sid
        condition = stmt["Condition"]
        assert condition["StringEquals"] == {"kms:ViaService": "ssm.${Region}.amazonaws.com"}
        assert condition["StringLike"] == {"kms:EncryptionContext:PARAMETER_ARN":
                                           "arn:aws:ssm:${Region}:${AccountId}:parameter/"
                                           "htcpool/${Pool}/*"}
        users[condition["ArnEquals"]["aws:PrincipalArn"]] = set(as_list(stmt["Action"]))
    assert users == {"${OperatorArn}": {"kms:Encrypt", "kms:Decrypt"},
                     "arn:aws:iam::${AccountId}:role/htcpool-${Pool}-instance": {"kms:Decrypt"}}


def test_policies_fit_aws_size_limits() -> None:
    """The operator's policies are customer managed policies (6,144 characters each without
    whitespace; an inline user policy would have only 2,048), the roles' policies are inline
    (10,240 for all of a role's), with a 32-character pool name."""
    def size(name: str) -> int:
        text = (IAM / name).read_text().replace("${Pool}", "a" * 32) \
            .replace("${Region}", "ap-southeast-2").replace("${AccountId}", "1" * 12)
        return len(json.dumps(json.loads(text), separators=(",", ":")))

    assert size("operator-policy.json") <= 6144
    assert size("operator-roles-and-key-policy.json") <= 6144
    assert size("instance-policy.json") + size("instance-ssm-agent-policy.json") <= 10240
    assert size("central-manager-autoscaler-policy.json") \
        + size("instance-ssm-agent-policy.json") <= 10240


def test_trust_policy_is_ec2_only() -> None:
    (only,) = statements("instance-trust-policy.json")
    assert only["Principal"] == {"Service": "ec2.amazonaws.com"}
    assert only["Action"] == "sts:AssumeRole"


def test_operator_policy_has_no_wildcard_actions_and_scopes_mutations() -> None:
    for statement in operator_statements():
        actions = as_list(statement["Action"])
        assert all("*" not in action for action in actions), statement["Sid"]
        resources = as_list(statement["Resource"])
        if resources == ["*"]:
            # Only read-only calls that have no resource-level permissions, ssm:CancelCommand
            # (no resource-level permissions either; it can only stop a command this
            # principal could start, on the pool's instances) and kms:CreateKey (a new key
            # the caller's key policy governs; no resource exists yet).
            assert all(a.split(":")[1].startswith(("Describe", "Get", "List"))
                       or a in ("ssm:CancelCommand", "kms:CreateKey") for a in actions), \
                statement["Sid"]
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
            assert all(a.startswith("ec2:Describe") or a == "pricing:GetProducts"
                       for a in actions), statement["Sid"]
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
    writes = [s for s in by_sid.values() if {"ssm:PutParameter", "ssm:DeleteParameter",
                                             "dynamodb:PutItem", "dynamodb:DeleteItem"}
              & set(as_list(s["Action"]))]
    assert [as_list(s["Resource"]) for s in writes] == [
        ["arn:aws:dynamodb:${Region}:${AccountId}:table/htcpool-${Pool}-lease"]]


def test_operator_may_manage_and_pass_both_instance_roles_only() -> None:
    by_sid = {s["Sid"]: s for s in statements("operator-roles-and-key-policy.json")}
    assert not [a for s in statements("operator-policy.json") for a in as_list(s["Action"])
                if a.startswith(("iam:", "kms:")) and a != "iam:ListAccountAliases"]
    roles = by_sid["ThePoolsRoles"]
    names = [f"arn:aws:iam::${{AccountId}}:{kind}/htcpool-${{Pool}}-{name}"
             for kind in ("role", "instance-profile") for name in ("instance", "central-manager")]
    assert sorted(as_list(roles["Resource"])) == sorted(names)
    pass_role = by_sid["PassThePoolsRolesToEc2"]
    assert sorted(as_list(pass_role["Resource"])) == sorted(names[:2])
    assert pass_role["Condition"] == {
        "StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}
    iam_actions = {a for s in by_sid.values() for a in as_list(s["Action"])
                   if a.startswith("iam:")}
    # Inline policies only: no managed policy can be attached (AdministratorAccess, say);
    # the one earlier versions attached may be detached; the roles' boundary can be set
    # (to the pool's, test_the_roles_boundary_is_exactly_what_the_roles_may_have), never
    # removed.
    assert not {a for a in iam_actions if a.startswith("iam:Attach")
                or a in ("iam:DeleteRolePermissionsBoundary", "iam:CreatePolicy")
                or a.endswith(("PolicyVersion", "AccessKey", "LoginProfile", "User"))}
    detach = by_sid["DetachOldManagedPolicy"]
    assert detach["Condition"] == {"ArnEquals": {
        "iam:PolicyARN": "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"}}
    for statement in by_sid.values():
        changes = [a for a in as_list(statement["Action"])
                   if a.startswith("iam:") and a != "iam:ListAccountAliases"]
        if changes:
            assert set(as_list(statement["Resource"])) <= set(names), statement["Sid"]


def test_operator_tags_the_pool_only_on_creation() -> None:
    """ec2:CreateTags: the pool's tag only within the calls that create the resource
    (ec2:CreateAction); on existing resources only those already in the pool, and never the
    keys that place an instance in a pool or give it a role."""
    for statement in operator_statements():
        if "ec2:CreateTags" not in as_list(statement["Action"]):
            continue
        condition = statement["Condition"]
        if "ec2:CreateAction" in condition.get("StringEquals", {}):
            assert condition["StringEquals"]["aws:RequestTag/htcpool:pool"] == "${Pool}"
            continue
        assert condition["StringEquals"] == {"aws:ResourceTag/htcpool:pool": "${Pool}"}
        assert set(condition["ForAllValues:StringNotEquals"]["aws:TagKeys"]) == {
            "htcpool:pool", "htcpool:role", "htcpool:launched-by"}


def test_the_roles_boundary_is_exactly_what_the_roles_may_have() -> None:
    """iam/role-boundary-policy.json: the SSM agent's, the workers' and the central
    manager's autoscaler statements, unchanged, and nothing else; the operator may change the
    roles' policies only while they keep it, never remove it or attach a managed policy."""
    together = [s for name in ("instance-ssm-agent-policy.json", "instance-policy.json",
                               "central-manager-autoscaler-policy.json")
                for s in statements(name)]
    assert statements("role-boundary-policy.json") == together
    by_sid = {s["Sid"]: s for s in statements("operator-roles-and-key-policy.json")}
    bounded = by_sid["ChangeThePoolsRolesOnlyWithinTheirBoundary"]
    assert set(as_list(bounded["Action"])) == {"iam:CreateRole", "iam:PutRolePolicy",
                                               "iam:DeleteRolePolicy",
                                               "iam:PutRolePermissionsBoundary"}
    assert bounded["Condition"] == {"ArnEquals": {"iam:PermissionsBoundary":
                                    "arn:aws:iam::${AccountId}:policy/htcpool-${Pool}-role-boundary"}}
    writes = {a for s in operator_statements() for a in as_list(s["Action"])
              if a in ("iam:CreateRole", "iam:PutRolePolicy", "iam:DeleteRolePolicy",
                       "iam:PutRolePermissionsBoundary", "iam:DeleteRolePermissionsBoundary")}
    assert [s["Sid"] for s in operator_statements()
            if writes & set(as_list(s["Action"]))] == [bounded["Sid"]]
