"""What the autoscaler believes, and what it does not: instances tagged into the pool that
it did not launch, startd ads that name an instance but not its address, and drains no
startd of ours accepted."""

from __future__ import annotations

from typing import Any

from orchestrator.autoscaler.planner.config import AutoscalerConfig
from orchestrator.autoscaler.planner.model import Drain, Plan, Removal, RemovalAction
from orchestrator.autoscaler.runtime.executor import Executor, LaunchSpec
from orchestrator.autoscaler.runtime.fakes import RecordingCloud, RecordingCondor, fake_instance
from orchestrator.autoscaler.runtime.observe import build
from orchestrator.aws.provenance import PoolImages, provenance_problem
from orchestrator.aws.records import Ec2Instance
from orchestrator.condor.actions import DRAIN_REASON
from orchestrator.condor.records import Slot
from orchestrator.vocabulary import TAG_DRAINED, TAG_JOINED, InstanceState

NOW = 1_800_000_000.0
PROFILE_ARN = "arn:aws:iam::123456789012:instance-profile/"
SPEC = LaunchSpec(image_id="ami-1", subnets=["subnet-1"], security_groups=["sg-1"],
                  instance_profile="htcpool-p-instance")
CFG = AutoscalerConfig(arrival_window_s=0.0, spare_largest_jobs=0, idle_timeout_s=60.0)


def inst(iid: str, ip: str = "198.18.0.9", profile: str | None = "htcpool-p-instance",
         image: str = "ami-1", role: str = "worker", **tags: str) -> Ec2Instance:
    base = fake_instance(iid, role=role)
    return Ec2Instance(**{**base.__dict__, "state": InstanceState.RUNNING,
                          "private_ip": ip, "image_id": image,
                          "launch_time": "2027-01-15T08:00:00+00:00",
                          "instance_profile_arn": PROFILE_ARN + profile if profile else None,
                          "tags": {**base.tags, TAG_JOINED: "1", **tags}})


def slot(iid: str, ip: str = "198.18.0.9", state: str = "Unclaimed",
         draining: bool = False) -> Slot:
    return Slot.from_ad({"Name": f"slot1@{iid}", "Machine": f"host-{iid}", "State": state,
                         "Activity": "Idle", "Memory": 4096, "Cpus": 2,
                         "SlotType": "Partitionable", "EC2InstanceId": iid,
                         "MyAddress": f"<{ip}:9618?addrs={ip}-9618&sock=startd_1_2>",
                         "Draining": draining,
                         "DrainReason": DRAIN_REASON if draining else None})


def executor(cloud: RecordingCloud, condor: RecordingCondor) -> tuple[Executor, list[Any]]:
    events: list[dict[str, Any]] = []
    return Executor(cloud, condor, CFG, lambda: SPEC,
                    lambda kind, **f: events.append({"event": kind, **f})), events


# --- provenance ----------------------------------------------------------------------------

def _problem(instance: Ec2Instance) -> str | None:
    return provenance_problem(instance, "p", frozenset({"ami-1"}), "htcpool-p-instance",
                              "htcpool-p-central-manager")


def test_a_worker_the_pool_launched_passes() -> None:
    assert _problem(inst("i-a")) is None


def test_a_foreign_instance_tagged_into_the_pool_is_not_the_pools() -> None:
    assert "instance profile" in (_problem(inst("i-a", profile="someone-else")) or "")
    assert "instance profile" in (_problem(inst("i-a", profile=None)) or "")
    assert "image" in (_problem(inst("i-a", image="ami-theirs")) or "")
    assert "instance profile" in (_problem(inst("i-cm", role="central-manager")) or "")
    assert _problem(inst("i-cm", role="central-manager",
                         profile="htcpool-p-central-manager", image="ami-any")) is None


def test_pool_images_are_listed_again_for_an_image_not_seen_yet() -> None:
    listed = [["ami-1"], ["ami-1", "ami-2"]]
    clock = [0.0]
    images = PoolImages(lambda: listed.pop(0), lambda: clock[0])
    assert images.ids() == {"ami-1"}
    clock[0] = 3.0
    assert images.ids(["ami-2"]) == {"ami-1"}, "not more often than every 10 s"
    clock[0] = 20.0
    assert images.ids(["ami-2"]) == {"ami-1", "ami-2"}


# --- startd ads must advertise the instance's own address -------------------------------------

def test_an_ad_at_another_address_is_left_out_and_reported() -> None:
    forged = slot("i-busy", ip="198.18.0.66")  # "idle" ad for a busy worker, elsewhere
    observed = build("p", [inst("i-busy", ip="198.18.0.10")],
                     [forged, slot("i-busy", ip="198.18.0.10", state="Claimed")], [], NOW)
    (startd,) = observed.observation.startds
    assert startd.claimed
    assert observed.mismatched_ads == {"i-busy": forged.address}


def test_a_removal_counts_only_fresh_ads_at_the_instance_address() -> None:
    cloud = RecordingCloud()
    ids = ("i-a",)
    condor = RecordingCondor(slots={"i-a": [
        slot("i-a", ip="198.18.0.66", state="Drained", draining=True)]})  # forged only
    ex, _ = executor(cloud, condor)
    observed = build("p", [inst("i-a", **{TAG_DRAINED: "true"})],
                     [slot("i-a", state="Drained", draining=True)], [], NOW)
    out = ex.execute(Plan(removals=tuple(Removal(i, RemovalAction.TERMINATE, "idle")
                                         for i in ids)), observed, cycle="c")
    assert not cloud.terminated and out.kept == ["i-a"]


# --- the drained anchor ------------------------------------------------------------------------

def test_a_draining_worker_without_an_accepted_drain_is_never_removed() -> None:
    cloud = RecordingCloud()
    condor = RecordingCondor(slots={"i-a": [slot("i-a", state="Drained", draining=True)]})
    ex, events = executor(cloud, condor)
    observed = build("p", [inst("i-a")], [slot("i-a", state="Drained", draining=True)], [],
                     NOW)
    out = ex.execute(Plan(removals=(Removal("i-a", RemovalAction.TERMINATE, "idle"),)),
                     observed, cycle="c")
    assert not cloud.terminated and out.kept == ["i-a"]
    assert condor.cancelled == ["host-i-a"], "its drain starts over, one of ours"
    assert any(TAG_DRAINED in e.get("reason", "") for e in events)


def test_an_accepted_drain_is_anchored_and_its_worker_removed_next_pass() -> None:
    cloud = RecordingCloud()
    condor = RecordingCondor(slots={"i-a": [slot("i-a", state="Drained", draining=True)]})
    ex, _ = executor(cloud, condor)
    first = build("p", [inst("i-a")], [slot("i-a")], [], NOW)
    ex.execute(Plan(drains=(Drain("i-a", "idle"),)), first, cycle="1")
    assert ("tag", ["i-a"], TAG_DRAINED, "true") in cloud.tag_calls
    # The tag may not show in DescribeInstances yet: this process remembers the drain.
    second = build("p", [inst("i-a")], [slot("i-a", state="Drained", draining=True)], [],
                   NOW + 10)
    ex.execute(Plan(removals=(Removal("i-a", RemovalAction.TERMINATE, "idle"),)), second,
               cycle="2")
    assert cloud.terminated == ["i-a"]


def test_the_anchor_is_cleared_once_the_worker_is_seen_not_draining() -> None:
    observed = build("p", [inst("i-a", **{TAG_DRAINED: "true"})], [slot("i-a")], [], NOW)
    assert observed.tags.clear.get(TAG_DRAINED) == ["i-a"]
