"""The autoscaler on a real pool (sandbox hosts, real HTCondor, baked worker image).

Jobs are submitted on the central manager as an ordinary user; `htcpool scale` and
`htcpool autoscale` run as a user would run them. Every check reads HTCondor's job history
and the EC2 records, never the autoscaler's own account of what it did.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.paths import HTCPOOL
from tests.support.pool import (
    PoolHandle,
    config_with,
    events,
    history,
    launched_since,
    no_workers,
    pool_report,
    queue_states,
    start_autoscaler,
    stop_autoscaler,
    submit,
)
from tests.support.sandbox import wait_for

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]


def test_burst_scales_out_in_one_pass_runs_everything_and_returns_to_min(
        clean_pool: PoolHandle, tmp_path: Path) -> None:
    pool = clean_pool
    started = time.time()
    cluster = submit(pool, 20, seconds=15)
    result = json.loads(pool.htcpool("scale", "--json").stdout)
    launched = result["outcome"]["launched"]
    assert len(launched) == 10, "one pass requests all 20 cores the queue needs (2 per worker)"
    assert sum(a["count"] for a in result["plan"]["launches"]) == 10

    log = tmp_path / "autoscale.log"
    proc = start_autoscaler(pool, log)
    try:
        wait_for(lambda: len([j for j in history(pool, cluster) if j["JobStatus"] == 4]) == 20,
                 timeout=900, interval=3, what="all 20 jobs to complete")
        wait_for(lambda: no_workers(pool), timeout=600, interval=3,
                 what="the pool to scale back to min_workers (0)",
                 report=lambda: pool_report(pool, log))
    finally:
        assert stop_autoscaler(proc) == 0
    done = history(pool, cluster)
    assert sorted(j["ProcId"] for j in done) == list(range(20))
    assert all(j["ExitCode"] == 0 and j["NumJobStarts"] == 1 for j in done), \
        "no job was killed or restarted"
    ever = launched_since(pool, started)
    assert len(ever) == 10, "no double launch: the loop counted the first pass's instances"
    assert {i["State"]["Name"] for i in ever} == {"terminated"}
    live_hosts = {h["instance_id"] for h in pool.sandbox.hosts() if h["nspawn_pid"]}
    assert not live_hosts & {i["InstanceId"] for i in ever}, "terminated means no host left"
    kinds = [e["event"] for e in events(log)]
    assert "drain" in kinds and "terminate" in kinds


def test_a_worker_running_a_long_job_is_never_removed(clean_pool: PoolHandle,
                                                      tmp_path: Path) -> None:
    pool = clean_pool
    cluster = submit(pool, 1, seconds=600)
    log = tmp_path / "autoscale.log"
    proc = start_autoscaler(pool, log)
    try:
        wait_for(lambda: queue_states(pool, cluster) == [2], timeout=300, interval=3,
                 what="the long job to run")
        (worker,) = pool.workers(states=("running",))
        # Several idle timeouts long, with an otherwise empty queue and a free core.
        time.sleep(4 * pool.pool.config.autoscaler.idle_timeout_s)
        assert queue_states(pool, cluster) == [2]
        assert [w["InstanceId"] for w in pool.workers(states=("running",))] == \
            [worker["InstanceId"]]
        touched = [e for e in events(log) if e.get("instance") == worker["InstanceId"]
                   and e["event"] in ("drain", "terminate", "stop")]
        assert not touched, f"the busy worker was acted on: {touched}"
        pool.sandbox.exec(pool.cm, f"su alice -c 'condor_rm {cluster}'")
        wait_for(lambda: no_workers(pool), timeout=300, interval=3,
                 what="the now idle worker to be removed")
    finally:
        assert stop_autoscaler(proc) == 0


def test_capacity_errors_fall_back_and_throttling_is_retried(clean_pool: PoolHandle,
                                                             tmp_path: Path) -> None:
    pool = clean_pool
    config = tmp_path / "htcpool.toml"
    config.write_text(pool.config_file.read_text() + """
[[autoscaler.shapes]]
name = "t3.large"
cpus = 2
memory_mb = 8192
price_per_hour = 0.0832
""")
    pool.sandbox.inject("RunInstances", "InsufficientInstanceCapacity",
                        match={"InstanceType": "t3.medium"}, remaining=-1)
    pool.sandbox.inject("DescribeInstances", "RequestLimitExceeded", remaining=3)
    cluster = submit(pool, 4, seconds=5)
    env = pool.env(HTCPOOL_CONFIG=str(config))
    proc = subprocess.run([HTCPOOL, "scale", "--json"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    ids = result["outcome"]["launched"]
    assert len(ids) == 2
    types = {i["InstanceType"] for i in pool.workers() if i["InstanceId"] in ids}
    assert types == {"t3.large"}, "the next shape that fits was launched instead"
    pool.sandbox.clear_faults()
    log = tmp_path / "autoscale.log"
    runner = start_autoscaler(pool, log)
    try:
        wait_for(lambda: len(history(pool, cluster)) == 4 and no_workers(pool), timeout=600,
                 interval=3, what="the jobs to finish and the pool to empty",
                 report=lambda: pool_report(pool, log))
    finally:
        assert stop_autoscaler(runner) == 0


def test_killing_the_autoscaler_at_random_points_loses_nothing(clean_pool: PoolHandle,
                                                               tmp_path: Path) -> None:
    pool = clean_pool
    rng = random.Random(int(os.environ.get("HTCPOOL_TEST_SEED", "7")))
    started = time.time()
    cluster = submit(pool, 12, seconds=20)
    log = tmp_path / "autoscale.log"
    kills = 0
    while kills < 4 or len([j for j in history(pool, cluster) if j["JobStatus"] == 4]) < 12:
        proc = start_autoscaler(pool, log)
        time.sleep(rng.uniform(0.5, 8.0))
        if kills < 4:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += 1
            continue
        try:
            wait_for(lambda: len([j for j in history(pool, cluster)
                                  if j["JobStatus"] == 4]) == 12,
                     timeout=600, interval=3, what="all jobs to complete")
            wait_for(lambda: no_workers(pool), timeout=600, interval=3,
                     what="the pool to empty", report=lambda: pool_report(pool, log))
        finally:
            stop_autoscaler(proc)
    done = history(pool, cluster)
    assert len(done) == 12 and all(j["ExitCode"] == 0 for j in done), "no job lost"
    assert all(j["NumJobStarts"] == 1 for j in done), "no job killed by the autoscaler"
    ever = launched_since(pool, started)
    assert len(ever) <= 6, f"no double launch across restarts ({len(ever)} launched for 6)"
    assert not pool.workers(), "no orphaned instance"


def test_warm_pool_stops_idle_workers_and_starts_them_before_launching(
        clean_pool: PoolHandle, tmp_path: Path) -> None:
    pool = clean_pool
    env = config_with(pool, tmp_path, warm_pool=True)
    log = tmp_path / "autoscale.log"
    proc = start_autoscaler(pool, log, env=env)
    try:
        first = submit(pool, 2, seconds=5)
        wait_for(lambda: len(history(pool, first)) == 2, timeout=600, interval=3,
                 what="the first jobs to complete")
        wait_for(lambda: pool.workers() and not pool.workers(states=("pending", "running",
                                                                     "stopping")),
                 timeout=600, interval=3, what="the idle workers to be stopped, not terminated")
        warm = {w["InstanceId"] for w in pool.workers(states=("stopped",))}
        restart = time.time()
        second = submit(pool, 2, seconds=5)
        wait_for(lambda: len(history(pool, second)) == 2, timeout=600, interval=3,
                 what="the second jobs to complete on restarted workers")
        assert not launched_since(pool, restart), "started the stopped workers, launched none"
        started = [e for e in events(log) if e["event"] == "start" and "instances" in e]
        assert started and set(started[0]["instances"]) <= warm
        done = history(pool, first) + history(pool, second)
        assert all(j["ExitCode"] == 0 and j["NumJobStarts"] == 1 for j in done)
    finally:
        assert stop_autoscaler(proc) == 0
        pool.sandbox.terminate([w["InstanceId"] for w in pool.workers()])


def test_jobs_that_arrive_while_an_idle_worker_drains_take_it_back(
        clean_pool: PoolHandle, tmp_path: Path) -> None:
    """Scale-in drains an idle worker in one pass and removes it in a later one, once the
    collector shows the drain. A job submitted in between cancels the drain: it runs on
    that worker and nothing is launched for it."""
    pool = clean_pool
    # A longer pass interval than the sandbox's 5 s leaves time to submit between the
    # drain and the removal.
    env = config_with(pool, tmp_path, interval_s=15.0)
    log = tmp_path / "autoscale.log"
    proc = start_autoscaler(pool, log, env=env)
    try:
        first = submit(pool, 1, seconds=5)
        wait_for(lambda: len(history(pool, first)) == 1, timeout=600, interval=3,
                 what="the first job to complete")
        (worker,) = [w["InstanceId"] for w in pool.workers(states=("running",))]

        def idle_tagged() -> bool:
            (w,) = [w for w in pool.workers() if w["InstanceId"] == worker]
            return "htcpool:idle-since" in {t["Key"] for t in w.get("Tags", [])}

        wait_for(lambda: any(e["event"] == "drain" and e.get("instance") == worker
                             for e in events(log)), timeout=300, interval=0.5,
                 what="the idle worker to be drained")
        assert idle_tagged()
        again = time.time()
        # Longer than a pass: one sees it claimed and clears the worker's idle-since tag.
        second = submit(pool, 1, seconds=20)
        wait_for(lambda: queue_states(pool, second) == [2] and not idle_tagged(), timeout=180,
                 interval=1, what="the job to run and its worker's idle-since tag to go")
        wait_for(lambda: len(history(pool, second)) == 1, timeout=600, interval=3,
                 what="the second job to complete")
        undrains = [e for e in events(log) if e["event"] == "undrain"]
        assert [e["instance"] for e in undrains] == [worker], events(log)
        assert not launched_since(pool, again), "the drained worker was taken back instead"
    finally:
        assert stop_autoscaler(proc) == 0
        pool.sandbox.terminate([w["InstanceId"] for w in pool.workers()])
    assert all(j["ExitCode"] == 0 for j in history(pool, first) + history(pool, second))


def test_a_worker_that_never_joins_is_replaced(clean_pool: PoolHandle, tmp_path: Path) -> None:
    """A pool worker (the pool's image and worker profile) launched with its metadata
    service off cannot learn its pool and token, so it never joins: after join_timeout_s
    the autoscaler terminates it and launches a working one for the waiting job."""
    pool = clean_pool
    env = config_with(pool, tmp_path, join_timeout_s=30.0)
    cluster = submit(pool, 1, seconds=5, cpus=2)
    name = pool.pool.config.pool
    tags = [{"ResourceType": "instance", "Tags": [
        {"Key": "htcpool:pool", "Value": name}, {"Key": "htcpool:role", "Value": "worker"},
        {"Key": "htcpool:launched-by", "Value": "autoscaler"}]}]
    (broken,) = pool.sandbox.run(1, image_id=pool.pool.worker_image, InstanceType="t3.medium",
                                 TagSpecifications=tags,
                                 IamInstanceProfile={"Name": f"htcpool-{name}-instance"},
                                 MetadataOptions={"HttpEndpoint": "disabled"})
    log = tmp_path / "autoscale.log"
    proc = start_autoscaler(pool, log, env=env)
    try:
        wait_for(lambda: len(history(pool, cluster)) == 1, timeout=600, interval=3,
                 what="the job to run on a replacement worker")
    finally:
        assert stop_autoscaler(proc) == 0
    state = pool.sandbox.client("ec2").describe_instances(InstanceIds=[broken])[
        "Reservations"][0]["Instances"][0]["State"]["Name"]
    assert state in ("shutting-down", "terminated")
    replaced = [e for e in events(log) if e["event"] == "terminate"
                and e.get("instance") == broken]
    assert replaced and "replace" in replaced[0]["reason"]
    assert history(pool, cluster)[0]["ExitCode"] == 0
    pool.sandbox.terminate([w["InstanceId"] for w in pool.workers()])
