"""A moto server on 127.0.0.1 (same boto3 code path as production, via endpoint_url) and a
seeded pool: a VPC, a subnet and a worker security group tagged with the pool, the worker
instance profile, a central manager, two workers, one instance of another pool, one untagged
instance, and three versioned worker images."""

from __future__ import annotations

import io
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.support.cli import isolate_aws_env

POOL = "testpool"
REGION = "us-east-1"


@dataclass
class Seeded:
    endpoint: str
    ec2: Any
    ssm: Any
    cm: str
    workers: list[str]
    other_pool: str
    untagged: str
    subnet: str
    sg: str
    base_ami: str
    images: dict[str, str] = field(default_factory=dict)  # version -> ami

    def state(self, iid: str) -> str:
        inst = self.ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
        return str(inst["State"]["Name"])

    def raw(self, iid: str) -> dict[str, Any]:
        res = self.ec2.describe_instances(InstanceIds=[iid])["Reservations"]
        return dict(res[0]["Instances"][0])


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    from orchestrator.sandbox import moto_fixes

    moto_fixes.apply()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def _tags(pool: str | None, role: str | None, name: str) -> list[dict[str, Any]]:
    tags = [{"Key": "Name", "Value": name}]
    if pool:
        tags.append({"Key": "htcpool:pool", "Value": pool})
    if role:
        tags.append({"Key": "htcpool:role", "Value": role})
    return [{"ResourceType": "instance", "Tags": tags}]


@pytest.fixture(scope="session")
def seed_clients(moto_endpoint: str) -> dict[str, Any]:
    """boto3 clients for seeding, made once (loading service models costs ~0.3 s each)."""
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                            region_name=REGION)
    return {name: session.client(name, endpoint_url=moto_endpoint)
            for name in ("ec2", "ssm", "iam")}


@pytest.fixture()
def aws(moto_endpoint: str, seed_clients: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Any) -> Seeded:
    # moto builds each region's backend on first use after a reset; without its ~1,000
    # built-in AMIs that takes milliseconds instead of a second (read at that moment).
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
    urllib.request.urlopen(urllib.request.Request(f"{moto_endpoint}/moto-api/reset",
                                                  method="POST")).read()
    isolate_aws_env(monkeypatch, tmp_path, moto_endpoint, REGION, POOL)

    ec2, ssm, iam = seed_clients["ec2"], seed_clients["ssm"], seed_clients["iam"]
    for profile in (f"htcpool-{POOL}-instance", f"htcpool-{POOL}-central-manager"):
        iam.create_instance_profile(InstanceProfileName=profile)
    base_ami = ec2.register_image(Name="debian-13-base", RootDeviceName="/dev/xvda",
                                  Architecture="x86_64")["ImageId"]
    vpc = ec2.create_vpc(CidrBlock="198.18.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="198.18.0.0/24", AvailabilityZone="us-east-1a",
                               TagSpecifications=[{"ResourceType": "subnet", "Tags": [
                                   {"Key": "htcpool:pool", "Value": POOL}]}])["Subnet"]["SubnetId"]
    sg = ec2.create_security_group(
        GroupName=f"{POOL}-worker", Description="workers", VpcId=vpc,
        TagSpecifications=[{"ResourceType": "security-group", "Tags": [
            {"Key": "htcpool:pool", "Value": POOL},
            {"Key": "htcpool:role", "Value": "worker"}]}])["GroupId"]

    def run(pool: str | None, role: str | None, name: str, count: int = 1,
            image: str = base_ami, profile: str | None = None) -> list[str]:
        reply = ec2.run_instances(ImageId=image, MinCount=count, MaxCount=count,
                                  InstanceType="t3.micro", SubnetId=subnet,
                                  TagSpecifications=_tags(pool, role, name),
                                  **({"IamInstanceProfile": {"Name": profile}}
                                     if profile else {}))
        return [i["InstanceId"] for i in reply["Instances"]]

    # As the pool launches them: the central manager with its profile, the workers from
    # the newest worker image (baked from a builder, gone since) with the workers' profile.
    cm = run(POOL, "central-manager", f"{POOL}-central-manager",
             profile=f"htcpool-{POOL}-central-manager")[0]
    builder = run(None, None, f"{POOL}-builder")[0]
    other = run("otherpool", "worker", "otherpool-worker")[0]
    untagged = run(None, None, "someone-elses")[0]
    images = {}
    for version in ("20260101-000000", "20260301-000000", "20260201-000000"):
        ami = ec2.create_image(InstanceId=builder, Name=f"{POOL}-worker-{version}",
                               TagSpecifications=[{"ResourceType": "image", "Tags": [
                                   {"Key": "htcpool:pool", "Value": POOL},
                                   {"Key": "htcpool:role", "Value": "worker-image"},
                                   {"Key": "htcpool:version", "Value": version}]}])["ImageId"]
        images[version] = ami
    ec2.terminate_instances(InstanceIds=[builder])
    workers = run(POOL, "worker", f"{POOL}-worker", 2, image=images["20260301-000000"],
                  profile=f"htcpool-{POOL}-instance")
    return Seeded(moto_endpoint, ec2, ssm, cm, workers, other, untagged, subnet, sg, base_ami,
                  images)


@pytest.fixture()
def cli() -> Any:
    """Run `htcpool ARGS...` in-process through main(); returns code, stdout, stderr."""

    def invoke(*args: str, stdin: str = "") -> Result:
        from orchestrator.cli import main

        out, err = io.StringIO(), io.StringIO()
        code = 0
        old_stdin = sys.stdin
        sys.stdin = io.StringIO(stdin)
        try:
            with redirect_stdout(out), redirect_stderr(err):
                main(list(args))
        except SystemExit as exc:
            code = int(exc.code or 0)
        finally:
            sys.stdin = old_stdin
        return Result(code, out.getvalue(), err.getvalue())

    return invoke
