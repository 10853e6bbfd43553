"""The event-driven replay of one trace against one policy setting.

Time jumps from event to event (arrival, job end, boot end) and to the ticks of the
negotiator and the autoscaler, so a quiet week costs nothing. The autoscaler is asked
only at ticks where something changed since its last empty plan, or an idle timer came
due: the policy is a pure function of what it sees and of `now` through its timeouts, so
skipped ticks would have planned nothing.

Jobs go only onto workers that advertise enough for them (sim/pool.py). A job that no
worker the setting can launch advertises enough for stays idle: the planner reports it
unschedulable, and the run ends when the last job that can run has ended.
"""

from __future__ import annotations

import bisect
import heapq
import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from orchestrator.autoscaler.planner.config import AutoscalerConfig, InstanceShape
from orchestrator.autoscaler.planner.forecast import next_change
from orchestrator.autoscaler.planner.model import IdleJobs, Observation, Plan, Submitted
from orchestrator.autoscaler.planner.strategies import get_strategy
from orchestrator.sim.jobqueue import JobQueue
from orchestrator.sim.pool import UP, SimParams, SimPool
from orchestrator.sim.swf import Trace

INF = math.inf


def _ceil(x: float, step: float) -> float:
    return math.ceil(x / step) * step


@dataclass
class RunResult:
    """What a run leaves behind (small enough to cross a process boundary)."""

    start: npt.NDArray[np.float64]  # per job; NaN if it never started
    end_s: float
    paid_s: float  # instance-seconds billed (60 s minimum per start)
    paid_core_s: float
    cost: float
    launches: int
    terminations: int
    plan_calls: int
    # (bin start, mean cores asked, mean worker cores), time-weighted over each bin
    samples: list[tuple[float, float, float]] = field(default_factory=list)
    # Jobs that never ran and that the planner reported unschedulable (no shape offers
    # what they ask), and those no worker of the setting advertises enough for.
    unschedulable: int = 0
    unfit: int = 0


class Simulation:
    """One run. `config` None means a static pool of `static` (shape, count) from t=0."""

    def __init__(self, trace: Trace, config: AutoscalerConfig, params: SimParams,
                 static: tuple[InstanceShape, int] | None = None, samples: int = 2000) -> None:
        self.trace = trace
        self.cfg = config
        self.p = params
        self.static = static
        strategy = get_strategy(config.policy)  # fail early on an unknown name
        self.policy = strategy.plan
        self.timers = strategy.timers(config)
        self.pool = SimPool(params, config)
        self.idle_timeout = self.timers.idle_timeout_s
        self.surplus_idle = self.timers.surplus_idle_s
        span = float(trace.submit[-1]) if len(trace) else 0.0
        self.sample_step = max(span / max(samples, 1), 1.0)
        # Set to a list to record every (observation, now, plan) (the contract tests do).
        self.record: list[tuple[Observation, float, Plan]] | None = None

    def reconcile(self, now: float, idle: tuple[IdleJobs, ...], running: int,
                  submitted: tuple[Submitted, ...] = (),
                  running_requests: tuple[tuple[int, int], ...] = ()) -> Plan:
        """One autoscaler pass against the simulated pool: observe, plan, act."""
        obs = self.pool.observe(idle, running, submitted, running_requests)
        plan = self.policy(obs, self.cfg, now)
        self.pool.apply(plan, now)
        if self.record is not None:
            self.record.append((obs, now, plan))
        return plan

    def _fits(self, cpus: list[int], mem: list[int]) -> list[bool]:
        """Per job: whether some worker this setting can have advertises enough for it
        (its static or fixed shape, else any shape)."""
        if self.static is not None:
            shapes = [self.static[0]]
        else:
            fixed = self.cfg.shape(self.cfg.fixed_shape) if (
                self.cfg.fixed_shape and self.cfg.policy != "binpack") else None
            shapes = [fixed] if fixed is not None else list(self.cfg.shapes)
        offers = {(o.cpus, o.memory_mb) for o in map(self.pool.offer, shapes)}
        return [any(c <= oc and m <= om for oc, om in offers) for c, m in zip(cpus, mem,
                                                                           strict=True)]

    def _push_timers(self, timers: list[tuple[float, int, float]], w: int, now: float
                     ) -> None:
        """Wake the policy when worker w, unclaimed from now, reaches a timeout."""
        heapq.heappush(timers, (now + self.idle_timeout, w, now))
        if 0 < self.surplus_idle < self.idle_timeout:
            heapq.heappush(timers, (now + self.surplus_idle, w, now))

    def run(self) -> RunResult:
        tr, pool, p = self.trace, self.pool, self.p
        n = len(tr)
        submit, runtime = tr.submit.tolist(), tr.run.tolist()
        cpus, mem = tr.cpus.tolist(), tr.memory_mb.tolist()
        start = [math.nan] * n
        fits = self._fits(cpus, mem)
        stuck_n = 0  # arrived jobs no worker can take: they stay idle
        unsched_keys: set[tuple[int, int]] = set()  # requests the planner reported
        queue = JobQueue(submit)
        delay = self.timers.launch_delay_s
        window = self.timers.arrival_window_s
        window_due = INF  # when the oldest recent arrival leaves the window
        comps: list[tuple[float, int, int]] = []  # (end, job, worker)
        timers: list[tuple[float, int, float]] = []  # (expiry, worker, unclaimed since)
        idle_n = running_n = idle_cores = running_cores = 0
        running_by_cpus: dict[int, int] = {}  # request cores -> running jobs
        samples: list[tuple[float, float, float]] = []
        bin_start, area_d, area_w, last = 0.0, 0.0, 0.0, 0.0  # time-weighted bins
        plan_calls = 0
        demand_level = worker_level = 0
        last_neg = last_as = -INF  # a tick is handled once, even if it dirties itself
        i = 0
        t = 0.0
        match_dirty = False
        as_dirty = self.static is None
        neg, iv = p.negotiation_s, self.cfg.interval_s
        if self.static is not None:
            shape, count = self.static
            for _ in range(count):
                pool.launch(shape, 0.0, boot_s=0.0)

        def arrivals(now: float) -> tuple[Submitted, ...]:
            """What condor_q shows of the window: jobs submitted since now - window that
            are still idle or running (finished ones have left the queue)."""
            if window <= 0:
                return ()
            groups: dict[tuple[float, int], int] = {}
            for j in range(bisect.bisect_left(submit, now - window, hi=i), i):
                s = start[j]
                if s == s and s + runtime[j] <= now:  # started (not NaN) and finished
                    continue
                key = (submit[j], cpus[j])
                groups[key] = groups.get(key, 0) + 1
            return tuple(Submitted(q, c, k) for (q, c), k in sorted(groups.items()))

        def negotiate(now: float) -> None:
            nonlocal idle_n, running_n, idle_cores, running_cores
            avail = [w for w in pool.alive if pool.state[w] == UP and not pool.draining[w]
                     and pool.free_cpus[w] > 0]
            fc, fm = pool.free_cpus, pool.free_mem
            for _, key in queue.by_age():  # oldest autocluster first
                if not avail:
                    break
                c, m = key
                if c > max(fc[w] for w in avail) or m > max(fm[w] for w in avail):
                    continue
                # Best fit: the fullest machine that takes the job, as a pool configured with
                # NEGOTIATOR_PRE_JOB_RANK = -Cpus does; it keeps large machines free to drain.
                for w in sorted(avail, key=fc.__getitem__):
                    if fc[w] < c or fm[w] < m:
                        continue
                    left = queue.count(key)
                    k = min(fc[w] // c, fm[w] // m if m else left, left)
                    for _ in range(k):
                        j = queue.pop(key)
                        start[j] = now
                        heapq.heappush(comps, (now + runtime[j], j, w))
                    pool.claim_many(w, k, c, m)
                    running_by_cpus[c] = running_by_cpus.get(c, 0) + k
                    idle_n -= k
                    running_n += k
                    idle_cores -= k * c
                    running_cores += k * c
                    if k == left:
                        break
                avail = [w for w in avail if fc[w] > 0]

        while True:
            t_ev = min(submit[i] if i < n else INF, comps[0][0] if comps else INF,
                       pool.boots[0][0] if pool.boots else INF)
            t_neg = _ceil(t, neg) if match_dirty and idle_n else INF
            if t_neg <= last_neg:
                t_neg += neg
            t_as = INF
            if self.static is None:
                while timers and (pool.state[timers[0][1]] != UP
                                  or pool.since[timers[0][1]] != timers[0][2]):
                    heapq.heappop(timers)  # stale: claimed again or removed
                if as_dirty:
                    t_as = _ceil(t, iv)
                else:
                    due = min(timers[0][0] if timers else INF, queue.next_ready(t, delay),
                              window_due)
                    t_as = _ceil(max(due, t), iv) if due < INF else INF
                if t_as <= last_as:
                    t_as += iv
            now = min(t_ev, t_neg, t_as)
            if now == INF:
                break
            while i < n and submit[i] <= now:
                queue.push((cpus[i], mem[i]), i)
                idle_n += 1
                stuck_n += not fits[i]
                idle_cores += cpus[i]
                i += 1
                match_dirty = as_dirty = True
            while comps and comps[0][0] <= now:
                _, j, w = heapq.heappop(comps)
                running_n -= 1
                running_cores -= cpus[j]
                if running_by_cpus[cpus[j]] == 1:
                    del running_by_cpus[cpus[j]]
                else:
                    running_by_cpus[cpus[j]] -= 1
                if pool.release(w, cpus[j], mem[j], now):
                    self._push_timers(timers, w, now)
                match_dirty = as_dirty = True
            while pool.boots and pool.boots[0][0] <= now:
                _, w = heapq.heappop(pool.boots)
                if pool.join(w, now):
                    self._push_timers(timers, w, now)
                    match_dirty = as_dirty = True
            t = now
            if now == t_neg:
                negotiate(now)
                match_dirty = False
                last_neg = now
            if now == t_as:
                recent = arrivals(now)
                plan = self.reconcile(now, queue.observe(now, delay), running_n, recent,
                                      tuple(sorted(running_by_cpus.items())))
                window_due = next_change(recent, self.cfg, now)
                plan_calls += 1
                last_as = now
                for u in plan.unschedulable:
                    unsched_keys.add((u.request_cpus, u.request_memory_mb))
                as_dirty = not plan.is_empty
                while timers and timers[0][0] <= now:
                    heapq.heappop(timers)
                if plan.launches or plan.starts or plan.replacements:
                    match_dirty = True
            # The levels held from `last` to `now` (set by the previous pass).
            area_d += (now - last) * demand_level
            area_w += (now - last) * worker_level
            last = now
            if now - bin_start >= self.sample_step:
                samples.append((bin_start, area_d / (now - bin_start),
                                area_w / (now - bin_start)))
                bin_start, area_d, area_w = now, 0.0, 0.0
            demand_level, worker_level = idle_cores + running_cores, pool.active_cores
            if i >= n and idle_n == stuck_n and running_n == 0 and (
                    not stuck_n or self.static is not None or last_as >= submit[-1]):
                break  # what is left idle can never run (and the planner has seen it)
        pool.finish(t)
        never = [j for j in range(n) if start[j] != start[j]]  # NaN: never started
        unsched = sum((cpus[j], mem[j]) in unsched_keys for j in never)
        if t > bin_start:
            samples.append((bin_start, area_d / (t - bin_start), area_w / (t - bin_start)))
        return RunResult(np.asarray(start, dtype=np.float64), t, pool.paid_s, pool.paid_core_s,
                         pool.cost, pool.launches, pool.terminations, plan_calls, samples,
                         unsched, n - sum(fits))
