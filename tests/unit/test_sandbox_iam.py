"""Issue 17: the sandbox's IAM evaluator (orchestrator/sandbox/iam_policy.py), and the
shipped policies (iam/*.json, placeholders filled in as aws_resources.yml does) evaluated
against the request contexts the sandbox builds for real calls (iam_ec2, iam_services),
without a server: the operator cannot move a foreign instance into the pool, attach a
managed policy to a pool role or pass another role; a worker reads only its own pool's
parameters; only the workers' role (and the operator who writes it) decrypts the token."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from orchestrator.sandbox.iam_ec2 import Ec2Contexts
from orchestrator.sandbox.iam_enforce import decide
from orchestrator.sandbox.iam_policy import (
    Caller,
    Decision,
    PrincipalMatch,
    RequestContext,
    combine_with_resource_policy,
    evaluate,
    evaluate_resource_policy,
)
from orchestrator.sandbox.iam_principals import render
from orchestrator.sandbox.iam_services import Check, iam_checks, kms_via_ssm, ssm_checks

ACCOUNT, REGION, POOL = "123456789012", "us-east-1", "htcpool"
OPERATOR = Caller(f"arn:aws:iam::{ACCOUNT}:user/htcpool-htcpool-operator",
                  f"arn:aws:iam::{ACCOUNT}:user/htcpool-htcpool-operator", ACCOUNT)


def role_session(role: str, session: str = "i-0123456789abcdef0") -> Caller:
    return Caller(f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{session}",
                  f"arn:aws:iam::{ACCOUNT}:role/{role}", ACCOUNT)


WORKER = role_session("htcpool-htcpool-instance")
MANAGER = role_session("htcpool-htcpool-central-manager")
ADMIN = Caller(f"arn:aws:iam::{ACCOUNT}:user/htcpool-sandbox-admin",
               f"arn:aws:iam::{ACCOUNT}:user/htcpool-sandbox-admin", ACCOUNT)


def doc(name: str, pool: str = POOL) -> dict[str, Any]:
    text = render(name, pool, REGION, ACCOUNT).replace("${OperatorArn}", OPERATOR.arn)
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def operator_docs(pool: str = POOL) -> list[dict[str, Any]]:
    return [doc("operator-policy.json", pool), doc("operator-roles-and-key-policy.json", pool)]


WORKER_DOCS = [doc("instance-policy.json"), doc("instance-ssm-agent-policy.json")]
MANAGER_DOCS = [doc("instance-ssm-agent-policy.json"),
                doc("central-manager-autoscaler-policy.json")]
ADMIN_DOCS = [{"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}]


def allowed(checks: list[Check] | list[RequestContext], caller: Caller,
            documents: list[dict[str, Any]]) -> bool:
    """Every authorization of one call allowed, as the sandbox server decides it."""
    return all(decide(c if isinstance(c, Check) else Check(c), caller, documents, None,
                      REGION).allowed for c in checks)


# --- fakes of moto's records the context builders read -------------------------------------

BOUNDARY = f"arn:aws:iam::{ACCOUNT}:policy/htcpool-htcpool-role-boundary"


@dataclass
class Named:
    arn: str
    name: str = ""
    roles: list[Any] = field(default_factory=list)
    path: str = "/"
    permissions_boundary_arn: str | None = None


@dataclass
class FakeIam:
    profiles: dict[str, Named] = field(default_factory=dict)
    unbounded: set[str] = field(default_factory=set)  # roles made without the boundary

    def get_instance_profile(self, name: str) -> Named:
        return self.profiles[name]

    def get_role(self, name: str) -> Named:
        boundary = None if name in self.unbounded or not name.startswith("htcpool-") \
            else BOUNDARY
        return Named(f"arn:aws:iam::{ACCOUNT}:role/{name}", name,
                     permissions_boundary_arn=boundary)


@dataclass
class FakeEc2:
    tags: dict[str, dict[str, str]] = field(default_factory=dict)

    def get_security_group_by_name_or_id(self, name: str, vpc: str | None = None) -> Any:
        return None

    def get_default_vpc(self) -> Any:
        return Named("", "vpc-1")


def profile(name: str) -> Named:
    return Named(f"arn:aws:iam::{ACCOUNT}:instance-profile/{name}", name,
                 [Named(f"arn:aws:iam::{ACCOUNT}:role/{name}", name)])


IAM = FakeIam({p: profile(p) for p in ("htcpool-htcpool-instance",
                                       "htcpool-htcpool-central-manager",
                                       "someone-elses-admin-role")})
POOL_TAGS = {"htcpool:pool": POOL, "htcpool:role": "worker", "htcpool:launched-by": "autoscaler"}
EC2 = FakeEc2(tags={
    "i-foreign": {"Name": "someone else's"},
    "i-otherpool": {"htcpool:pool": "other", "htcpool:role": "worker"},
    "i-worker": dict(POOL_TAGS),
    "i-manager": {"htcpool:pool": POOL, "htcpool:role": "central-manager"},
    "ami-worker": {"htcpool:pool": POOL, "htcpool:role": "worker-image"},
    "ami-base": {},
})
CONTEXTS = Ec2Contexts(EC2, IAM, REGION, ACCOUNT)


def ec2(action: str, **query: str) -> list[RequestContext]:
    return CONTEXTS.contexts(action, {k: [v] for k, v in query.items()})


def tags(prefix: str, values: dict[str, str]) -> dict[str, str]:
    out = {}
    for n, (key, value) in enumerate(values.items(), 1):
        out[f"{prefix}.{n}.Key"] = key
        out[f"{prefix}.{n}.Value"] = value
    return out


def run_instances(image: str = "ami-base", profile_name: str = "htcpool-htcpool-instance",
                  instance_tags: dict[str, str] | None = None) -> list[RequestContext]:
    given = POOL_TAGS if instance_tags is None else instance_tags
    query = {"ImageId": image, "SubnetId": "subnet-1", "SecurityGroupId.1": "sg-1",
             "IamInstanceProfile.Name": profile_name,
             "TagSpecification.1.ResourceType": "instance",
             **tags("TagSpecification.1.Tag", given),
             "TagSpecification.2.ResourceType": "volume",
             **tags("TagSpecification.2.Tag", dict(list(given.items())[:2]))}
    return ec2("RunInstances", **query)


# --- the evaluator ---------------------------------------------------------------------------

def policy(*statements: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"Version": "2012-10-17", "Statement": list(statements)}]


def ctx(action: str = "ec2:StopInstances", resource: str | None = "arn:aws:ec2:x:1:instance/i-1",
        keys: dict[str, list[str]] | None = None) -> RequestContext:
    return RequestContext.make(action, resource, keys or {},
                               {"aws:TagKeys", "ec2:CreateAction"},
                               ("aws:ResourceTag/", "aws:RequestTag/"))


def test_allow_needs_action_and_resource_and_matches_like_iam() -> None:
    allow = {"Effect": "Allow", "Action": "EC2:stop*", "Resource": "arn:aws:ec2:x:1:instance/*"}
    assert evaluate(policy(allow), ctx()).allowed
    assert not evaluate(policy(allow), ctx("ec2:StartInstances")).allowed
    assert not evaluate(policy(allow), ctx(resource="arn:aws:ec2:x:1:volume/v-1")).allowed
    assert not evaluate([], ctx()).allowed


def test_an_explicit_deny_wins() -> None:
    allow = {"Effect": "Allow", "Action": "*", "Resource": "*"}
    deny = {"Effect": "Deny", "Action": "ec2:StopInstances", "Resource": "*",
            "Condition": {"StringEquals": {"aws:ResourceTag/htcpool:role": "central-manager"}}}
    manager = ctx(keys={"aws:ResourceTag/htcpool:role": ["central-manager"]})
    assert not evaluate(policy(allow, deny), manager).allowed
    assert evaluate(policy(allow, deny), manager).denied_explicitly
    assert evaluate(policy(allow, deny), ctx(keys={"aws:ResourceTag/htcpool:role": ["worker"]}))\
        .allowed


def test_not_action_and_not_resource() -> None:
    everything_but_terminate = {"Effect": "Allow", "NotAction": "ec2:TerminateInstances",
                                "Resource": "*"}
    assert evaluate(policy(everything_but_terminate), ctx()).allowed
    assert not evaluate(policy(everything_but_terminate), ctx("ec2:TerminateInstances")).allowed
    not_volumes = {"Effect": "Allow", "Action": "ec2:*", "NotResource": "arn:aws:ec2:*:*:volume/*"}
    assert evaluate(policy(not_volumes), ctx()).allowed
    assert not evaluate(policy(not_volumes), ctx(resource="arn:aws:ec2:x:1:volume/v-1")).allowed


@pytest.mark.parametrize(("condition", "keys", "holds"), [
    ({"StringEquals": {"aws:ResourceTag/htcpool:pool": "p"}}, {}, False),
    ({"StringNotEquals": {"aws:ResourceTag/htcpool:pool": "p"}}, {}, True),
    ({"StringEqualsIfExists": {"aws:ResourceTag/htcpool:pool": "p"}}, {}, True),
    ({"StringLike": {"aws:ResourceTag/htcpool:pool": "p*"}},
     {"aws:ResourceTag/htcpool:pool": ["pool"]}, True),
    ({"Null": {"aws:ResourceTag/htcpool:pool": "true"}}, {}, True),
    ({"Null": {"aws:ResourceTag/htcpool:pool": "false"}}, {}, False),
    # ForAllValues holds for an empty set; ForAnyValue does not.
    ({"ForAllValues:StringEquals": {"aws:TagKeys": ["Name"]}}, {}, True),
    ({"ForAnyValue:StringEquals": {"aws:TagKeys": ["Name"]}}, {}, False),
    ({"ForAllValues:StringNotEquals": {"aws:TagKeys": ["htcpool:pool"]}},
     {"aws:TagKeys": ["Name", "htcpool:pool"]}, False),
    ({"ForAllValues:StringNotEquals": {"aws:TagKeys": ["htcpool:pool"]}},
     {"aws:TagKeys": ["Name"]}, True),
    # Condition key names are case-insensitive.
    ({"StringEquals": {"AWS:resourcetag/htcpool:pool": "p"}},
     {"aws:ResourceTag/htcpool:pool": ["p"]}, True),
])
def test_conditions(condition: dict[str, Any], keys: dict[str, list[str]], holds: bool) -> None:
    allow = {"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": condition}
    assert evaluate(policy(allow), ctx(keys=keys)).allowed is holds


@pytest.mark.parametrize("condition", [
    {"StringEquals": {"ec2:InstanceType": "t3.micro"}},          # a key not modelled
    {"NumericLessThan": {"aws:MultiFactorAuthAge": "3600"}},     # an operator not modelled
    {"StringEquals": {"aws:ResourceTag/owner": "${aws:username}"}},  # a policy variable
])
def test_fails_closed_on_what_it_does_not_model(condition: dict[str, Any]) -> None:
    """Never an Allow, always a Deny: the statement might have matched on AWS."""
    allow = {"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": condition}
    decision = evaluate(policy(allow), ctx())
    assert not decision.allowed and "fail closed" in decision.reason
    deny = {**allow, "Effect": "Deny"}
    anything = {"Effect": "Allow", "Action": "*", "Resource": "*"}
    assert evaluate(policy(anything, deny), ctx()).denied_explicitly


def test_an_action_whose_resource_is_not_modelled_needs_an_unconditional_star() -> None:
    unknown = ctx("ec2:AssociateAddress", None)
    assert evaluate(policy({"Effect": "Allow", "Action": "*", "Resource": "*"}), unknown).allowed
    scoped = {"Effect": "Allow", "Action": "*", "Resource": "arn:aws:ec2:*:*:instance/*"}
    assert not evaluate(policy(scoped), unknown).allowed


def test_resource_policies_name_the_caller_or_defer_to_iam() -> None:
    key_ctx = ctx("kms:Decrypt", "arn:aws:kms:x:1:key/k")
    direct = {"Statement": [{"Effect": "Allow", "Principal": {"AWS": WORKER.principal_arn},
                             "Action": "kms:Decrypt", "Resource": "*"}]}
    match, decision = evaluate_resource_policy(direct, key_ctx, WORKER)
    assert match is PrincipalMatch.DIRECT and decision.allowed
    assert not evaluate_resource_policy(direct, key_ctx, MANAGER)[1].allowed
    account = {"Statement": [{"Effect": "Allow",
                              "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                              "Action": "kms:*", "Resource": "*"}]}
    match, decision = evaluate_resource_policy(account, key_ctx, MANAGER)
    assert match is PrincipalMatch.ACCOUNT
    no_iam = Decision(False, "no statement allows it")
    assert not combine_with_resource_policy(no_iam, match, decision).allowed
    assert combine_with_resource_policy(Decision(True, "ok"), match, decision).allowed


# --- the operator ------------------------------------------------------------------------------

def test_the_operator_cannot_tag_a_foreign_instance_into_the_pool() -> None:
    docs = operator_docs()
    for instance in ("i-foreign", "i-otherpool"):
        for key, value in (("htcpool:pool", POOL), ("Name", "mine now")):
            assert not allowed(ec2("CreateTags", **{"ResourceId.1": instance},
                                   **tags("Tag", {key: value})), OPERATOR, docs), (instance, key)
    # Its own instances: bookkeeping tags yes, never a pool, role or launched-by tag.
    assert allowed(ec2("CreateTags", **{"ResourceId.1": "i-worker"},
                       **tags("Tag", {"Name": "htcpool-worker-1"})), OPERATOR, docs)
    for key in ("htcpool:role", "htcpool:pool", "htcpool:launched-by"):
        assert not allowed(ec2("CreateTags", **{"ResourceId.1": "i-manager"},
                               **tags("Tag", {key: "worker"})), OPERATOR, docs), key
    # Untagging: only the autoscaler's bookkeeping tags.
    assert allowed(ec2("DeleteTags", **{"ResourceId.1": "i-worker"},
                       **{"Tag.1.Key": "htcpool:idle-since"}), OPERATOR, docs)
    assert not allowed(ec2("DeleteTags", **{"ResourceId.1": "i-worker"},
                           **{"Tag.1.Key": "htcpool:pool"}), OPERATOR, docs)
    # ...and what it cannot tag it cannot stop or terminate either.
    assert not allowed(ec2("TerminateInstances", **{"InstanceId.1": "i-foreign"}), OPERATOR, docs)
    assert allowed(ec2("TerminateInstances", **{"InstanceId.1": "i-worker"}), OPERATOR, docs)


def test_the_operator_launches_only_instances_tagged_for_its_pool() -> None:
    docs = operator_docs()
    assert allowed(run_instances(), OPERATOR, docs)
    assert not allowed(run_instances(instance_tags={"Name": "x"}), OPERATOR, docs)
    assert not allowed(run_instances(instance_tags={"htcpool:pool": "other"}), OPERATOR, docs)
    # Tagging on creation needs ec2:CreateTags with ec2:CreateAction (granted with the tag).
    tag_on_create = [c for c in run_instances() if c.action == "ec2:CreateTags"]
    assert {c.resource for c in tag_on_create} == {
        f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/*", f"arn:aws:ec2:{REGION}:{ACCOUNT}:volume/*"}


def test_the_operator_passes_only_the_pools_roles_to_ec2() -> None:
    docs = operator_docs()
    assert allowed(run_instances(profile_name="htcpool-htcpool-central-manager"), OPERATOR, docs)
    contexts = run_instances(profile_name="someone-elses-admin-role")
    (pass_role,) = [c for c in contexts if c.action == "iam:PassRole"]
    assert pass_role.resource == f"arn:aws:iam::{ACCOUNT}:role/someone-elses-admin-role"
    assert not allowed([pass_role], OPERATOR, docs)
    assert allowed([c for c in contexts if c is not pass_role], OPERATOR, docs)


def iam_call(action: str, iam: FakeIam = IAM, **query: str) -> list[Check]:
    return iam_checks(action, {k: [v] for k, v in query.items()}, iam, ACCOUNT)


def test_the_operator_cannot_attach_a_managed_policy_to_a_pool_role() -> None:
    docs = operator_docs()
    admin_policy = "arn:aws:iam::aws:policy/AdministratorAccess"
    assert not allowed(iam_call("AttachRolePolicy", RoleName="htcpool-htcpool-instance",
                                PolicyArn=admin_policy), OPERATOR, docs)
    # Detaching: only the managed policy earlier versions of the playbook attached.
    assert allowed(iam_call("DetachRolePolicy", RoleName="htcpool-htcpool-instance",
                            PolicyArn="arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"),
                   OPERATOR, docs)
    assert not allowed(iam_call("DetachRolePolicy", RoleName="htcpool-htcpool-instance",
                                PolicyArn=admin_policy), OPERATOR, docs)
    # Putting a role in an instance profile passes it: only the pool's roles.
    assert allowed(iam_call("AddRoleToInstanceProfile",
                            InstanceProfileName="htcpool-htcpool-instance",
                            RoleName="htcpool-htcpool-instance"), OPERATOR, docs)
    assert not allowed(iam_call("AddRoleToInstanceProfile",
                                InstanceProfileName="htcpool-htcpool-instance",
                                RoleName="someone-elses-admin-role"), OPERATOR, docs)


def test_the_operator_writes_role_policies_only_within_the_pools_boundary() -> None:
    docs = operator_docs()
    assert allowed(iam_call("PutRolePolicy", RoleName="htcpool-htcpool-instance"),
                   OPERATOR, docs)
    assert not allowed(iam_call("PutRolePolicy", RoleName="htcpool-other-instance"),
                       OPERATOR, docs)
    unbounded = FakeIam(IAM.profiles, {"htcpool-htcpool-instance"})
    assert not allowed(iam_call("PutRolePolicy", unbounded, RoleName="htcpool-htcpool-instance"),
                       OPERATOR, docs)
    assert allowed(iam_call("PutRolePermissionsBoundary", unbounded,
                            RoleName="htcpool-htcpool-instance", PermissionsBoundary=BOUNDARY),
                   OPERATOR, docs)
    assert not allowed(iam_call("PutRolePermissionsBoundary", unbounded,
                                RoleName="htcpool-htcpool-instance",
                                PermissionsBoundary=admin_arn()), OPERATOR, docs)
    assert not allowed(iam_call("DeleteRolePermissionsBoundary",
                                RoleName="htcpool-htcpool-instance"), OPERATOR, docs)
    assert allowed(iam_call("CreateRole", RoleName="htcpool-htcpool-central-manager",
                            PermissionsBoundary=BOUNDARY), OPERATOR, docs)
    assert not allowed(iam_call("CreateRole", RoleName="htcpool-htcpool-central-manager"),
                       OPERATOR, docs)


def admin_arn() -> str:
    return "arn:aws:iam::aws:policy/AdministratorAccess"


# --- the instance roles -------------------------------------------------------------------------

def parameters(*names: str) -> list[Check]:
    return ssm_checks("GetParameters", {"Names": list(names), "WithDecryption": True}, REGION,
                      ACCOUNT, CONTEXTS.instance_for_ssm)


def test_a_worker_reads_only_its_own_pools_parameters() -> None:
    assert allowed(parameters("/htcpool/htcpool/condor_host", "/htcpool/htcpool/worker_token"),
                   WORKER, WORKER_DOCS)
    assert not allowed(parameters("/htcpool/other/worker_token"), WORKER, WORKER_DOCS)
    assert not allowed(parameters("/htcpool/htcpool/condor_host", "/htcpool/other/condor_host"),
                       WORKER, WORKER_DOCS)
    # The central manager's role reads none (the SSM agent's policy has no GetParameter).
    assert not allowed(parameters("/htcpool/htcpool/condor_host"), MANAGER, MANAGER_DOCS)


@dataclass
class FakeKey:
    pool: str
    account_id: str = ACCOUNT
    region: str = REGION
    id: str = "11111111-2222-3333-4444-555555555555"

    @property
    def arn(self) -> str:
        return f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{self.id}"

    @property
    def aliases(self) -> dict[str, Any]:
        return {f"alias/htcpool-{self.pool}": None}

    @property
    def policy(self) -> str:
        return json.dumps(doc("pool-key-policy.json", self.pool))


def decrypt(caller: Caller, documents: list[dict[str, Any]], key: FakeKey,
            parameter: str = "/htcpool/htcpool/worker_token") -> bool:
    arn = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{parameter}"
    return decide(kms_via_ssm("Decrypt", key, arn, REGION, ACCOUNT), caller, documents, None,
                  REGION).allowed


def test_only_the_workers_role_decrypts_the_pools_token() -> None:
    key = FakeKey(POOL)
    assert decrypt(WORKER, WORKER_DOCS, key)
    assert decrypt(OPERATOR, operator_docs(), key)  # it writes the token
    assert not decrypt(MANAGER, MANAGER_DOCS, key)
    # Not even an administrator of the account: the key policy does not name it.
    assert not decrypt(ADMIN, ADMIN_DOCS, key)
    # Another pool's workers, with their own (identical) policies for their pool.
    other_worker = role_session("htcpool-other-instance")
    other_docs = [doc("instance-policy.json", "other")]
    assert not decrypt(other_worker, other_docs, key)
    # Through SSM only, and only for the pool's own parameters.
    assert not decrypt(WORKER, WORKER_DOCS, key, "/somewhere/else")
    direct = kms_via_ssm("Decrypt", key, "x", REGION, ACCOUNT)
    no_ssm = Check(RequestContext.make("kms:Decrypt", key.arn, {
        k: v for k, v in direct.ctx.keys.items() if k != "kms:viaservice"},
        direct.ctx.modelled, direct.ctx.prefixes), direct.resource_policy)
    assert not decide(no_ssm, WORKER, WORKER_DOCS, None, REGION).allowed


def test_a_worker_cannot_decrypt_with_another_pools_key() -> None:
    assert not decrypt(WORKER, WORKER_DOCS, FakeKey("other", id="99999999-2222-3333-4444-5555"))


def test_a_permissions_boundary_caps_what_the_policies_allow() -> None:
    stop = ec2("StopInstances", **{"InstanceId.1": "i-worker"})
    check = Check(stop[0])
    assert decide(check, MANAGER, ADMIN_DOCS, None, REGION).allowed
    boundary = policy({"Effect": "Allow", "Action": "ec2:Describe*", "Resource": "*"})
    assert not decide(check, MANAGER, ADMIN_DOCS, boundary, REGION).allowed


# --- the central manager's autoscaler ------------------------------------------------------------

def test_the_autoscaler_tags_and_stops_only_the_pools_workers() -> None:
    docs = MANAGER_DOCS
    assert allowed(run_instances(image="ami-worker"), MANAGER, docs)
    assert not allowed(run_instances(image="ami-base"), MANAGER, docs)  # not the pool's image
    assert not allowed(run_instances(image="ami-worker",
                                     profile_name="htcpool-htcpool-central-manager"),
                       MANAGER, docs)
    assert allowed(ec2("CreateTags", **{"ResourceId.1": "i-worker"},
                       **tags("Tag", {"htcpool:idle-since": "1"})), MANAGER, docs)
    assert not allowed(ec2("CreateTags", **{"ResourceId.1": "i-foreign"},
                           **tags("Tag", {"htcpool:pool": POOL})), MANAGER, docs)
    assert not allowed(ec2("TerminateInstances", **{"InstanceId.1": "i-manager"}), MANAGER, docs)
    assert allowed(ec2("TerminateInstances", **{"InstanceId.1": "i-worker"}), MANAGER, docs)


# --- instance metadata's credentials ------------------------------------------------------------

def test_instance_metadata_hands_out_expiring_sessions_of_the_profiles_role() -> None:
    """IMDS serves a real STS session of the instance profile's role (the sandbox then
    authorizes it with that role's policies), renews it an hour after it was made, as EC2
    does, and serves nothing for a role EC2 may not assume."""
    import datetime

    from orchestrator.sandbox.iam_principals import Principals

    principals = Principals(account="210987654321", region=REGION)  # moto's records, apart
    trust = render("instance-trust-policy.json", POOL, REGION, "210987654321")
    role = principals.iam.create_role("htcpool-imds-test-instance", trust, "/", None, "", [],
                                      None)
    creds = principals.instance_credentials("i-0123456789abcdef0", role)
    assert creds is not None and creds["AccessKeyId"].startswith("ASIA")
    expiry = datetime.datetime.strptime(creds["Expiration"], "%Y-%m-%dT%H:%M:%SZ")
    left = expiry.replace(tzinfo=datetime.UTC) - datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(hours=5) < left <= datetime.timedelta(hours=6)
    assert principals.label(creds["AccessKeyId"]) == "role:htcpool-imds-test-instance"
    again = principals.instance_credentials("i-0123456789abcdef0", role)
    assert again is not None and again["AccessKeyId"] == creds["AccessKeyId"]
    arn, session, made = principals.sessions["i-0123456789abcdef0"]
    principals.sessions["i-0123456789abcdef0"] = (arn, session, made - 3601)
    renewed = principals.instance_credentials("i-0123456789abcdef0", role)
    assert renewed is not None and renewed["AccessKeyId"] != creds["AccessKeyId"]
    lambda_only = principals.iam.create_role(
        "imds-test-lambda", trust.replace("ec2.amazonaws.com", "lambda.amazonaws.com"), "/",
        None, "", [], None)
    assert principals.instance_credentials("i-0fedcba9876543210", lambda_only) is None
