"""Issues 7 and 17: the IAM policies against the AWS calls a sandbox test session really made.

Runs last (marker `last`, sorted by tests/conftest.py) and reads the session sandbox's API
log: every (service, action) any test, the CLI, the autoscaler, a playbook or a host made,
with who made it (the sandbox enforces IAM, so every caller has credentials of its own:
the admin the test harness sets scenarios up with, the pool's operator, instance roles).
Both ways:
- every call the operator made is granted by its policies (iam/operator-policy.json,
  iam/operator-roles-and-key-policy.json, and the key policy's administration), every call
  an instance role made by that role's (the workers': instance-policy.json and the SSM
  agent's; the central manager's: the SSM agent's and the autoscaler's), except the known
  gaps listed in tests/support/iam.py; the admin's calls are the harness's own; and no call
  of the operator or a role was denied except those the enforcement tests provoke on
  purpose (EXPECTED_DENIALS): a denial nothing asked for is code that failed quietly (a
  retried or logged error) where AWS would have refused it too;
- every action the policies grant was called by some test, except those listed below as
  not exercised in the sandbox (with the reason), those only some test files exercise when
  the session did not run them all, and those no code calls at all (tests/support/iam.py
  GRANTED_NOT_CALLED, which the static unit test keeps exact).
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from tests.support.iam import (
    GRANTED_NOT_CALLED,
    INSTANCE_GRANTED_NOT_CALLED,
    KNOWN_MISSING,
    NO_PERMISSION_NEEDED,
    allows,
    central_manager_actions,
    concrete,
    instance_actions,
    log_rows,
    operator_actions,
    operator_policy_actions,
    policy_actions,
)

# Denials tests/e2e/test_iam_enforcement.py provokes on purpose: (who, action) -> why.
EXPECTED_DENIALS: dict[tuple[str, str], str] = {
    ("operator", "ec2:CreateTags"): "a foreign instance cannot be tagged into the pool",
    ("operator", "ec2:TerminateInstances"): "nor terminated, even with htcpool's --force",
    ("operator", "iam:AttachRolePolicy"): "no managed policy can be attached to a pool role",
    ("operator", "iam:DeleteRolePermissionsBoundary"): "a pool role's boundary stays",
    ("operator", "ec2:RunInstances"): "the operator cannot pass another role to EC2",
    ("role:worker", "ssm:GetParameters"): "a worker reads no other pool's parameters",
    ("role:worker", "ssm:GetParameter"): "a worker reads no other pool's parameters",
    ("role:central-manager", "ssm:GetParameters"): "only the workers' role decrypts the "
                                                   "token with the pool's key",
    ("anonymous", "unknown:DescribeInstances"): "an unsigned call from a host is refused",
}


def principal_kind(who: str) -> str:
    """admin, operator, role:worker, role:central-manager, role:other, or as logged."""
    if who.startswith("operator:"):
        return "operator"
    if who.startswith("role:htcpool-"):
        if who.endswith("-central-manager"):
            return "role:central-manager"
        if who.endswith("-instance"):
            return "role:worker"
    if who.startswith("role:"):
        return "role:other"  # a role a test made for itself (tests/e2e/test_sandbox.py)
    return who


GRANTS = {"operator": operator_actions, "role:worker": instance_actions,
          "role:central-manager": central_manager_actions}

# Granted and used by htcpool, but by nothing a sandbox session runs.
NOT_EXERCISED_IN_SANDBOX: dict[str, str] = {
    "ec2:AuthorizeSecurityGroupEgress": "aws_resources.yml",
    "ec2:RevokeSecurityGroupIngress": "aws_resources.yml (purge_rules)",
    "ec2:RevokeSecurityGroupEgress": "aws_resources.yml (purge_rules)",
    "iam:TagRole": "aws_resources.yml",
    "iam:UpdateAssumeRolePolicy": "aws_resources.yml on a changed trust policy",
    "iam:DetachRolePolicy": "teardown.yml / purge_policies",
    "iam:TagInstanceProfile": "aws_resources.yml",
    "iam:PassRole": "checked by IAM on RunInstances with a profile; never an API call",
    "ssm:AddTagsToResource": "community.aws.ssm_parameter with tags (central manager play)",
    "ssm:CancelCommand": "orchestrator/aws/ssm.py cancels a command past its deadline; "
                         "tests/integration/test_ssm_wait.py covers it against moto",
    "kms:Encrypt": "checked by KMS when SSM stores a SecureString; never an API call",
    "kms:Decrypt": "checked by KMS when SSM returns a SecureString; never an API call",
    "dynamodb:TagResource": "checked by DynamoDB on CreateTable with tags (aws_resources.yml); "
                            "a call only when an existing lease table's tags change",
    "iam:PutRolePermissionsBoundary": "aws_resources.yml on a role made before its boundary "
                                      "or a changed boundary; CreateRole sets a new role's",
    # With autoscaler.spot on (aws/instance_types.py); tests/integration/test_shapes.py
    # calls it against moto with the sandbox's pricing and IAM enforcement.
    "ec2:DescribeSpotPriceHistory": "the autoscaler's shapes from EC2, with spot on",
}

# Called in a sandbox session only by the files below: the demo runs aws_resources.yml,
# the bake and teardown.yml against the sandbox, and the autoscaler tests take back a
# draining worker (DeleteTags). A session that ran all of them must have called each.
FULL_SESSION_FILES = ("tests/e2e/test_demo.py", "tests/e2e/test_autoscaler.py",
                      "tests/e2e/test_roles_molecule.py")
FULL_SESSION_ONLY: dict[str, str] = {
    "ec2:DescribeInstanceTypes": "the autoscaler's shapes from EC2 (instance_types)",
    "pricing:GetProducts": "the autoscaler's shapes from EC2 (instance_types)",
    "sts:GetCallerIdentity": "aws_resources.yml (aws_caller_info)",
    "ec2:CreateSecurityGroup": "aws_resources.yml",
    "ec2:AuthorizeSecurityGroupIngress": "aws_resources.yml",
    "ec2:DeleteSecurityGroup": "teardown.yml",
    "ec2:DescribeVpcs": "ec2_instance without a subnet (bake_worker_image.yml)",
    "ec2:DeleteSnapshot": "ec2_ami state=absent with delete_snapshot (image rotation)",
    "iam:GetRole": "aws_resources.yml / teardown.yml",
    "iam:CreateRole": "aws_resources.yml",
    "iam:DeleteRole": "teardown.yml",
    "iam:PutRolePolicy": "aws_resources.yml",
    "iam:GetRolePolicy": "aws_resources.yml",
    "iam:DeleteRolePolicy": "teardown.yml",
    "iam:ListAttachedRolePolicies": "aws_resources.yml",
    "iam:ListRolePolicies": "aws_resources.yml",
    "iam:CreateInstanceProfile": "aws_resources.yml",
    "iam:DeleteInstanceProfile": "teardown.yml",
    "iam:AddRoleToInstanceProfile": "aws_resources.yml",
    "iam:RemoveRoleFromInstanceProfile": "teardown.yml",
    "iam:ListInstanceProfilesForRole": "teardown.yml",
    "iam:GetInstanceProfile": "ec2_instance with an instance profile name (bake)",
    "ssm:DeleteParameter": "teardown.yml; the autoscaler lease on release (autoscale loop)",
    "ec2:DeleteTags": "the autoscaler clears htcpool:idle-since when an idle worker is "
                      "claimed again before its removal (a draining worker taken back)",
    "ssm:ListTagsForResource": "community.aws.ssm_parameter with tags",
    "ssm:DescribeParameters": "community.aws.ssm_parameter",
    "kms:ListAliases": "aws_resources.yml / teardown.yml (kms_key)",
    "kms:CreateKey": "aws_resources.yml (kms_key), on the session's first run",
    "kms:CreateAlias": "aws_resources.yml (kms_key), on the session's first run",
}


def _session_ran(request: pytest.FixtureRequest, *files: str) -> bool:
    paths = {str(item.path) for item in request.session.items}
    return all(any(p.endswith(f) for p in paths) for f in files)


@pytest.mark.sandbox
@pytest.mark.last
def test_every_call_is_granted_and_every_grant_is_called(sandbox: Any,
                                                        request: pytest.FixtureRequest) -> None:
    rows = log_rows(sandbox.api("api-log"))
    called = {action for action, _who, _denied in rows}
    if "ec2:RunInstances" not in called:
        pytest.skip("the session made no RunInstances call: too few sandbox tests ran to "
                    "judge the policies")
    not_granted: dict[str, set[str]] = {}
    unexpected_denials: dict[tuple[str, str], str] = {}
    strangers = set()
    for action, who, denied in rows:
        kind = principal_kind(who)
        if kind in ("unknown", "anonymous"):
            if (kind, action) not in EXPECTED_DENIALS or not denied:
                strangers.add(f"{action} ({who})")
            continue
        if kind not in GRANTS:
            continue  # the harness (admin) and roles tests made for themselves
        if denied and (kind, action) not in EXPECTED_DENIALS:
            unexpected_denials[(kind, action)] = denied
        if not allows(GRANTS[kind](), action) and (kind, action) not in EXPECTED_DENIALS \
                and action not in NO_PERMISSION_NEEDED:
            not_granted.setdefault(action, set()).add(kind)
    for action in sorted(set(not_granted) & set(KNOWN_MISSING)):
        warnings.warn(f"{action} called but not granted (known): {KNOWN_MISSING[action]}",
                      stacklevel=1)
    unexpected = {a: sorted(w) for a, w in not_granted.items() if a not in KNOWN_MISSING}
    assert not unexpected, f"called in the sandbox, not granted to the caller: {unexpected}"
    assert not strangers, f"calls without credentials of a known principal: {sorted(strangers)}"
    assert not unexpected_denials, (
        f"denied by the sandbox's IAM and not on purpose: {unexpected_denials}")

    if not _session_ran(request, "tests/e2e/test_sandbox.py", "tests/e2e/test_pool_views.py"):
        pytest.skip("not a full sandbox session: only the first direction was checked")
    policy = set(concrete(operator_policy_actions())) \
        | set(concrete(policy_actions("instance-policy.json")))
    exempt = set(NOT_EXERCISED_IN_SANDBOX) | set(GRANTED_NOT_CALLED) \
        | set(INSTANCE_GRANTED_NOT_CALLED)
    if not _session_ran(request, *FULL_SESSION_FILES):
        exempt |= set(FULL_SESSION_ONLY)
    never_called = policy - called - exempt
    assert not never_called, (
        f"granted, but no test of this session called them: {sorted(never_called)} "
        "(add a test, or list them in NOT_EXERCISED_IN_SANDBOX with the reason)")
    stale = {a for a in NOT_EXERCISED_IN_SANDBOX if a in called}
    if stale:
        warnings.warn(f"now exercised in the sandbox; remove from NOT_EXERCISED_IN_SANDBOX: "
                      f"{sorted(stale)}", stacklevel=1)


def test_the_exemption_lists_name_granted_actions() -> None:
    """Runs without the sandbox: every exempted action is really in a policy, every expected
    denial names a principal whose grants are checked."""
    policy = set(operator_policy_actions()) | set(policy_actions("instance-policy.json"))
    listed = set(NOT_EXERCISED_IN_SANDBOX) | set(FULL_SESSION_ONLY)
    assert listed <= policy, listed - policy
    assert not set(NOT_EXERCISED_IN_SANDBOX) & set(FULL_SESSION_ONLY)
    assert {kind for kind, _action in EXPECTED_DENIALS} <= set(GRANTS) | {"anonymous"}
