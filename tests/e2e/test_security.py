"""Attacks on the pool, tried on real daemons and real HTTP (bench/RESULTS.md, "Security").

A job is the least trusted code in the pool: it runs as an ordinary user on a worker and
must get neither the instance's credentials (metadata service), nor the pool's token
parameter, nor the worker's token on disk. The worker's token (root on a worker) may only
advertise that worker: it cannot drain or vacate another machine, and an ad it forges for
another instance is not believed by the autoscaler. An instance tagged into the pool that
the pool did not launch is never terminated. Every refusal is checked, and the pool keeps
working afterwards."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator.condor.actions import DRAIN_REASON
from orchestrator.errors import NotFoundError
from tests.support.pool import (
    PoolHandle,
    config_with,
    events,
    history,
    pool_report,
    queue_states,
    start_autoscaler,
    stop_autoscaler,
    submit,
)
from tests.support.sandbox import wait_for

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]

# What a job tries, as its owner on a worker; one "name=outcome" line per attempt.
ATTACK = r'''#!/usr/bin/python3
import glob, json, os, urllib.request

def attempt(name, fn):
    try:
        print(f"{name}=GOT {str(fn())[:80]!r}", flush=True)
    except Exception as exc:
        print(f"{name}=REFUSED {type(exc).__name__}", flush=True)

def imds(path, method="GET", headers=None):
    req = urllib.request.Request("http://169.254.169.254" + path, method=method,
                                 headers=headers or {})
    return urllib.request.urlopen(req, timeout=5).read().decode()

attempt("imds_token", lambda: imds("/latest/api/token", "PUT",
                                   {"X-aws-ec2-metadata-token-ttl-seconds": "60"}))
attempt("imds_v1_credentials", lambda: imds("/latest/meta-data/iam/security-credentials/"))

def token_parameter():
    import boto3
    endpoint = os.environ.get("SANDBOX_ENDPOINT")
    ssm = boto3.client("ssm", region_name="us-east-1", endpoint_url=endpoint)
    names = ([p["Name"] for p in ssm.describe_parameters()["Parameters"]]
             or ["/htcpool/htcpool/worker_token"])
    return ssm.get_parameters(Names=names[:10], WithDecryption=True)["Parameters"]

attempt("token_parameter", token_parameter)

def token_files():
    found = glob.glob("/etc/condor/tokens.d/*") + glob.glob("/etc/condor/passwords.d/*")
    if not found:
        raise PermissionError("cannot list")
    return [open(p).read() for p in found]

attempt("token_files", token_files)
'''


def _attack_job(pool: PoolHandle, owner: str = "mallory") -> int:
    endpoint = pool.sandbox.state["host_endpoint_url"]
    terse = pool.sandbox.exec(pool.cm, f"""set -e
id {owner} >/dev/null 2>&1 || useradd -m {owner}
cd /home/{owner}
cat > attack.py <<'PYEOF'
{ATTACK}
PYEOF
cat > attack.sub <<EOF
executable = attack.py
environment = "SANDBOX_ENDPOINT={endpoint}"
output = attack.out
error = attack.err
log = jobs.log
request_cpus = 1
request_memory = 256
queue 1
EOF
chmod 755 attack.py; chown {owner} attack.py attack.sub
su {owner} -c "condor_submit -terse attack.sub"
""").stdout
    return int(terse.strip().split(".")[0])


def _outcomes(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def test_a_job_gets_no_credentials_no_token_parameter_and_no_token_file(
        clean_pool: PoolHandle, tmp_path: Path) -> None:
    pool = clean_pool
    env = config_with(pool, tmp_path, interval_s=3.0, idle_timeout_s=10.0)
    log = tmp_path / "autoscale.log"
    attack = _attack_job(pool)
    after = submit(pool, 1, 5, owner="alice")  # the pool still works afterwards
    proc = start_autoscaler(pool, log, env=env)
    try:
        wait_for(lambda: sum(1 for c in (attack, after) for ad in history(pool, c)
                             if ad.get("JobStatus") == 4) == 2, timeout=600, interval=3,
                 what="the attack job and the next job to complete",
                 report=lambda: pool_report(pool, log))
    finally:
        stop_autoscaler(proc)
    out = pool.sandbox.exec(pool.cm, "cat /home/mallory/attack.out").stdout
    outcomes = _outcomes(out)
    assert set(outcomes) == {"imds_token", "imds_v1_credentials", "token_parameter",
                             "token_files"}, out
    refused = {name: how for name, how in outcomes.items() if how.startswith("REFUSED")}
    assert refused == outcomes, f"a job got what it must not:\n{out}"


@pytest.fixture
def two_workers(clean_pool: PoolHandle) -> Any:
    """Two workers from the pool's image, as `htcpool instances create` launches them."""
    created = json.loads(clean_pool.htcpool("instances", "create", "--count", "2",
                                            "--json").stdout)
    ids = [i["id"] for i in created["instances"]]
    try:
        wait_for(lambda: len(set(clean_pool.sandbox.exec(
            clean_pool.cm, "condor_status -af EC2InstanceId", check=False).stdout.split())
            & set(ids)) == 2, timeout=300, interval=3, what="both workers in the collector")
        yield ids
    finally:
        clean_pool.sandbox.terminate(ids)


def _machine(pool: PoolHandle, iid: str) -> str:
    return pool.sandbox.exec(pool.cm, f"condor_status -af Machine -constraint "
                                      f"'EC2InstanceId == \"{iid}\"' | head -n 1").stdout.strip()


def test_the_worker_token_cannot_drain_or_vacate_another_machine(
        clean_pool: PoolHandle, two_workers: list[str]) -> None:
    pool, (a, b) = clean_pool, two_workers
    target = _machine(pool, b)
    for command in (f"condor_drain -graceful {target}", f"condor_vacate -fast -name {target}",
                    f"condor_off -fast -startd -name {target}",
                    "condor_reconfig -collector"):
        done = pool.sandbox.exec(a, command, check=False)
        assert done.returncode != 0 or "denied" in (done.stdout + done.stderr).lower(), \
            f"{command!r} from another worker's root succeeded:\n{done.stdout}{done.stderr}"
    state = pool.sandbox.exec(pool.cm, f"condor_status -af Draining State -constraint "
                                       f"'EC2InstanceId == \"{b}\"'").stdout.split()
    assert state[0] in ("false", "undefined") and state[1] == "Unclaimed", state


def test_a_forged_idle_ad_for_a_busy_worker_gets_it_neither_drained_nor_removed(
        clean_pool: PoolHandle, two_workers: list[str], tmp_path: Path) -> None:
    """Root on worker A advertises an ad for busy worker B: unclaimed, drained by "the
    autoscaler", at A's address. The autoscaler runs with a short idle timeout; B keeps
    its job to the end and is never drained or terminated while it runs it."""
    pool, (a, b) = clean_pool, two_workers
    busy = submit(pool, 1, 90, cpus=2, owner="victim",
                  extra=f'requirements = EC2InstanceId == "{b}"')
    wait_for(lambda: queue_states(pool, busy) == [2], timeout=180,
             what="worker B to run the victim's job")
    a_ip = pool.sandbox.exec(a, "hostname -I").stdout.split()[0]
    forged = (f'MyType = "Machine"\nName = "slot1@forged-{b}"\nMachine = "forged-{b}"\n'
              f'EC2InstanceId = "{b}"\nHtcpoolPool = "{pool.pool.config.pool}"\n'
              f'State = "Drained"\nActivity = "Idle"\nDraining = true\n'
              f'DrainReason = "{DRAIN_REASON}"\nSlotType = "Partitionable"\nCpus = 2\n'
              f'Memory = 4096\nMyAddress = "<{a_ip}:9618?sock=forged>"\n'
              f'StartdIpAddr = "<{a_ip}:9618?sock=forged>"\n')
    pool.sandbox.exec(a, f"cat > /root/forged.ad <<'EOF'\n{forged}EOF\n"
                         "while true; do condor_advertise UPDATE_STARTD_AD /root/forged.ad "
                         ">/dev/null 2>&1; sleep 5; done >/dev/null 2>&1 &")
    env = config_with(pool, tmp_path, interval_s=3.0, idle_timeout_s=5.0)
    log = tmp_path / "autoscale.log"
    proc = start_autoscaler(pool, log, env=env)
    try:
        wait_for(lambda: any(ad.get("JobStatus") == 4 for ad in history(pool, busy)),
                 timeout=400, interval=3, what="the victim's job to complete",
                 report=lambda: pool_report(pool, log))
    finally:
        stop_autoscaler(proc)
        with contextlib.suppress(NotFoundError):  # idle A may be gone, its forger with it
            pool.sandbox.exec(a, "pkill -f 'condor_advertise UPDATE_STARTD_AD' ; "
                                 "pkill -f 'forged.ad'", check=False)
    seen = events(log)
    assert any(e["event"] == "ad_address_mismatch" and e["instance"] == b for e in seen), \
        "the forged ad was not noticed"
    acted = [e for e in seen if e.get("instance") == b
             and e["event"] in ("drain", "terminate", "stop")]
    ends = [ad for ad in history(pool, busy) if ad.get("JobStatus") == 4]
    assert ends and ends[0].get("NumJobStarts") == 1, ends
    done_at = float(ends[0]["CompletionDate"])
    assert all(e["ts"] >= done_at for e in acted), f"acted on B while it ran a job: {acted}"


def test_an_instance_tagged_into_the_pool_is_never_terminated(
        clean_pool: PoolHandle, tmp_path: Path) -> None:
    """Someone else's instance (another image, no profile) with the pool's worker tags:
    it never joins, yet the autoscaler never replaces it."""
    pool = clean_pool
    (foreign,) = pool.sandbox.run(1, TagSpecifications=[{"ResourceType": "instance", "Tags": [
        {"Key": "htcpool:pool", "Value": pool.pool.config.pool},
        {"Key": "htcpool:role", "Value": "worker"}]}])
    env = config_with(pool, tmp_path, interval_s=3.0, join_timeout_s=20.0)
    log = tmp_path / "autoscale.log"
    proc = start_autoscaler(pool, log, env=env)
    try:
        wait_for(lambda: any(e["event"] == "foreign_instance" and e["instance"] == foreign
                             for e in events(log)), timeout=120, interval=2,
                 what="the autoscaler to notice the foreign instance")
        # Three join timeouts: a worker of ours that never joined would be replaced by now.
        time.sleep(60)
    finally:
        stop_autoscaler(proc)
    try:
        state = pool.sandbox.client("ec2").describe_instances(InstanceIds=[foreign])[
            "Reservations"][0]["Instances"][0]["State"]["Name"]
        assert state == "running", f"the foreign instance is {state}"
        assert not [e for e in events(log) if e.get("instance") == foreign
                    and e["event"] in ("terminate", "stop", "drain")]
    finally:
        pool.sandbox.terminate([foreign])
