"""Issue 18: shapes sized by what workers advertise, jobs placed only on shapes they match
(HTCondor's own ClassAd matching), disk and GPUs planned, no launch loops."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.autoscaler.planner.capacity import effective_config
from orchestrator.autoscaler.planner.config import AutoscalerConfig, InstanceShape
from orchestrator.autoscaler.planner.model import Capacity, IdleJobs, Instance, Observation, Plan
from orchestrator.autoscaler.planner.strategies import plan
from orchestrator.autoscaler.runtime.capacity import LearnedCapacities
from orchestrator.condor.ads import ads_from_json
from orchestrator.condor.matching import ShapeMatcher
from orchestrator.condor.records import Job
from orchestrator.sim.hardware import advertised_memory_mb
from orchestrator.vocabulary import TAG_JOINED, InstanceState
from tests.support.policy import POOL, QUEUE_ONLY, obs, startd, worker

SMALL = InstanceShape(name="c6i.large", cpus=2, memory_mb=4096, price_per_hour=0.085)
LARGE = InstanceShape(name="c6i.xlarge", cpus=4, memory_mb=8192, price_per_hour=0.17)
HIGHMEM = InstanceShape(name="r6i.large", cpus=2, memory_mb=16384, price_per_hour=0.126)
GPU = InstanceShape(name="g5.xlarge", cpus=4, memory_mb=16384, gpus=1, price_per_hour=1.006)
ARM = InstanceShape(name="c7g.large", cpus=2, memory_mb=4096, price_per_hour=0.0725,
                    arch="arm64")
SHAPES = (SMALL, LARGE, HIGHMEM, GPU, ARM)
CFG = AutoscalerConfig(shapes=SHAPES, **QUEUE_ONLY)


def launched(p: Plan) -> dict[str, int]:
    return {launch.instance_type: launch.count for launch in p.launches}


def idle(n: int, cpus: int = 1, mem: int = 1024, gpus: int = 0, disk: int = 0,
         shapes: frozenset[str] | None = None) -> IdleJobs:
    return IdleJobs(cpus, mem, gpus, n, cluster=7, qdate=0.0, request_disk_mb=disk,
                    shapes=shapes)


def with_capacities(o: Observation, learned: Mapping[str, Capacity]) -> Observation:
    from dataclasses import replace
    return replace(o, capacities=dict(learned))


# --- sizes: nominal less the reserve, then what workers advertise ---------------------

def test_a_job_asking_nominal_memory_is_never_launched_for() -> None:
    p = plan(obs(idle=[idle(1, cpus=2, mem=4096)]), CFG.model_copy(
        update={"shapes": (SMALL,)}), now=0.0)
    assert p.launches == ()
    [u] = p.unschedulable
    assert "asks 2 cpus, 4096 MB" in u.reason and "nominal less reserve" in u.reason


def test_learned_capacity_stops_the_loop_a_small_reserve_would_start() -> None:
    cfg = CFG.model_copy(update={"shapes": (SMALL,), "memory_reserve_mb": 0,
                                 "memory_reserve_fraction": 0.0})
    o = obs(idle=[idle(1, cpus=2, mem=4096)])
    assert launched(plan(o, cfg, now=0.0)) == {"c6i.large": 1}
    # One joined advertising what the kernel leaves: never launched for again, and the
    # idle worker it fits no job of is not kept for it.
    joined = obs([worker("i-1", "c6i.large")], [startd("i-1", 2, 3824, since=0.0)],
                 idle=[idle(1, cpus=2, mem=4096)])
    p = plan(with_capacities(joined, {"c6i.large": Capacity(2, 3824)}), cfg, now=1000.0)
    assert p.launches == ()
    assert [r.instance_id for r in p.removals] == ["i-1"]
    [u] = p.unschedulable
    assert "c6i.large offers 2 cpus, 3824 MB (as its workers advertise)" in u.reason


def test_gpu_jobs_need_gpu_workers() -> None:
    o = obs(idle=[idle(1, cpus=1, mem=1024, gpus=1)])
    p = plan(o, CFG, now=0.0)
    assert p.launches == ()
    assert "drives no GPU" in p.unschedulable[0].reason
    on = plan(o, CFG.model_copy(update={"gpu_workers": True}), now=0.0)
    assert launched(on) == {"g5.xlarge": 1}
    # A GPU type whose workers advertise no GPU (no driver after all) is not used again.
    learned = with_capacities(o, {"g5.xlarge": Capacity(4, 15700, 0, 20000)})
    assert plan(learned, CFG.model_copy(update={"gpu_workers": True}), now=0.0).launches == ()


def test_request_disk_is_packed_and_sizes_the_choice() -> None:
    big_disk = LARGE.model_copy(update={"disk_gb": 200})
    cfg = CFG.model_copy(update={"shapes": (SMALL, big_disk), "root_volume_gb": 30})
    assert launched(plan(obs(idle=[idle(2, disk=20_000)]), cfg, now=0.0)) == {"c6i.large": 2}
    assert launched(plan(obs(idle=[idle(2, disk=60_000)]), cfg, now=0.0)) == {"c6i.xlarge": 1}
    p = plan(obs(idle=[idle(1, disk=300_000)]), cfg, now=0.0)
    assert p.launches == () and "MB disk" in p.unschedulable[0].reason


# --- matching --------------------------------------------------------------------------

def test_jobs_go_only_onto_shapes_they_match() -> None:
    p = plan(obs(idle=[idle(3, shapes=frozenset({"c6i.xlarge"}))]), CFG, now=0.0)
    assert launched(p) == {"c6i.xlarge": 1}
    # Free capacity of a type the jobs do not match takes none of them.
    o = obs([worker("i-1", "c6i.large")], [startd("i-1", 2, 3800, since=0.0)],
            idle=[idle(1, shapes=frozenset({"r6i.large"}))])
    p = plan(o, CFG, now=1000.0)
    assert launched(p) == {"r6i.large": 1}
    assert [r.instance_id for r in p.removals] == ["i-1"]


def test_jobs_matching_no_shape_are_reported_not_launched_for() -> None:
    p = plan(obs(idle=[idle(5, shapes=frozenset())]), CFG, now=0.0)
    assert p.launches == ()
    assert "Requirements match no shape" in p.unschedulable[0].reason
    assert p.unschedulable[0].count == 5


def test_fallback_types_run_what_the_launch_was_for() -> None:
    p = plan(obs(idle=[idle(2, shapes=frozenset({"c6i.large", "r6i.large"}))]), CFG, now=0.0)
    [launch] = p.launches
    assert launch.instance_type == "c6i.large"
    assert launch.fallbacks == ("r6i.large",)  # not c6i.xlarge (unmatched), not arm64
    x86 = CFG.model_copy(update={"shapes": (SMALL, LARGE, HIGHMEM, GPU)})
    anything = plan(obs(idle=[idle(2)]), x86, now=0.0).launches[0]
    assert anything.fallbacks == ("r6i.large", "c6i.xlarge", "g5.xlarge")


def test_classad_matching_both_directions() -> None:
    cfg = effective_config(AutoscalerConfig(
        shapes=SHAPES, machine_attrs={"HasScratch": 'EC2InstanceType == "r6i.large"'},
        start="TARGET.RequestCpus <= 2"), {})
    m = ShapeMatcher()

    def shapes_for(requirements: str, cpus: int = 1, mem: int = 1024) -> frozenset[str] | None:
        o = Observation(POOL, idle_jobs=(IdleJobs(cpus, mem, requirements=requirements),))
        return m.annotate(o, cfg).idle_jobs[0].shapes

    x86 = {"c6i.large", "c6i.xlarge", "r6i.large", "g5.xlarge"}
    default = ('(TARGET.Arch == "X86_64") && (TARGET.OpSys == "LINUX") && '
               '(TARGET.Disk >= RequestDisk) && (TARGET.Memory >= RequestMemory) && '
               '((TARGET.FileSystemDomain == MY.FileSystemDomain) || TARGET.HasFileTransfer)')
    assert shapes_for(default) == x86
    assert shapes_for(default, mem=4096) == x86 - {"c6i.large"}  # it offers less than 4 GiB
    assert shapes_for("TARGET.HasScratch =?= true") == {"r6i.large"}
    assert shapes_for('TARGET.Arch == "aarch64"') == {"c7g.large"}
    assert shapes_for('TARGET.EC2InstanceType == "m7i.large"') == frozenset()
    assert shapes_for("true", cpus=4) == frozenset()  # the workers' START refuses it
    assert shapes_for("this is not ( an expression") is None


def test_requirements_are_read_as_text_from_json_ads() -> None:
    text = json.dumps([{"ClusterId": 3, "JobStatus": 1, "RequestCpus": 1,
                        "RequestMemory": 512, "RequestDisk": 2048, "JobCount": 4,
                        "Requirements": "/Expr(TARGET.HasScratch =?= true)/"}])
    [ad] = ads_from_json(text, ["ClusterId", "JobStatus", "RequestCpus", "RequestMemory",
                                "RequestDisk", "Requirements", "JobCount"])
    job = Job.from_ad(ad)
    assert job.requirements == "TARGET.HasScratch is true"  # =?=, as ClassAds spell it
    assert job.request_disk_mb == 2 and job.count == 4


# --- learned capacities survive a restart ----------------------------------------------

class MemoryStore:
    def __init__(self) -> None:
        self.saved: dict[str, Capacity] = {}

    def load(self) -> dict[str, Capacity]:
        return dict(self.saved)

    def save(self, capacities: Mapping[str, Capacity]) -> None:
        self.saved = dict(capacities)


def test_learned_capacities_are_the_smallest_seen_and_persist() -> None:
    store = MemoryStore()
    o = obs([worker("i-1", "c6i.large"), worker("i-2", "c6i.large")],
            [startd("i-1", 2, 3824), startd("i-2", 2, 3790)])
    assert LearnedCapacities(store).update(o) == {"c6i.large": Capacity(2, 3790)}
    assert LearnedCapacities(store).update(obs()) == {"c6i.large": Capacity(2, 3790)}
    dry = MemoryStore()
    LearnedCapacities(dry).update(o, persist=False)
    assert dry.saved == {}


# --- properties ------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(need=st.integers(1024, 20_000), reserves=st.lists(st.floats(0.0, 0.15),
                                                          min_size=5, max_size=5),
       passes=st.integers(5, 25), reserve_mb=st.sampled_from([0, 160]))
def test_no_launch_loop_for_a_job_a_type_cannot_hold(need: int, reserves: list[float],
                                                     passes: int, reserve_mb: int) -> None:
    """A pool that runs the plans: workers join one pass after launch advertising their
    type's memory less a hidden reserve; idle ones are removed. Whatever the reserve, a
    type that cannot hold the job is launched for it at most once."""
    cfg = CFG.model_copy(update={"memory_reserve_mb": reserve_mb,
                                 "memory_reserve_fraction": 0.0, "idle_timeout_s": 0.0,
                                 "surplus_idle_s": 0.0})
    real = {s.name: int(s.memory_mb * (1 - r)) for s, r in zip(SHAPES, reserves, strict=True)}
    store = MemoryStore()
    instances: list[Instance] = []
    launches: Counter[str] = Counter()
    for k in range(passes):
        now = 1000.0 * k
        joined = [i for i in instances if i.launch_time < now]
        sds = [startd(i.instance_id, cfg.shape(i.instance_type).cpus,  # type: ignore[union-attr]
                      real[i.instance_type], since=i.launch_time) for i in joined]
        o = obs([i if i.launch_time == now else _joined(i) for i in instances], sds,
                idle=[idle(1, cpus=1, mem=need)])
        learned = LearnedCapacities(store).update(o)
        p = plan(with_capacities(o, learned), cfg, now)
        gone = {r.instance_id for r in p.removals}
        instances = [i for i in instances if i.instance_id not in gone]
        for launch in p.launches:
            for n in range(launch.count):
                launches[launch.instance_type] += 1
                instances.append(worker(f"i-{k}-{launch.instance_type}-{n}",
                                        launch.instance_type, launched=now))
        if any(real[i.instance_type] >= need for i in instances):
            return  # a machine that holds it is there: the job runs
    for itype, n in launches.items():
        assert real[itype] < need
        assert n <= 1, f"{itype} launched {n} times for a job it cannot hold"


def _joined(i: Instance) -> Instance:
    from dataclasses import replace
    return replace(i, tags={**i.tags, TAG_JOINED: "1"})


groups = st.lists(st.builds(
    idle, st.integers(1, 20), st.integers(1, 8), st.integers(256, 20_000), st.just(0),
    st.just(0), st.one_of(st.none(), st.frozensets(st.sampled_from(
        [s.name for s in SHAPES]), max_size=3))), min_size=1, max_size=5)


@settings(max_examples=150, deadline=None)
@given(idle_groups=groups, workers=st.integers(0, 4))
def test_every_launch_matches_a_job_and_unmatched_jobs_keep_nothing(
        idle_groups: list[IdleJobs], workers: int) -> None:
    insts = [worker(f"i-{k}", SHAPES[k % 3].name) for k in range(workers)]
    sds = [startd(f"i-{k}", SHAPES[k % 3].cpus, advertised_memory_mb(SHAPES[k % 3].memory_mb),
                  since=0.0) for k in range(workers)]
    p = plan(obs(insts, sds, idle=idle_groups), CFG.model_copy(
        update={"idle_timeout_s": 100.0}), now=1000.0)
    eff = effective_config(CFG, {})
    for launch in p.launches:
        shape = eff.shape(launch.instance_type)
        assert shape is not None
        assert any(g.shapes is None or launch.instance_type in g.shapes for g in idle_groups
                   if g.request_cpus <= shape.cpus and g.request_memory_mb <= shape.memory_mb)
        for alt in launch.fallbacks:
            assert all(alt in g.shapes for g in idle_groups
                       if g.shapes is not None and launch.instance_type in g.shapes)
    kept = {i.instance_id for i in insts} - {r.instance_id for r in p.removals}
    for iid in kept:  # a worker kept idle is one some waiting job matches and fits
        itype = next(i.instance_type for i in insts if i.instance_id == iid)
        assert any((g.shapes is None or itype in g.shapes) for g in idle_groups)


def test_unmatched_jobs_keep_no_worker_alive() -> None:
    o = obs([worker("i-1", "c6i.large")], [startd("i-1", 2, 3800, since=0.0)],
            idle=[idle(4, shapes=frozenset())])
    p = plan(o, CFG, now=1000.0)
    assert p.launches == () and [r.instance_id for r in p.removals] == ["i-1"]
    assert InstanceState.RUNNING  # the worker was running and idle


def test_launches_size_the_root_volume_per_shape_never_below_the_image() -> None:
    from orchestrator.aws.launch import run_params
    from orchestrator.aws.records import Image, LaunchRequest

    image = Image.from_api({"ImageId": "ami-1", "RootDeviceName": "/dev/xvda",
                            "BlockDeviceMappings": [{"DeviceName": "/dev/xvda",
                                                     "Ebs": {"VolumeSize": 8}}]})
    assert (image.root_device, image.root_volume_gb) == ("/dev/xvda", 8)
    req = LaunchRequest(count=1, image_id="ami-1", instance_types=["c6i.large"],
                        subnets=["s"], security_groups=[], instance_profile="p",
                        root_device=image.root_device, root_volume_gb={"c6i.large": 30})
    params = run_params(req, "c6i.large", "s", 1, [], False, "t")
    assert params["BlockDeviceMappings"] == [{"DeviceName": "/dev/xvda", "Ebs": {
        "VolumeSize": 30, "VolumeType": "gp3", "DeleteOnTermination": True}}]
    assert "BlockDeviceMappings" not in run_params(req, "t3.large", "s", 1, [], False, "t")


def test_jobs_that_run_on_fewer_shapes_are_placed_first_among_equals() -> None:
    """The burst of the sandbox test: a job asking a t3.medium's nominal memory opens a
    t3.large; a job that needs a t3.large takes its other core before the small ones."""
    medium = InstanceShape(name="t3.medium", cpus=2, memory_mb=4096, price_per_hour=0.0416)
    large = InstanceShape(name="t3.large", cpus=2, memory_mb=8192, price_per_hour=0.0832)
    cfg = AutoscalerConfig(shapes=(medium, large), **QUEUE_ONLY)
    both = frozenset({"t3.medium", "t3.large"})
    o = obs(idle=[idle(4, mem=512, shapes=both), idle(1, mem=4096, shapes=frozenset(
        {"t3.large"})), idle(1, mem=512, shapes=frozenset({"t3.large"}))])
    assert launched(plan(o, cfg, now=0.0)) == {"t3.large": 1, "t3.medium": 2}


def test_disk_drift_is_not_a_new_capacity() -> None:
    store = MemoryStore()
    learned = LearnedCapacities(store)
    learned.update(obs([worker("i-1")], [startd("i-1", 2, 3824)]))
    from dataclasses import replace
    drifted = replace(startd("i-1", 2, 3824), total_disk_mb=0)
    base = replace(drifted, total_disk_mb=75_978)
    learned.update(obs([worker("i-1")], [base]))
    store.saved = {}
    learned.update(obs([worker("i-1")], [replace(base, total_disk_mb=75_961)]))
    assert store.saved == {}  # nothing new to save
