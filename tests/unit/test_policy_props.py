"""Properties every autoscaler policy must keep, on generated observations."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.autoscaler.planner.config import AutoscalerConfig
from orchestrator.autoscaler.planner.model import (
    IdleJobs,
    Instance,
    Observation,
    Plan,
    Startd,
    Submitted,
)
from orchestrator.autoscaler.planner.strategies import STRATEGIES, plan
from orchestrator.vocabulary import (
    LIVE_STATES,
    TAG_JOINED,
    TAG_MISSING_SINCE,
    TAG_POOL,
    TAG_ROLE,
    InstanceState,
)
from tests.support.policy import POOL, jobs, worker

NOW = 10_000.0
SHAPES = {s.name: s for s in AutoscalerConfig().shapes}
TYPES = ["c6i.large", "c6i.xlarge", "c6i.4xlarge", "r6i.large"]


@st.composite
def instances_and_startds(draw: st.DrawFn) -> tuple[list[Instance], list[Startd]]:
    n = draw(st.integers(0, 12))
    insts: list[Instance] = []
    sds: list[Startd] = []
    for k in range(n):
        iid = f"i-{k:04d}"
        pool = draw(st.sampled_from([POOL, POOL, POOL, "other", None]))
        role = draw(st.sampled_from(["worker", "worker", "central-manager", None]))
        state = draw(st.sampled_from(list(LIVE_STATES)))
        itype = draw(st.sampled_from(TYPES))
        launched = draw(st.floats(0, NOW))
        inst = worker(iid, itype, state, launched, pool, role)
        # Some joined once (collector restarts), some are missing since a while.
        presence = draw(st.sampled_from([{}, {}, {TAG_JOINED: "1"},
                                         {TAG_JOINED: "1", TAG_MISSING_SINCE: "0"},
                                         {TAG_JOINED: "1", TAG_MISSING_SINCE: f"{NOW - 60}"}]))
        insts.append(replace(inst, tags={**inst.tags, **presence}))
        if state is InstanceState.RUNNING and draw(st.booleans()):
            shape = SHAPES[itype]
            claimed = draw(st.booleans())
            free = draw(st.integers(0, shape.cpus)) if claimed else shape.cpus
            free_mem = shape.memory_mb * free // shape.cpus
            since = None if claimed else draw(st.floats(launched, NOW))
            draining = draw(st.booleans())
            sds.append(Startd(iid, shape.cpus, free, shape.memory_mb, free_mem, 0, 0, claimed,
                              since, draining, draining and draw(st.booleans())))
    return insts, sds


idle_jobs = st.lists(st.builds(
    IdleJobs, st.integers(1, 40), st.integers(0, 20000), st.just(0), st.integers(1, 50),
    st.none(), st.one_of(st.none(), st.floats(NOW - 200, NOW))),
    max_size=4)

configs = st.builds(
    AutoscalerConfig,
    policy=st.sampled_from(sorted(STRATEGIES)),
    idle_timeout_s=st.sampled_from([0.0, 60.0, 300.0]),
    surplus_idle_s=st.sampled_from([0.0, 40.0]),
    min_workers=st.integers(0, 2),
    max_workers=st.integers(2, 30),
    max_launch_per_cycle=st.integers(1, 50),
    warm_pool=st.booleans(),
    spare_cores=st.sampled_from([0, 0, 4, 32]),
    spare_fraction=st.sampled_from([0.0, 0.0, 0.5]),
    launch_delay_s=st.sampled_from([0.0, 0.0, 60.0]),
    arrival_window_s=st.sampled_from([0.0, 120.0]),
    spare_largest_jobs=st.sampled_from([0, 1, 4]),
    spare_max_cores=st.sampled_from([8, 32, 128]),
)

# What the forecast reads: recent submissions (some outside the window) and running jobs.
arrivals = st.tuples(
    st.lists(st.builds(Submitted, st.floats(NOW - 300, NOW), st.integers(1, 64),
                       st.integers(1, 20)), max_size=4),
    st.lists(st.tuples(st.integers(1, 64), st.integers(1, 5)), max_size=3))


def observation(data: tuple[list[Instance], list[Startd]], idle: list[IdleJobs],
                queue: tuple[list[Submitted], list[tuple[int, int]]] = ([], []),
                busy: frozenset[str] = frozenset(), unmapped: int = 0) -> Observation:
    return Observation(POOL, tuple(data[0]), tuple(data[1]), tuple(idle), 3,
                       tuple(queue[0]), tuple(queue[1]), busy, unmapped)


def ours(o: Observation) -> dict[str, Instance]:
    return {i.instance_id: i for i in o.instances if i.is_worker_of(POOL)}


@settings(max_examples=300, deadline=None)
@given(instances_and_startds(), idle_jobs, configs, arrivals,
       st.sets(st.sampled_from([f"i-{k:04d}" for k in range(12)]), max_size=4),
       st.sampled_from([0, 0, 2]))
def test_never_touches_claimed_foreign_or_central_manager(
        data: tuple[list[Instance], list[Startd]], idle: list[IdleJobs],
        cfg: AutoscalerConfig, queue: tuple[list[Submitted], list[tuple[int, int]]],
        busy: set[str], unmapped: int) -> None:
    o = observation(data, idle, queue, frozenset(busy), unmapped)
    p = plan(o, cfg, NOW)
    mine = ours(o)
    startds = {s.instance_id: s for s in o.startds}
    for a in (*p.drains, *p.removals):
        assert a.instance_id in mine
        assert mine[a.instance_id].tags[TAG_ROLE] == "worker"
        assert mine[a.instance_id].tags[TAG_POOL] == POOL
        sd = startds[a.instance_id]
        assert not sd.claimed
    for r in p.replacements:
        assert r.instance_id in mine and r.instance_id not in startds
        # Never an instance that may run a job: one the schedd names, or any while some
        # running jobs cannot be placed; a worker that joined once only when long gone.
        assert r.instance_id not in o.busy_instances and not o.unmapped_running
        gone = mine[r.instance_id].missing_since
        if mine[r.instance_id].has_joined:
            assert gone is not None and NOW - gone >= cfg.lost_timeout_s
        # Relaunched only for jobs that wait for it, or to keep min_workers.
        assert not r.relaunch or any(j.count for j in o.idle_jobs) or cfg.min_workers
    for s in p.starts:
        assert mine[s.instance_id].state is InstanceState.STOPPED
    removed = {r.instance_id for r in p.removals}
    for u in p.undrains:
        assert u.instance_id in mine and u.instance_id not in removed
        sd = startds[u.instance_id]
        # An idle draining worker the queue needs, or our drain on a claimed worker (never
        # an administrator's).
        assert sd.draining and (not sd.claimed or sd.drained_by_us)
    for sd in startds.values():
        if sd.draining and sd.claimed and sd.drained_by_us and sd.instance_id in mine \
                and cfg.policy == "binpack" and mine[sd.instance_id].state \
                is InstanceState.RUNNING:
            assert sd.instance_id in {u.instance_id for u in p.undrains}


@settings(max_examples=300, deadline=None)
@given(instances_and_startds(), idle_jobs, configs, arrivals)
def test_never_exceeds_max(data: tuple[list[Instance], list[Startd]], idle: list[IdleJobs],
                           cfg: AutoscalerConfig,
                           queue: tuple[list[Submitted], list[tuple[int, int]]]) -> None:
    o = observation(data, idle, queue)
    p = plan(o, cfg, NOW)
    added = sum(x.count for x in p.launches) + len(p.starts)
    if added:
        assert p.current_workers + added <= cfg.max_workers
        if cfg.policy != "parallelcluster":  # it launches the whole need by design
            assert added <= cfg.max_launch_per_cycle


def apply(o: Observation, p: Plan) -> Observation:
    """What the pool looks like right after the executor acted (new instances pending)."""
    gone = {r.instance_id for r in p.removals} | {r.instance_id for r in p.replacements}
    started = {s.instance_id for s in p.starts}
    insts = [replace(i, state=InstanceState.PENDING, launch_time=NOW)
             if i.instance_id in started else i
             for i in o.instances if i.instance_id not in gone]
    n = 0
    for launch in (*p.launches, *(x for x in p.replacements if x.relaunch)):
        count = launch.count if hasattr(launch, "count") else 1
        for _ in range(count):
            insts.append(worker(f"i-new{n}", launch.instance_type, InstanceState.PENDING, NOW))
            n += 1
    undrained = {u.instance_id for u in p.undrains}
    startds = tuple(replace(s, draining=False, drained_by_us=False) if s.claimed
                    else replace(s, draining=False, drained_by_us=False,
                                 free_cpus=s.total_cpus, free_memory_mb=s.total_memory_mb,
                                 free_gpus=s.total_gpus)
                    if s.instance_id in undrained else s
                    for s in o.startds if s.instance_id not in gone)
    return replace(o, instances=tuple(insts), startds=startds)


@settings(max_examples=300, deadline=None)
@given(instances_and_startds(), idle_jobs, st.integers(0, 3), st.sampled_from([0, 0, 8]),
       arrivals)
def test_launches_cover_the_need_and_then_settle(
        data: tuple[list[Instance], list[Startd]], idle: list[IdleJobs], min_workers: int,
        spare: int, queue: tuple[list[Submitted], list[tuple[int, int]]]) -> None:
    cfg = AutoscalerConfig(max_workers=10_000, max_launch_per_cycle=10_000,
                           min_workers=min_workers, spare_cores=spare)
    o = observation(data, idle, queue)
    p = plan(o, cfg, NOW)
    # capacity check, independent of the packer: launched cores cover unmet cores
    unsched = {(u.request_cpus, u.request_memory_mb) for u in p.unschedulable}
    need = sum(j.request_cpus * j.count for j in idle
               if (j.request_cpus, j.request_memory_mb) not in unsched)
    undrained = {u.instance_id for u in p.undrains}
    free = sum(s.free_cpus if not s.draining or s.claimed else s.total_cpus for s in o.startds
               if s.instance_id in ours(o) and (not s.draining or s.instance_id in undrained)
               and ours(o)[s.instance_id].state is InstanceState.RUNNING)
    booting = sum(SHAPES[i.instance_type].cpus for i in ours(o).values()
                  if i.state in (InstanceState.PENDING, InstanceState.RUNNING)
                  and i.instance_id not in {s.instance_id for s in o.startds})
    launched = sum(SHAPES[x.instance_type].cpus * x.count for x in p.launches)
    assert free + booting + launched >= need
    # once acted on, the same queue asks for nothing more
    p2 = plan(apply(o, p), cfg, NOW)
    assert not p2.launches and not p2.starts and not p2.replacements


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(TYPES), st.floats(0, 100)), max_size=10),
       st.integers(1, 60), configs)
def test_stable_when_pool_fits_queue(workers: list[tuple[str, float]], n_jobs: int,
                                     cfg: AutoscalerConfig) -> None:
    """Busy or recently idle workers, a queue that fits: nothing to do, for ours."""
    cfg = cfg.model_copy(update={"policy": "binpack", "idle_timeout_s": 300.0,
                                 "spare_cores": 0, "spare_fraction": 0.0,
                                 "arrival_window_s": 0.0, "spare_largest_jobs": 0,
                                 "max_workers": max(cfg.max_workers, len(workers)),
                                 "min_workers": min(cfg.min_workers, len(workers))})
    insts = [worker(f"i-{k}", t) for k, (t, _) in enumerate(workers)]
    sds = [Startd(f"i-{k}", SHAPES[t].cpus, 0 if idle > 50 else SHAPES[t].cpus,
                  SHAPES[t].memory_mb, 0 if idle > 50 else SHAPES[t].memory_mb, 0, 0,
                  idle > 50, None if idle > 50 else NOW - idle)
           for k, (t, idle) in enumerate(workers)]
    free = sum(s.free_cpus for s in sds)
    idle = [jobs(min(n_jobs, free))] if free else []
    p = plan(Observation(POOL, tuple(insts), tuple(sds), tuple(idle), 5), cfg, NOW)
    assert p.is_empty, p
