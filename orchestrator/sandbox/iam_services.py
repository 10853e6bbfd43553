"""What AWS authorizes for SSM, KMS, DynamoDB, IAM, STS and Pricing calls, as checks: a
request context (iam_policy.RequestContext) and, where AWS also reads one, the resource's
own policy (a KMS key policy, a role's trust policy).

SSM SecureString parameters are encrypted with KMS on the caller's behalf: PutParameter
needs kms:Encrypt and GetParameter(s) WithDecryption kms:Decrypt on the parameter's key,
with kms:ViaService = ssm.<region>.amazonaws.com and the parameter's ARN as encryption
context, judged by the caller's IAM policies and the key's policy as KMS does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.sandbox.iam_policy import Document, RequestContext

REQUEST_TAGS = ("aws:RequestTag/",)
KEY_KEYS = frozenset({"kms:CallerAccount", "kms:ViaService", "kms:ResourceAliases",
                      "kms:EncryptionContextKeys"})
KEY_PREFIXES = ("aws:ResourceTag/", "kms:EncryptionContext:")
# KMS operations on a key: the key policy is evaluated too.
KMS_LIST = frozenset({"ListKeys", "ListAliases", "CreateKey", "GenerateRandom"})
SSM_UNSCOPED = frozenset({"DescribeParameters", "GetCommandInvocation", "ListCommandInvocations",
                          "ListCommands", "CancelCommand", "DescribeInstanceInformation"})
SSM_PARAMETER = frozenset({"GetParameter", "GetParameters", "PutParameter", "DeleteParameter",
                           "DeleteParameters", "GetParameterHistory", "LabelParameterVersion"})
IAM_ROLE = frozenset({
    "CreateRole", "GetRole", "DeleteRole", "UpdateRole", "UpdateRoleDescription", "TagRole",
    "UntagRole", "ListRoleTags", "UpdateAssumeRolePolicy", "PutRolePolicy", "GetRolePolicy",
    "DeleteRolePolicy", "ListRolePolicies", "AttachRolePolicy", "DetachRolePolicy",
    "ListAttachedRolePolicies", "ListInstanceProfilesForRole", "PutRolePermissionsBoundary",
    "DeleteRolePermissionsBoundary"})
# Role actions for which AWS gives iam:PermissionsBoundary as the role's current boundary.
BOUNDED_ROLE_ACTIONS = frozenset({"PutRolePolicy", "DeleteRolePolicy", "AttachRolePolicy",
                                  "DetachRolePolicy", "DeleteRolePermissionsBoundary"})
IAM_PROFILE = frozenset({
    "CreateInstanceProfile", "GetInstanceProfile", "DeleteInstanceProfile",
    "TagInstanceProfile", "UntagInstanceProfile", "ListInstanceProfileTags",
    "AddRoleToInstanceProfile", "RemoveRoleFromInstanceProfile"})


@dataclass(frozen=True)
class Check:
    """One authorization: the caller's policies, and the resource's policy if AWS reads one
    (KMS keys always; role trust policies for sts:AssumeRole)."""

    ctx: RequestContext
    resource_policy: Document | None = None


class KeyNotFound(Exception):
    """A KMS key named by a request does not exist."""


def request_tags(tags: Mapping[str, str]) -> dict[str, list[str]]:
    keys = {f"aws:RequestTag/{k}": [v] for k, v in tags.items()}
    keys["aws:TagKeys"] = list(tags)
    return keys


def tags_of(items: Sequence[Mapping[str, str]] | None, key: str = "Key",
            value: str = "Value") -> dict[str, str]:
    return {t[key]: t.get(value, "") for t in items or []}


def tagging(action: str, resource: str | None, tags: Mapping[str, str] | None
            ) -> RequestContext:
    """A call that may carry request tags (aws:RequestTag, aws:TagKeys modelled)."""
    return RequestContext.make(action, resource, request_tags(tags or {}), {"aws:TagKeys"},
                               REQUEST_TAGS)


# --- SSM ---------------------------------------------------------------------------------------

def parameter_arn(name: str, region: str, account: str) -> str:
    if name.startswith("arn:"):
        return name
    name = name.split(":")[0]  # a version or label selector (name:3) names the parameter
    return f"arn:aws:ssm:{region}:{account}:parameter/{name.lstrip('/')}"


def ssm_checks(action: str, body: Mapping[str, Any], region: str, account: str,
               ec2_tags: Any) -> list[Check]:
    a = f"ssm:{action}"
    if action in SSM_UNSCOPED:
        return [Check(RequestContext.make(a, "*"))]
    if action in SSM_PARAMETER:
        names = body.get("Names") or [body.get("Name") or ""]
        tags = tags_of(body.get("Tags")) if action == "PutParameter" else None
        return [Check(tagging(a, parameter_arn(str(n), region, account), tags))
                for n in names]
    if action == "GetParametersByPath":
        path = str(body.get("Path") or "/").rstrip("/") or "/"
        return [Check(RequestContext.make(a, parameter_arn(path, region, account)))]
    if action in ("AddTagsToResource", "RemoveTagsFromResource", "ListTagsForResource") \
            and body.get("ResourceType") == "Parameter":
        resource = parameter_arn(str(body.get("ResourceId") or ""), region, account)
        tags = tags_of(body.get("Tags")) if action == "AddTagsToResource" else \
            {k: "" for k in body.get("TagKeys") or []}
        return [Check(tagging(a, resource, tags))]
    if action == "SendCommand":
        document = str(body.get("DocumentName") or "")
        doc_arn = document if document.startswith("arn:") else (
            f"arn:aws:ssm:{region}::document/{document}" if document.startswith("AWS-")
            else f"arn:aws:ssm:{region}:{account}:document/{document}")
        out = [Check(RequestContext.make(a, doc_arn))]
        for iid in body.get("InstanceIds") or []:
            out.append(Check(ec2_tags(a, str(iid))))
        if body.get("Targets"):  # which instances tags select is not modelled
            out.append(Check(RequestContext.make(a, None)))
        return out
    return [Check(RequestContext.make(a, None))]


def kms_via_ssm(action: str, key: Any, parameter: str, region: str, account: str
                ) -> Check:
    """The KMS call SSM makes for a SecureString parameter (kms:Encrypt or kms:Decrypt)."""
    ctx = key_context(f"kms:{action}", key, account,
                      {"kms:ViaService": [f"ssm.{region}.amazonaws.com"],
                       "kms:EncryptionContext:PARAMETER_ARN": [parameter],
                       "kms:EncryptionContextKeys": ["PARAMETER_ARN"]})
    return Check(ctx, json.loads(key.policy))


# --- KMS ---------------------------------------------------------------------------------------

def key_context(action: str, key: Any, account: str,
                extra: Mapping[str, Sequence[str]] | None = None) -> RequestContext:
    keys: dict[str, Sequence[str]] = {"kms:CallerAccount": [account],
                                      "kms:ResourceAliases": sorted(key.aliases)}
    for tag in key_tags(key):
        keys[f"aws:ResourceTag/{tag['TagKey']}"] = [tag["TagValue"]]
    keys.update(extra or {})
    return RequestContext.make(action, key.arn, keys, KEY_KEYS | {"aws:TagKeys"},
                               KEY_PREFIXES + REQUEST_TAGS)


def key_tags(key: Any) -> list[dict[str, str]]:
    from moto.kms.models import kms_backends

    backend = kms_backends[key.account_id][key.region]
    return list(backend.tagger.list_tags_for_resource(key.id).get("Tags", []))


def find_key(kms: Any, key_id: str) -> Any:
    try:
        return kms.keys[kms.any_id_to_key_id(key_id)]
    except Exception as exc:
        raise KeyNotFound(key_id) from exc


def kms_checks(action: str, body: Mapping[str, Any], kms: Any, region: str, account: str
               ) -> list[Check]:
    a = f"kms:{action}"
    if action == "CreateKey":
        tags = tags_of(body.get("Tags"), "TagKey", "TagValue")
        return [Check(tagging(a, "*", tags))]
    if action in KMS_LIST:
        return [Check(RequestContext.make(a, "*"))]
    out: list[Check] = []
    if action in ("CreateAlias", "UpdateAlias", "DeleteAlias"):
        alias = str(body.get("AliasName") or "")
        out.append(Check(RequestContext.make(
            a, f"arn:aws:kms:{region}:{account}:{alias}")))
        target = body.get("TargetKeyId")
        if target is None:  # DeleteAlias: the key the alias points at
            target = alias
        key_id = str(target)
    else:
        key_id = str(body.get("KeyId") or "")
    try:
        key = find_key(kms, key_id)
    except KeyNotFound:
        return out  # KMS answers NotFoundException before it authorizes (moto does too)
    extra: dict[str, Sequence[str]] = {}
    context = body.get("EncryptionContext") or {}
    if action in ("Encrypt", "Decrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext",
                  "ReEncryptFrom", "ReEncryptTo"):
        extra = {f"kms:EncryptionContext:{k}": [str(v)] for k, v in context.items()}
        extra["kms:EncryptionContextKeys"] = list(context)
    if action in ("TagResource", "UntagResource"):
        tags = tags_of(body.get("Tags"), "TagKey", "TagValue") if action == "TagResource" \
            else {k: "" for k in body.get("TagKeys") or []}
        extra.update(request_tags(tags))
    out.append(Check(key_context(a, key, account, extra), json.loads(key.policy)))
    return out


# --- DynamoDB, IAM, STS ------------------------------------------------------------------------

def dynamodb_checks(action: str, body: Mapping[str, Any], region: str, account: str
                    ) -> list[Check]:
    a = f"dynamodb:{action}"
    if action in ("ListTables", "DescribeLimits", "DescribeEndpoints"):
        return [Check(RequestContext.make(a, "*"))]
    table = body.get("TableName")
    resource = body.get("ResourceArn") or (
        f"arn:aws:dynamodb:{region}:{account}:table/{table}" if table else None)
    out = [Check(RequestContext.make(a, resource))]
    if action == "CreateTable" and body.get("Tags"):  # tagging on creation
        out.append(Check(tagging("dynamodb:TagResource", resource, tags_of(body.get("Tags")))))
    return out


def role_arn(iam: Any, name: str, account: str) -> str:
    try:
        return str(iam.get_role(name).arn)
    except Exception:
        return f"arn:aws:iam::{account}:role/{name}"


def iam_checks(action: str, q: Mapping[str, Sequence[str]], iam: Any, account: str
               ) -> list[Check]:
    from orchestrator.sandbox.iam_ec2 import first, pass_role, tag_list

    a = f"iam:{action}"
    if action in IAM_ROLE:
        name = first(q, "RoleName") or ""
        arn = role_arn(iam, name, account)
        keys: dict[str, Sequence[str]] = {}
        modelled = {"iam:PolicyARN", "iam:PermissionsBoundary"}
        if action in ("AttachRolePolicy", "DetachRolePolicy"):
            keys["iam:PolicyARN"] = [first(q, "PolicyArn") or ""]
        # The boundary the request sets, or the one the role has (AWS gives the key for
        # these actions only; elsewhere it is absent).
        if action in ("CreateRole", "PutRolePermissionsBoundary"):
            boundary = first(q, "PermissionsBoundary")
        elif action in BOUNDED_ROLE_ACTIONS:
            try:
                boundary = iam.get_role(name).permissions_boundary_arn
            except Exception:
                boundary = None
        else:
            boundary = None
        if boundary:
            keys["iam:PermissionsBoundary"] = [boundary]
        if action in ("CreateRole", "TagRole", "UntagRole"):
            tags = tag_list(q, "Tags.member") if action != "UntagRole" else {
                k[0]: "" for key, k in q.items() if key.startswith("TagKeys.member.")}
            keys.update(request_tags(tags))
            modelled |= {"aws:TagKeys"}
        return [Check(RequestContext.make(a, arn, keys, modelled, REQUEST_TAGS))]
    if action in IAM_PROFILE:
        name = first(q, "InstanceProfileName") or ""
        try:
            profile_path = iam.get_instance_profile(name).path
        except Exception:
            profile_path = first(q, "Path") or "/"
        arn = f"arn:aws:iam::{account}:instance-profile{profile_path}{name}"
        out = [Check(RequestContext.make(a, arn))]
        if action == "AddRoleToInstanceProfile":  # AWS: needs iam:PassRole on the role
            out.append(Check(pass_role(role_arn(iam, first(q, "RoleName") or "", account))))
        return out
    if action in ("ListAccountAliases", "ListRoles", "ListInstanceProfiles", "ListPolicies",
                  "GetAccountAuthorizationDetails", "ListUsers"):
        return [Check(RequestContext.make(a, "*"))]
    return [Check(RequestContext.make(a, None))]


def sts_checks(action: str, q: Mapping[str, Sequence[str]], iam: Any) -> list[Check]:
    from orchestrator.sandbox.iam_ec2 import first

    if action == "AssumeRole":
        arn = first(q, "RoleArn") or ""
        try:
            trust: Document | None = json.loads(iam.get_role_by_arn(arn)
                                                 .assume_role_policy_document)
        except Exception:
            trust = {"Statement": []}
        return [Check(RequestContext.make("sts:AssumeRole", arn), trust)]
    return [Check(RequestContext.make(f"sts:{action}", None))]


def pricing_checks(action: str) -> list[Check]:
    """The Price List API has no resource-level permissions: `pricing:<Action>` on "*"."""
    return [Check(RequestContext.make(f"pricing:{action}", "*"))]
