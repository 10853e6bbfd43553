"""What AWS authorizes for an EC2 API call, as request contexts (iam_policy.RequestContext).

One call may need several authorizations: RunInstances is checked against the image, the
instance, its volumes, network interface, subnet, security groups and key pair, each with
its own request tags, plus ec2:CreateTags for what it tags on creation (ec2:CreateAction)
and iam:PassRole for its instance profile's role. Resource tags come from moto's records as
they are when the call arrives. Actions not modelled here get an unknown resource, so only an
unconditional `"Resource": "*"` Allow covers them (iam_policy fails closed otherwise).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from orchestrator.sandbox.iam_policy import RequestContext

Query = Mapping[str, Sequence[str]]

RESOURCE_TAGS = ("aws:ResourceTag/", "ec2:ResourceTag/")
REQUEST_TAGS = ("aws:RequestTag/",)
TAGGING = frozenset({"aws:TagKeys"})
KINDS = {"i-": "instance", "vol-": "volume", "sg-": "security-group", "subnet-": "subnet",
         "eni-": "network-interface", "vpc-": "vpc", "sgr-": "security-group-rule",
         "lt-": "launch-template", "sir-": "spot-instances-request", "key-": "key-pair"}
INSTANCE_ACTIONS = frozenset({
    "StartInstances", "StopInstances", "RebootInstances", "TerminateInstances",
    "ModifyInstanceAttribute", "DescribeInstanceAttribute", "ModifyInstanceMetadataOptions",
    "GetConsoleOutput", "MonitorInstances", "UnmonitorInstances"})
GROUP_ACTIONS = frozenset({
    "AuthorizeSecurityGroupIngress", "AuthorizeSecurityGroupEgress",
    "RevokeSecurityGroupIngress", "RevokeSecurityGroupEgress", "DeleteSecurityGroup",
    "UpdateSecurityGroupRuleDescriptionsIngress", "UpdateSecurityGroupRuleDescriptionsEgress",
    "ModifySecurityGroupRules"})
# Describe* calls without resource-level permissions (EC2's list; the others name resources).
DESCRIBE_WITH_RESOURCE = {"DescribeInstanceAttribute": "InstanceId",
                          "DescribeImageAttribute": "ImageId"}


def listed(q: Query, stem: str) -> list[str]:
    """Values of stem.1, stem.2, ... in order (EC2's flattened lists)."""
    rx = re.compile(rf"^{re.escape(stem)}\.(\d+)$")
    found = [(int(m.group(1)), v[0]) for k, v in q.items() if (m := rx.match(k)) and v]
    return [v for _, v in sorted(found)]


def first(q: Query, key: str) -> str | None:
    value = q.get(key)
    return value[0] if value else None


def tag_list(q: Query, stem: str) -> dict[str, str]:
    """Tags given as stem.N.Key / stem.N.Value (a Value may be absent: DeleteTags)."""
    rx = re.compile(rf"^{re.escape(stem)}\.(\d+)\.Key$")
    out: dict[str, str] = {}
    for key, values in q.items():
        m = rx.match(key)
        if m and values:
            out[values[0]] = (q.get(f"{stem}.{m.group(1)}.Value") or [""])[0]
    return out


def tag_specifications(q: Query) -> dict[str, dict[str, str]]:
    """TagSpecification.N: resource type -> tags."""
    out: dict[str, dict[str, str]] = {}
    for key, values in q.items():
        m = re.match(r"^TagSpecification\.(\d+)\.ResourceType$", key)
        if m and values:
            tags = tag_list(q, f"TagSpecification.{m.group(1)}.Tag")
            out.setdefault(values[0], {}).update(tags)
    return out


def request_tag_keys(tags: Mapping[str, str]) -> dict[str, list[str]]:
    keys = {f"aws:RequestTag/{k}": [v] for k, v in tags.items()}
    keys["aws:TagKeys"] = list(tags)
    return keys


def resource_tag_keys(tags: Mapping[str, str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, v in tags.items():
        out[f"aws:ResourceTag/{k}"] = [v]
        out[f"ec2:ResourceTag/{k}"] = [v]
    return out


class Ec2Contexts:
    """Request contexts of one EC2 call, read against moto's EC2 and IAM records."""

    def __init__(self, backend: Any, iam: Any, region: str, account: str) -> None:
        self.be = backend
        self.iam = iam
        self.region = region
        self.account = account

    # --- ARNs and tags -------------------------------------------------------------------
    def arn(self, kind: str, rid: str) -> str:
        if kind in ("image", "snapshot"):
            return f"arn:aws:ec2:{self.region}::{kind}/{rid}"
        return f"arn:aws:ec2:{self.region}:{self.account}:{kind}/{rid}"

    def arn_of(self, rid: str) -> str | None:
        if rid.startswith("ami-"):
            return self.arn("image", rid)
        if rid.startswith("snap-"):
            return self.arn("snapshot", rid)
        for prefix, kind in KINDS.items():
            if rid.startswith(prefix):
                return self.arn(kind, rid)
        return None

    def tags(self, rid: str) -> dict[str, str]:
        return dict(self.be.tags.get(rid, {}))

    def existing(self, action: str, rid: str, extra: Mapping[str, Sequence[str]] | None = None,
                 modelled: frozenset[str] = frozenset(),
                 prefixes: tuple[str, ...] = ()) -> RequestContext:
        """An existing resource named by id: its tags are aws:/ec2:ResourceTag."""
        keys: dict[str, Sequence[str]] = dict(resource_tag_keys(self.tags(rid)))
        keys.update(extra or {})
        return RequestContext.make(f"ec2:{action}", self.arn_of(rid), keys, modelled,
                                   RESOURCE_TAGS + prefixes)

    def instance_for_ssm(self, action: str, rid: str) -> RequestContext:
        """An instance an SSM call targets (aws:ResourceTag and ssm:resourceTag)."""
        keys: dict[str, Sequence[str]] = {}
        for k, v in self.tags(rid).items():
            keys[f"aws:ResourceTag/{k}"] = [v]
            keys[f"ssm:resourceTag/{k}"] = [v]
        return RequestContext.make(action, self.arn_of(rid), keys, (),
                                   ("aws:ResourceTag/", "ssm:resourceTag/"))

    def created(self, action: str, kind: str, tags: Mapping[str, str],
                create_action: str | None = None) -> RequestContext:
        """A resource the call creates (resource ARN with *), with its request tags."""
        keys: dict[str, Sequence[str]] = dict(request_tag_keys(tags))
        modelled = {"aws:TagKeys", "ec2:CreateAction"}
        if create_action:
            keys["ec2:CreateAction"] = [create_action]
        return RequestContext.make(f"ec2:{action}", self.arn(kind, "*"), keys, modelled,
                                   RESOURCE_TAGS + REQUEST_TAGS)

    def tag_on_create(self, specs: Mapping[str, Mapping[str, str]], action: str
                      ) -> list[RequestContext]:
        """The ec2:CreateTags that tagging on creation needs, per tagged resource type."""
        return [self.created("CreateTags", kind, tags, create_action=action)
                for kind, tags in specs.items() if tags]

    def group_id(self, name_or_id: str, vpc_id: str | None = None) -> str | None:
        group = self.be.get_security_group_by_name_or_id(name_or_id, vpc_id)
        return str(group.id) if group is not None else None

    # --- the calls -----------------------------------------------------------------------
    def contexts(self, action: str, q: Query) -> list[RequestContext]:
        if action in DESCRIBE_WITH_RESOURCE:
            rid = first(q, DESCRIBE_WITH_RESOURCE[action]) or ""
            return [self.existing(action, rid)]
        if action.startswith("Describe"):
            return [RequestContext.make(f"ec2:{action}", "*")]
        if action in INSTANCE_ACTIONS:
            ids = listed(q, "InstanceId") or [v for v in [first(q, "InstanceId")] if v]
            return [self.existing(action, i) for i in ids]
        if action in ("CreateTags", "DeleteTags"):
            return self._tagging(action, q)
        if action == "RunInstances":
            return self._run_instances(q)
        if action == "CreateImage":
            specs = tag_specifications(q)
            return [self.existing(action, first(q, "InstanceId") or ""),
                    self.created(action, "image", specs.get("image", {})),
                    self.created(action, "snapshot", specs.get("snapshot", {})),
                    *self.tag_on_create(specs, action)]
        if action == "DeregisterImage":
            return [self.existing(action, first(q, "ImageId") or "")]
        if action == "DeleteSnapshot":
            return [self.existing(action, first(q, "SnapshotId") or "")]
        if action == "CreateSecurityGroup":
            return self._create_group(q)
        if action in GROUP_ACTIONS:
            gid = first(q, "GroupId") or self.group_id(first(q, "GroupName") or "")
            ctx = self.existing(action, gid) if gid else RequestContext.make(f"ec2:{action}",
                                                                            None)
            specs = tag_specifications(q)
            return [ctx, *self.tag_on_create(specs, action)]
        if action == "RegisterImage":
            specs = tag_specifications(q)
            return [self.created(action, "image", specs.get("image", {})),
                    *self.tag_on_create(specs, action)]
        return [RequestContext.make(f"ec2:{action}", None)]

    def _tagging(self, action: str, q: Query) -> list[RequestContext]:
        tags = tag_list(q, "Tag")
        out = []
        for rid in listed(q, "ResourceId"):
            keys: dict[str, Sequence[str]] = dict(request_tag_keys(tags))
            if action == "DeleteTags":  # a key without a value: no aws:RequestTag for it
                for n in range(1, len(tags) + 1):
                    if f"Tag.{n}.Key" in q and f"Tag.{n}.Value" not in q:
                        keys.pop(f"aws:RequestTag/{q[f'Tag.{n}.Key'][0]}", None)
            out.append(self.existing(action, rid, keys, TAGGING | {"ec2:CreateAction"},
                                     REQUEST_TAGS))
        return out

    def _create_group(self, q: Query) -> list[RequestContext]:
        specs = tag_specifications(q)
        vpc = first(q, "VpcId")
        if vpc is None:
            default = self.be.get_default_vpc()
            vpc = default.id if default is not None else None
        out = [self.created("CreateSecurityGroup", "security-group",
                            specs.get("security-group", {}))]
        if vpc:
            out.append(self.existing("CreateSecurityGroup", vpc))
        return out + self.tag_on_create(specs, "CreateSecurityGroup")

    def _run_instances(self, q: Query) -> list[RequestContext]:
        action = "RunInstances"
        specs = tag_specifications(q)
        out = [self.existing(action, first(q, "ImageId") or "")]
        for kind in ("instance", "volume", "network-interface"):
            out.append(self.created(action, kind, specs.get(kind, {})))
        subnets = [v for k, v in q.items() if v and re.fullmatch(
            r"(NetworkInterface\.\d+\.)?SubnetId", k)]
        groups = [v[0] for k, v in q.items() if v and re.fullmatch(
            r"(NetworkInterface\.\d+\.)?SecurityGroupId(\.\d+)?", k)]
        groups += [g for name in listed(q, "SecurityGroup") if (g := self.group_id(name))]
        enis = [v[0] for k, v in q.items() if v and re.fullmatch(
            r"NetworkInterface\.\d+\.NetworkInterfaceId", k)]
        for rid in [s[0] for s in subnets] or []:
            out.append(self.existing(action, rid))
        if not subnets:  # EC2 picks the zone's default subnet
            out.append(RequestContext.make(f"ec2:{action}", self.arn("subnet", "*")))
        for rid in groups or []:
            out.append(self.existing(action, rid))
        if not groups:  # the VPC's default group
            out.append(RequestContext.make(f"ec2:{action}", self.arn("security-group", "*")))
        out += [self.existing(action, rid) for rid in enis]
        if first(q, "KeyName"):
            out.append(RequestContext.make(f"ec2:{action}",
                                           self.arn("key-pair", first(q, "KeyName") or "")))
        if first(q, "InstanceMarketOptions.MarketType") == "spot":
            out.append(self.created(action, "spot-instances-request",
                                    specs.get("spot-instances-request", {})))
        if any(k.startswith("LaunchTemplate.") for k in q):
            out.append(RequestContext.make(f"ec2:{action}", None))  # not modelled
        out += self.tag_on_create(specs, action)
        out += self._pass_role(first(q, "IamInstanceProfile.Name"),
                               first(q, "IamInstanceProfile.Arn"))
        return out

    def _pass_role(self, name: str | None, arn: str | None) -> list[RequestContext]:
        """RunInstances with an instance profile passes the profile's role to EC2."""
        if not name and not arn:
            return []
        try:
            profile = (self.iam.get_instance_profile(name) if name
                       else self.iam.get_instance_profile_by_arn(arn))
        except Exception:
            return []  # EC2 rejects the unknown profile itself
        return [pass_role(role.arn) for role in profile.roles]


def pass_role(role_arn: str) -> RequestContext:
    return RequestContext.make("iam:PassRole", role_arn,
                               {"iam:PassedToService": ["ec2.amazonaws.com"]},
                               {"iam:PassedToService"})
