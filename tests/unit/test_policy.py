"""Examples of the autoscaler policy's decisions (see test_policy_props for properties)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from pydantic import ValidationError

from orchestrator.autoscaler.planner.config import AutoscalerConfig
from orchestrator.autoscaler.planner.model import IdleJobs, Observation, RemovalAction
from orchestrator.autoscaler.planner.strategies import plan
from orchestrator.errors import ConfigError
from orchestrator.vocabulary import TAG_JOINED, TAG_MISSING_SINCE, InstanceState
from tests.support.policy import POOL, QUEUE_ONLY, jobs, obs, startd, worker

CFG = AutoscalerConfig(**QUEUE_ONLY)


def launched(p: object) -> dict[str, int]:
    return {launch.instance_type: launch.count for launch in p.launches}  # type: ignore[attr-defined]


def test_empty_pool_launches_cheapest_packing() -> None:
    p = plan(obs(idle=[jobs(10)]), CFG, now=100.0)
    assert launched(p) == {"c6i.large": 5}
    assert p.launches[0].reason
    assert p.desired_workers == 5 and p.current_workers == 0


def test_free_capacity_absorbs_jobs() -> None:
    o = obs([worker("i-1", "c6i.xlarge")], [startd("i-1", 4, 8192, since=90.0)], [jobs(4)])
    p = plan(o, CFG, now=100.0)
    assert p.is_empty


def test_booting_capacity_is_counted() -> None:
    o = obs([worker("i-1", "c6i.xlarge", InstanceState.PENDING, launched=90.0)], [],
            [jobs(6)])
    assert launched(plan(o, CFG, now=100.0)) == {"c6i.large": 1}


def test_memory_heavy_jobs_go_to_memory_shape() -> None:
    p = plan(obs(idle=[jobs(4, cpus=1, mem=7000)]), CFG, now=0.0)
    assert launched(p) == {"r6i.large": 2}


def test_mixed_jobs_share_new_instances() -> None:
    p = plan(obs(idle=[jobs(1, cpus=6, mem=1000), jobs(2, cpus=1, mem=1000)]), CFG, now=0.0)
    assert launched(p) == {"c6i.2xlarge": 1}


def test_clamped_by_max_workers_and_cycle_cap() -> None:
    cfg = AutoscalerConfig(max_workers=3, max_launch_per_cycle=2, **QUEUE_ONLY)
    o = obs([worker("i-1", state=InstanceState.PENDING, launched=0.0)], idle=[jobs(300)])
    p = plan(o, cfg, now=10.0)
    assert sum(launched(p).values()) == 2
    assert any("max_workers" in n for n in p.notes)
    # short of instance slots: larger machines for the same need
    assert set(launched(p)) == {"c6i.32xlarge"}


def test_short_of_instance_slots_the_smallest_machines_that_fit() -> None:
    # 36 one-core jobs on 18 c6i.large would take more than half of max_workers 20: the
    # smallest shape that keeps within it is the 4-core one, not a 32-core machine.
    cfg = AutoscalerConfig(max_workers=20, **QUEUE_ONLY)
    assert launched(plan(obs(idle=[jobs(36)]), cfg, now=0.0)) == {"c6i.xlarge": 9}
    # Nothing keeps within it: as large as is as cheap per job (128 on one machine).
    full = obs([worker(f"i-{n}") for n in range(10)],
               [startd(f"i-{n}", free_cpus=0, claimed=True) for n in range(10)],
               [jobs(130)], running=20)
    assert launched(plan(full, cfg, now=0.0)) == {"c6i.32xlarge": 1, "c6i.large": 1}


def test_unschedulable_reported_not_launched() -> None:
    p = plan(obs(idle=[jobs(3, cpus=500)]), CFG, now=0.0)
    assert not p.launches
    assert p.unschedulable[0].count == 3 and p.unschedulable[0].request_cpus == 500


def test_idle_worker_drained_then_terminated() -> None:
    o = obs([worker("i-1"), worker("i-2")],
            [startd("i-1", since=0.0), startd("i-2", claimed=True)])
    p = plan(o, CFG, now=CFG.idle_timeout_s + 1)
    assert [d.instance_id for d in p.drains] == ["i-1"]
    assert [(r.instance_id, r.action) for r in p.removals] == [("i-1", RemovalAction.TERMINATE)]
    assert plan(o, CFG, now=CFG.idle_timeout_s - 1).is_empty


def test_never_touches_central_manager_or_untagged() -> None:
    o = obs([worker("i-cm", role="central-manager"), worker("i-x", pool=None),
             worker("i-other", pool="someone-else")],
            [startd("i-cm"), startd("i-x"), startd("i-other")])
    p = plan(o, CFG, now=1e6)
    assert p.is_empty and p.current_workers == 0


def test_worker_needed_by_queue_is_kept() -> None:
    o = obs([worker("i-1")], [startd("i-1", since=0.0)], [jobs(1)])
    p = plan(o, CFG, now=1e6)
    assert p.is_empty


def test_min_workers_kept_and_filled() -> None:
    cfg = AutoscalerConfig(min_workers=2, **QUEUE_ONLY)
    o = obs([worker("i-1")], [startd("i-1", since=0.0)])
    p = plan(o, cfg, now=1e6)
    assert not p.removals and sum(launched(p).values()) == 1


def test_not_joined_instance_replaced() -> None:
    o = obs([worker("i-1", launched=0.0)])
    p = plan(o, CFG, now=CFG.join_timeout_s + 5)
    assert [(r.instance_id, r.instance_type) for r in p.replacements] == [("i-1", "c6i.large")]
    assert plan(o, CFG, now=10.0).is_empty  # still booting


def test_a_replaced_instance_is_relaunched_only_for_jobs_that_need_it() -> None:
    stuck = worker("i-1", launched=0.0)
    now = CFG.join_timeout_s + 5
    # A job waits for its two cores: terminated and one like it launched, nothing more.
    one = plan(obs([stuck], idle=[jobs(2)]), CFG, now=now)
    (r,) = one.replacements
    assert r.relaunch and "needs its capacity" not in r.reason
    assert not one.launches
    # Nothing waits (a broken image, or the jobs ran elsewhere): terminated, not relaunched.
    (r,) = plan(obs([stuck]), CFG, now=now).replacements
    assert not r.relaunch and r.reason.endswith("no idle job needs its capacity")
    # ... unless it keeps the pool at min_workers.
    keep_one = plan(obs([stuck]), CFG.model_copy(update={"min_workers": 1}), now=now)
    assert keep_one.replacements[0].relaunch and not keep_one.launches
    # Two stuck, one job: one relaunched; the job is not launched for again.
    two = plan(obs([stuck, worker("i-2", launched=0.0)], idle=[jobs(2)]), CFG, now=now)
    assert sorted(r.relaunch for r in two.replacements) == [False, True]
    assert not two.launches


def test_worker_missing_after_a_collector_restart_is_kept_and_counts_as_capacity() -> None:
    # Joined long ago; the collector restarted and has not heard from it yet.
    back = worker("i-1", launched=0.0)
    back = replace(back, tags={**back.tags, TAG_JOINED: "1"})
    now = CFG.join_timeout_s + 500
    p = plan(obs([back], idle=[jobs(2)]), CFG, now=now)
    assert not p.replacements and not p.launches, "its two cores are counted for the jobs"
    assert any("missing from the collector" in n for n in p.notes)
    # Missing for lost_timeout_s with no job on it: replaced.
    gone = replace(back, tags={**back.tags, TAG_MISSING_SINCE: "0"})
    p = plan(obs([gone]), CFG, now=CFG.lost_timeout_s + 1)
    assert [r.instance_id for r in p.replacements] == ["i-1"]
    assert "missing from the collector" in p.replacements[0].reason
    assert not p.replacements[0].relaunch, "no job waits: not relaunched"
    # ... unless the schedd says it runs a job.
    busy = Observation(POOL, (gone,), busy_instances=frozenset({"i-1"}))
    assert not plan(busy, CFG, now=CFG.lost_timeout_s + 1).replacements


def test_no_replacement_while_running_jobs_cannot_be_placed() -> None:
    # An old instance without a startd ad, while 3 running jobs are on machines with no ad:
    # it may be one of them (collector restarted before it was ever marked joined).
    stale = Observation(POOL, (worker("i-1", launched=0.0),), unmapped_running=3)
    p = plan(stale, CFG, now=CFG.join_timeout_s + 5)
    assert not p.replacements
    assert any("held" in n for n in p.notes)


def test_a_draining_idle_worker_is_undrained_instead_of_launching() -> None:
    # i-1 is draining for scale-in when 2 jobs arrive: its drain is cancelled, nothing is
    # launched, and it is not removed in the same pass.
    o = obs([worker("i-1"), worker("i-2")],
            [startd("i-1", since=0.0, draining=True), startd("i-2", since=0.0, draining=True)],
            [jobs(2)])
    p = plan(o, CFG, now=1e6)
    assert [u.instance_id for u in p.undrains] == ["i-1"]
    assert not p.launches
    assert [r.instance_id for r in p.removals] == ["i-2"], "the one not needed still goes"
    # Nothing queued: no undrain.
    assert not plan(obs(o.instances, o.startds), CFG, now=1e6).undrains


def test_our_drain_on_a_claimed_worker_is_cancelled_and_an_admins_is_left() -> None:
    """A claim the startd took before our drain: its jobs would be evicted at
    MaxJobRetirementTime, so the drain goes; an administrator's drain is theirs."""
    ours = obs([worker("i-1")], [startd("i-1", claimed=True, draining=True,
                                        drained_by_us=True)])
    p = plan(ours, CFG, now=1e6)
    assert [u.instance_id for u in p.undrains] == ["i-1"]
    assert not p.removals and not p.drains and not p.launches
    admins = obs([worker("i-1")], [startd("i-1", claimed=True, draining=True)])
    assert plan(admins, CFG, now=1e6).is_empty


def test_free_cores_of_a_worker_whose_drain_is_cancelled_take_jobs() -> None:
    o = obs([worker("i-1", "c6i.xlarge")],
            [startd("i-1", 4, 8192, free_cpus=3, free_mem=6144, claimed=True, draining=True,
                    drained_by_us=True)], [jobs(3)])
    p = plan(o, CFG, now=1e6)
    assert [u.instance_id for u in p.undrains] == ["i-1"] and not p.launches


def test_warm_pool_starts_and_stops() -> None:
    cfg = AutoscalerConfig(warm_pool=True, **QUEUE_ONLY)
    o = obs([worker("i-s", state=InstanceState.STOPPED)], idle=[jobs(4)])
    p = plan(o, cfg, now=0.0)
    assert [s.instance_id for s in p.starts] == ["i-s"]
    assert launched(p) == {"c6i.large": 1}
    o2 = obs([worker("i-1")], [startd("i-1", since=0.0)])
    assert plan(o2, cfg, now=1e6).removals[0].action is RemovalAction.STOP


def test_naive_one_up_one_down() -> None:
    cfg = AutoscalerConfig(policy="naive")
    assert launched(plan(obs(idle=[jobs(50)]), cfg, now=0.0)) == {"c6i.large": 1}
    o = obs([worker("i-1"), worker("i-2")], [startd("i-1"), startd("i-2")])
    p = plan(o, cfg, now=0.0)
    assert len(p.removals) == 1


def test_parallelcluster_launches_whole_need_on_one_type() -> None:
    cfg = AutoscalerConfig(policy="parallelcluster", fixed_shape="c6i.xlarge")
    assert launched(plan(obs(idle=[jobs(10)]), cfg, now=0.0)) == {"c6i.xlarge": 3}
    o = obs([worker("i-1", "c6i.xlarge")], [startd("i-1", 4, 8192, since=0.0)])
    assert plan(o, cfg, now=599.0).is_empty
    assert plan(o, cfg, now=601.0).removals


def test_unknown_policy_is_a_clear_error() -> None:
    with pytest.raises(ValidationError, match="unknown policy"):
        AutoscalerConfig(policy="magic")  # at load, before any pass
    unchecked = AutoscalerConfig.model_construct(policy="magic")
    with pytest.raises(ConfigError, match="unknown autoscaler policy 'magic'"):
        plan(obs(), unchecked, now=0.0)


def test_config_rejects_unknown_keys_and_bad_limits() -> None:
    with pytest.raises(ValidationError):
        AutoscalerConfig.model_validate({"idle_timeout": 5})
    with pytest.raises(ValidationError):
        AutoscalerConfig(min_workers=5, max_workers=2)


def test_large_queue_and_pool() -> None:
    """10,000 idle jobs of a few shapes against 1,000 workers (timed in bench/)."""
    insts = [worker(f"i-{n}", "c6i.xlarge") for n in range(1000)]
    sds = [startd(f"i-{n}", 4, 8192, free_cpus=n % 2, free_mem=2048, claimed=True)
           for n in range(1000)]
    idle = [jobs(2500, cpus=c, mem=1024 * c) for c in (1, 2, 4, 8)]
    cfg = AutoscalerConfig(**QUEUE_ONLY, max_workers=2000, max_launch_per_cycle=2000)
    p = plan(obs(insts, sds, idle), cfg, now=0.0)
    assert not p.removals and not p.unschedulable
    # 500 one-core jobs fit the free cores; the other 9,500 jobs ask 37,000 cores. The pool
    # is past half its cap, so they go onto the largest machines, exactly: every job size
    # divides 128.
    need = 2000 * 1 + 2500 * (2 + 4 + 8)
    cores = {s.name: s.cpus for s in cfg.shapes}
    launched = sum(cores[launch.instance_type] * launch.count for launch in p.launches)
    machines = sum(launch.count for launch in p.launches)
    assert launched == need
    assert {launch.instance_type for launch in p.launches} <= set(cores)
    assert max(p.launches, key=lambda launch: launch.count).instance_type == "c6i.32xlarge"
    assert machines <= 1000 and p.desired_workers == 1000 + machines  # within max_workers


def test_launch_delay_lets_free_capacity_drain_a_burst_first() -> None:
    cfg = AutoscalerConfig(launch_delay_s=60, **QUEUE_ONLY)
    young = IdleJobs(1, 1024, 0, 10, qdate=990.0)
    old = IdleJobs(1, 1024, 0, 4, qdate=900.0)
    assert not plan(obs(idle=[young]), cfg, now=1000.0).launches
    assert launched(plan(obs(idle=[young, old]), cfg, now=1000.0)) == {"c6i.large": 2}
    # a 2-core free worker takes the two oldest; two old ones are left to launch for
    o = obs([worker("i-1")], [startd("i-1", since=999.0)], [young, old])
    assert launched(plan(o, cfg, now=1000.0)) == {"c6i.large": 1}


def test_spare_cores_launched_and_kept() -> None:
    cfg = AutoscalerConfig(spare_cores=8, **QUEUE_ONLY)
    assert launched(plan(obs(), cfg, now=0.0)) == {"c6i.2xlarge": 1}
    o = obs([worker("i-1", "c6i.2xlarge")], [startd("i-1", 8, 16384, since=0.0)])
    p = plan(o, cfg, now=1e6)
    assert p.is_empty and any("spare" in n for n in p.notes)


def test_large_idle_spare_swapped_for_a_smaller_one() -> None:
    cfg = AutoscalerConfig(spare_cores=4, **QUEUE_ONLY)
    o = obs([worker("i-1", "c6i.32xlarge")], [startd("i-1", 128, 262144, since=0.0)])
    p = plan(o, cfg, now=1e6)
    assert [r.instance_id for r in p.removals] == ["i-1"]
    assert launched(p) == {"c6i.xlarge": 1}
