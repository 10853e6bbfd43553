"""No job is killed whatever the timing: drains the startd refuses or that are cancelled,
one lease holder at a time and fenced actions, values that cannot stop the loop, a launch
that fails part-way, and views that lag (the runtime's memory). The live behaviour is
tested on the sandbox (tests/e2e/test_job_safety.py)."""

from __future__ import annotations

import math
import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from orchestrator.autoscaler.planner.config import AutoscalerConfig, InstanceShape
from orchestrator.autoscaler.planner.model import Drain, Plan, Removal, RemovalAction
from orchestrator.autoscaler.planner.strategies import plan
from orchestrator.autoscaler.runtime.executor import Executor, LaunchSpec
from orchestrator.autoscaler.runtime.fakes import (
    MemoryLeaseStore,
    RecordingCloud,
    RecordingCondor,
    fake_instance,
)
from orchestrator.autoscaler.runtime.lease import FENCE_MARGIN_S, Lease, LeaseHeld, LeaseLost
from orchestrator.autoscaler.runtime.memory import KnownSchedds, RecentLaunches
from orchestrator.autoscaler.runtime.observe import build
from orchestrator.aws.records import Ec2Instance
from orchestrator.condor.actions import CHECK_REFUSED, DRAIN_REASON
from orchestrator.condor.records import ScheddQueues, Slot
from orchestrator.vocabulary import TAG_DRAINED, TAG_JOINED, InstanceState

NOW = 1_800_000_000.0
SPEC = LaunchSpec(image_id="ami-w", subnets=["subnet-1"], security_groups=["sg-1"],
                  instance_profile="p-worker")
CFG = AutoscalerConfig(arrival_window_s=0.0, spare_largest_jobs=0, idle_timeout_s=60.0)


def inst(iid: str, drained: bool = True) -> Ec2Instance:
    """A joined worker; `drained`: a drain of ours was accepted by its startd (the tag)."""
    base = fake_instance(iid)
    anchor = {TAG_DRAINED: "true"} if drained else {}
    return Ec2Instance(**{**base.__dict__, "state": InstanceState.RUNNING,
                          "launch_time": "2027-01-15T08:00:00+00:00",
                          "tags": {**base.tags, TAG_JOINED: "1", **anchor}})


def slot(iid: str, state: str = "Unclaimed", draining: bool = False,
         reason: str | None = None, kind: str = "Partitionable") -> Slot:
    return Slot.from_ad({"Name": f"slot1@{iid}", "Machine": f"host-{iid}", "State": state,
                         "Activity": "Idle", "Memory": 4096, "Cpus": 2, "SlotType": kind,
                         "EC2InstanceId": iid, "HtcpoolPool": "p",
                         "MyAddress": "<198.18.0.9:9618?sock=startd>", "Draining": draining,
                         "DrainReason": reason})


def executor(cloud: RecordingCloud, condor: RecordingCondor) -> tuple[Executor, list[Any]]:
    events: list[dict[str, Any]] = []
    return Executor(cloud, condor, CFG, lambda: SPEC,
                    lambda kind, **f: events.append({"event": kind, **f})), events


# --- drains ------------------------------------------------------------------------------


def test_a_drain_that_finds_the_worker_claimed_is_cancelled_the_next_pass() -> None:
    """The race the startd's check closes, played out with a fake whose drain is accepted
    and then the worker is claimed: the next pass cancels our drain, nothing is removed."""
    world: dict[str, list[Slot]] = {"i-a": [slot("i-a")]}

    def claimed_right_after(_machine: str) -> None:
        world["i-a"] = [slot("i-a", "Drained", draining=True, reason=DRAIN_REASON),
                        slot("i-a", "Claimed", kind="Dynamic")]

    cloud, condor = RecordingCloud(), RecordingCondor(on_drain=claimed_right_after)
    ex, _ = executor(cloud, condor)
    # Idle since long before: the tag says so.
    first = build("p", [Ec2Instance(**{**inst("i-a").__dict__, "tags": {
        **inst("i-a").tags, "htcpool:idle-since": f"{NOW - 600:.0f}"}})],
        world["i-a"], [], NOW)
    p1 = plan(first.observation, CFG, NOW)
    assert [d.instance_id for d in p1.drains] == ["i-a"]
    ex.execute(p1, first, cycle="1")
    assert condor.drained == ["host-i-a"] and not cloud.terminated
    second = build("p", [inst("i-a")], world["i-a"], [], NOW + 20)
    p2 = plan(second.observation, CFG, NOW + 20)
    assert [u.instance_id for u in p2.undrains] == ["i-a"] and not p2.removals
    out = ex.execute(p2, second, cycle="2")
    assert condor.cancelled == ["host-i-a"] and out.undrained == ["i-a"]
    assert not cloud.terminated and not cloud.stopped


def test_a_drain_the_startd_refuses_is_no_error_and_nothing_is_removed() -> None:
    cloud = RecordingCloud()
    condor = RecordingCondor()
    condor.failing = {"host-i-a"}
    condor.drain = lambda machines: {m: f"error code 10003: {CHECK_REFUSED} on slot1_1@{m}"
                                     for m in machines}  # type: ignore[method-assign]
    ex, events = executor(cloud, condor)
    observed = build("p", [inst("i-a")], [slot("i-a")], [], NOW)
    out = ex.execute(Plan(drains=(Drain("i-a", "idle"),)), observed, cycle="c")
    assert out.refused == ["i-a"] and not out.errors and not out.drained
    assert any(e["event"] == "keep" for e in events)


def test_removal_needs_a_fresh_ad_that_is_drained_and_wholly_unclaimed() -> None:
    cloud = RecordingCloud()
    ids = ("i-ok", "i-matched", "i-undrained", "i-preempting")
    condor = RecordingCondor(slots={
        "i-ok": [slot("i-ok", "Drained", draining=True, reason=DRAIN_REASON)],
        "i-matched": [slot("i-matched", "Drained", draining=True, reason=DRAIN_REASON),
                      slot("i-matched", "Matched", kind="Dynamic")],
        "i-undrained": [slot("i-undrained")],
        "i-preempting": [slot("i-preempting", "Preempting", draining=True)]})
    ex, _ = executor(cloud, condor)
    observed = build("p", [inst(i) for i in ids],
                     [slot(i, "Drained", draining=True, reason=DRAIN_REASON) for i in ids],
                     [], NOW)
    out = ex.execute(Plan(removals=tuple(Removal(i, RemovalAction.TERMINATE, "idle")
                                         for i in ids)), observed, cycle="c")
    assert cloud.terminated == ["i-ok"]
    assert sorted(out.kept) == ["i-matched", "i-preempting", "i-undrained"]


# --- the lease ---------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_two_candidates_race_and_only_one_holds_the_lease() -> None:
    store = MemoryLeaseStore()
    a, b = Lease(store, 60, monotonic=Clock(), holder="a"), Lease(store, 60,
                                                                    monotonic=Clock(),
                                                                    holder="b")
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def take(lease: Lease) -> None:
        barrier.wait()
        try:
            lease.acquire()
            outcomes.append(lease.holder)
        except LeaseHeld:
            pass

    threads = [threading.Thread(target=take, args=(x,)) for x in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(outcomes) == 1
    winner, loser = (a, b) if outcomes == ["a"] else (b, a)
    winner.fence()
    with pytest.raises(LeaseLost):
        loser.fence()


def test_a_candidate_takes_over_only_after_the_holder_stopped_renewing_for_ttl() -> None:
    store = MemoryLeaseStore()
    ca, cb = Clock(), Clock()
    cb.t = 5_000_000.0  # another host's monotonic clock: unrelated values, same rate
    a = Lease(store, 60, monotonic=ca, holder="a")
    b = Lease(store, 60, monotonic=cb, holder="b")
    a.acquire()
    for _ in range(5):  # a renews every 20 s: b never gets it
        with pytest.raises(LeaseHeld):
            b.acquire()
        ca.t += 20
        cb.t += 20
        a.acquire()
    # a stalls (a long pass, a dead host): its own fence closes before b can take over
    ca.t += 60 - FENCE_MARGIN_S + 1
    cb.t += 60 - FENCE_MARGIN_S + 1
    with pytest.raises(LeaseLost):
        a.fence()
    with pytest.raises(LeaseHeld):
        b.acquire()  # seen since the last renewal... (this sighting starts b's wait)
    cb.t += 60
    b.acquire()
    b.fence()
    ca.t += 60
    with pytest.raises(LeaseHeld):  # a wakes up: it cannot renew, b's rvn is in place
        a.acquire()


def test_a_lease_that_expires_mid_pass_stops_the_terminate() -> None:
    store = MemoryLeaseStore()
    clock = Clock()
    lease = Lease(store, 60, monotonic=clock, holder="me")
    lease.acquire()
    cloud = RecordingCloud()
    ids = ("i-a", "i-b")

    class SlowRecheck(RecordingCondor):
        def recheck(self, instance_ids: Any) -> dict[str, list[Slot]]:
            clock.t += 55  # an SSM call that took most of the lease
            return super().recheck(instance_ids)

    condor = SlowRecheck(slots={i: [slot(i, "Drained", draining=True, reason=DRAIN_REASON)]
                                for i in ids})
    ex, _ = executor(cloud, condor)
    observed = build("p", [inst(i) for i in ids],
                     [slot(i, "Drained", draining=True, reason=DRAIN_REASON) for i in ids],
                     [], NOW)
    out = ex.execute(Plan(removals=tuple(Removal(i, RemovalAction.TERMINATE, "idle")
                                         for i in ids)), observed, cycle="c",
                     fence=lease.fence)
    assert not cloud.terminated
    assert any("not safely held" in e for e in out.errors)


@pytest.mark.parametrize("value", [
    {"holder": "x", "rvn": {"S": "1"}, "ttl_s": "inf"},
    {"holder": "x", "rvn": {"S": "1"}, "ttl_s": None},
    {"holder": None, "rvn": {"S": "1"}, "ttl_s": "60"},
    {"holder": "x", "rvn": {"N": "1"}, "ttl_s": "60"},
    {"holder": ["x"], "ttl_s": "1e300"},
])
def test_a_malformed_lease_is_replaced_with_a_log_line_never_a_crash(
        value: dict[str, Any]) -> None:
    store = MemoryLeaseStore()
    store.item = value
    clock = Clock()
    said: list[str] = []
    lease = Lease(store, 60, monotonic=clock, holder="me", log=said.append)
    with pytest.raises(LeaseHeld):
        lease.acquire()
    clock.t += 61
    lease.acquire()
    lease.fence()
    assert any("malformed" in m for m in said)
    assert store.read() is not None and store.read().holder == "me"  # type: ignore[union-attr]


# --- values that must not validate -------------------------------------------------------

FLOATS = [name for name, f in AutoscalerConfig.model_fields.items() if f.annotation is float]
assert len(FLOATS) >= 9, FLOATS


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(FLOATS),
       st.sampled_from([math.inf, -math.inf, math.nan, 1e300, -1.0, 1e12]))
def test_no_non_finite_or_absurd_duration_validates(name: str, value: float) -> None:
    with pytest.raises(ValidationError):
        AutoscalerConfig(**{name: value})


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(["cpus", "memory_mb", "gpus", "price_per_hour"]),
       st.sampled_from([math.inf, math.nan, 10**12, -1]))
def test_no_absurd_shape_validates(name: str, value: float) -> None:
    fields: dict[str, Any] = {"name": "x", "cpus": 2, "memory_mb": 4096, "gpus": 0,
                              "price_per_hour": 0.1}
    with pytest.raises(ValidationError):
        InstanceShape(**{**fields, name: value})


# --- views that lag ---------------------------------------------------------------------


def test_a_launch_ec2_does_not_list_yet_still_counts_as_booting() -> None:
    recent = RecentLaunches()
    recent.add([fake_instance("i-new")], NOW)
    merged = recent.merge([], NOW + 20)
    assert [(i.id, i.state) for i in merged] == [("i-new", InstanceState.PENDING)]
    listed = [inst("i-new")]
    assert recent.merge(listed, NOW + 40) == listed  # listed once: forgotten
    assert recent.merge([], NOW + 60) == []


def test_a_schedd_the_restarted_collector_does_not_list_yet_is_silent() -> None:
    known = KnownSchedds()
    assert known.silent(ScheddQueues([], ("cm", "submit2")), NOW, 1200) == {}
    after = known.silent(ScheddQueues([], ("cm",)), NOW + 30, 1200)
    assert list(after) == ["submit2"]
    assert known.silent(ScheddQueues([], ("cm",)), NOW + 2000, 1200) == {}  # forgotten
    one = KnownSchedds()
    one.silent(ScheddQueues([], ("cm",)), NOW, 1200)
    # The collector lists no schedd; the local one answered: it is the one remembered.
    assert one.silent(ScheddQueues([], ("-",)), NOW + 30, 1200) == {}
