"""The sandbox behaves like EC2 and SSM, and its instances are real hosts.

Every check looks at the hosts themselves (processes, files, sshd, network), never only at
what the emulator reports.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.support.sandbox import SandboxHandle, wait_for

pytestmark = pytest.mark.sandbox


def _describe(sandbox: SandboxHandle, iid: str) -> dict:  # type: ignore[type-arg]
    res = sandbox.client("ec2").describe_instances(InstanceIds=[iid])["Reservations"]
    return res[0]["Instances"][0]  # type: ignore[no-any-return]


def _host(sandbox: SandboxHandle, iid: str) -> dict:  # type: ignore[type-arg]
    return next(h for h in sandbox.hosts() if h["instance_id"] == iid)


def _ssh(sandbox: SandboxHandle, address: str, cmd: str) -> subprocess.CompletedProcess[str]:
    key = sandbox.state["ssh"]["private_key"]
    return subprocess.run(
        ["ssh", "-i", key, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5", "-o", "BatchMode=yes",
         f"root@{address}", cmd], capture_output=True, text=True, timeout=60)


def _run_ssm(sandbox: SandboxHandle, ids: list[str], script: str,
             timeout_s: int | None = None) -> str:
    params = {"commands": [script]}
    if timeout_s is not None:
        params["executionTimeout"] = [str(timeout_s)]
    resp = sandbox.client("ssm").send_command(InstanceIds=ids, DocumentName="AWS-RunShellScript",
                                              Parameters=params)
    return str(resp["Command"]["CommandId"])


def _invocation(sandbox: SandboxHandle, cid: str, iid: str) -> dict:  # type: ignore[type-arg]
    ssm = sandbox.client("ssm")

    def done() -> dict | None:  # type: ignore[type-arg]
        inv = ssm.get_command_invocation(CommandId=cid, InstanceId=iid)
        return inv if inv["Status"] not in ("Pending", "InProgress", "Delayed") else None
    return wait_for(done, timeout=120, interval=0.1, what="the SSM command")  # type: ignore[no-any-return]


def test_run_instances_boots_real_hosts(sandbox: SandboxHandle, instances: list[str]) -> None:
    resp = sandbox.client("ec2").run_instances(ImageId=sandbox.base_ami, MinCount=2, MaxCount=2,
                                               InstanceType="t3.small")
    ids = [i["InstanceId"] for i in resp["Instances"]]
    instances += ids
    assert {i["State"]["Name"] for i in resp["Instances"]} == {"pending"}
    sandbox.client("ec2").get_waiter("instance_running").wait(
        InstanceIds=ids, WaiterConfig={"Delay": 1})
    described = [_describe(sandbox, i) for i in ids]
    for inst in described:
        address, name = inst["PrivateIpAddress"], inst["PrivateDnsName"]
        assert address.startswith(sandbox.settings.vpc_cidr.rsplit(".", 2)[0] + ".")
        # sshd answers with the sandbox's key, and the host is who EC2 says it is
        ssh = _ssh(sandbox, address, "hostname -f; ip -4 -o addr show eth0")
        assert ssh.returncode == 0, ssh.stderr
        assert ssh.stdout.splitlines()[0] == name
        assert f"inet {address}/" in ssh.stdout
        state = sandbox.exec(inst["InstanceId"], "systemctl is-system-running || true").stdout
        assert state.strip() in ("running", "degraded")
        assert "systemd" in sandbox.exec(inst["InstanceId"], "cat /proc/1/comm").stdout
    # every host resolves every other host's private DNS name through /etc/hosts
    a, b = described
    got = sandbox.exec(a["InstanceId"], f"getent hosts {b['PrivateDnsName']}").stdout
    assert got.split()[0] == b["PrivateIpAddress"]
    assert sandbox.exec(a["InstanceId"], "cat /etc/resolv.conf").stdout.strip() == ""


def test_stop_start_keeps_the_disk_and_reboot_reboots(sandbox: SandboxHandle,
                                                      instances: list[str]) -> None:
    ec2 = sandbox.client("ec2")
    (iid,) = sandbox.run(1)
    instances.append(iid)
    sandbox.exec(iid, "echo kept > /var/tmp/ebs-marker")
    ec2.stop_instances(InstanceIds=[iid])
    ec2.get_waiter("instance_stopped").wait(InstanceIds=[iid], WaiterConfig={"Delay": 1})
    host = _host(sandbox, iid)
    assert host["nspawn_pid"] is None, "a stopped instance has no running host"
    assert not Path(host["disk"], "root", "etc").exists(), "its root is unmounted"
    with pytest.raises(ClientError, match="IncorrectInstanceState"):
        ec2.reboot_instances(InstanceIds=[iid])
    ec2.start_instances(InstanceIds=[iid])
    ec2.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig={"Delay": 1})
    assert sandbox.exec(iid, "cat /var/tmp/ebs-marker").stdout.strip() == "kept"

    sandbox.exec(iid, "touch /run/before-reboot")  # /run is a tmpfs: a reboot clears it
    before = _host(sandbox, iid)["nspawn_pid"]
    ec2.reboot_instances(InstanceIds=[iid])

    def rebooted() -> bool:
        host = _host(sandbox, iid)
        if not host["nspawn_pid"] or host["nspawn_pid"] == before:
            return False
        proc = sandbox.exec(iid, "test ! -e /run/before-reboot && systemctl is-system-running",
                            check=False)
        return proc.stdout.strip() in ("running", "degraded")
    wait_for(rebooted, timeout=120, what="the reboot")
    assert _describe(sandbox, iid)["State"]["Name"] == "running"
    assert sandbox.exec(iid, "cat /var/tmp/ebs-marker").stdout.strip() == "kept"


def test_terminate_removes_the_host(sandbox: SandboxHandle, instances: list[str]) -> None:
    (iid,) = sandbox.run(1)
    instances.append(iid)
    host = _host(sandbox, iid)
    sandbox.terminate([iid])
    assert not Path(f"/run/netns/{sandbox.settings.prefix}-{iid}").exists()
    assert not Path(host["disk"]).exists()
    assert not Path(f"/proc/{host['nspawn_pid']}").exists()
    with pytest.raises(ClientError, match="IncorrectInstanceState"):
        sandbox.client("ec2").start_instances(InstanceIds=[iid])


def test_create_image_then_launch_from_it(sandbox: SandboxHandle, instances: list[str]) -> None:
    ec2 = sandbox.client("ec2")
    (builder,) = sandbox.run(1)
    instances.append(builder)
    sandbox.exec(builder, "mkdir -p /opt/baked && echo layer-one > /opt/baked/file && "
                          "rm /usr/bin/less")
    ec2.stop_instances(InstanceIds=[builder])
    ec2.get_waiter("instance_stopped").wait(InstanceIds=[builder], WaiterConfig={"Delay": 1})
    image = ec2.create_image(InstanceId=builder, Name="test-image-1")["ImageId"]
    ec2.get_waiter("image_available").wait(ImageIds=[image], WaiterConfig={"Delay": 1})
    with pytest.raises(ClientError, match=r"InvalidAMIName\.Duplicate"):
        ec2.create_image(InstanceId=builder, Name="test-image-1")
    (child,) = sandbox.run(1, image_id=image)
    instances.append(child)
    assert sandbox.exec(child, "cat /opt/baked/file").stdout.strip() == "layer-one"
    assert sandbox.exec(child, "test -e /usr/bin/less", check=False).returncode != 0, \
        "a file deleted before the snapshot stays deleted"
    assert _describe(sandbox, child)["ImageId"] == image
    # an image of an image stacks layers
    sandbox.exec(child, "echo layer-two > /opt/baked/second")
    grandchild_image = ec2.create_image(InstanceId=child, Name="test-image-2")["ImageId"]
    ec2.get_waiter("image_available").wait(ImageIds=[grandchild_image],
                                           WaiterConfig={"Delay": 1})
    (grandchild,) = sandbox.run(1, image_id=grandchild_image)
    instances.append(grandchild)
    assert sandbox.exec(grandchild, "cat /opt/baked/file /opt/baked/second").stdout.split() == \
        ["layer-one", "layer-two"]
    ec2.deregister_image(ImageId=grandchild_image)
    assert not ec2.describe_images(Filters=[{"Name": "name", "Values": ["test-image-2"]}])[
        "Images"]


def test_unknown_or_empty_images_fail_clearly(sandbox: SandboxHandle) -> None:
    ec2 = sandbox.client("ec2")
    with pytest.raises(ClientError, match="InvalidAMIID"):
        ec2.run_instances(ImageId="ami-0123456789abcdef0", MinCount=1, MaxCount=1)
    empty = ec2.register_image(Name="no-rootfs-behind-this")["ImageId"]
    with pytest.raises(ClientError) as err:
        ec2.run_instances(ImageId=empty, MinCount=1, MaxCount=1)
    assert err.value.response["Error"]["Code"] == "InvalidAMIID.Unavailable"
    assert "no root filesystem" in err.value.response["Error"]["Message"]
    ec2.deregister_image(ImageId=empty)


def test_ssm_runs_commands_on_exactly_the_targeted_hosts(sandbox: SandboxHandle,
                                                         instances: list[str]) -> None:
    ids = sandbox.run(2)
    instances += ids
    target, other = ids
    ssm = sandbox.client("ssm")
    cid = _run_ssm(sandbox, [target], "hostname; echo oops >&2; exit 3")
    inv = _invocation(sandbox, cid, target)
    assert inv["Status"] == "Failed"
    assert inv["ResponseCode"] == 3
    assert inv["StandardOutputContent"].strip() == _describe(sandbox, target)["PrivateDnsName"]
    assert inv["StandardErrorContent"].strip() == "oops"
    listed = ssm.list_command_invocations(CommandId=cid)["CommandInvocations"]
    assert [i["InstanceId"] for i in listed] == [target]
    with pytest.raises(ClientError):
        ssm.get_command_invocation(CommandId=cid, InstanceId=other)

    ok = _invocation(sandbox, _run_ssm(sandbox, [other], "id -u"), other)
    assert (ok["Status"], ok["ResponseCode"], ok["StandardOutputContent"].strip()) == \
        ("Success", 0, "0")

    cid = _run_ssm(sandbox, [target], "echo started; sleep 60", timeout_s=2)
    inv = ssm.get_command_invocation(CommandId=cid, InstanceId=target)
    assert inv["Status"] == "InProgress"
    inv = _invocation(sandbox, cid, target)
    assert inv["Status"] == "TimedOut"
    # The kill is sent before TimedOut is reported; the container's init reaps it soon after.
    wait_for(lambda: sandbox.exec(target, "pgrep -x sleep", check=False).returncode != 0,
             timeout=30, interval=0.5, what="a timed-out command to be killed")

    tag = sandbox.client("ec2")
    tag.create_tags(Resources=[other], Tags=[{"Key": "ssm-test", "Value": "yes"}])
    resp = ssm.send_command(Targets=[{"Key": "tag:ssm-test", "Values": ["yes"]}],
                            DocumentName="AWS-RunShellScript",
                            Parameters={"commands": ["true"]})
    assert resp["Command"]["InstanceIds"] == [other]

    sandbox.client("ec2").stop_instances(InstanceIds=[other])
    with pytest.raises(ClientError, match="InvalidInstanceId"):
        ssm.send_command(InstanceIds=[other], DocumentName="AWS-RunShellScript",
                         Parameters={"commands": ["true"]})


def _install_from_sandbox_repo(sandbox: SandboxHandle, iid: str, packages: str) -> None:
    repo = sandbox.state["apt_repo"]
    sandbox.exec(iid, f"""set -e
install -d -m 0755 /etc/apt/keyrings
python3 -c 'import urllib.request,sys; sys.stdout.buffer.write(urllib.request.urlopen(
    "{repo['key_url']}").read())' > /etc/apt/keyrings/htcpool-sandbox.asc
echo "deb [signed-by=/etc/apt/keyrings/htcpool-sandbox.asc] {repo['url']} {repo['suite']} main" \
    > /etc/apt/sources.list.d/htcpool-sandbox.list
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {packages} >/dev/null
""")


def test_imds_and_parameter_store_from_a_host(sandbox: SandboxHandle,
                                               instances: list[str]) -> None:
    iam = sandbox.client("iam")
    iam.create_role(RoleName="sandbox-test-worker", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"Service": "ec2.amazonaws.com"}}]}))
    # The sandbox enforces IAM: the instance's role may read that parameter and nothing else.
    iam.put_role_policy(RoleName="sandbox-test-worker", PolicyName="read-the-secret",
                        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{
                            "Effect": "Allow", "Action": "ssm:GetParameter",
                            "Resource": "arn:aws:ssm:*:*:parameter/sandbox-test/*"}]}))
    iam.create_instance_profile(InstanceProfileName="sandbox-test-worker")
    iam.add_role_to_instance_profile(InstanceProfileName="sandbox-test-worker",
                                     RoleName="sandbox-test-worker")
    sandbox.client("ssm").put_parameter(Name="/sandbox-test/secret", Value="s3cr3t-value",
                                        Type="SecureString")
    (iid,) = sandbox.run(
        1, IamInstanceProfile={"Name": "sandbox-test-worker"},
        MetadataOptions={"HttpTokens": "required", "InstanceMetadataTags": "enabled"},
        TagSpecifications=[{"ResourceType": "instance",
                            "Tags": [{"Key": "htcpool:pool", "Value": "imds-test"}]}])
    instances.append(iid)
    _install_from_sandbox_repo(sandbox, iid, "python3-boto3")
    script = r"""
import json, os, urllib.error, urllib.request
assert "AWS_EC2_METADATA_SERVICE_ENDPOINT" not in os.environ  # the real address, as on EC2
base = "http://169.254.169.254/latest/"
try:
    urllib.request.urlopen(base + "meta-data/instance-id")
    v1 = "allowed"
except urllib.error.HTTPError as e:
    v1 = e.code
tok = urllib.request.urlopen(urllib.request.Request(base + "api/token", method="PUT",
      headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})).read().decode()
get = lambda p: urllib.request.urlopen(urllib.request.Request(
      base + p, headers={"X-aws-ec2-metadata-token": tok})).read().decode()
import boto3
# as on EC2: the region from instance metadata, credentials from the instance profile
ssm = boto3.client("ssm", region_name=get("meta-data/placement/region"))
value = ssm.get_parameter(Name="/sandbox-test/secret", WithDecryption=True)["Parameter"]["Value"]
try:
    ssm.put_parameter(Name="/sandbox-test/other", Value="x", Type="String")
    denied = None
except Exception as e:
    denied = e.response["Error"]["Code"]
me = boto3.client("sts", region_name=ssm.meta.region_name).get_caller_identity()["Arn"]
print(json.dumps({"v1": v1, "id": get("meta-data/instance-id"), "me": me, "denied": denied,
                  "region": get("meta-data/placement/region"),
                  "pool": get("meta-data/tags/instance/htcpool:pool"),
                  "role": get("meta-data/iam/security-credentials/"),
                  "secret": value, "region_from_botocore": ssm.meta.region_name}))
"""
    out = sandbox.exec(iid, f"python3 -c '{script}'").stdout
    got = json.loads(out)
    assert got == {"v1": 401, "id": iid, "region": "us-east-1", "pool": "imds-test",
                   "role": "sandbox-test-worker", "secret": "s3cr3t-value",
                   "region_from_botocore": "us-east-1", "denied": "AccessDeniedException",
                   "me": f"arn:aws:sts::123456789012:assumed-role/sandbox-test-worker/{iid}"}


SYSCTL_VOLATILE = ("fs.dentry-state", "fs.file-nr", "fs.inode-", "kernel.random.",
                   "kernel.ns_last_pid", "fs.aio-nr", "kernel.pty.nr", "net.netfilter.",
                   "fs.quota.", "kernel.sched_domain", "dev.cdrom", "kernel.core_uses_pid")


def _sysctls() -> dict[str, str]:
    out = subprocess.run(["sysctl", "-a"], capture_output=True, text=True).stdout
    values = {}
    for line in out.splitlines():
        key, _, value = line.partition(" = ")
        if key.startswith(SYSCTL_VOLATILE) or ".htcp" in key or "/htcp" in key:
            continue
        values[key] = value
    return values


def test_condor_from_the_local_repository_runs_a_job_and_leaks_nothing(
        sandbox: SandboxHandle, instances: list[str]) -> None:
    before = _sysctls()
    (iid,) = sandbox.run(1)
    instances.append(iid)
    _install_from_sandbox_repo(sandbox, iid, "condor")
    # Kernel tuning is left ON here on purpose: even a config that forgets to turn it off
    # must not change this machine (the sandbox's configs do turn it off).
    sandbox.exec(iid, r"""set -e
cat > /etc/condor/config.d/99-sandbox-test.conf <<'EOF'
CONDOR_HOST = $(FULL_HOSTNAME)
DAEMON_LIST = MASTER COLLECTOR NEGOTIATOR SCHEDD STARTD
NEGOTIATOR_INTERVAL = 2
NEGOTIATOR_CYCLE_DELAY = 1
NEGOTIATOR_MIN_INTERVAL = 1
RunBenchmarks = false
EOF
systemctl restart condor
id alice >/dev/null 2>&1 || useradd -m alice
cd /home/alice
printf 'executable = /bin/hostname\noutput = out.txt\nerror = err.txt\n' > job.sub
printf 'log = job.log\nqueue\n' >> job.sub
chown alice job.sub
""")
    wait_for(lambda: sandbox.exec(iid, "condor_status -af Name", check=False).stdout.strip(),
             timeout=120, what="the startd to report")
    sandbox.exec(iid, "cd /home/alice && su alice -c 'condor_submit job.sub'")
    wait_for(lambda: "Job terminated" in sandbox.exec(
        iid, "cat /home/alice/job.log", check=False).stdout, timeout=180, what="the job")
    assert sandbox.exec(iid, "cat /home/alice/out.txt").stdout.strip() == \
        _describe(sandbox, iid)["PrivateDnsName"]
    time.sleep(1)
    after = _sysctls()
    changed = {k: (before[k], after[k]) for k in before.keys() & after.keys()
               if before[k] != after[k]}
    assert not changed, f"the sandbox changed this machine's sysctls: {changed}"


def test_client_token_makes_run_instances_idempotent(sandbox: SandboxHandle,
                                                     instances: list[str]) -> None:
    ec2 = sandbox.client("ec2")
    first = ec2.run_instances(ImageId=sandbox.base_ami, MinCount=2, MaxCount=2,
                              ClientToken="test-token-1")
    again = ec2.run_instances(ImageId=sandbox.base_ami, MinCount=2, MaxCount=2,
                              ClientToken="test-token-1")
    ids = sorted(i["InstanceId"] for i in first["Instances"])
    instances += ids
    assert sorted(i["InstanceId"] for i in again["Instances"]) == ids
    assert first["ReservationId"] == again["ReservationId"]
    ec2.get_waiter("instance_running").wait(InstanceIds=ids, WaiterConfig={"Delay": 1})
    live = [h for h in sandbox.hosts() if h["state"] != "terminated"]
    assert len([h for h in live if h["instance_id"] in ids]) == 2


def test_zones_and_regions_through_the_cli(sandbox: SandboxHandle) -> None:
    """`htcpool zones` lists the zones the sandbox's subnets are in; `regions` the region."""
    htcpool = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "htcpool")

    def cli(*args: str) -> object:
        done = subprocess.run([htcpool, *args, "--json"], env=sandbox.env(), capture_output=True,
                              text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    zones = cli("zones")
    assert isinstance(zones, list)
    subnets = sandbox.client("ec2").describe_subnets()["Subnets"]
    assert {s["AvailabilityZone"] for s in subnets} <= {z["name"] for z in zones}
    regions = cli("regions")
    assert isinstance(regions, list)
    assert sandbox.state["region"] in {r["name"] for r in regions}
