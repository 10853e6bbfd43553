"""No job is ever killed by the autoscaler, whatever the timing, on real daemons: drains
racing a stream of short jobs, two autoscalers and a `scale` loop on one pool, a schedd
that stops answering, and an autoscaler whose host clock is wrong. Every check reads
HTCondor's own records (job history, the job event log) and EC2's."""

from __future__ import annotations

import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.support.paths import HTCPOOL
from tests.support.pool import (
    PoolHandle,
    config_with,
    events,
    history,
    job_events,
    launched_since,
    no_workers,
    pool_report,
    start_autoscaler,
    stop_autoscaler,
    submit,
)
from tests.support.sandbox import wait_for

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]


def _done(pool: PoolHandle, clusters: list[int], count: int, host: str | None = None) -> bool:
    finished = [ad for c in clusters for ad in history(pool, c, host)
                if ad.get("JobStatus") == 4]
    return len(finished) >= count


def _all_ran_once(pool: PoolHandle, clusters: list[int], host: str | None = None) -> None:
    for cluster in clusters:
        for ad in history(pool, cluster, host):
            assert ad["JobStatus"] == 4 and ad.get("ExitCode") == 0, ad
            assert ad["NumJobStarts"] == 1, f"job {cluster}.{ad['ProcId']} started twice: {ad}"


def test_drains_racing_a_stream_of_short_jobs_never_evict_a_job(clean_pool: PoolHandle,
                                                                  tmp_path: Path) -> None:
    """Workers are unclaimed for a moment between jobs, and the autoscaler drains any
    unclaimed worker at once (idle timeout 0, a pass a second): the startd refuses each
    drain that would catch a claim, so no job is evicted, not even one that grants only 30
    s of retirement."""
    pool, owner = clean_pool, "racer"
    env = config_with(pool, tmp_path, interval_s=1.0, idle_timeout_s=0.0,
                      surplus_idle_s=0.0, max_workers=2)
    log = tmp_path / "autoscale.log"
    long_job = submit(pool, 1, 120, owner=owner, extra="max_retirement_time = 30")
    proc = start_autoscaler(pool, log, env=env)
    clusters = [long_job]
    try:
        for _ in range(8):  # a stream: two 10-s jobs every 10 s
            clusters.append(submit(pool, 2, 10, owner=owner))
            time.sleep(10)
        wait_for(lambda: _done(pool, clusters, 17), timeout=900, interval=3,
                 what="every job of the stream and the long one to complete",
                 report=lambda: pool_report(pool, log))
    finally:
        stop_autoscaler(proc)
    _all_ran_once(pool, clusters)
    counts = job_events(pool, owner)
    assert counts.get("evicted", 0) == 0 and counts.get("aborted", 0) == 0, counts
    assert counts.get("terminated") == 17, counts
    seen = Counter(e["event"] for e in events(log))
    # The race was exercised: drains were sent while the stream ran.
    assert seen["drain"] + sum(1 for e in events(log) if e["event"] == "keep"
                               and "drain reached" in str(e.get("reason"))) > 0, seen


def _scale_loop(pool: PoolHandle, env: dict[str, str], stop: threading.Event,
                codes: list[int]) -> None:
    while not stop.is_set():
        done = subprocess.run([HTCPOOL, "scale"], env=pool.env(**env), capture_output=True,
                              text=True, timeout=300)
        codes.append(done.returncode)
        stop.wait(2)


def test_two_autoscalers_and_a_scale_loop_act_as_one(clean_pool: PoolHandle,
                                                     tmp_path: Path) -> None:
    pool = clean_pool
    env = config_with(pool, tmp_path, interval_s=3.0, idle_timeout_s=10.0)
    since = time.time()
    cluster = submit(pool, 4, 30, cpus=2, owner="twins")
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = [start_autoscaler(pool, logs[0], env=env), start_autoscaler(pool, logs[1],
                                                                         env=env)]
    stop, codes = threading.Event(), []
    loop = threading.Thread(target=_scale_loop, args=(pool, env, stop, codes), daemon=True)
    loop.start()
    try:
        wait_for(lambda: _done(pool, [cluster], 4) and no_workers(pool), timeout=900,
                 interval=3, what="the jobs to complete and the pool to empty",
                 report=lambda: pool_report(pool, logs[0]) + "\n" + pool_report(pool, logs[1]))
    finally:
        stop.set()
        loop.join(timeout=330)
        for p in procs:
            stop_autoscaler(p)
    _all_ran_once(pool, [cluster])
    assert job_events(pool, "twins").get("evicted", 0) == 0
    launched = launched_since(pool, since)
    assert len(launched) == 4, f"one worker per 2-core job, launched once: {len(launched)}"
    acted = [n for n, log in enumerate(logs)
             if any(e["event"] in ("launch", "terminate") for e in events(log))]
    standby = [n for n, log in enumerate(logs) if any(e["event"] == "standby"
                                                      for e in events(log))]
    assert acted and standby, (acted, standby)
    assert 5 in codes, f"`htcpool scale` never refused while the lease was held: {codes}"


@pytest.fixture
def submit_host(clean_pool: PoolHandle) -> Any:
    """A second schedd on a host of its own (from the worker image, tagged as a submit host
    so the autoscaler never manages it), with a token the central manager issues."""
    pool = clean_pool
    sandbox = pool.sandbox
    (iid,) = sandbox.run(1, image_id=pool.pool.worker_image, InstanceType="t3.medium",
                         IamInstanceProfile={"Name": pool.pool.config.worker_instance_profile},
                         MetadataOptions={"HttpTokens": "required",
                                          "InstanceMetadataTags": "enabled"},
                         TagSpecifications=[{"ResourceType": "instance", "Tags": [
                             {"Key": "htcpool:pool", "Value": pool.pool.config.pool},
                             {"Key": "htcpool:role", "Value": "submit"}]}])
    try:
        wait_for(lambda: sandbox.exec(iid, "test -s /etc/condor/config.d/90-htcpool-pool.conf",
                                      check=False).returncode == 0, timeout=300,
                 what="the first-boot unit to configure the submit host")
        token = sandbox.exec(pool.cm, "condor_token_create -identity condor@$(condor_config_val"
                                      " TRUST_DOMAIN) -key POOL").stdout.strip()
        sandbox.exec(iid, f"""set -e
cat > /etc/condor/config.d/99-submit-host.conf <<'EOF'
DAEMON_LIST = MASTER, SCHEDD
SCHEDD_INTERVAL = 5
SCHEDD.ALLOW_WRITE = $(HTCPOOL_ALLOW_WRITE), *@$(UID_DOMAIN)
EOF
systemctl disable --now htcpool-worker-token-refresh.timer 2>/dev/null || true
rm -f /etc/condor/tokens.d/*
umask 077; printf '%s\\n' '{token}' > /etc/condor/tokens.d/submit-host
systemctl restart condor""")
        wait_for(lambda: sandbox.exec(iid, "condor_q -totals", check=False).returncode == 0,
                 timeout=120, what="the submit host's schedd to answer")
        name = sandbox.exec(iid, "condor_config_val SCHEDD_NAME || hostname -f").stdout.strip()
        wait_for(lambda: any(n for n in sandbox.exec(pool.cm, "condor_status -schedd -af Name",
                                                     check=False).stdout.split()
                             if n.startswith(name.split(".")[0]) or name in n),
                 timeout=180, what="the submit host's schedd in the collector")
        yield iid
    finally:
        sandbox.exec(iid, "pkill -CONT condor_schedd", check=False)
        sandbox.terminate([iid])


def _running_on(pool: PoolHandle, host: str) -> list[str]:
    """The instances that run a job of `host`'s schedd (its RemoteHost, by the startd ads)."""
    machines = {h.rpartition("@")[2] for h in pool.sandbox.exec(
        host, "condor_q -allusers -run -af RemoteHost", check=False).stdout.split()}
    if not machines:
        return []
    constraint = " || ".join(f'Machine == "{m}"' for m in sorted(machines))
    return sorted(set(pool.sandbox.exec(
        pool.cm, f"condor_status -af EC2InstanceId -constraint '{constraint}'",
        check=False).stdout.split()))


def test_a_silent_schedd_stops_no_scale_in_and_its_jobs_survive(
        clean_pool: PoolHandle, submit_host: str, tmp_path: Path) -> None:
    pool, sandbox = clean_pool, clean_pool.sandbox
    env = config_with(pool, tmp_path, interval_s=3.0, idle_timeout_s=15.0)
    log = tmp_path / "autoscale.log"
    theirs = submit(pool, 1, 150, cpus=2, owner="remote", host=submit_host)
    ours = submit(pool, 2, 20, cpus=2, owner="local")
    proc = start_autoscaler(pool, log, env=env)
    try:
        wait_for(lambda: _done(pool, [ours], 2), timeout=600, interval=3,
                 what="the central manager's jobs", report=lambda: pool_report(pool, log))
        busy = wait_for(lambda: _running_on(pool, submit_host), timeout=300,
                        what="the submit host's job running")
        sandbox.exec(submit_host, "pkill -STOP condor_schedd")
        frozen = time.time()
        # Idle workers of the answering schedd still go; the busy one stays.
        wait_for(lambda: {w["InstanceId"] for w in pool.workers()} <= set(busy),
                 timeout=300, interval=3, what="the idle workers to be removed",
                 report=lambda: pool_report(pool, log))
        silent = [e for e in events(log) if e["event"] == "schedd_silent"
                  and e["ts"] >= frozen]
        assert silent, "the silent schedd was never reported"
        assert {w["InstanceId"] for w in pool.workers()} == set(busy)
        sandbox.exec(submit_host, "pkill -CONT condor_schedd")
        wait_for(lambda: _done(pool, [theirs], 1, host=submit_host), timeout=600, interval=3,
                 what="the submit host's job to complete after the thaw",
                 report=lambda: pool_report(pool, log))
    finally:
        stop_autoscaler(proc)
    _all_ran_once(pool, [theirs], host=submit_host)
    _all_ran_once(pool, [ours])
    assert job_events(pool, "remote", host=submit_host).get("evicted", 0) == 0


def test_a_host_clock_15_minutes_fast_replaces_no_booting_worker(clean_pool: PoolHandle,
                                                                 tmp_path: Path) -> None:
    """join_timeout_s 120: by a clock 15 minutes fast every new worker would look 17
    minutes overdue; by EC2's it has just launched."""
    pool = clean_pool
    env = {**config_with(pool, tmp_path, interval_s=3.0, idle_timeout_s=10.0,
                         join_timeout_s=120.0), "HTCPOOL_TEST_CLOCK_OFFSET_S": "900"}
    log = tmp_path / "autoscale.log"
    since = time.time()
    cluster = submit(pool, 2, 20, cpus=2, owner="skewed")
    proc = start_autoscaler(pool, log, env=env)
    try:
        wait_for(lambda: _done(pool, [cluster], 2) and no_workers(pool), timeout=900,
                 interval=3, what="the jobs to complete and the pool to empty",
                 report=lambda: pool_report(pool, log))
    finally:
        stop_autoscaler(proc)
    _all_ran_once(pool, [cluster])
    seen = events(log)
    assert not [e for e in seen if e["event"] == "decide" and e.get("decision") ==
                "replacement"], "a booting worker was replaced"
    skew = [e for e in seen if e["event"] == "clock_skew"]
    assert skew and 890 <= skew[0]["offset_s"] <= 910, skew
    assert len(launched_since(pool, since)) == 2
