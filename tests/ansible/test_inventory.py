"""inventory/aws_ec2.yml against a local EC2 API (moto server on 127.0.0.1): the groups the
playbooks use come from the pool and role tags, and other pools' instances are left out."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import boto3
import pytest
import yaml

from tests.support.ansible import BIN, REPO


def plain(value: object) -> object:
    """ansible-inventory --list marks strings as {"__ansible_unsafe": ...}."""
    if isinstance(value, dict) and set(value) == {"__ansible_unsafe"}:
        return value["__ansible_unsafe"]
    return value


@pytest.fixture
def endpoint(moto_endpoint: str) -> str:
    return moto_endpoint


def test_groups_come_from_the_tags(endpoint: str, tmp_path: Path) -> None:
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=endpoint,
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]

    def launch(pool: str, role: str) -> str:
        tags = [{"Key": "htcpool:pool", "Value": pool}, {"Key": "htcpool:role", "Value": role}]
        answer = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, InstanceType="t3.micro",
                                   TagSpecifications=[{"ResourceType": "instance", "Tags": tags}])
        return str(answer["Instances"][0]["InstanceId"])

    cm = launch("htcpool", "central-manager")
    workers = {launch("htcpool", "worker"), launch("htcpool", "worker")}
    other = launch("other", "worker")

    # The sandbox does the same: the project's file plus an endpoint and credentials.
    data = yaml.safe_load((REPO / "inventory" / "aws_ec2.yml").read_text())
    data.update({"endpoint_url": endpoint, "aws_access_key_id": "testing",
                 "aws_secret_access_key": "testing"})
    inventory = tmp_path / "aws_ec2.yml"
    inventory.write_text(yaml.safe_dump(data))
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
               ANSIBLE_HOME=str(tmp_path / "home"))
    proc = subprocess.run([str(BIN / "ansible-inventory"), "-i", str(inventory), "--list"],
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    listing = json.loads(proc.stdout)
    assert listing["htcondor_central_manager"]["hosts"] == [cm]
    assert set(listing["htcondor_workers"]["hosts"]) == workers
    assert set(listing["role_worker"]["hosts"]) == workers
    assert other not in json.dumps(listing)
    hostvars = {k: plain(v) for k, v in listing["_meta"]["hostvars"][cm].items()}
    assert hostvars["ansible_host"] == hostvars["private_ip_address"]
    assert hostvars["instance_id"] == cm
    assert str(hostvars["private_dns_name"]).endswith(".internal")
    assert str(hostvars["ansible_host"]).count(".") == 3
