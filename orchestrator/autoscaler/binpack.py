"""Our policy: scale out by the bin-packed need of the queue, scale in idle workers only.

One pass, top to bottom: classify our workers (joined, booting, not joined, stopped), place
idle jobs on free and booting capacity, open the cheapest new instances for the rest,
clamp to the limits, then pick idle workers to remove. Instances without our pool tag or
with another role (the central manager) are only counted as "not ours", never touched.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from orchestrator.autoscaler.config import AutoscalerConfig
from orchestrator.autoscaler.forecast import forecast_spare, largest_request
from orchestrator.autoscaler.model import (
    Drain,
    Instance,
    InstanceState,
    Launch,
    Observation,
    Plan,
    Removal,
    RemovalAction,
    Replacement,
    Start,
    Startd,
    Undrain,
    Unschedulable,
)
from orchestrator.autoscaler.packing import (
    Bin,
    JobGroup,
    aggregate,
    fit_existing,
    leftover,
    pack_new,
)


@dataclass(slots=True)
class Pool:
    """Our workers, classified."""

    joined: list[tuple[Instance, Startd]] = field(default_factory=list)
    booting: list[Instance] = field(default_factory=list)
    not_joined: list[Instance] = field(default_factory=list)  # never joined: replace
    lost: list[Instance] = field(default_factory=list)  # joined once, gone too long: replace
    # Absent from the collector but not to be replaced yet: joined once (collector
    # restarted, startd down) or running jobs we cannot place. Capacity counts as booting.
    missing: list[Instance] = field(default_factory=list)
    stopped: list[Instance] = field(default_factory=list)
    others: int = 0  # instances that are not our workers: never acted on

    @property
    def active(self) -> int:
        return (len(self.joined) + len(self.booting) + len(self.not_joined) + len(self.lost)
                + len(self.missing))


def classify(obs: Observation, cfg: AutoscalerConfig, now: float,
             notes: list[str] | None = None) -> Pool:
    startds = {s.instance_id: s for s in obs.startds}
    pool = Pool()
    held = 0
    for inst in obs.instances:
        if not inst.is_worker_of(obs.pool):
            pool.others += 1
            continue
        if inst.state is InstanceState.STOPPED:
            pool.stopped.append(inst)
        elif inst.state in (InstanceState.PENDING, InstanceState.RUNNING):
            sd = startds.get(inst.instance_id)
            if sd is not None and inst.state is InstanceState.RUNNING:
                pool.joined.append((inst, sd))
            elif now - inst.launch_time < cfg.join_timeout_s:
                pool.booting.append(inst)  # EC2 resets LaunchTime on a start: warm ones too
            elif inst.has_joined or inst.instance_id in obs.busy_instances:
                since = inst.missing_since
                if (since is not None and now - since >= cfg.lost_timeout_s
                        and inst.instance_id not in obs.busy_instances
                        and not obs.unmapped_running):
                    pool.lost.append(inst)
                else:
                    pool.missing.append(inst)
            elif obs.unmapped_running:
                held += 1
                pool.missing.append(inst)
            else:
                pool.not_joined.append(inst)
        # STOPPING: on its way out; neither capacity nor a candidate.
    if notes is not None and pool.missing:
        notes.append(f"{len(pool.missing)} workers missing from the collector, kept and "
                     f"counted as booting" + (
                         f" ({held} never joined, held: {obs.unmapped_running} running jobs "
                         "are on machines without a startd ad)" if held else ""))
    return pool


def free_bins(pool: Pool) -> list[Bin]:
    """Free resources of joined workers that are not draining."""
    return [Bin(i.instance_id, sd.free_cpus, sd.free_memory_mb, sd.free_gpus)
            for i, sd in pool.joined if not sd.draining]


def booting_shapes(pool: Pool, cfg: AutoscalerConfig, notes: list[str]) -> list[Instance]:
    """Booting machines whose capacity counts (not-joined and lost ones too: each gets a
    replacement of the same type; missing ones may come back)."""
    out = []
    for inst in pool.booting + pool.not_joined + pool.lost + pool.missing:
        if cfg.shape(inst.instance_type) is None:
            notes.append(f"{inst.instance_id}: type {inst.instance_type} is not a configured "
                         "shape; its capacity is not counted")
        else:
            out.append(inst)
    return out


def new_need(left: list[JobGroup], booting: list[Instance], cfg: AutoscalerConfig,
             min_cpus: float = 0) -> tuple[list[Bin], list[JobGroup]]:
    """New machines for the jobs free capacity cannot take, net of booting ones.

    Booting machines are matched by type against the ideal packing of the queue, not
    first-fit: first-fit onto a different order of the same machines can leave a job out
    and launch again every cycle while they boot. Jobs of ideal machines without a booting
    match then go first-fit onto the unmatched booting ones; the rest is launched.
    """
    ideal, unsched = pack_new(_copy(left), cfg.shapes, min_cpus)
    spare = Counter(i.instance_type for i in booting)
    unmatched: list[Bin] = []
    for b in ideal:
        if spare[b.owner] > 0:
            spare[b.owner] -= 1
        else:
            unmatched.append(b)
    if not unmatched:
        return [], unsched
    rest = leftover(left, unmatched)
    bins = []
    for t, n in spare.items():
        shape = cfg.shape(t)
        if shape is not None:
            bins += [Bin(t, shape.cpus, shape.memory_mb, shape.gpus) for _ in range(n)]
    fit_existing(rest, bins)
    new_bins, _ = pack_new([g for g in rest if g.count > 0], cfg.shapes, min_cpus)
    return new_bins, unsched


def _relaunched(pool: Pool, cfg: AutoscalerConfig, booting: list[Instance],
                packing: Callable[[list[Instance]], tuple[list[Bin], list[JobGroup]]]
                ) -> tuple[tuple[list[Bin], list[JobGroup]], set[str]]:
    """The queue's new machines, and which replaced ones (never joined, or lost) to launch
    again: those whose capacity the packing counts on (it would launch more of their type
    without them; all of them if it would launch other types), and those that keep the
    pool at min_workers; none when nothing waits for them."""
    packed = packing(booting)
    replaced = pool.not_joined + pool.lost
    if not replaced:
        return packed, set()
    ids = {i.instance_id for i in replaced}
    without = packing([i for i in booting if i.instance_id not in ids])
    short = Counter(b.owner for b in without[0]) - Counter(b.owner for b in packed[0])
    out = set()
    for inst in replaced:
        if short[inst.instance_type] > 0:
            short[inst.instance_type] -= 1
            out.add(inst.instance_id)
    if +short:  # it would launch other types: relaunching them all is what fits for sure
        out = ids
    below_min = cfg.min_workers - (pool.active - len(replaced) + len(out) + len(packed[0]))
    for inst in replaced:
        if below_min > 0 and inst.instance_id not in out:
            out.add(inst.instance_id)
            below_min -= 1
    return packed, out


def _fewer_machines(left: list[JobGroup], booting: list[Instance], cfg: AutoscalerConfig,
                    slots: int) -> tuple[list[Bin], list[JobGroup]]:
    """Running short of instance slots: the same need on fewer, larger machines, or a pool
    of small ones full of long jobs would leave the queue stuck at the cap. The smallest
    that keep the pool within `slots` more machines, as large as are as cheap per job if
    none does: a large machine stays up for the longest of its many jobs."""
    floors = sorted({s.cpus for s in cfg.shapes})[1:] if slots > 0 else []
    found: tuple[list[Bin], list[JobGroup]] | None = None
    lo, hi = 0, len(floors) - 1
    while lo <= hi:  # fewer machines the higher the floor
        mid = (lo + hi) // 2
        packed = new_need(left, booting, cfg, floors[mid])
        if len(packed[0]) <= slots:
            found, hi = packed, mid - 1
        else:
            lo = mid + 1
    return found or new_need(left, booting, cfg, math.inf)


def _copy(groups: list[JobGroup]) -> list[JobGroup]:
    return [JobGroup(g.cpus, g.memory_mb, g.gpus, g.count, g.clusters) for g in groups]


def plan_binpack(obs: Observation, cfg: AutoscalerConfig, now: float) -> Plan:
    notes: list[str] = []
    pool = classify(obs, cfg, now, notes)
    groups = aggregate(obs.idle_jobs, now - cfg.launch_delay_s if cfg.launch_delay_s else None)
    idle_total = sum(g.count for g in groups)
    before = [g.count for g in groups]
    capacity = free_bins(pool)
    free_cores = sum(b.cpus for b in capacity)
    busy_owners = fit_existing(groups, capacity)
    # An idle worker draining for scale-in that the queue needs again is cheaper to keep
    # than a new one: cancel its drain. It was unclaimed, so all of it is free.
    undrains: list[Undrain] = []
    draining = [Bin(i.instance_id, sd.total_cpus, sd.total_memory_mb, sd.total_gpus)
                for i, sd in pool.joined if sd.draining and not sd.claimed]
    if draining and any(g.count for g in groups):
        cores = {b.owner: b.cpus for b in draining}
        taken = fit_existing(groups, draining)
        for b in draining:
            if b.owner in taken:
                undrains.append(Undrain(b.owner, f"{b.jobs} idle jobs fit; cancel its drain "
                                        "instead of launching"))
                free_cores += cores[b.owner]
        busy_owners |= taken
    # The oldest jobs are matched first, so those left over are the youngest: launch only
    # for the ones among them that have waited launch_delay_s.
    waiting = queue_cores = 0
    for g, n in zip(groups, before, strict=True):
        placed = n - g.count
        young = g.count - max(g.ready - placed, 0)
        waiting += young
        g.count -= young
        queue_cores += g.cpus * (placed + g.count)  # young ones left out of the spare count
    left = [g for g in groups if g.count > 0]
    if waiting:
        notes.append(f"{waiting} idle jobs younger than launch_delay_s "
                     f"{cfg.launch_delay_s:.0f} wait for free capacity")
    booting = booting_shapes(pool, cfg, notes)

    headroom = max(cfg.max_workers - pool.active, 0)
    slots = cfg.max_workers // 2 - pool.active

    def packing(machines: list[Instance]) -> tuple[list[Bin], list[JobGroup]]:
        packed = new_need(left, machines, cfg)
        return packed if len(packed[0]) <= slots else _fewer_machines(left, machines, cfg,
                                                                       slots)

    (new_bins, unsched), relaunch = _relaunched(pool, cfg, booting, packing)
    # Replaced machines that are not relaunched are capacity no more (for the spare too).
    dropped = {i.instance_id for i in pool.not_joined + pool.lost} - relaunch
    booting = [i for i in booting if i.instance_id not in dropped]
    active = pool.active - len(dropped)  # after this pass, for min_workers
    need = len(new_bins)
    allowed = min(need, headroom, cfg.max_launch_per_cycle)
    if allowed < need:
        notes.append(f"need {need} new instances; launching {allowed} (max_workers "
                     f"{cfg.max_workers}, active {pool.active}, max_launch_per_cycle "
                     f"{cfg.max_launch_per_cycle})")
    wanted = [b.owner for b in new_bins[:allowed]]
    jobs_new = sum(b.jobs for b in new_bins[:allowed])
    # Cores left free once the queue is placed on free, booting and new machines.
    spare = (free_cores + sum(_cpus(cfg, i.instance_type) for i in booting)
             + sum(_cpus(cfg, t) for t in wanted) - queue_cores
             + sum(g.cpus * g.count for g in unsched))
    largest = largest_request(obs, cfg)
    target = spare_target(pool, cfg, forecast_spare(obs, cfg, now, largest))
    if spare < target:
        room = min(headroom, cfg.max_launch_per_cycle) - len(wanted)
        extra = _spare_shapes(target - spare, cfg, room, largest, slots - len(wanted))
        if extra:
            notes.append(f"{spare} spare cores < target {target}: +{', '.join(extra)}")
        wanted += extra
        spare += sum(_cpus(cfg, t) for t in extra)
    if active + len(wanted) < cfg.min_workers:
        cheapest = min(cfg.shapes, key=lambda s: (s.price_per_hour, s.cpus))
        gap = min(cfg.min_workers - active - len(wanted),
                  cfg.max_launch_per_cycle - len(wanted), headroom - len(wanted))
        wanted += [cheapest.name] * max(gap, 0)

    drains, removals, swaps = _scale_in(pool, active, cfg, now, busy_owners, len(wanted),
                                        spare - target if target else None, notes)
    wanted += swaps[:max(min(headroom, cfg.max_launch_per_cycle) - len(wanted), 0)]
    why = (f"{idle_total} idle jobs; {jobs_new} need new capacity beyond free and booting "
           f"({len(pool.booting)} booting)")
    if len(wanted) > allowed:
        why += f"; spare cores {spare} of target {target}, min_workers {cfg.min_workers}"
    starts, launches = _starts_and_launches(wanted, pool, cfg, why)

    why_replaced = {i.instance_id: f"not joined {now - i.launch_time:.0f}s after launch "
                                   f"(join_timeout_s {cfg.join_timeout_s:.0f})"
                    for i in pool.not_joined}
    why_replaced |= {i.instance_id: f"missing from the collector for "
                                    f"{now - (i.missing_since or now):.0f}s with no job on it "
                                    f"(lost_timeout_s {cfg.lost_timeout_s:.0f})"
                     for i in pool.lost}
    replacements = tuple(
        Replacement(i.instance_id, i.instance_type, why_replaced[i.instance_id] + (
            "" if i.instance_id in relaunch else "; no idle job needs its capacity"),
            relaunch=i.instance_id in relaunch)
        for i in pool.not_joined + pool.lost)

    unschedulable = tuple(
        Unschedulable(g.cpus, g.memory_mb, g.gpus, g.count, tuple(g.clusters),
                      f"no shape offers {g.cpus} cpus, {g.memory_mb} MB, {g.gpus} gpus")
        for g in unsched)
    extra_wanted = len(wanted) - allowed  # spare, min_workers, swaps
    desired = min(max(active + need + extra_wanted - len(removals), cfg.min_workers),
                  cfg.max_workers)
    if pool.stopped and not cfg.warm_pool:
        notes.append(f"{len(pool.stopped)} stopped workers left alone (warm_pool off)")
    return Plan(launches=launches, starts=starts, drains=drains, removals=removals,
                undrains=tuple(undrains), replacements=replacements, unschedulable=unschedulable,
                desired_workers=desired, current_workers=pool.active,
                booting_workers=len(pool.booting), notes=tuple(notes))


def _starts_and_launches(wanted: list[str], pool: Pool, cfg: AutoscalerConfig, why: str
                         ) -> tuple[tuple[Start, ...], tuple[Launch, ...]]:
    counts = Counter(wanted)
    starts: list[Start] = []
    if cfg.warm_pool:
        for inst in sorted(pool.stopped, key=lambda i: i.instance_id):
            if counts[inst.instance_type] > 0:
                counts[inst.instance_type] -= 1
                starts.append(Start(inst.instance_id, inst.instance_type,
                                    f"warm start instead of a launch: {why}"))
    launches = tuple(Launch(t, n, why) for t, n in counts.items() if n > 0)
    return tuple(starts), launches


def spare_target(pool: Pool, cfg: AutoscalerConfig, arrivals: int = 0) -> int:
    """Static spare (spare_cores, spare_fraction of busy cores) plus the arrivals'."""
    busy = sum(sd.total_cpus - sd.free_cpus for _, sd in pool.joined)
    return cfg.spare_cores + math.ceil(cfg.spare_fraction * busy) + arrivals


def _cpus(cfg: AutoscalerConfig, instance_type: str) -> int:
    shape = cfg.shape(instance_type)
    return 0 if shape is None else shape.cpus


def _price(cfg: AutoscalerConfig, instance_type: str) -> float:
    shape = cfg.shape(instance_type)
    return 0.0 if shape is None else shape.price_per_hour


def _spare_shapes(gap: int, cfg: AutoscalerConfig, room: int, unit: int = 0,
                  slots: int = 0) -> list[str]:
    """Machines for `gap` spare cores. Machines of the cheapest shape that takes one job
    of `unit` cores (the largest expected) while that needs at most `slots` machines:
    arrivals' jobs end at different times, and a small machine leaves when its own do,
    where a large one stays up for the longest of them. Else the cheapest one that has
    the whole gap, the largest ones if none does."""
    out: list[str] = []
    cpu_shapes = [s for s in cfg.shapes if s.gpus == 0] or list(cfg.shapes)
    if 0 < unit < gap:
        fits = [s for s in cpu_shapes if s.cpus >= unit]
        if fits:
            small = min(fits, key=lambda s: (s.price_per_hour / s.cpus, s.cpus))
            # Short of instance slots (see _fewer_machines): as much spare as they allow.
            return [small.name] * max(min(-(-gap // small.cpus), room, slots), 0)
    while gap > 0 and len(out) < room:
        fits = [s for s in cpu_shapes if s.cpus >= gap]
        shape = (min(fits, key=lambda s: (s.price_per_hour, s.cpus)) if fits
                 else max(cpu_shapes, key=lambda s: (s.cpus, -s.price_per_hour)))
        out.append(shape.name)
        gap -= shape.cpus
    return out


def _scale_in(pool: Pool, active: int, cfg: AutoscalerConfig, now: float, busy: set[str],
              launching: int, spare: int | None, notes: list[str]
              ) -> tuple[tuple[Drain, ...], tuple[Removal, ...], list[str]]:
    """Workers wholly unclaimed for idle_timeout_s and not needed by the queue, longest
    idle first, never below min_workers, nor below the spare cores (`spare` is how many
    may go; None when no spare is wanted). Also returns smaller machines to launch for
    spare where they replace a large idle one."""
    floor = cfg.min_workers - launching
    removable = active - max(floor, 0)
    candidates: list[tuple[float, Instance, Startd]] = []
    for inst, sd in pool.joined:
        if sd.claimed or inst.instance_id in busy:
            continue
        if sd.unclaimed_since is None:
            notes.append(f"{inst.instance_id}: unclaimed since an unknown time; kept")
            continue
        idle_for = now - sd.unclaimed_since
        if idle_for >= cfg.idle_timeout_s or (spare is not None and cfg.surplus_idle_s
                                              and idle_for >= cfg.surplus_idle_s):
            candidates.append((idle_for, inst, sd))
    candidates.sort(key=lambda c: (-c[0], c[1].instance_id))
    if len(candidates) > removable:
        notes.append(f"{len(candidates)} idle workers, removing {max(removable, 0)} "
                     f"(min_workers {cfg.min_workers})")
        candidates = candidates[:max(removable, 0)]
    swaps: list[str] = []
    if spare is not None:
        keep = []
        for c in candidates:
            cpus = c[2].total_cpus
            if cpus <= spare:
                spare -= cpus
                keep.append(c)
                continue
            if c[0] < cfg.idle_timeout_s:
                continue  # not surplus: kept until idle_timeout_s
            # Needed as spare, but a smaller machine would do for much less: swap them.
            smaller = _spare_shapes(cpus - spare, cfg, 1)
            if smaller and _price(cfg, smaller[0]) < 0.6 * _price(cfg, c[1].instance_type):
                swaps += smaller
                spare += _cpus(cfg, smaller[0]) - cpus
                keep.append(c)
        if len(keep) < len(candidates):
            notes.append(f"{len(candidates) - len(keep)} idle workers kept as spare cores")
        candidates = keep
    action = RemovalAction.STOP if cfg.warm_pool else RemovalAction.TERMINATE
    drains: list[Drain] = []
    removals: list[Removal] = []
    for idle_for, inst, sd in candidates:
        why = (f"unclaimed {idle_for:.0f}s >= idle_timeout_s {cfg.idle_timeout_s:.0f}"
               if idle_for >= cfg.idle_timeout_s else
               f"unclaimed {idle_for:.0f}s >= surplus_idle_s {cfg.surplus_idle_s:.0f}, "
               "beyond the queue's need and the spare")
        if not sd.draining:
            drains.append(Drain(inst.instance_id, why))
        removals.append(Removal(inst.instance_id, action, why))
    return tuple(drains), tuple(removals), swaps
