"""What the shipped IAM policies allow, and which AWS actions htcpool's code calls.

Shared by tests/unit/test_iam_coverage_static.py (from the source) and
tests/e2e/test_iam_coverage.py (from the sandbox's API log at the end of a session).

"Allowed" is decided per action (wildcards as IAM matches them); resources and conditions
are not evaluated here (tests/ansible/test_iam.py checks how mutations are scoped).
"""

from __future__ import annotations

import ast
import fnmatch
import json
import re
import textwrap
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

from tests.support.paths import REPO

IAM = REPO / "iam"
SERVICES = ("ec2", "ssm", "iam", "sts", "dynamodb", "kms", "pricing")

# Both instance roles' inline policy for the SSM agent (iam/README.md); it replaced the AWS
# managed AmazonSSMManagedInstanceCore, whose ssm:GetParameter(s) on "*" let any instance
# read every parameter of the account.
SSM_AGENT_POLICY = "instance-ssm-agent-policy.json"
# The operator's two customer managed policies (one would exceed IAM's 6,144 characters).
OPERATOR_POLICIES = ("operator-policy.json", "operator-roles-and-key-policy.json")
# The pool's KMS key policy: the operator administers the key through it (statement
# TheOperatorAdministersTheKey names the operator), so those actions need no IAM grant.
KEY_POLICY = "pool-key-policy.json"
KEY_ADMIN_SID = "TheOperatorAdministersTheKey"

# The Ansible modules (and lookup/inventory plugins) the playbooks and roles use, and the
# actions each needs for the way htcpool uses it (from the amazon.aws / community.aws module
# documentation and sources). A module used but missing here fails the static test.
ANSIBLE_ACTIONS: dict[str, tuple[str, ...]] = {
    "amazon.aws.aws": (),            # module_defaults group name, not a module
    "community.aws.aws": (),
    "amazon.aws.aws_caller_info": ("sts:GetCallerIdentity", "iam:ListAccountAliases"),
    "amazon.aws.aws_ec2": ("ec2:DescribeInstances",),          # inventory plugin, regions set
    "amazon.aws.ec2_instance_info": ("ec2:DescribeInstances",),
    "amazon.aws.ec2_instance": (
        "ec2:DescribeInstances", "ec2:RunInstances", "ec2:CreateTags", "ec2:DescribeSubnets",
        "ec2:DescribeVpcs", "ec2:DescribeSecurityGroups", "ec2:StopInstances",
        "ec2:StartInstances", "ec2:TerminateInstances", "ec2:DescribeInstanceStatus",
        "iam:GetInstanceProfile", "iam:PassRole",
        # seen in the sandbox's API log: the module reads and sets instance attributes
        "ec2:DescribeInstanceAttribute", "ec2:ModifyInstanceAttribute"),
    "amazon.aws.ec2_ami": ("ec2:CreateImage", "ec2:DescribeImages", "ec2:CreateTags",
                           "ec2:DeregisterImage", "ec2:DeleteSnapshot"),
    "amazon.aws.ec2_ami_info": ("ec2:DescribeImages", "ec2:DescribeImageAttribute"),
    "amazon.aws.ec2_tag": ("ec2:DescribeTags", "ec2:CreateTags"),  # present, no purge
    "amazon.aws.ec2_security_group": (
        "ec2:DescribeSecurityGroups", "ec2:CreateSecurityGroup",
        "ec2:AuthorizeSecurityGroupIngress", "ec2:AuthorizeSecurityGroupEgress",
        "ec2:RevokeSecurityGroupIngress", "ec2:RevokeSecurityGroupEgress", "ec2:CreateTags",
        "ec2:DeleteSecurityGroup"),
    "amazon.aws.ec2_security_group_info": ("ec2:DescribeSecurityGroups",),
    # managed_policies: [] (inline policies only): nothing is attached; purge_policies
    # detaches the managed policy earlier versions attached
    "amazon.aws.iam_role": (
        "iam:GetRole", "iam:CreateRole", "iam:TagRole", "iam:UpdateAssumeRolePolicy",
        "iam:ListAttachedRolePolicies", "iam:DetachRolePolicy",
        # boundary: set on roles an earlier version made without it
        "iam:PutRolePermissionsBoundary",
        "iam:ListRolePolicies", "iam:DeleteRolePolicy", "iam:ListInstanceProfilesForRole",
        "iam:RemoveRoleFromInstanceProfile", "iam:DeleteRole"),
    "amazon.aws.iam_role_info": ("iam:GetRole", "iam:ListAttachedRolePolicies",
                                 "iam:ListRolePolicies", "iam:ListInstanceProfilesForRole"),
    "amazon.aws.iam_instance_profile": (
        "iam:GetInstanceProfile", "iam:CreateInstanceProfile", "iam:AddRoleToInstanceProfile",
        "iam:RemoveRoleFromInstanceProfile", "iam:TagInstanceProfile",
        "iam:DeleteInstanceProfile"),
    "amazon.aws.iam_policy": ("iam:ListRolePolicies", "iam:GetRolePolicy", "iam:PutRolePolicy",
                              "iam:DeleteRolePolicy"),      # absent: the autoscaler's, when off
    # lookup plugin; the token is a SecureString under the pool's key: SSM decrypts it with
    # the caller's kms:Decrypt
    "amazon.aws.ssm_parameter": ("ssm:GetParameter", "kms:Decrypt"),
    "amazon.aws.kms_key": (
        "kms:DescribeKey", "kms:ListAliases", "kms:GetKeyRotationStatus", "kms:ListGrants",
        "kms:ListResourceTags", "kms:ListKeyPolicies", "kms:GetKeyPolicy", "kms:CreateKey",
        "kms:CreateAlias", "kms:EnableKeyRotation", "kms:PutKeyPolicy", "kms:EnableKey",
        "kms:UpdateKeyDescription", "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion"),
    "community.aws.dynamodb_table": (
        "dynamodb:DescribeTable", "dynamodb:CreateTable", "dynamodb:DeleteTable",
        "dynamodb:TagResource", "dynamodb:ListTagsOfResource"),
    "community.aws.ssm_parameter": (
        "ssm:GetParameter", "ssm:PutParameter", "ssm:DeleteParameter", "ssm:AddTagsToResource",
        "ssm:ListTagsForResource", "ssm:DescribeParameters",
        # a SecureString under the pool's key: SSM encrypts and decrypts with the caller's
        # KMS permissions (the module reads the current value to compare)
        "kms:Encrypt", "kms:Decrypt"),
}

# Actions these modules may also call when a resource has drifted from what the playbook
# declares (a changed description, a foreign tag to purge, an existing builder with the same
# name); the shipped policy does not grant them, so such a run would fail on AccessDenied.
ANSIBLE_DRIFT_ONLY = ("iam:UpdateRole", "iam:UntagRole", "iam:ListRoleTags",
                      "iam:UntagInstanceProfile", "ec2:DeleteTags",
                      "ssm:RemoveTagsFromResource", "dynamodb:UpdateTable",
                      "dynamodb:UntagResource", "kms:TagResource", "kms:UntagResource",
                      "kms:DisableKey", "kms:DisableKeyRotation", "kms:CreateGrant",
                      "kms:RetireGrant")


# Actions AWS allows every authenticated caller, whatever its policies.
NO_PERMISSION_NEEDED = frozenset({"sts:GetCallerIdentity"})


def statements(name: str) -> list[dict[str, Any]]:
    return list(json.loads((IAM / name).read_text())["Statement"])


def _as_list(value: Any) -> list[str]:
    return list(value) if isinstance(value, list) else [value]


@cache
def policy_actions(name: str) -> frozenset[str]:
    """The actions (as written, possibly with wildcards) Allowed by one policy file."""
    return frozenset(a for s in statements(name) if s.get("Effect") == "Allow"
                     for a in _as_list(s.get("Action", [])))


@cache
def key_policy_actions(sid: str) -> frozenset[str]:
    """The actions one statement of the pool's key policy allows."""
    (stmt,) = [s for s in statements(KEY_POLICY) if s.get("Sid") == sid]
    return frozenset(_as_list(stmt["Action"]))


def operator_policy_actions() -> frozenset[str]:
    """The actions the operator's IAM policies allow."""
    return frozenset(a for name in OPERATOR_POLICIES for a in policy_actions(name))


def operator_actions() -> frozenset[str]:
    """The operator's IAM policies and what the pool's key policy lets it do to the key."""
    return operator_policy_actions() | key_policy_actions(KEY_ADMIN_SID)


def instance_actions() -> frozenset[str]:
    """The workers' role: the pool's parameters (and their key through SSM), the agent."""
    return policy_actions("instance-policy.json") | policy_actions(SSM_AGENT_POLICY)


def central_manager_actions() -> frozenset[str]:
    """The central manager's role with the autoscaler on (aws_resources.yml with
    htcpool_central_manager_autoscaler): the SSM agent's and the autoscaler's grants (no
    parameters: the central manager reads none)."""
    return policy_actions(SSM_AGENT_POLICY) | policy_actions(CENTRAL_MANAGER_AUTOSCALER_POLICY)


def allows(granted: Iterable[str], action: str) -> bool:
    """IAM action matching: case-insensitive, `*` and `?` wildcards."""
    return any(fnmatch.fnmatchcase(action.lower(), g.lower()) for g in granted)


# --- the code's calls, from its source --------------------------------------------------------

@cache
def operations() -> dict[str, dict[str, str]]:
    """service -> {snake_case method: ApiName} from botocore's service models."""
    import botocore.session
    from botocore import xform_name

    session = botocore.session.get_session()
    return {svc: {xform_name(op): op for op in session.get_service_model(svc).operation_names}
            for svc in SERVICES}


@cache
def ec2_waiters() -> dict[str, str]:
    """snake_case waiter name -> the EC2 operation it polls."""
    import botocore.session
    from botocore import xform_name

    model = botocore.session.get_session().get_waiter_model("ec2")
    return {xform_name(n): model.get_waiter(n).operation for n in model.waiter_names}


@cache
def _all_operations() -> frozenset[str]:
    return frozenset(name for ops in operations().values() for name in ops)


def _action_for(name: str) -> str | None:
    for svc, ops in operations().items():
        if name in ops:
            return f"{svc}:{ops[name]}"
    return None


CLIENT_RECEIVER = re.compile(r"(\b|_)(ec2|ssm|iam|sts|client)(\b|_|\()")


def calls_in_source(source: str) -> set[str]:
    """IAM actions of the boto3 calls in one Python file: method calls named like an
    operation (`ec2.run_instances(...)`), operation names given as strings (paginators,
    `getattr(client, "stop_instances")`), and EC2 waiter names."""
    found: set[str] = set()
    tree = ast.parse(source)
    exported = {id(c) for node in ast.walk(tree) if isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
                for c in ast.walk(node.value)}  # names listed in __all__ are not calls
    for node in ast.walk(tree):
        name = None
        if id(node) in exported:
            continue
        if isinstance(node, ast.Attribute) and node.attr in _all_operations():
            # a client method, called or taken as a value (`ec2.stop_instances` in a
            # dispatch table): the receiver names a client (`self._ec2`, `ssm`,
            # `self.client("ssm")`), which keeps local functions such as get_policy() out
            if CLIENT_RECEIVER.search(ast.unparse(node.value)):
                name = node.attr
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and re.fullmatch(r"[a-z]+(_[a-z0-9]+)+", node.value):
            name = node.value
            if name in ec2_waiters():
                found.add(f"ec2:{ec2_waiters()[name]}")
                continue
        if name:
            action = _action_for(name)
            if action:
                found.add(action)
    return found


def operator_code_files() -> list[Path]:
    """Python that runs with the operator's credentials: the orchestrator, minus the sandbox
    (an emulator that calls moto's backends, not AWS) and the simulator (no AWS at all)."""
    root = REPO / "orchestrator"
    return sorted(p for p in root.rglob("*.py")
                  if p.relative_to(root).parts[0] not in ("sandbox", "sim"))


# --- the autoscaler as a service on the central manager ----------------------------------------
# `htcpool autoscale` from roles/htcondor_master (transport "local": the htcondor bindings,
# no SSM): the autoscaler package, the CLI command that builds it, and the methods of
# orchestrator/aws/ec2.py's Cloud these reach, with the aws/ functions and classes those
# call. Its role's policy is iam/central-manager-autoscaler-policy.json.

CENTRAL_MANAGER_AUTOSCALER_POLICY = "central-manager-autoscaler-policy.json"
_CLOUD_RECEIVER = re.compile(r"(^|[._])cloud$")
CLOUD_FILE = REPO / "orchestrator" / "aws" / "ec2.py"


def autoscaler_code_files() -> list[Path]:
    package = sorted((REPO / "orchestrator" / "autoscaler").rglob("*.py"))
    return [p for p in package if p.name != "fakes.py"] + \
        [REPO / "orchestrator" / "cli" / "scale.py"]


def _aws_definitions() -> dict[str, tuple[Path, ast.AST]]:
    """Top-level functions and classes of orchestrator/aws/ other than Cloud, by name."""
    out: dict[str, tuple[Path, ast.AST]] = {}
    for path in sorted((REPO / "orchestrator" / "aws").glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef | ast.ClassDef) and node.name != "Cloud":
                out[node.name] = (path, node)
    return out


def _cloud_methods_reached(files: Iterable[Path]) -> dict[str, ast.FunctionDef]:
    """Methods of Cloud the files use (`self.cloud.launch(...)`, `cloud.worker_subnets()`),
    closed over the `self.<method>` references inside Cloud itself."""
    used = {node.attr for path in files for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Attribute)
            and _CLOUD_RECEIVER.search(ast.unparse(node.value))}
    tree = ast.parse(CLOUD_FILE.read_text())
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Cloud"]
    methods = {n.name: n for n in cls.body if isinstance(n, ast.FunctionDef)}
    todo = sorted(used & set(methods))
    reached: dict[str, ast.FunctionDef] = {}
    while todo:
        name = todo.pop()
        if name in reached:
            continue
        reached[name] = methods[name]
        todo += [n.attr for n in ast.walk(methods[name]) if isinstance(n, ast.Attribute)
                 and isinstance(n.value, ast.Name) and n.value.id == "self"
                 and n.attr in methods and n.attr not in reached]
    return reached


def autoscaler_actions() -> dict[str, set[str]]:
    """action -> where the autoscaler service calls it (files, Cloud's methods, and the
    aws/ functions and classes those methods name)."""
    files = autoscaler_code_files()
    out = code_actions(files)
    cloud_source = CLOUD_FILE.read_text()
    definitions = _aws_definitions()
    named: set[str] = set()
    for name, fn in _cloud_methods_reached(files).items():
        source = textwrap.dedent(ast.get_source_segment(cloud_source, fn, padded=True) or "")
        for action in calls_in_source(source):
            out.setdefault(action, set()).add(f"orchestrator/aws/ec2.py:Cloud.{name}")
        named |= {n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and n.id in definitions}
    todo = sorted(named)
    seen: set[str] = set()
    while todo:  # and what those call in turn, within aws/
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path, node = definitions[name]
        source = textwrap.dedent(ast.get_source_segment(path.read_text(), node, padded=True)
                                 or "")
        for action in calls_in_source(source):
            out.setdefault(action, set()).add(f"{path.relative_to(REPO)}:{name}")
        todo += [n.id for n in ast.walk(node) if isinstance(n, ast.Name)
                 and n.id in definitions and n.id not in seen]
    return out


def instance_code_files() -> list[Path]:
    """Python that runs on pool instances with the instance role (first boot)."""
    return sorted((REPO / "roles").rglob("files/*.py"))


def code_actions(files: Iterable[Path]) -> dict[str, set[str]]:
    """action -> files (relative) that call it."""
    out: dict[str, set[str]] = {}
    for path in files:
        for action in calls_in_source(path.read_text()):
            out.setdefault(action, set()).add(str(path.relative_to(REPO)))
    return out


def ansible_modules_used() -> dict[str, set[str]]:
    """amazon.aws / community.aws modules and plugins named in playbooks, roles, inventory."""
    pattern = re.compile(r"\b((?:amazon|community)\.aws\.[a-z0-9_]+)")
    out: dict[str, set[str]] = {}
    for base in ("playbooks", "roles", "inventory"):
        for path in (REPO / base).rglob("*"):
            if path.is_file() and path.suffix in (".yml", ".yaml", ".j2"):
                for name in pattern.findall(path.read_text(errors="replace")):
                    out.setdefault(name, set()).add(str(path.relative_to(REPO)))
    return out


def ansible_actions() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for module in ansible_modules_used():
        for action in ANSIBLE_ACTIONS.get(module, ()):
            out.setdefault(action, set()).add(module)
    return out


def concrete(actions: Iterable[str]) -> Iterator[str]:
    """Policy entries without wildcards (a wildcard entry is checked by matching only)."""
    return (a for a in actions if "*" not in a and "?" not in a)


# --- the sandbox's API log ---------------------------------------------------------------------

LOG_SERVICES = {"AmazonSSM": "ssm", "ec2": "ec2", "iam": "iam", "sts": "sts",
                "AWSIdentityManagementV20100508": "iam", "DynamoDB_20120810": "dynamodb",
                "TrentService": "kms", "AWSPriceListService": "pricing"}


def log_rows(calls: Iterable[Any]) -> list[tuple[str, str, str]]:
    """(IAM action, who, why denied or "") from the sandbox log's [ts, service, action, who,
    denied] rows; who is admin, operator:<pool>, role:<name>, unknown or anonymous."""
    out = []
    for ts, service, action, *rest in calls:
        del ts
        if not action:
            continue
        who = rest[0] if rest else ""
        denied = rest[1] if len(rest) > 1 else ""
        out.append((f"{LOG_SERVICES.get(service, service.lower())}:{action}", who, denied))
    return out


def log_actions(calls: Iterable[Any]) -> set[str]:
    """IAM actions from the sandbox log's rows."""
    return {action for action, _who, _denied in log_rows(calls)}


# --- known differences, each with what to change ----------------------------------------------

# Called by the code, not granted by iam/operator-policy.json. Fix the policy, then empty this.
KNOWN_MISSING: dict[str, str] = {}

# Granted by iam/operator-policy.json, called by no code, module or playbook of this repository.
# Each is a candidate for removal (least privilege); keep only with a reason.
GRANTED_NOT_CALLED: dict[str, str] = {
    # (The reads and launch paths no code used, CreateFleet, DescribeInstanceTypes,
    # DescribeLaunchTemplates, ..., were removed from the policy.)
}

# Granted by iam/instance-policy.json and not called by the first-boot script as an API of
# its own.
INSTANCE_GRANTED_NOT_CALLED: dict[str, str] = {
    "kms:Decrypt": "SSM decrypts the SecureString token with the caller's kms:Decrypt for "
                   "GetParameters WithDecryption (htcpool-worker-firstboot.py)",
}

# Found by the scan of the autoscaler's code, never performed by the autoscaler; not granted
# by iam/central-manager-autoscaler-policy.json.
AUTOSCALER_FOUND_NOT_CALLED: dict[str, str] = {
    "ec2:RebootInstances": "Cloud.act maps every Lifecycle action to its call; the "
                           "autoscaler starts, stops and terminates, never reboots",
}

# Granted by iam/central-manager-autoscaler-policy.json without a call of its own.
AUTOSCALER_GRANTED_NOT_CALLED: dict[str, str] = {
    "iam:PassRole": "RunInstances with IamInstanceProfile (the workers' profile) needs it",
}

# Mentioned by the repository as an option only (a commented-out inventory setting).
OPTIONAL_MODULES: dict[str, str] = {
    "amazon.aws.aws_ssm": "connection plugin, commented out in inventory/aws_ec2.yml; it needs "
                          "ssm:StartSession/TerminateSession and an S3 bucket, not granted",
}
