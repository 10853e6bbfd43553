"""aws_resources.yml and teardown.yml against a local AWS API (moto server on 127.0.0.1):
idempotent provisioning, and a teardown that removes the pool's resources and nothing else."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.support.ansible import BIN, REPO


@pytest.fixture
def endpoint(moto_endpoint: str) -> str:
    return moto_endpoint


def client(service: str, endpoint: str) -> Any:
    return boto3.client(service, region_name="us-east-1", endpoint_url=endpoint,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def play(endpoint: str, tmp_path: Path, playbook: str, *extra: str) -> tuple[int, str, int]:
    env = dict(os.environ)
    env.update({
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"),
        "ANSIBLE_HOME": str(tmp_path / "home"),
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    })
    env.pop("AWS_PROFILE", None)
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", "localhost,",
                           str(REPO / "playbooks" / playbook), *extra],
                          env=env, capture_output=True, text=True, timeout=600, check=False)
    out = proc.stdout + proc.stderr
    match = re.search(r"localhost\s*:\s*ok=\d+\s+changed=(\d+)", out)
    return proc.returncode, out, int(match.group(1)) if match else -1


def test_aws_resources_are_idempotent_and_least_privilege(endpoint: str, tmp_path: Path) -> None:
    rc, out, changed = play(endpoint, tmp_path, "aws_resources.yml")
    assert rc == 0, out
    assert changed > 0
    ec2 = client("ec2", endpoint)
    (group,) = ec2.describe_security_groups(GroupNames=["htcpool-htcpool"])["SecurityGroups"]
    assert {"Key": "htcpool:pool", "Value": "htcpool"} in group["Tags"]
    (rule,) = group["IpPermissions"]
    assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 9618, 9618)
    assert rule["IpRanges"] == [] and rule["Ipv6Ranges"] == []
    assert [p["GroupId"] for p in rule["UserIdGroupPairs"]] == [group["GroupId"]]
    iam = client("iam", endpoint)
    iam.get_instance_profile(InstanceProfileName="htcpool-htcpool-instance")
    # Both roles carry the pool's permissions boundary (iam/role-boundary-policy.json).
    boundary = "arn:aws:iam::123456789012:policy/htcpool-htcpool-role-boundary"
    for role in ("htcpool-htcpool-instance", "htcpool-htcpool-central-manager"):
        got = iam.get_role(RoleName=role)["Role"]["PermissionsBoundary"]
        assert got["PermissionsBoundaryArn"] == boundary
    # Inline policies only: the SSM agent's, and this pool's parameters.
    attached = iam.list_attached_role_policies(RoleName="htcpool-htcpool-instance")
    assert attached["AttachedPolicies"] == []
    assert set(inline_policies(iam, "htcpool-htcpool-instance")) == {
        "htcpool-parameters", "htcpool-ssm-agent"}
    inline = iam.get_role_policy(RoleName="htcpool-htcpool-instance",
                                 PolicyName="htcpool-parameters")["PolicyDocument"]
    assert inline["Statement"][0]["Resource"] == \
        "arn:aws:ssm:us-east-1:123456789012:parameter/htcpool/htcpool/*"
    agent = json.dumps(iam.get_role_policy(RoleName="htcpool-htcpool-instance",
                                           PolicyName="htcpool-ssm-agent")["PolicyDocument"])
    assert "ssm:GetParameter" not in agent
    # The pool's key: rotated, and its policy names the caller and the workers' role.
    kms = client("kms", endpoint)
    key = kms.describe_key(KeyId="alias/htcpool-htcpool")["KeyMetadata"]
    assert key["KeyManager"] == "CUSTOMER" and key["Enabled"]
    assert kms.get_key_rotation_status(KeyId=key["KeyId"])["KeyRotationEnabled"]
    policy = kms.get_key_policy(KeyId=key["KeyId"], PolicyName="default")["Policy"]
    assert "${" not in policy
    assert "arn:aws:iam::123456789012:role/htcpool-htcpool-instance" in policy
    caller = client("sts", endpoint).get_caller_identity()["Arn"]
    admin = {s["Sid"]: s for s in json.loads(policy)["Statement"]}["TheOperatorAdministersTheKey"]
    assert admin["Principal"] == {"AWS": caller}

    rc, out, changed = play(endpoint, tmp_path, "aws_resources.yml")
    assert rc == 0, out
    assert changed == 0, out


def inline_policies(iam: Any, role: str) -> dict[str, Any]:
    return {name: iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
            for name in iam.list_role_policies(RoleName=role)["PolicyNames"]}


def test_central_manager_role_has_the_autoscaler_policy_only_when_enabled(
        endpoint: str, tmp_path: Path) -> None:
    iam = client("iam", endpoint)
    cm_role, worker_role = "htcpool-htcpool-central-manager", "htcpool-htcpool-instance"
    playbook = REPO / "tests" / "ansible" / "playbooks" / "aws_resources_facts.yml"
    rc, out, _ = play(endpoint, tmp_path, str(playbook))
    assert rc == 0, out
    assert f"profiles workers={worker_role} central_manager={cm_role}" in out
    (holder,) = iam.get_instance_profile(InstanceProfileName=cm_role)["InstanceProfile"]["Roles"]
    assert holder["RoleName"] == cm_role
    assert holder["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "ec2.amazonaws.com"}
    tags = iam.get_role(RoleName=cm_role)["Role"]["Tags"]
    assert {"Key": "htcpool:pool", "Value": "htcpool"} in tags
    attached = iam.list_attached_role_policies(RoleName=cm_role)["AttachedPolicies"]
    assert attached == []
    # The SSM agent's needs only: the central manager reads no parameter.
    assert set(inline_policies(iam, cm_role)) == {"htcpool-ssm-agent"}

    rc, out, changed = play(endpoint, tmp_path, "aws_resources.yml",
                            "-e", "htcpool_central_manager_autoscaler=true")
    assert rc == 0, out
    assert changed == 1, out
    policies = inline_policies(iam, cm_role)
    assert set(policies) == {"htcpool-ssm-agent", "htcpool-autoscaler"}
    autoscaler = json.dumps(policies["htcpool-autoscaler"])
    assert "${" not in autoscaler
    assert "arn:aws:iam::123456789012:role/htcpool-htcpool-instance" in autoscaler
    assert "arn:aws:dynamodb:us-east-1:123456789012:table/htcpool-htcpool-lease" in autoscaler
    # The workers' role gains nothing.
    assert set(inline_policies(iam, worker_role)) == {"htcpool-parameters", "htcpool-ssm-agent"}

    rc, out, changed = play(endpoint, tmp_path, "aws_resources.yml",
                            "-e", "htcpool_central_manager_autoscaler=true")
    assert rc == 0, out
    assert changed == 0, out

    rc, out, changed = play(endpoint, tmp_path, "aws_resources.yml")
    assert rc == 0, out
    assert changed == 1, out
    assert set(inline_policies(iam, cm_role)) == {"htcpool-ssm-agent"}


def test_the_central_manager_is_launched_with_its_profile_and_workers_with_theirs(
        endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sandbox's (and the demo's) central manager, then a worker launched the way the
    autoscaler launches them (its LaunchSpec)."""
    from orchestrator.autoscaler.runtime.build import launch_spec_source
    from orchestrator.aws.ec2 import Cloud
    from orchestrator.aws.records import LaunchRequest
    from orchestrator.config import Config
    from orchestrator.sandbox.pool import launch_central_manager
    from orchestrator.vocabulary import LaunchedBy

    rc, out, _ = play(endpoint, tmp_path, "aws_resources.yml",
                      "-e", "htcpool_central_manager_autoscaler=true")
    assert rc == 0, out
    for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    ec2 = client("ec2", endpoint)
    base = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    config = Config(pool="htcpool", region="us-east-1", endpoint_url=endpoint)
    cloud = Cloud(config)

    cm = launch_central_manager(cloud, {"base_ami": base})

    def profile(instance_id: str) -> str:
        (reservation,) = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        return str(reservation["Instances"][0]["IamInstanceProfile"]["Arn"]).rsplit("/", 1)[-1]

    assert profile(cm) == "htcpool-htcpool-central-manager"
    ec2.create_image(InstanceId=cm, Name="htcpool-htcpool-worker-20260101-000000",
                     TagSpecifications=[{"ResourceType": "image", "Tags": [
                         {"Key": "htcpool:pool", "Value": "htcpool"},
                         {"Key": "htcpool:role", "Value": "worker-image"},
                         {"Key": "htcpool:version", "Value": "20260101-000000"}]}])
    spec = launch_spec_source(cloud, config)()
    assert spec.instance_profile == "htcpool-htcpool-instance"
    (worker,) = cloud.launch(LaunchRequest(
        count=1, image_id=spec.image_id, instance_types=["t3.micro"], subnets=spec.subnets,
        security_groups=spec.security_groups, instance_profile=spec.instance_profile,
        launched_by=LaunchedBy.AUTOSCALER))
    assert profile(worker.id) == "htcpool-htcpool-instance"
    assert launch_central_manager(cloud, {"base_ami": base}) == cm  # reused, not relaunched


def test_teardown_needs_confirmation(endpoint: str, tmp_path: Path) -> None:
    rc, out, _ = play(endpoint, tmp_path, "teardown.yml")
    assert rc != 0
    assert "htcpool_teardown_confirm=htcpool" in out


def test_teardown_removes_the_pools_resources_and_nothing_else(endpoint: str,
                                                               tmp_path: Path) -> None:
    rc, out, _ = play(endpoint, tmp_path, "aws_resources.yml",
                      "-e", "htcpool_central_manager_autoscaler=true")
    assert rc == 0, out
    ec2 = client("ec2", endpoint)
    ssm = client("ssm", endpoint)
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]

    def launch(tags: dict[str, str]) -> str:
        spec = [{"ResourceType": "instance",
                 "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}] if tags else []
        reservation = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1,
                                        InstanceType="t3.micro", TagSpecifications=spec)
        return str(reservation["Instances"][0]["InstanceId"])

    ours = launch({"htcpool:pool": "htcpool", "htcpool:role": "worker"})
    other_pool = launch({"htcpool:pool": "other", "htcpool:role": "worker"})
    untagged = launch({})
    image = ec2.create_image(InstanceId=ours, Name="htcpool-htcpool-worker-20260101-000000",
                             TagSpecifications=[{"ResourceType": "image", "Tags": [
                                 {"Key": "htcpool:pool", "Value": "htcpool"},
                                 {"Key": "htcpool:role", "Value": "worker-image"}]}])["ImageId"]
    other_image = ec2.create_image(InstanceId=other_pool, Name="someone-elses")["ImageId"]
    ssm.put_parameter(Name="/htcpool/htcpool/condor_host", Value="cm", Type="String")
    ssm.put_parameter(Name="/htcpool/other/condor_host", Value="cm2", Type="String")

    rc, out, _ = play(endpoint, tmp_path, "teardown.yml", "-e", "htcpool_teardown_confirm=htcpool")
    assert rc == 0, out

    states = {i["InstanceId"]: i["State"]["Name"]
              for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]}
    assert states[ours] == "terminated"
    assert states[other_pool] == "running"
    assert states[untagged] == "running"
    images = {i["ImageId"] for i in ec2.describe_images(Owners=["self"])["Images"]}
    assert image not in images and other_image in images
    names = {p["Name"] for p in ssm.describe_parameters()["Parameters"]}
    assert names == {"/htcpool/other/condor_host"}
    groups = [g["GroupName"] for g in ec2.describe_security_groups()["SecurityGroups"]]
    assert "htcpool-htcpool" not in groups
    tables = client("dynamodb", endpoint).list_tables()["TableNames"]
    assert "htcpool-htcpool-lease" not in tables
    iam = client("iam", endpoint)
    roles = [r["RoleName"] for r in iam.list_roles()["Roles"]]
    profiles = [p["InstanceProfileName"] for p in iam.list_instance_profiles()["InstanceProfiles"]]
    for name in ("htcpool-htcpool-instance", "htcpool-htcpool-central-manager"):
        assert name not in roles and name not in profiles
    kms = client("kms", endpoint)
    assert kms.describe_key(KeyId="alias/htcpool-htcpool")["KeyMetadata"]["KeyState"] == \
        "PendingDeletion"


def test_teardown_leaves_a_central_manager_role_it_did_not_create(endpoint: str,
                                                                  tmp_path: Path) -> None:
    """A role that happens to have the name, without the pool's tag, stays."""
    iam = client("iam", endpoint)
    trust = (REPO / "iam" / "instance-trust-policy.json").read_text()
    iam.create_role(RoleName="htcpool-htcpool-central-manager", AssumeRolePolicyDocument=trust)
    rc, out, _ = play(endpoint, tmp_path, "teardown.yml", "-e", "htcpool_teardown_confirm=htcpool")
    assert rc == 0, out
    assert [r["RoleName"] for r in iam.list_roles()["Roles"]] == [
        "htcpool-htcpool-central-manager"]


def test_bake_cleans_up_leftover_builders_and_rotates_images(endpoint: str,
                                                             tmp_path: Path) -> None:
    """The bake's own steps that need no builder host: a re-run terminates builders a failed
    run left behind (and only those), and rotation keeps the newest N images of the pool
    and deregisters the others with their snapshots."""
    ec2 = client("ec2", endpoint)
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]

    def launch(tags: dict[str, str]) -> str:
        spec = [{"ResourceType": "instance",
                 "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]
        return str(ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, InstanceType="t3.micro",
                                     TagSpecifications=spec)["Instances"][0]["InstanceId"])

    leftover = launch({"htcpool:pool": "htcpool", "htcpool:role": "builder"})
    ec2.stop_instances(InstanceIds=[leftover])
    worker = launch({"htcpool:pool": "htcpool", "htcpool:role": "worker"})
    other_builder = launch({"htcpool:pool": "other", "htcpool:role": "builder"})

    images = {}
    for version in ("20260101-000000", "20260201-000000", "20260301-000000", "20260401-000000"):
        images[version] = ec2.create_image(
            InstanceId=worker, Name=f"htcpool-htcpool-worker-{version}",
            TagSpecifications=[{"ResourceType": "image", "Tags": [
                {"Key": "htcpool:pool", "Value": "htcpool"},
                {"Key": "htcpool:role", "Value": "worker-image"},
                {"Key": "htcpool:version", "Value": version}]}])["ImageId"]
    other_image = ec2.create_image(InstanceId=other_builder, Name="other-image",
                                   TagSpecifications=[{"ResourceType": "image", "Tags": [
                                       {"Key": "htcpool:pool", "Value": "other"},
                                       {"Key": "htcpool:role", "Value": "worker-image"},
                                       {"Key": "htcpool:version", "Value": "20200101-000000"}]}]
                                   )["ImageId"]
    snapshots = {
        version: [m["Ebs"]["SnapshotId"] for m in
                  ec2.describe_images(ImageIds=[image])["Images"][0]["BlockDeviceMappings"]
                  if "Ebs" in m]
        for version, image in images.items()}

    rc, out, _ = play(endpoint, tmp_path, "bake_worker_image.yml", "--tags", "cleanup,rotate",
                      "-e", "htcpool_bake_keep_images=2")
    assert rc == 0, out

    states = {i["InstanceId"]: i["State"]["Name"]
              for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]}
    assert states[leftover] == "terminated"
    assert states[worker] == "running" and states[other_builder] == "running"
    remaining = {i["ImageId"] for i in ec2.describe_images(Owners=["self"])["Images"]}
    assert remaining == {images["20260301-000000"], images["20260401-000000"], other_image}
    left = ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]
    left_snapshots = {s["SnapshotId"] for s in left}
    for version in ("20260101-000000", "20260201-000000"):
        assert not set(snapshots[version]) & left_snapshots


def test_master_publishes_the_pool_parameters_idempotently(endpoint: str,
                                                            tmp_path: Path) -> None:
    token = "eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJodGNwb29sIn0.c2ln"
    playbook = REPO / "tests" / "ansible" / "playbooks" / "publish_ssm.yml"
    for expected_changes in (2, 0):
        rc, out, changed = play(endpoint, tmp_path, str(playbook), "-e",
                                f"htcpool_test_token={token}")
        assert rc == 0, out
        assert changed == expected_changes, out
        assert token not in out
    ssm = client("ssm", endpoint)
    host = ssm.get_parameter(Name="/htcpool/htcpool/condor_host")["Parameter"]
    assert (host["Type"], host["Value"]) == ("String", "ip-10-0-0-4.ec2.internal")
    secret = ssm.get_parameter(Name="/htcpool/htcpool/worker_token",
                               WithDecryption=True)["Parameter"]
    assert (secret["Type"], secret["Value"]) == ("SecureString", token)
    tags = ssm.list_tags_for_resource(ResourceType="Parameter",
                                      ResourceId="/htcpool/htcpool/worker_token")["TagList"]
    assert {"Key": "htcpool:pool", "Value": "htcpool"} in tags
