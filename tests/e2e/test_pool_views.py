"""`htcpool pool status` and `htcpool queue` on a real pool in the sandbox, through all three
transports (SSM, ssh, and the htcondor bindings pointed at the central manager).

The pool is the sandbox's default pool ("htcpool"): reused if a central manager is already
running (another test brought it up), else one central manager and one worker are launched
and `htcpool bootstrap` configures them. Jobs are submitted so that their states are
deterministic: `hold = true` jobs stay held, `requirements = false` jobs stay idle.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.pool import PoolHandle, remove_all_jobs

pytestmark = pytest.mark.sandbox

POOL = "htcpool"
HTCPOOL = str(Path(sys.executable).parent / "htcpool")
OWNER = "e2eviews"
BATCH = "e2e-views-batch"


def poll(what: str, check: Callable[[], Any], timeout: float = 300) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(2)


class Pool:
    def __init__(self, sandbox: Any, config: Path, cm: dict[str, Any]) -> None:
        self.sandbox = sandbox
        self.config = config
        self.cm = cm

    def env(self) -> dict[str, str]:
        return {**self.sandbox.env(), "HTCPOOL_CONFIG": str(self.config), "HTCPOOL_POOL": POOL}

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([HTCPOOL, *args], env=self.env(), capture_output=True, text=True,
                              timeout=900, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"htcpool {' '.join(args)} exited {done.returncode}: "
                                 f"{done.stderr[-3000:]}")
        return done

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--json").stdout)


def _running_cm(ec2: Any) -> dict[str, Any] | None:
    res = ec2.describe_instances(Filters=[
        {"Name": "tag:htcpool:pool", "Values": [POOL]},
        {"Name": "tag:htcpool:role", "Values": ["central-manager"]},
        {"Name": "instance-state-name", "Values": ["running"]}])["Reservations"]
    found = [i for r in res for i in r["Instances"]]
    return found[0] if found else None


@pytest.fixture(scope="module")
def pool(sandbox_pool: PoolHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    """The session's bootstrapped pool plus one worker launched from its baked image with
    `htcpool instances create` (it joins with no Ansible run); terminated afterwards."""
    sandbox = sandbox_pool.sandbox
    ec2 = sandbox.client("ec2")
    inventory = Path(sandbox.settings.state_dir) / "inventory" / "aws_ec2.yml"
    config = tmp_path_factory.mktemp("views") / "htcpool.toml"
    key = str(sandbox.settings.ssh_key)
    config.write_text(
        f'pool = "{POOL}"\n[condor]\nssm_timeout_s = 120\nssh_user = "root"\n'
        f'ssh_key_file = "{key}"\n'
        'ssh_options = ["StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null", '
        '"LogLevel=ERROR"]\n'
        f'[worker]\ninstance_type = "t3.medium"\n'
        f'[provision]\ninventory = "{inventory}"\n')
    cm = _running_cm(ec2)
    assert cm is not None
    handle = Pool(sandbox, config, cm)
    created = handle.json("instances", "create", "--count", "1")
    worker_ids = [i["id"] for i in created["instances"]]
    try:
        poll("a startd in the collector",
             lambda: handle.json("pool", "status", "--transport", "ssm")["slots"])
        yield handle
    finally:
        sandbox.terminate(worker_ids)
        remove_all_jobs(sandbox_pool)  # the module's jobs must not reach later tests


@pytest.fixture(scope="module")
def jobs(pool: Pool) -> dict[str, int]:
    """3 held and 2 idle jobs of OWNER in batch BATCH (asking for 2 CPUs and 1500 MB)."""
    sub = ("executable = /bin/true\nrequest_cpus = 2\nrequest_memory = 1500\n"
           f"batch_name = {BATCH}\nrequirements = false\n")
    script = (f"id -u {OWNER} >/dev/null 2>&1 || useradd -m {OWNER}; cd /home/{OWNER}; "
              f"printf '{sub}hold = true\\nqueue 3\\n' > held.sub; "
              f"printf '{sub}queue 2\\n' > idle.sub; chown {OWNER} held.sub idle.sub; "
              f"su {OWNER} -c 'condor_submit held.sub && condor_submit idle.sub'")
    pool.sandbox.exec(pool.cm["InstanceId"], script)
    return {"held": 3, "idle": 2}


def _slot_names(payload: dict[str, Any]) -> set[str]:
    return {s["name"] for s in payload["slots"]}


def test_status_is_the_same_through_every_transport(pool: Pool) -> None:
    """SSM and ssh here; the bindings on the central manager in test_autoscaler_service.py
    and test_idle_jobs_for_the_autoscaler below."""
    via_ssm = pool.json("pool", "status", "--transport", "ssm")
    via_ssh = pool.json("pool", "status", "--transport", "ssh")
    assert via_ssm["transport"] == "ssm" and via_ssh["transport"] == "ssh"
    assert _slot_names(via_ssm) == _slot_names(via_ssh)
    instances = {i["id"] for i in pool.json("instances", "list")}
    for slot in via_ssm["slots"]:
        # A partitionable slot whose cores all went to dynamic slots shows 0 CPUs.
        assert slot["machine"] and slot["state"] and slot["memory_mb"] >= 0 and slot["cpus"] >= 0
        assert slot["ec2_instance_id"] in instances  # mapped by EC2InstanceId, per CONVENTIONS
    totals = via_ssm["totals"]
    assert totals["slots"] == len(via_ssm["slots"]) == sum(totals["by_state"].values())


def test_status_table(pool: Pool) -> None:
    """The table shows each slot (its machine and instance) and totals equal to --json's."""
    import re

    data = pool.json("pool", "status", "--transport", "ssm")
    out = pool.run("pool", "status", "--transport", "ssm").stdout
    assert data["slots"]
    for slot in data["slots"]:
        row = next((ln for ln in out.splitlines() if slot["machine"] in ln
                    and f" {slot['name'].split('@')[0]} " in ln), "")
        assert slot["ec2_instance_id"] and slot["ec2_instance_id"] in row, (slot, out)
        assert slot["state"] in row and f"{slot['cpus']}" in row, (slot, row)
    totals = data["totals"]
    states = [n for _, n in sorted(totals["by_state"].items())]
    after = out[out.index("Totals"):]
    numbers = next([int(x) for x in re.findall(r"\d+", ln)] for ln in after.splitlines()
                   if re.search(r"\d", ln))
    assert numbers == [totals["machines"], totals["slots"], totals["cpus"],
                       totals["memory_mb"], *states], out


def test_queue_counts_per_owner_and_batch(pool: Pool, jobs: dict[str, int]) -> None:
    for transport in ("ssm", "ssh"):
        q = pool.json("queue", "--transport", transport)
        owner = next(r for r in q["owners"] if r["owner"] == OWNER)
        batch = next(r for r in q["batches"] if r["owner"] == OWNER and r["batch"] == BATCH)
        for row in (owner, batch):
            assert (row["idle"], row["held"], row["running"]) == (jobs["idle"], jobs["held"], 0)
        assert q["totals"]["total"] >= 5
    table = pool.run("queue").stdout
    assert OWNER in table and BATCH in table and "Total:" in table


def test_idle_jobs_for_the_autoscaler(pool: Pool, jobs: dict[str, int],
                                      manager_htcpool: Any) -> None:
    """What the autoscaler reads through the htcondor bindings on the central manager (the
    htcpool the master role installed there)."""
    script = ("import json; from orchestrator.condor.source import LocalSource; "
              "print(json.dumps([[j.owner, j.status.name, j.batch_name, j.request_cpus, "
              "j.request_memory_mb] for j in LocalSource().idle_jobs()]))")
    out = pool.sandbox.exec(pool.cm["InstanceId"],
                            f"/opt/htcpool/bin/python -c '{script}'").stdout
    idle = [j for j in json.loads(out) if j[0] == OWNER]
    assert idle == [[OWNER, "IDLE", BATCH, 2, 1500]] * jobs["idle"]


def test_constraint_is_passed_through(pool: Pool, jobs: dict[str, int]) -> None:
    q = pool.json("queue", "--transport", "ssm", "--constraint", f'Owner == "{OWNER}"')
    assert [r["owner"] for r in q["owners"]] == [OWNER]


def test_condor_failure_is_one_line(pool: Pool) -> None:
    done = pool.run("pool", "status", "--transport", "ssm", "--constraint", "((", check=False)
    assert done.returncode != 0
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("htcpool: error:")]
    assert len(lines) == 1 and "Traceback" not in done.stderr


GROUPS_OWNER = "e2egroups"
# Each transport's queue read per job and grouped (as the autoscaler reads it), as
# {"per_job": [[key, jobs]...], "grouped": [...], "ads": grouped ads}; argv[1]: transport.
GROUPED_SCRIPT = """
import json, sys
from collections import Counter
from orchestrator.condor.factory import pool_source_for
from orchestrator.condor.records import AUTOSCALER_JOB_ATTRS
from orchestrator.condor.source import LocalSource
from orchestrator.config import load_config

if sys.argv[1] == "local":
    source = LocalSource()
else:
    from orchestrator.aws.ec2 import Cloud
    config = load_config()
    source = pool_source_for(config, lambda: Cloud(config), sys.argv[1])
wanted = "JobStatus == 1 || JobStatus == 2"
def tally(jobs):
    out = Counter()
    for j in jobs:
        out[json.dumps([j.status.name, j.cluster, j.request_cpus, j.request_memory_mb,
                        j.request_gpus, j.qdate, j.remote_host])] += j.count
    return sorted(out.items())
grouped = source.jobs(wanted, AUTOSCALER_JOB_ATTRS, all_schedds=True, grouped=True)
per_job = source.jobs(wanted, (*AUTOSCALER_JOB_ATTRS, "ImageSize", "MemoryUsage"))
print(json.dumps({"per_job": tally(per_job), "grouped": tally(grouped), "ads": len(grouped)}))
"""


def test_grouped_queue_counts_the_same_jobs(pool: Pool, jobs: dict[str, int],
                                            manager_htcpool: Any) -> None:
    """The autoscaler reads the queue grouped by the schedd (`condor_q -group-by`,
    QueryOpt.GroupBy). Through every transport the groups must add up to the jobs read one
    by one: idle jobs of one cluster in one ad, a running one with its host, and the submit
    default of RequestMemory (an expression of ImageSize) evaluated to the same number."""
    cm = pool.cm["InstanceId"]
    sub = ("executable = /bin/sleep\\narguments = 900\\nbatch_name = e2e-groups\\n"
           "request_cpus = 1\\n")
    pool.sandbox.exec(cm, (
        f"id -u {GROUPS_OWNER} >/dev/null 2>&1 || useradd -m {GROUPS_OWNER}; "
        f"cd /home/{GROUPS_OWNER}; printf '{sub}requirements = false\\nqueue 4\\n' > idle.sub; "
        f"printf '{sub}request_memory = 300\\nqueue 1\\n' > run.sub; "
        f"chown {GROUPS_OWNER} idle.sub run.sub; "
        f"su {GROUPS_OWNER} -c 'condor_submit idle.sub && condor_submit run.sub'"))
    try:
        poll("the job to run", lambda: pool.sandbox.exec(
            cm, f"condor_q -allusers -constraint 'Owner == \"{GROUPS_OWNER}\" && JobStatus == 2'"
                " -af ClusterId").stdout.strip(), timeout=180)
        env = pool.env()
        results = {"local": json.loads(pool.sandbox.exec(
            cm, f"/opt/htcpool/bin/python -c '{GROUPED_SCRIPT}' local").stdout)}
        for transport in ("ssh", "ssm"):
            done = subprocess.run([sys.executable, "-c", GROUPED_SCRIPT, transport], env=env,
                                  capture_output=True, text=True, timeout=300, check=True)
            results[transport] = json.loads(done.stdout)
        for transport, got in results.items():
            assert got["grouped"] == got["per_job"], transport
            mine = [(json.loads(k), n) for k, n in got["grouped"]]
            assert sum(n for k, n in mine if k[0] == "IDLE") >= 4 + jobs["idle"], transport
            # The four idle jobs of one cluster and request are one group
            assert any(n == 4 and k[0] == "IDLE" and k[3] >= 1 for k, n in mine), transport
            assert any(k[0] == "RUNNING" and k[3] == 300 and k[6] for k, n in mine), transport
            assert got["ads"] < sum(n for _k, n in mine), transport
        assert results["local"] == results["ssh"] == results["ssm"]
    finally:
        pool.sandbox.exec(cm, f"condor_rm {GROUPS_OWNER}", check=False)
