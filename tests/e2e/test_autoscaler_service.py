"""Issues 5 and 4: the master role installs htcpool on the central manager and runs
`htcpool autoscale` there as a systemd service, which reads the pool through the official
htcondor Python bindings (transport "local") and acts with the instance's credentials.

Jobs are real (submitted by an ordinary user on the central manager); every check reads
HTCondor's job history, systemd and the EC2 records.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.support.pool import (
    ManagerHtcpool,
    PoolHandle,
    history,
    json_lines,
    launched_since,
    no_workers,
    remove_all_jobs,
    submit,
)
from tests.support.sandbox import wait_for

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]
SERVICE = "htcpool-autoscaler"


def _journal(pool: PoolHandle) -> list[dict[str, Any]]:
    return json_lines(pool.sandbox.exec(pool.cm, f"journalctl -u {SERVICE} -o cat --no-pager",
                                        check=False).stdout)


@pytest.fixture
def service(manager_htcpool: ManagerHtcpool) -> Any:
    pool = manager_htcpool.pool
    pool.sandbox.clear_faults()
    remove_all_jobs(pool)
    pool.sandbox.terminate([i["InstanceId"] for i in pool.workers()])
    stats = manager_htcpool.bootstrap(htcondor_master_autoscaler_service_state="started")
    assert stats.get("processed"), "the bootstrap play reported no host"
    try:
        yield manager_htcpool
    finally:
        # SIGTERM: the loop finishes its pass and releases the pool's lease.
        pool.sandbox.exec(pool.cm, f"systemctl disable --now {SERVICE}", check=False)
        remove_all_jobs(pool)
        pool.sandbox.terminate([i["InstanceId"] for i in pool.workers()])


def test_the_role_installs_the_service_idempotently(service: ManagerHtcpool) -> None:
    pool = service.pool
    again = service.bootstrap(htcondor_master_autoscaler_service_state="started")
    assert again.get("processed"), "the bootstrap play reported no host"
    changed = again.get("changed", {})
    assert not any(changed.values()), f"second run changed something: {changed}"
    state = pool.sandbox.exec(pool.cm, f"systemctl is-active {SERVICE}; "
                                       f"systemctl is-enabled {SERVICE}").stdout.split()
    assert state == ["active", "enabled"]
    config = service.json("config")
    assert config["condor"]["transport"] == "local"
    assert config["endpoint_url"] == pool.sandbox.state["host_endpoint_url"]
    # No credentials in the configuration: the service uses the instance profile.
    text = pool.sandbox.exec(pool.cm, "cat /etc/htcpool/htcpool.toml").stdout
    creds = pool.sandbox.state["credentials"]
    assert creds["aws_secret_access_key"] not in text and creds["aws_access_key_id"] not in text


def test_the_service_scales_out_runs_everything_and_back_to_zero(service: ManagerHtcpool
                                                                 ) -> None:
    pool = service.pool
    started = time.time()
    cluster = submit(pool, 4, seconds=20)
    wait_for(lambda: len([j for j in history(pool, cluster) if j["JobStatus"] == 4]) == 4,
             timeout=900, interval=3, what="the 4 jobs to complete under the service")
    done = history(pool, cluster)
    assert all(j["ExitCode"] == 0 and j["NumJobStarts"] == 1 for j in done)
    wait_for(lambda: no_workers(pool), timeout=600, interval=3,
             what="the service to scale the pool back to 0 workers")
    ever = launched_since(pool, started)
    # The session pool's settings turn the forecast spare off: the queue alone decides.
    assert 1 <= len(ever) <= 2, "4 one-core jobs need at most 2 two-core workers"
    assert all(i["Tags"] and {"Key": "htcpool:launched-by", "Value": "autoscaler"} in i["Tags"]
               for i in ever)
    kinds = {e.get("event") for e in _journal(pool)}
    assert {"start", "decide", "launch", "drain", "terminate"} <= kinds, kinds
    metrics = pool.sandbox.exec(pool.cm, "python3 -c \"import urllib.request; print(urllib."
                                         "request.urlopen('http://127.0.0.1:9110/metrics')."
                                         "read().decode())\"").stdout
    assert "htcpool_" in metrics


def test_views_through_the_bindings_match_ssm(service: ManagerHtcpool) -> None:
    """`pool status` and `queue` on the central manager (bindings) against SSM from outside."""
    pool = service.pool
    owner, batch = "viewer", "bindings-batch"
    sub = f"executable = /bin/true\\nbatch_name = {batch}\\nhold = true\\nqueue 3\\n"
    pool.sandbox.exec(pool.cm, f"""set -e
id {owner} >/dev/null 2>&1 || useradd -m {owner}
cd /home/{owner}
printf '{sub}' > h.sub
chown {owner} h.sub
su {owner} -c 'condor_submit h.sub'
""")
    local = service.json("queue")
    assert local["transport"] == "local"
    via_ssm = json.loads(pool.htcpool("queue", "--transport", "ssm", "--json").stdout)
    row = next(r for r in local["batches"] if r["owner"] == owner and r["batch"] == batch)
    assert (row["held"], row["idle"], row["running"]) == (3, 0, 0)
    assert local["owners"] == via_ssm["owners"] and local["batches"] == via_ssm["batches"]
    pool.sandbox.exec(pool.cm, f"su {owner} -c 'condor_rm {owner}'")

    # One running job keeps a worker claimed while both transports look at the slots.
    cluster = submit(pool, 1, seconds=120)

    def same_slots() -> bool:
        a = service.json("pool", "status")
        b = json.loads(pool.htcpool("pool", "status", "--transport", "ssm", "--json").stdout)
        names = {s["name"] for s in a["slots"]}
        return bool(names) and a["transport"] == "local" and names == {
            s["name"] for s in b["slots"]} and any(s["state"] == "Claimed" for s in a["slots"])
    wait_for(same_slots, timeout=600, interval=3, what="a claimed worker seen the same way "
                                                      "through the bindings and SSM")
    pool.sandbox.exec(pool.cm, f"su alice -c 'condor_rm {cluster}'")
