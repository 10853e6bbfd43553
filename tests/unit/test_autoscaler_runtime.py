"""The autoscaler's runtime around the policy: observation assembly and the executor's
safety rules, with a recording fake cloud (the live behaviour is tested on the sandbox)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.autoscaler.planner.config import AutoscalerConfig, InstanceShape
from orchestrator.autoscaler.planner.model import (
    Drain,
    Launch,
    Plan,
    Removal,
    RemovalAction,
    Replacement,
    Undrain,
)
from orchestrator.autoscaler.runtime.executor import Executor, LaunchSpec, fallback_types
from orchestrator.autoscaler.runtime.fakes import RecordingCloud, RecordingCondor
from orchestrator.autoscaler.runtime.observe import build
from orchestrator.aws.records import Ec2Instance
from orchestrator.condor.records import Job, JobStatus, Slot
from orchestrator.vocabulary import (
    TAG_DRAINED,
    TAG_IDLE_SINCE,
    TAG_JOINED,
    TAG_MISSING_SINCE,
    InstanceState,
)

NOW = 1_800_000_000.0


def inst(iid: str, role: str | None = "worker", pool: str | None = "p",
         state: InstanceState = InstanceState.RUNNING,
         tags: dict[str, str] | None = None) -> Ec2Instance:
    all_tags = dict(tags or {})
    if pool:
        all_tags["htcpool:pool"] = pool
    if role:
        all_tags["htcpool:role"] = role
    return Ec2Instance(id=iid, name=iid, image_id="ami-1", instance_type="c6i.large", state=state,
                    monitoring="disabled", private_ip="198.18.0.9", private_dns=None,
                    public_ip=None, zone="us-east-1a", subnet_id="subnet-1",
                    launch_time="2027-01-15T08:00:00+00:00", tags=all_tags)


def slot(iid: str, state: str = "Unclaimed", cpus: int = 2, memory: int = 4096,
         kind: str = "Partitionable", activity: str = "Idle",
         drain_reason: str | None = None) -> Slot:
    """A slot as the collector reports it (Slot.from_ad: Draining follows the state)."""
    return Slot.from_ad({"Name": f"slot1@{iid}", "Machine": f"host-{iid}", "State": state,
                         "Activity": activity, "LoadAvg": 0.0, "Memory": memory, "Cpus": cpus,
                         "Gpus": 0, "SlotType": kind, "EC2InstanceId": iid, "HtcpoolPool": "p",
                         "MyAddress": "<198.18.0.9:9618?sock=startd>",
                         "Draining": state == "Drained" or activity == "Retiring",
                         "DrainReason": drain_reason})


def job(cluster: int, status: JobStatus = JobStatus.IDLE, cpus: int = 1,
        memory: int = 1024) -> Job:
    return Job(cluster=cluster, proc=0, owner="alice", status=status, batch_name="",
               request_cpus=cpus, request_memory_mb=memory, request_gpus=0, qdate=int(NOW) - 60,
               remote_host=None, hold_reason=None)


def test_partitionable_slots_sum_into_one_startd_with_free_and_claimed() -> None:
    observed = build("p", [inst("i-a")], [
        slot("i-a", cpus=1, memory=2048),                                # what is left
        slot("i-a", state="Claimed", cpus=1, memory=2048, kind="Dynamic", activity="Busy"),
    ], [job(1, JobStatus.RUNNING)], NOW)
    (sd,) = observed.observation.startds
    assert (sd.total_cpus, sd.free_cpus, sd.total_memory_mb, sd.free_memory_mb) == \
        (2, 1, 4096, 2048)
    assert sd.claimed and sd.unclaimed_since is None
    assert observed.observation.running_jobs == 1
    assert observed.machines == {"i-a": "host-i-a"}


def test_idle_since_is_recorded_in_a_tag_and_cleared_when_claimed() -> None:
    first = build("p", [inst("i-a")], [slot("i-a")], [], NOW)
    assert first.tags.set[TAG_IDLE_SINCE] == {"i-a": f"{NOW:.0f}"}
    assert first.observation.startds[0].unclaimed_since == NOW
    # After a restart the tag is the memory: the clock keeps running from it.
    later = build("p", [inst("i-a", tags={TAG_IDLE_SINCE: "1799999000", TAG_JOINED: "1"})],
                  [slot("i-a")], [], NOW)
    assert later.observation.startds[0].unclaimed_since == 1799999000.0
    assert later.tags.empty
    claimed = build("p", [inst("i-a", tags={TAG_IDLE_SINCE: "1799999000"})],
                    [slot("i-a", state="Claimed", kind="Dynamic")], [], NOW)
    assert claimed.tags.clear[TAG_IDLE_SINCE] == ["i-a"]


def test_draining_startds_are_no_capacity_and_foreign_startds_are_ignored() -> None:
    from orchestrator.autoscaler.planner.classify import classify, free_bins

    observed = build("p", [inst("i-a")], [slot("i-a", state="Drained", activity="Retiring"),
                                          slot("i-zzz")], [], NOW)
    (sd,) = observed.observation.startds
    assert sd.draining and not sd.claimed and not sd.drained_by_us
    assert (sd.free_cpus, sd.free_memory_mb) == (2, 4096)  # what no claim holds
    assert not free_bins(classify(observed.observation, AutoscalerConfig(), NOW))
    assert observed.draining == 1


def test_matched_and_preempting_slots_count_as_claimed_and_our_drains_are_known() -> None:
    from orchestrator.condor.actions import DRAIN_REASON

    for state in ("Matched", "Preempting", "Claimed", "SomethingNew"):
        observed = build("p", [inst("i-a")], [slot("i-a", state=state)], [], NOW)
        assert observed.observation.startds[0].claimed, state
    drained = build("p", [inst("i-a")], [
        slot("i-a", state="Drained", drain_reason=DRAIN_REASON),
        slot("i-a", state="Claimed", kind="Dynamic", activity="Retiring")], [], NOW)
    (sd,) = drained.observation.startds
    assert sd.draining and sd.claimed and sd.drained_by_us


def test_jobs_sending_output_or_suspended_are_on_a_machine() -> None:
    jobs = [running_on("i-a", 1), replace(running_on("i-b", 2),
                                          status=JobStatus.TRANSFERRING_OUTPUT),
            replace(running_on("i-c", 3), status=JobStatus.SUSPENDED)]
    observed = build("p", [inst(i) for i in ("i-a", "i-b", "i-c")],
                     [slot(i) for i in ("i-a", "i-b", "i-c")], jobs, NOW)
    assert observed.jobs_running == 3
    assert observed.observation.busy_instances == {"i-a", "i-b", "i-c"}
    assert all(sd.claimed for sd in observed.observation.startds)


def test_idle_jobs_are_grouped_by_request_and_cluster() -> None:
    jobs = [job(1) for _ in range(500)] + [job(2, cpus=4, memory=8192) for _ in range(3)] + \
        [job(3, JobStatus.HELD)]
    groups = build("p", [], [], jobs, NOW).observation.idle_jobs
    assert sorted((g.request_cpus, g.count) for g in groups) == [(1, 500), (4, 3)]


SPEC = LaunchSpec(image_id="ami-w", subnets=["subnet-1", "subnet-2"],
                  security_groups=["sg-1"], instance_profile="p-worker")


def _executor(cloud: RecordingCloud, ops: RecordingCondor,
              config: AutoscalerConfig | None = None) -> tuple[Executor, list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    ex = Executor(cloud, ops, config or AutoscalerConfig(), lambda: SPEC,
                  lambda kind, **f: events.append({"event": kind, **f}))
    return ex, events


def test_executor_never_touches_the_central_manager_or_untagged_instances() -> None:
    cloud, ops = RecordingCloud(), RecordingCondor()
    observed = build("p", [inst("i-cm", role="central-manager"), inst("i-x", pool=None),
                           inst("i-w")], [slot("i-cm"), slot("i-x"), slot("i-w")], [], NOW)
    plan = Plan(drains=(Drain("i-cm", "bad"), Drain("i-x", "bad")),
                removals=(Removal("i-cm", RemovalAction.TERMINATE, "bad"),
                          Removal("i-x", RemovalAction.TERMINATE, "bad")),
                replacements=(Replacement("i-cm", "c6i.large", "bad"),))
    ex, events = _executor(cloud, ops)
    out = ex.execute(plan, observed, cycle="t")
    assert cloud.terminated == [] and ops.drained == [] and cloud.launches == []
    assert any("not a tagged worker" in e for e in out.errors)
    assert any(e["event"] == "refused" for e in events)


def test_removal_waits_for_the_drain_and_skips_a_worker_claimed_at_recheck() -> None:
    cloud = RecordingCloud()
    ops = RecordingCondor(slots={"i-busy": [slot("i-busy", state="Claimed", kind="Dynamic")],
                         "i-idle": [slot("i-idle", state="Drained")]})
    drained = {TAG_DRAINED: "true"}
    observed = build("p", [inst("i-new"), inst("i-busy", tags=drained),
                           inst("i-idle", tags=drained)],
                     [slot("i-new"), slot("i-busy", state="Drained"),
                      slot("i-idle", state="Drained")], [], NOW)
    plan = Plan(drains=(Drain("i-new", "idle"),),
                removals=tuple(Removal(i, RemovalAction.TERMINATE, "idle")
                               for i in ("i-new", "i-busy", "i-idle")))
    ex, _ = _executor(cloud, ops)
    out = ex.execute(plan, observed, cycle="t")
    assert ops.drained == ["host-i-new"]
    assert cloud.terminated == ["i-idle"], "only the drained, still unclaimed worker goes"
    assert sorted(out.kept) == ["i-busy", "i-new"]
    assert ops.cancelled == ["host-i-busy"], "a claimed worker's drain is cancelled"
    assert ("tag", ["i-new"], TAG_DRAINED, "true") in cloud.tag_calls
    assert ("untag", ["i-busy"], TAG_DRAINED, None) in cloud.tag_calls


def test_launches_are_one_request_per_type_with_fallbacks_and_replacements_folded_in() -> None:
    cloud, ops = RecordingCloud(), RecordingCondor()
    config = AutoscalerConfig(shapes=(
        InstanceShape(name="small", cpus=2, memory_mb=4096, price_per_hour=0.1),
        InstanceShape(name="big", cpus=8, memory_mb=16384, price_per_hour=0.4),
        InstanceShape(name="tiny", cpus=1, memory_mb=1024, price_per_hour=0.05)))
    observed = build("p", [inst("i-stuck")], [], [], NOW)
    plan = Plan(launches=(Launch("small", 3, "need"),),
                replacements=(Replacement("i-stuck", "small", "never joined"),))
    ex, events = _executor(cloud, ops, config)
    out = ex.execute(plan, observed, cycle="c1")
    assert cloud.terminated == ["i-stuck"]
    (req,) = cloud.launches
    assert (req.count, list(req.instance_types), list(req.subnets)) == \
        (4, ["small", "big"], ["subnet-1", "subnet-2"])
    assert req.client_token == "htcpool-c1-small"
    assert req.launched_by == "autoscaler" and req.instance_profile == "p-worker"
    assert len(out.launched) == 4
    assert fallback_types(config, "tiny") == ["tiny", "small", "big"]
    assert [e["event"] for e in events].count("launch") == 1


def test_a_machine_the_schedd_says_is_running_a_job_counts_as_claimed() -> None:
    # The collector still shows the slot unclaimed; the schedd already runs a job there.
    running = Job(cluster=9, proc=0, owner="alice", status=JobStatus.RUNNING, batch_name="",
                  request_cpus=1, request_memory_mb=512, request_gpus=0, qdate=None,
                  remote_host="slot1_1@host-i-a", hold_reason=None)
    observed = build("p", [inst("i-a", tags={TAG_IDLE_SINCE: "1799999000"})], [slot("i-a")],
                     [running], NOW)
    (sd,) = observed.observation.startds
    assert sd.claimed and sd.unclaimed_since is None
    assert observed.tags.clear[TAG_IDLE_SINCE] == ["i-a"]


def running_on(iid: str, cluster: int = 9) -> Job:
    return Job(cluster=cluster, proc=0, owner="alice", status=JobStatus.RUNNING, batch_name="",
               request_cpus=1, request_memory_mb=512, request_gpus=0, qdate=None,
               remote_host=f"slot1_1@host-{iid}", hold_reason=None)


def test_joined_and_missing_since_are_recorded_in_tags() -> None:
    # First seen in the collector: marked joined.
    seen = build("p", [inst("i-a")], [slot("i-a")], [], NOW)
    assert seen.tags.set[TAG_JOINED] == {"i-a": f"{NOW:.0f}"}
    # Joined once, absent now (the collector restarted): missing since now.
    gone = build("p", [inst("i-a", tags={TAG_JOINED: "1"})], [], [], NOW)
    assert gone.tags.set[TAG_MISSING_SINCE] == {"i-a": f"{NOW:.0f}"}
    # Back in the collector: the mark is cleared; a stopped worker's too.
    back = build("p", [inst("i-a", tags={TAG_JOINED: "1", TAG_MISSING_SINCE: "5"}),
                       inst("i-s", state=InstanceState.STOPPED,
                            tags={TAG_JOINED: "1", TAG_MISSING_SINCE: "5"})],
                 [slot("i-a")], [], NOW)
    assert back.tags.clear[TAG_MISSING_SINCE] == ["i-a", "i-s"]
    # A worker that never joined gets neither mark.
    assert build("p", [inst("i-b")], [], [], NOW).tags.empty


def test_running_jobs_map_to_instances_through_any_startd_ad() -> None:
    observed = build("p", [inst("i-a"), inst("i-b")], [slot("i-a")],
                     [running_on("i-a"), running_on("i-gone", 10)], NOW)
    obs = observed.observation
    assert obs.busy_instances == frozenset({"i-a"})
    assert obs.unmapped_running == 1, "a job on a machine without an ad maps to nothing"


def test_replacement_is_skipped_when_the_startd_shows_up_at_recheck() -> None:
    cloud = RecordingCloud()
    ops = RecordingCondor(slots={"i-late": [slot("i-late")]})
    observed = build("p", [inst("i-late"), inst("i-dead")], [], [], NOW)
    plan = Plan(replacements=(Replacement("i-late", "c6i.large", "not joined"),
                              Replacement("i-dead", "c6i.large", "not joined")))
    ex, _ = _executor(cloud, ops)
    out = ex.execute(plan, observed, cycle="t")
    assert cloud.terminated == ["i-dead"] and out.kept == ["i-late"]
    (req,) = cloud.launches
    assert req.count == 1, "only the terminated one is replaced"


def test_a_replacement_the_queue_does_not_need_is_terminated_and_not_relaunched() -> None:
    cloud, ops = RecordingCloud(), RecordingCondor()
    observed = build("p", [inst("i-dead")], [], [], NOW)
    plan = Plan(replacements=(Replacement("i-dead", "c6i.large", "not joined",
                                          relaunch=False),))
    ex, _ = _executor(cloud, ops)
    out = ex.execute(plan, observed, cycle="t")
    assert cloud.terminated == ["i-dead"] and out.replaced == ["i-dead"]
    assert not cloud.launches


def test_presence_tags_are_batched_by_tag_and_value() -> None:
    cloud, ops = RecordingCloud(), RecordingCondor()
    observed = build("p", [inst(f"i-{n}") for n in range(5)],
                     [slot(f"i-{n}") for n in range(5)], [], NOW)
    ex, _ = _executor(cloud, ops)
    ex.execute(Plan(), observed, cycle="tags")
    assert [(call, key, len(ids)) for call, ids, key, _ in cloud.tag_calls] \
        == [("tag", TAG_IDLE_SINCE, 5), ("tag", TAG_JOINED, 5)]


def test_undrain_cancels_the_drain_on_the_central_manager() -> None:
    cloud, ops = RecordingCloud(), RecordingCondor()
    observed = build("p", [inst("i-a"), inst("i-cm", role="central-manager")],
                     [slot("i-a", state="Drained", activity="Retiring"), slot("i-cm")], [], NOW)
    plan = Plan(undrains=(Undrain("i-a", "jobs fit"), Undrain("i-cm", "bad")))
    ex, events = _executor(cloud, ops)
    out = ex.execute(plan, observed, cycle="t")
    assert ops.cancelled == ["host-i-a"] and out.undrained == ["i-a"]
    assert any("not a tagged worker" in e for e in out.errors)
    assert [e["instance"] for e in events if e["event"] == "undrain"] == ["i-a"]


def test_startd_ads_of_stopped_or_gone_workers_are_forgotten() -> None:
    gone = slot("i-gone")
    stopped = slot("i-stopped")
    foreign = Slot(**{**gone.__dict__, "ec2_instance_id": "i-other", "pool": "q"})
    observed = build("p", [inst("i-a"), inst("i-stopped", state=InstanceState.STOPPED)],
                     [slot("i-a"), gone, stopped, foreign], [], NOW)
    assert observed.stale_ads == {"i-gone": "host-i-gone", "i-stopped": "host-i-stopped"}
    cloud, ops = RecordingCloud(), RecordingCondor()
    ex, events = _executor(cloud, ops)
    out = ex.execute(Plan(), observed, cycle="bookkeeping")
    assert ops.invalidated == ["i-gone", "i-stopped"] == out.forgotten
    assert [e["instance"] for e in events if e["event"] == "forget"] == ["i-gone", "i-stopped"]


def test_forget_sends_one_invalidation_for_well_formed_ids_only() -> None:
    from orchestrator.condor.actions import CondorActions

    calls: list[list[str]] = []

    class Recorder:
        def run_tool(self, argv: list[str], timeout_s: float = 120.0) -> str:
            calls.append(argv)
            return ""

    CondorActions(Recorder()).invalidate(["i-0123456789abcdef0", 'i-1" || true || "'])  # type: ignore[arg-type]
    (argv,) = calls
    script = argv[-1]
    assert "condor_advertise -multiple INVALIDATE_STARTD_ADS -" in script
    assert 'EC2InstanceId == \\"i-0123456789abcdef0\\"' in script or \
        'EC2InstanceId == "i-0123456789abcdef0"' in script
    assert "|| true" not in script


def test_spot_is_asked_for_when_configured_and_excludes_a_warm_pool() -> None:
    import pytest
    from pydantic import ValidationError

    cloud, ops = RecordingCloud(), RecordingCondor()
    ex, _ = _executor(cloud, ops, AutoscalerConfig(spot=True))
    ex.execute(Plan(launches=(Launch("c6i.large", 2, "need"),)), build("p", [], [], [], NOW),
               cycle="c")
    (req,) = cloud.launches
    assert req.spot and req.count == 2
    with pytest.raises(ValidationError, match="spot and warm_pool"):
        AutoscalerConfig(spot=True, warm_pool=True)


def _schedd_groups(jobs: list[Job]) -> list[Job]:
    """What a grouped query returns: one record per distinct projection, with the count."""
    from collections import Counter
    from dataclasses import replace

    counts = Counter(replace(j, proc=0, owner="", count=1) for j in jobs)
    return [replace(j, count=n) for j, n in counts.items()]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 4), st.sampled_from([JobStatus.IDLE,
                                                               JobStatus.RUNNING]),
                          st.integers(1, 3), st.sampled_from([512, 1024]),
                          st.integers(-300, 0), st.sampled_from([None, "a", "b", "gone"])),
                max_size=40))
def test_a_grouped_queue_gives_the_observation_of_the_jobs_one_by_one(
        rows: list[tuple[int, JobStatus, int, int, int, str | None]]) -> None:
    jobs = [Job(cluster=c, proc=n, owner="alice", status=status, batch_name="",
                request_cpus=cpus, request_memory_mb=mem, request_gpus=0,
                qdate=int(NOW) + age,
                remote_host=f"slot1_{n}@host-i-{host}" if host and status is JobStatus.RUNNING
                else None, hold_reason=None)
            for n, (c, status, cpus, mem, age, host) in enumerate(rows)]
    instances, slots = [inst("i-a"), inst("i-b")], [slot("i-a"), slot("i-b")]
    one_by_one = build("p", instances, slots, jobs, NOW, arrival_window_s=120)
    grouped = build("p", instances, slots, _schedd_groups(jobs), NOW, arrival_window_s=120)
    assert grouped.observation == one_by_one.observation
    assert (grouped.jobs_idle, grouped.jobs_running) == (one_by_one.jobs_idle,
                                                         one_by_one.jobs_running)
