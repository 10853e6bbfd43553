"""`htcpool instances ...` against a moto server: tables, JSON, safety, error paths."""

from __future__ import annotations

import json
from typing import Any

from orchestrator.errors import ExitStatus
from tests.support.cli import one_line_error

POOL = "testpool"


def test_list_table_shows_only_the_pool(aws: Any, cli: Any) -> None:
    r = cli("instances", "list")
    assert r.code == 0, r.err
    for header in ("ID", "Name", "AMI", "Type", "State", "Monitoring", "Private IP", "Role"):
        assert header in r.out
    for iid in [aws.cm, *aws.workers]:
        assert iid in r.out
    assert aws.other_pool not in r.out and aws.untagged not in r.out
    assert "central-manager" in r.out and "3 instance(s)" in r.out


def test_list_json_records(aws: Any, cli: Any) -> None:
    r = cli("instances", "list", "--json")
    assert r.code == 0, r.err
    rows = json.loads(r.out)
    assert {row["id"] for row in rows} == {aws.cm, *aws.workers}
    cm = next(row for row in rows if row["id"] == aws.cm)
    assert cm["role"] == "central-manager" and cm["pool"] == POOL
    assert cm["state"] == "running" and cm["private_ip"].startswith("198.18.0.")
    assert set(cm) >= {"name", "image_id", "instance_type", "monitoring", "tags"}


def test_list_filters_by_state_role_and_pool(aws: Any, cli: Any) -> None:
    aws.ec2.stop_instances(InstanceIds=[aws.workers[0]])
    stopped = json.loads(cli("instances", "list", "--state", "stopped", "--json").out)
    assert [row["id"] for row in stopped] == [aws.workers[0]]
    workers = json.loads(cli("instances", "list", "--role", "worker", "--json").out)
    assert {row["id"] for row in workers} == set(aws.workers)
    other = json.loads(cli("--pool", "otherpool", "instances", "list", "--json").out)
    assert [row["id"] for row in other] == [aws.other_pool]
    everything = cli("instances", "list", "--all")
    assert aws.untagged in everything.out and "otherpool" in everything.out


def test_list_rejects_unknown_state(aws: Any, cli: Any) -> None:
    r = cli("instances", "list", "--state", "sleeping")
    assert r.code == ExitStatus.USAGE and "sleeping" in r.err


def test_stop_start_reboot_terminate_wait_for_state(aws: Any, cli: Any) -> None:
    w = aws.workers[0]
    r = cli("instances", "stop", w, "--json")
    assert r.code == 0, r.err
    out = json.loads(r.out)
    assert out["requested"] == [w] and out["waited"] and out["instances"][0]["state"] == "stopped"
    assert "stopped" in r.err  # progress on stderr
    assert aws.state(w) == "stopped"
    r = cli("instances", "start", w)
    assert r.code == 0 and aws.state(w) == "running"
    r = cli("instances", "reboot", w)
    assert r.code == 0, r.err
    r = cli("instances", "terminate", "--yes", w)
    assert r.code == 0 and aws.state(w) == "terminated"


def test_no_wait_and_already_there(aws: Any, cli: Any) -> None:
    w = aws.workers[1]
    r = cli("instances", "start", w, "--json")
    assert r.code == 0 and json.loads(r.out)["skipped"] == [w]
    assert "already running" in r.err
    r = cli("instances", "stop", "--no-wait", w, "--json")
    assert r.code == 0 and not json.loads(r.out)["waited"]


def test_dry_run_changes_nothing(aws: Any, cli: Any) -> None:
    w = aws.workers[0]
    for action in ("stop", "reboot", "terminate"):
        r = cli("instances", action, "--dry-run", w)
        assert r.code == 0, r.err
        assert f"dry run: would {action} {w}" in r.err
    assert aws.state(w) == "running"


def test_unknown_and_malformed_ids(aws: Any, cli: Any) -> None:
    r = cli("instances", "stop", "i-0123456789abcdef0")
    assert r.code == ExitStatus.NOT_FOUND
    assert "i-0123456789abcdef0" in one_line_error(r)
    r = cli("instances", "start", "bogus")
    assert r.code == ExitStatus.NOT_FOUND and "'bogus' is not an instance id" in one_line_error(r)


def test_instances_outside_the_pool_are_refused_unless_forced(aws: Any, cli: Any) -> None:
    for iid in (aws.untagged, aws.other_pool):
        r = cli("instances", "stop", iid)
        assert r.code == ExitStatus.REFUSED
        line = one_line_error(r)
        assert iid in line and "--force" in line
        assert aws.state(iid) == "running"
    r = cli("instances", "stop", "--force", aws.untagged)
    assert r.code == 0 and aws.state(aws.untagged) == "stopped"


def test_an_instance_tagged_into_the_pool_but_not_launched_by_it_is_refused(
        aws: Any, cli: Any) -> None:
    """The tags say "worker of testpool"; its image and (missing) profile say otherwise."""
    foreign = aws.ec2.run_instances(
        ImageId=aws.base_ami, MinCount=1, MaxCount=1, InstanceType="t3.micro",
        SubnetId=aws.subnet, TagSpecifications=[{"ResourceType": "instance", "Tags": [
            {"Key": "htcpool:pool", "Value": "testpool"},
            {"Key": "htcpool:role", "Value": "worker"}]}])["Instances"][0]["InstanceId"]
    for action in ("stop", "reboot"):
        r = cli("instances", action, foreign)
        assert r.code == ExitStatus.REFUSED
        line = one_line_error(r)
        assert foreign in line and "not launched by it" in line and "--force" in line
    assert aws.state(foreign) == "running"
    r = cli("instances", "stop", "--force", foreign)
    assert r.code == 0 and aws.state(foreign) == "stopped"


def test_mixed_batch_is_refused_as_a_whole(aws: Any, cli: Any) -> None:
    r = cli("instances", "stop", aws.workers[0], aws.untagged)
    assert r.code == ExitStatus.REFUSED
    assert aws.state(aws.workers[0]) == "running"


def test_central_manager_protected(aws: Any, cli: Any) -> None:
    r = cli("instances", "terminate", "--yes", aws.cm)
    assert r.code == ExitStatus.REFUSED and "central manager" in one_line_error(r)
    assert aws.state(aws.cm) == "running"


def test_wrong_state_for_action(aws: Any, cli: Any) -> None:
    w = aws.workers[0]
    aws.ec2.terminate_instances(InstanceIds=[w])
    r = cli("instances", "start", w)
    assert r.code == ExitStatus.REFUSED
    assert f"cannot start {w}: it is terminated" in one_line_error(r)
    aws.ec2.stop_instances(InstanceIds=[aws.workers[1]])
    r = cli("instances", "reboot", aws.workers[1])
    assert r.code == ExitStatus.REFUSED and "it is stopped" in one_line_error(r)


def test_terminate_asks_first(aws: Any, cli: Any) -> None:
    w = aws.workers[0]
    r = cli("instances", "terminate", w, stdin="n\n")
    assert r.code == ExitStatus.REFUSED and "not confirmed" in r.err
    assert aws.state(w) == "running"
    r = cli("instances", "terminate", w, stdin="y\n")
    assert r.code == 0 and aws.state(w) == "terminated"


def test_create_uses_newest_image_pool_network_and_imdsv2(aws: Any, cli: Any) -> None:
    r = cli("instances", "create", "--count", "2", "--client-token", "tok-abc", "--json")
    assert r.code == 0, r.err
    out = json.loads(r.out)
    assert out["client_token"] == "tok-abc" and len(out["instances"]) == 2
    newest = aws.images["20260301-000000"]
    for row in out["instances"]:
        raw = aws.raw(row["id"])
        assert raw["ImageId"] == newest and raw["State"]["Name"] == "running"
        assert raw["SubnetId"] == aws.subnet
        assert {g["GroupId"] for g in raw["SecurityGroups"]} == {aws.sg}
        assert raw["MetadataOptions"]["HttpTokens"] == "required"
        assert raw["MetadataOptions"]["HttpPutResponseHopLimit"] == 1
        assert raw["MetadataOptions"]["InstanceMetadataTags"] == "enabled"
        profile = raw["IamInstanceProfile"]["Arn"].rsplit("/", 1)[-1]
        assert profile == f"htcpool-{POOL}-instance"
        assert raw["ClientToken"].startswith("tok-abc-")
        tags = {t["Key"]: t["Value"] for t in raw["Tags"]}
        assert tags["htcpool:pool"] == POOL and tags["htcpool:role"] == "worker"
        assert tags["htcpool:launched-by"] == "cli"
        assert tags["Name"].startswith(f"{POOL}-worker-")
    listed = json.loads(cli("instances", "list", "--role", "worker", "--json").out)
    assert len(listed) == 4


def test_create_table_and_explicit_ami(aws: Any, cli: Any) -> None:
    old = aws.images["20260101-000000"]
    r = cli("instances", "create", "--ami", old, "--type", "t3.small")
    assert r.code == 0, r.err
    assert old in r.out and "t3.small" in r.out and "client token" in r.err


def test_create_dry_run_launches_nothing(aws: Any, cli: Any) -> None:
    r = cli("instances", "create", "--count", "3", "--dry-run", "--json")
    assert r.code == 0, r.err
    plan = json.loads(r.out)
    assert plan["dry_run"] and plan["count"] == 3 and plan["subnets"] == [aws.subnet]
    listed = json.loads(cli("instances", "list", "--json").out)
    assert len(listed) == 3


def test_create_unknown_ami(aws: Any, cli: Any) -> None:
    r = cli("instances", "create", "--ami", "ami-12345678")
    assert r.code == ExitStatus.NOT_FOUND and "unknown AMI ami-12345678" in one_line_error(r)


def test_create_without_images_says_what_to_do(aws: Any, cli: Any) -> None:
    r = cli("--pool", "otherpool", "instances", "create")
    assert r.code == ExitStatus.NOT_FOUND
    assert "no worker image" in one_line_error(r)
