"""Issue 17: the sandbox enforces the shipped IAM policies as AWS does, over real HTTP.

On the session's pool: the operator (iam/operator-policy.json and
iam/operator-roles-and-key-policy.json, the credentials the CLI and the playbooks use)
cannot tag a foreign instance into the pool, attach a managed policy to a pool role or
pass another role to EC2; the credentials instance metadata hands a worker read only its
own pool's parameters, and the token only with the pool's key; no other role, not even the
sandbox's admin, decrypts the token. Denials fail as on AWS (ClientError codes and HTTP
statuses), and hosts cannot reach moto's own API. tests/e2e/test_iam_coverage.py lists the
denials these tests provoke (EXPECTED_DENIALS)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.pool import PoolHandle

pytestmark = pytest.mark.sandbox

IMDS_CREDENTIALS = r"""python3 - <<'EOF'
import urllib.error, urllib.request
base = "http://169.254.169.254/latest/"
token = urllib.request.urlopen(urllib.request.Request(
    base + "api/token", method="PUT",
    headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})).read().decode()
def get(path):
    return urllib.request.urlopen(urllib.request.Request(
        base + path, headers={"X-aws-ec2-metadata-token": token})).read().decode()
try:
    print(get("meta-data/iam/security-credentials/" + get("meta-data/iam/security-credentials/")))
except urllib.error.HTTPError as e:
    print('{"status": %d}' % e.code)
EOF"""


def imds_credentials(pool: PoolHandle, instance_id: str) -> dict[str, Any]:
    """What the instance's own metadata service hands out (as the first boot reads it)."""
    loaded: dict[str, Any] = json.loads(pool.sandbox.exec(instance_id, IMDS_CREDENTIALS).stdout)
    return loaded


def refused(call: Any, *args: Any, **kwargs: Any) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as err:
        call(*args, **kwargs)
    response = err.value.response
    return (response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"],
            response["Error"].get("Message", ""))


def tags_of(pool: PoolHandle, instance_id: str) -> dict[str, str]:
    (reservation,) = pool.sandbox.client("ec2").describe_instances(
        InstanceIds=[instance_id])["Reservations"]
    return {t["Key"]: t["Value"] for t in reservation["Instances"][0].get("Tags", [])}


def test_the_operator_cannot_tag_a_foreign_instance_into_the_pool(
        sandbox_pool: PoolHandle, instances: list[str]) -> None:
    pool, name = sandbox_pool, sandbox_pool.pool.config.pool
    (foreign,) = pool.sandbox.run(1)  # the harness's (admin's): someone else's instance
    instances.append(foreign)
    ec2 = pool.sandbox.operator_client("ec2")
    for tags in ({"htcpool:pool": name}, {"htcpool:pool": name, "htcpool:role": "worker"},
                 {"Name": "mine now"}):
        code, status, message = refused(ec2.create_tags, Resources=[foreign], Tags=[
            {"Key": k, "Value": v} for k, v in tags.items()])
        assert (code, status) == ("UnauthorizedOperation", 403), message
        assert message.startswith("You are not authorized to perform this operation.")
    assert refused(ec2.terminate_instances, InstanceIds=[foreign])[:2] == \
        ("UnauthorizedOperation", 403)
    assert tags_of(pool, foreign) == {}
    # Nor can it give its own central manager a worker's role; a bookkeeping tag it may set.
    assert refused(ec2.create_tags, Resources=[pool.cm], Tags=[
        {"Key": "htcpool:role", "Value": "worker"}])[0] == "UnauthorizedOperation"
    ec2.create_tags(Resources=[pool.cm], Tags=[{"Key": "htcpool:iam-test", "Value": "1"}])
    pool.sandbox.client("ec2").delete_tags(Resources=[pool.cm],
                                           Tags=[{"Key": "htcpool:iam-test"}])
    assert tags_of(pool, pool.cm)["htcpool:role"] == "central-manager"
    # An instance without an instance profile gets no credentials from its metadata.
    assert imds_credentials(pool, foreign) == {"status": 404}


@pytest.fixture
def foreign_profile(sandbox_pool: PoolHandle) -> Iterator[str]:
    """A role and instance profile that are not the pool's (made by the harness)."""
    iam = sandbox_pool.sandbox.client("iam")
    name = f"iam-test-foreign-{secrets.token_hex(3)}"
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"Service": "ec2.amazonaws.com"}}]}))
    iam.create_instance_profile(InstanceProfileName=name)
    iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name)
    yield name
    iam.remove_role_from_instance_profile(InstanceProfileName=name, RoleName=name)
    iam.delete_instance_profile(InstanceProfileName=name)
    iam.delete_role(RoleName=name)


def test_the_operator_cannot_attach_a_policy_to_a_pool_role_nor_pass_another_role(
        sandbox_pool: PoolHandle, foreign_profile: str) -> None:
    pool, name = sandbox_pool, sandbox_pool.pool.config.pool
    iam = pool.sandbox.operator_client("iam")
    role = f"htcpool-{name}-instance"
    code, status, message = refused(iam.attach_role_policy, RoleName=role,
                                    PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess")
    assert (code, status) == ("AccessDenied", 403), message
    assert "iam:AttachRolePolicy" in message
    assert refused(iam.delete_role_permissions_boundary, RoleName=role)[:2] == \
        ("AccessDenied", 403)
    assert pool.sandbox.client("iam").get_role(RoleName=role)["Role"][
        "PermissionsBoundary"]["PermissionsBoundaryArn"].endswith(f"htcpool-{name}-role-boundary")
    assert pool.sandbox.client("iam").list_attached_role_policies(
        RoleName=role)["AttachedPolicies"] == []

    ec2 = pool.sandbox.operator_client("ec2")
    tagged = [{"ResourceType": kind, "Tags": [{"Key": "htcpool:pool", "Value": name},
                                              {"Key": "htcpool:role", "Value": "worker"}]}
              for kind in ("instance", "volume")]
    launch = {"ImageId": pool.sandbox.base_ami, "MinCount": 1, "MaxCount": 1,
              "InstanceType": "t3.micro", "TagSpecifications": tagged}
    code, status, message = refused(ec2.run_instances, **launch,
                                    IamInstanceProfile={"Name": foreign_profile})
    assert (code, status) == ("UnauthorizedOperation", 403), message
    assert "iam:PassRole" in message and foreign_profile in message
    # The same launch with the pool's own profile is allowed (EC2's dry run says so).
    assert refused(ec2.run_instances, **launch, DryRun=True,
                   IamInstanceProfile={"Name": role})[0] == "DryRunOperation"


@pytest.fixture
def other_pools_secrets(sandbox_pool: PoolHandle) -> Iterator[dict[str, str]]:
    """Another pool's parameter, and one in this pool's path encrypted with another key than
    the pool's (one whose key policy names only its owner, here the harness's admin)."""
    sandbox, name = sandbox_pool.sandbox, sandbox_pool.pool.config.pool
    other = f"iam-test-{secrets.token_hex(3)}"
    admin = sandbox.client("sts").get_caller_identity()["Arn"]
    kms, ssm = sandbox.client("kms"), sandbox.client("ssm")
    key = kms.create_key(Policy=json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": admin}, "Action": "kms:*",
        "Resource": "*"}]}))["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName=f"alias/htcpool-{other}", TargetKeyId=key)
    names = {"other_pool": f"/htcpool/{other}/condor_host",
             "wrong_key": f"/htcpool/{name}/iam-test-{other}"}
    ssm.put_parameter(Name=names["other_pool"], Value="someone-else", Type="String")
    ssm.put_parameter(Name=names["wrong_key"], Value="not-for-you", Type="SecureString",
                      KeyId=f"alias/htcpool-{other}")
    yield names
    ssm.delete_parameters(Names=list(names.values()))
    kms.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)


def test_worker_credentials_read_only_their_pools_parameters_with_their_pools_key(
        sandbox_pool: PoolHandle, instances: list[str], other_pools_secrets: dict[str, str]
        ) -> None:
    pool, name = sandbox_pool, sandbox_pool.pool.config.pool
    (worker,) = pool.sandbox.run(1, IamInstanceProfile={"Name": f"htcpool-{name}-instance"},
                                 MetadataOptions={"HttpTokens": "required"})
    instances.append(worker)
    creds = imds_credentials(pool, worker)
    assert creds["Code"] == "Success" and creds["AccessKeyId"].startswith("ASIA")
    sts = pool.sandbox.client_with("sts", creds)
    assert sts.get_caller_identity()["Arn"].endswith(
        f":assumed-role/htcpool-{name}-instance/{worker}")
    ssm = pool.sandbox.client_with("ssm", creds)
    # What its first boot reads: the pool's parameters, the token decrypted with the pool's key.
    own = {p["Name"]: p["Value"] for p in ssm.get_parameters(
        Names=[f"/htcpool/{name}/condor_host", f"/htcpool/{name}/worker_token"],
        WithDecryption=True)["Parameters"]}
    assert len(own) == 2 and own[f"/htcpool/{name}/worker_token"].count(".") == 2
    code, status, message = refused(ssm.get_parameters,
                                    Names=[other_pools_secrets["other_pool"]])
    assert (code, status) == ("AccessDeniedException", 400), message
    assert "ssm:GetParameters" in message
    code, status, message = refused(ssm.get_parameters, Names=[other_pools_secrets["wrong_key"]],
                                    WithDecryption=True)
    assert (code, status) == ("AccessDeniedException", 400), message
    assert "kms:Decrypt" in message
    # Nothing but the AWS APIs: moto's own API and the sandbox's control API answer only
    # the machine itself, and an unsigned call is refused.
    base = pool.sandbox.state["host_endpoint_url"]
    probe = pool.sandbox.exec(worker, f"""python3 - <<'EOF'
import urllib.error, urllib.request
for path, data in (("/moto-api/data.json", None), ("/moto-api/reset", b""),
                   ("/_sandbox/hosts", None),
                   ("/", b"Action=DescribeInstances&Version=2016-11-15")):
    try:
        urllib.request.urlopen(urllib.request.Request("{base}" + path, data=data), timeout=10)
        print(path, 200)
    except urllib.error.HTTPError as e:
        print(path, e.code)
EOF""").stdout.split()
    assert probe == ["/moto-api/data.json", "403", "/moto-api/reset", "403",
                     "/_sandbox/hosts", "403", "/", "403"], probe


def test_only_the_workers_role_and_the_operator_decrypt_the_token(
        sandbox_pool: PoolHandle) -> None:
    pool, name = sandbox_pool, sandbox_pool.pool.config.pool
    token = f"/htcpool/{name}/worker_token"
    # The central manager's own role (its instance metadata): no parameter at all.
    manager = pool.sandbox.client_with("ssm", imds_credentials(pool, pool.cm))
    code, status, message = refused(manager.get_parameters, Names=[token], WithDecryption=True)
    assert (code, status) == ("AccessDeniedException", 400), message
    # The sandbox's admin may do anything IAM allows, but the key policy does not name it.
    code, _, message = refused(pool.sandbox.client("ssm").get_parameter, Name=token,
                               WithDecryption=True)
    assert code == "AccessDeniedException" and "kms:Decrypt" in message, message
    # The operator wrote it (and reads it to compare), with the pool's key.
    written = pool.sandbox.operator_client("ssm").get_parameter(
        Name=token, WithDecryption=True)["Parameter"]
    assert written["Type"] == "SecureString" and written["Value"].count(".") == 2
    key = pool.sandbox.operator_client("ssm").describe_parameters(ParameterFilters=[
        {"Key": "Name", "Values": [token]}])["Parameters"][0]["KeyId"]
    assert key == f"alias/htcpool-{name}"


def test_the_operators_cli_acts_on_the_pools_instances_and_no_others(
        sandbox_pool: PoolHandle, instances: list[str]) -> None:
    """`htcpool` as the operator: it launches a worker (the pool's image and profile, then
    names it) and reboots and terminates it; its own guard can be overridden (--force) for
    a foreign instance, IAM's cannot."""
    pool, name = sandbox_pool, sandbox_pool.pool.config.pool
    created = json.loads(pool.htcpool("instances", "create", "-t", "t3.micro",
                                      "--json").stdout)
    (worker,) = created["instances"]
    instances.append(worker["id"])
    assert worker["instance_profile"].rsplit("/", 1)[-1] == f"htcpool-{name}-instance"
    assert tags_of(pool, worker["id"])["Name"].startswith(f"{name}-worker-")
    pool.htcpool("instances", "reboot", worker["id"], "--no-wait")
    (foreign,) = pool.sandbox.run(1, wait=False)
    instances.append(foreign)
    done = pool.htcpool("instances", "terminate", foreign, "--force", "--yes", check=False)
    assert done.returncode != 0, done.stdout
    assert "UnauthorizedOperation" in done.stdout + done.stderr, done.stdout + done.stderr
    pool.htcpool("instances", "terminate", worker["id"], "--yes")
