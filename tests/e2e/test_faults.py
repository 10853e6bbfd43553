"""Faults on a real pool: failing APIs, a central manager that goes away mid-cycle, random
5xx during a whole scale-out and scale-in. Nothing half-done, no job killed or lost, no
instance orphaned or launched twice. Seeded (HTCPOOL_TEST_SEED) so a failure replays."""

from __future__ import annotations

import json
import os
import random
import shlex
import time
import warnings
from pathlib import Path
from subprocess import Popen
from typing import Any

import pytest

from tests.support.pool import (
    PoolHandle,
    config_with,
    events,
    history,
    launched_since,
    no_workers,
    pool_report,
    start_autoscaler,
    stop_autoscaler,
    submit,
)
from tests.support.sandbox import wait_for

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]
SEED = int(os.environ.get("HTCPOOL_TEST_SEED", "7"))


def _one_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.startswith("htcpool: error:")]
    assert lines, stderr
    assert "Traceback" not in stderr
    return lines[-1]


def test_failing_ssm_gives_one_clear_line(clean_pool: PoolHandle) -> None:
    pool = clean_pool
    pool.sandbox.inject("SendCommand", "InternalServerError", status=500, remaining=-1)
    proc = pool.htcpool("pool", "status", check=False)
    assert proc.returncode != 0
    assert "InternalServerError" in _one_error_line(proc.stderr)


def test_central_manager_down_mid_cycle_skips_the_pass_and_changes_nothing(
        clean_pool: PoolHandle) -> None:
    pool = clean_pool
    submit(pool, 4, seconds=5)
    pool.sandbox.exec(pool.cm, "systemctl stop condor")
    before = {i["InstanceId"]: i["State"]["Name"] for i in pool.workers()}
    proc = pool.htcpool("scale", check=False)
    assert proc.returncode != 0
    assert "pass skipped" in _one_error_line(proc.stderr)
    after = {i["InstanceId"]: i["State"]["Name"] for i in pool.workers()}
    assert after == before, "a pass that cannot see the pool acts on nothing"
    pool.sandbox.exec(pool.cm, "systemctl start condor")
    wait_for(lambda: pool.htcpool("scale", "--dry-run", check=False).returncode == 0,
             timeout=180, interval=3, what="the central manager to answer again")


def test_random_api_errors_during_a_whole_run_lose_nothing(clean_pool: PoolHandle,
                                                          tmp_path: Path) -> None:
    pool = clean_pool
    rng = random.Random(SEED)
    started = time.time()
    cluster = submit(pool, 8, seconds=10)
    # 5xx and throttling on any call, a third of the time, until 25 have been injected.
    pool.sandbox.inject("*", rng.choice(["InternalError", "ServiceUnavailable"]), status=503,
                        probability=0.33, remaining=15)
    pool.sandbox.inject("*", "RequestLimitExceeded", status=400, probability=0.33, remaining=10)
    log = tmp_path / "autoscale.log"
    proc = start_autoscaler(pool, log)
    try:
        wait_for(lambda: len([j for j in history(pool, cluster) if j["JobStatus"] == 4]) == 8,
                 timeout=900, interval=3, what="all jobs to complete despite API errors")
        pool.sandbox.clear_faults()
        wait_for(lambda: no_workers(pool), timeout=600, interval=3, what="the pool to empty",
                 report=lambda: pool_report(pool, log))
    finally:
        assert stop_autoscaler(proc) == 0
    done = history(pool, cluster)
    assert all(j["ExitCode"] == 0 and j["NumJobStarts"] == 1 for j in done)
    assert len(launched_since(pool, started)) <= 4, "no double launch (8 cores = 4 workers)"
    assert not pool.workers(), "no orphaned instance"


def _submit_leased(pool: PoolHandle, count: int, seconds: int, lease_s: int) -> int:
    """Jobs that take a whole worker each (2 CPUs) with a short job lease: the schedd gives
    up on a lost execute host after lease_s instead of the default 40 minutes."""
    sub = (f"executable = /bin/sleep\\narguments = {seconds}\\nrequest_cpus = 2\\n"
           f"request_memory = 512\\njob_lease_duration = {lease_s}\\nlog = leased.log\\n"
           f"queue {count}\\n")
    out = pool.sandbox.exec(pool.cm, f"""set -e
id alice >/dev/null 2>&1 || useradd -m alice
cd /home/alice
printf '{sub}' > leased.sub
chown alice leased.sub
su alice -c "condor_submit -terse leased.sub"
""").stdout
    return int(out.strip().split(".")[0])


def _running_on(pool: PoolHandle, cluster: int) -> dict[int, str]:
    """ProcId -> EC2 instance id of the worker running it (RemoteHost -> its startd ad)."""
    jobs = pool.sandbox.exec(pool.cm, "condor_q -allusers -json -attributes ProcId,JobStatus,"
                                      f"RemoteHost -constraint 'ClusterId == {cluster}'",
                             check=False).stdout.strip()
    slots = pool.sandbox.exec(pool.cm, "condor_status -json -attributes Machine,EC2InstanceId",
                              check=False).stdout.strip()
    by_machine = {s["Machine"]: s.get("EC2InstanceId") for s in json.loads(slots or "[]")}
    out = {}
    for job in json.loads(jobs or "[]"):
        if job.get("JobStatus") == 2 and job.get("RemoteHost"):
            machine = job["RemoteHost"].split("@", 1)[-1]
            if by_machine.get(machine):
                out[job["ProcId"]] = by_machine[machine]
    return out


def _autoscale_leased(pool: PoolHandle, tmp_path: Path, count: int, seconds: int,
                      lease_s: int, **settings: Any) -> tuple[int, Path, Popen[bytes]]:
    """Submit `count` whole-worker jobs (see _submit_leased) and start the autoscaler, with
    these autoscaler settings changed if any; the cluster, its log and its process."""
    env = config_with(pool, tmp_path, **settings) if settings else None
    cluster = _submit_leased(pool, count, seconds=seconds, lease_s=lease_s)
    log = tmp_path / "autoscale.log"
    return cluster, log, start_autoscaler(pool, log, env=env)


def _running_one_per_worker(pool: PoolHandle, cluster: int, count: int) -> dict[int, str]:
    """Wait until the cluster's `count` jobs run, one per worker; ProcId -> instance id."""
    placed: dict[int, str] = wait_for(lambda: (lambda r: r if len(r) == count else None)(
        _running_on(pool, cluster)), timeout=600, interval=2,
        what=f"{count} jobs running, one per worker")
    return placed


def _running_on_joined_workers(pool: PoolHandle, cluster: int, count: int) -> dict[int, str]:
    """Wait until the cluster's `count` jobs run, one per worker, on workers the autoscaler
    has tagged as joined; ProcId -> instance id."""
    placed = _running_one_per_worker(pool, cluster, count)
    wait_for(lambda: all("htcpool:joined" in {t["Key"] for t in w.get("Tags", [])}
                         for w in pool.workers() if w["InstanceId"] in placed.values()),
             timeout=120, interval=2, what="the workers to be marked as joined")
    return placed


def _instances_in_collector(pool: PoolHandle) -> set[str]:
    """EC2 instance ids of the startd ads in the collector."""
    out = pool.sandbox.exec(pool.cm, "condor_status -json -attributes EC2InstanceId",
                            check=False).stdout.strip()
    return {s["EC2InstanceId"] for s in json.loads(out or "[]") if s.get("EC2InstanceId")}


def test_a_worker_powered_off_mid_job_its_job_runs_elsewhere(clean_pool: PoolHandle,
                                                             tmp_path: Path) -> None:
    """The host dies under a running job (no drain, no notice): the job goes back to idle
    when its lease expires and runs to completion on capacity the autoscaler launches; the
    other job is untouched; the dead instance (now stopped) is left to its owner."""
    pool = clean_pool
    started = time.time()
    cluster, log, proc = _autoscale_leased(pool, tmp_path, 2, seconds=60, lease_s=20)
    victim = None
    try:
        placed = _running_one_per_worker(pool, cluster, 2)
        victim = placed[0]
        assert placed[1] != victim
        pool.sandbox.api(f"poweroff/{victim}", "POST")
        # Its startd ad would stay in the collector for CLASSAD_LIFETIME (15 min), and the
        # negotiator would match jobs to it: the autoscaler removes it once EC2 says stopped.
        wait_for(lambda: victim not in _instances_in_collector(pool), timeout=180, interval=3,
                 what="the powered-off worker's startd ad to be removed")
        wait_for(lambda: len([j for j in history(pool, cluster) if j["JobStatus"] == 4]) == 2,
                 timeout=900, interval=3, what="both jobs to complete after the power-off")
        wait_for(lambda: not pool.workers(states=("pending", "running")), timeout=600,
                 interval=3, what="the pool to scale back in",
                 report=lambda: pool_report(pool, log))
    finally:
        assert stop_autoscaler(proc) == 0
        if victim:
            pool.sandbox.terminate([victim])
    done = {j["ProcId"]: j for j in history(pool, cluster)}
    assert all(j["ExitCode"] == 0 for j in done.values()), done
    # NumJobStarts is not a reliable count here (HTCondor may record a run that lost its
    # host as no start); completion with exit 0 after the host died is what matters.
    assert sorted(done) == [0, 1]
    others = [i for i in launched_since(pool, started) if i["InstanceId"] != victim]
    assert len(others) >= 2, "the second worker, and a replacement for the lost one"
    kinds = [e["event"] for e in events(log)]
    assert kinds.count("launch") >= 2, "capacity was launched again after the power-off"
    assert any(e["event"] == "forget" and e["instance"] == victim for e in events(log))


def test_collector_restart_does_not_replace_busy_workers(clean_pool: PoolHandle,
                                                         tmp_path: Path) -> None:
    """The collector restarts under two busy workers older than join_timeout_s: it forgets
    their startds until they advertise again. They joined before (tagged), so they are kept
    as "missing" rather than replaced as never joined; their jobs run to completion.

    A startd's first update after the restart fails (its session is unknown to the new
    collector) and it is seen again at its next one: at the job's end or UPDATE_INTERVAL (60 s)
    later. In one CI run the pool did not empty within 10 minutes of the jobs (cause unknown,
    nothing was kept). If startds never advertise again, lost_timeout_s 300 here lets the
    autoscaler's safety net (a joined worker missing with no job on it) empty the pool, and
    the test warns when it had to; a time-out now prints a report of the pool."""
    pool = clean_pool
    started = time.time()
    cluster, log, proc = _autoscale_leased(pool, tmp_path, 2, seconds=90, lease_s=600,
                                           join_timeout_s=45.0, lost_timeout_s=300.0)
    try:
        _running_on_joined_workers(pool, cluster, 2)
        newest = max(w["LaunchTime"].timestamp() for w in pool.workers())
        wait_for(lambda: time.time() - newest > 50, timeout=120, interval=1,
                 what="the workers to be older than join_timeout_s")
        pool.sandbox.exec(pool.cm, "condor_restart -daemon collector")
        wait_for(lambda: any("missing from the collector" in e.get("reason", "")
                             for e in events(log)),
                 timeout=120, interval=2, what="a pass to see the workers missing")
        wait_for(lambda: len([j for j in history(pool, cluster) if j["JobStatus"] == 4]) == 2,
                 timeout=600, interval=3, what="both jobs to complete")
        done_at = time.time()
        wait_for(lambda: no_workers(pool), timeout=600, interval=3, what="the pool to empty",
                 report=lambda: pool_report(pool, log))
    finally:
        assert stop_autoscaler(proc) == 0
    done = history(pool, cluster)
    assert all(j["ExitCode"] == 0 for j in done), done
    early = [e for e in events(log) if e["event"] == "terminate" and e["ts"] < done_at]
    assert not early, f"a busy worker was terminated: {early}"
    assert len(launched_since(pool, started)) == 2, "nothing launched to replace them"
    lost = [e for e in events(log)
            if e["event"] == "terminate" and "missing from the collector" in e["reason"]]
    if lost:
        warnings.warn(f"startds did not advertise again after the collector restart; "
                      f"lost_timeout_s replaced them: {lost}", stacklevel=1)


def test_a_worker_that_falls_silent_is_replaced_once_idle_and_not_relaunched(
        clean_pool: PoolHandle, tmp_path: Path) -> None:
    """A joined worker's startd stops advertising while its job runs (frozen here; its ad
    removed from the collector as an expired one would be). The job still completes: the
    starter reports to the shadow. Missing with no job on it for lost_timeout_s, the worker
    is terminated, and with nothing queued nothing is launched in its place."""
    pool = clean_pool
    started = time.time()
    cluster, log, proc = _autoscale_leased(pool, tmp_path, 1, seconds=30, lease_s=600,
                                           join_timeout_s=45.0, lost_timeout_s=30.0)
    try:
        (worker,) = _running_on_joined_workers(pool, cluster, 1).values()
        pool.sandbox.exec(worker, "pkill -STOP -x condor_startd")
        query = f'MyType = "Query"\nTargetType = "Machine"\nRequirements = EC2InstanceId == ' \
                f'"{worker}"'
        pool.sandbox.exec(pool.cm, f"printf '%s\\n' {shlex.quote(query)} | "
                                   "condor_advertise INVALIDATE_STARTD_ADS -")
        wait_for(lambda: [j for j in history(pool, cluster) if j["JobStatus"] == 4],
                 timeout=600, interval=3, what="the job to complete")
        wait_for(lambda: no_workers(pool), timeout=300, interval=3, what="the pool to empty",
                 report=lambda: pool_report(pool, log))
    finally:
        assert stop_autoscaler(proc) == 0
    (job,) = history(pool, cluster)
    assert job["ExitCode"] == 0
    (gone,) = [e for e in events(log) if e["event"] == "terminate"]
    assert gone["instance"] == worker and gone["ts"] >= job["CompletionDate"], \
        "not while its job ran"
    assert "missing from the collector" in gone["reason"]
    assert "no idle job needs its capacity" in gone["reason"]
    assert len(launched_since(pool, started)) == 1, "nothing launched in its place"
