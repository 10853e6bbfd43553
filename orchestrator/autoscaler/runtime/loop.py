"""The reconcile loop: observe, plan, act, log; sleep only what is left of the interval.

Stateless between passes for safety: everything it needs is read again from EC2 tags and
HTCondor, so killing it at any point and starting it again loses nothing (memory.py only
bridges views that lag). Times that decide replacements and idle timeouts are EC2's (the
Date of its replies), not this host's. Each decision is one structured (JSON) log line
with its reason; a pass whose inputs cannot be read is skipped with a line saying why and
acts on nothing; a schedd that does not answer is reported, and the pass goes on without
its jobs. Any exception in a pass is logged and counted, and the next pass comes.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from orchestrator.autoscaler.planner.capacity import effective_config
from orchestrator.autoscaler.planner.config import AutoscalerConfig
from orchestrator.autoscaler.planner.model import Plan
from orchestrator.autoscaler.planner.strategies import plan as make_plan
from orchestrator.autoscaler.runtime import observe as observing
from orchestrator.autoscaler.runtime.capacity import CapacityStore, LearnedCapacities
from orchestrator.autoscaler.runtime.executor import Executor, LaunchSpec, Outcome
from orchestrator.autoscaler.runtime.lease import Lease, LeaseHeld
from orchestrator.autoscaler.runtime.memory import Ec2Clock, KnownSchedds, RecentLaunches
from orchestrator.autoscaler.runtime.metrics import AutoscalerMetrics
from orchestrator.aws.ec2 import Cloud
from orchestrator.aws.records import Ec2Instance
from orchestrator.clock import wall
from orchestrator.condor.actions import CondorActions
from orchestrator.condor.matching import ShapeMatcher
from orchestrator.condor.records import AUTOSCALER_CONSTRAINT, AUTOSCALER_JOB_ATTRS, Job
from orchestrator.condor.source import PoolSource
from orchestrator.errors import describe_exception
from orchestrator.vocabulary import LIVE_STATES

log = logging.getLogger("htcpool.autoscaler")


@dataclass
class PassResult:
    plan: Plan | None
    observed: observing.Observed | None
    outcome: Outcome | None
    skipped: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)


class Autoscaler:
    def __init__(self, cloud: Cloud, source: PoolSource, config: AutoscalerConfig,
                 spec: Callable[[], LaunchSpec], metrics: AutoscalerMetrics | None = None,
                 clock: Callable[[], float] = wall,
                 emit: Callable[[dict[str, Any]], None] | None = None,
                 capacity_store: CapacityStore | None = None,
                 shapes: Callable[[AutoscalerConfig, float], AutoscalerConfig] | None = None
                 ) -> None:
        self.cloud = cloud
        self.source = source
        self.config = config
        self.pool = cloud.pool
        self.metrics = metrics or AutoscalerMetrics()
        self.clock = clock
        self._emit = emit or (lambda record: log.info(json.dumps(record, default=str)))
        self._events: list[dict[str, Any]] = []
        self.condor = CondorActions(source)
        self.executor = Executor(cloud, self.condor, config, spec, self.event)
        self.recent = RecentLaunches()
        self.schedds = KnownSchedds()
        self.ec2_clock = Ec2Clock()
        self._foreign: set[str] = set()  # reported once each
        self._foreign_ads: set[tuple[str, str]] = set()
        # The shapes (from EC2 when the config names instance types), what their workers
        # really offer, and which of them each idle request matches.
        self._shapes = shapes
        self._base_config = config
        self.capacities = LearnedCapacities(capacity_store, self.event)
        self.matcher = ShapeMatcher()

    def event(self, kind: str, **fields: Any) -> None:
        record = {"ts": round(self.clock(), 3), "pool": self.pool, "event": kind, **fields}
        self._events.append(record)
        self._emit(record)

    def observe(self) -> tuple[observing.Observed, float]:
        """The pool as EC2 and HTCondor show it, and the time of it by EC2's clock."""
        instances = self._launched_by_pool(
            self.cloud.pool_instances(states=[str(s) for s in LIVE_STATES]))
        if self.ec2_clock.update(getattr(self.cloud, "server_time", None)):
            self.event("clock_skew", offset_s=round(self.ec2_clock.offset_s, 1),
                       reason="this host's clock differs from EC2's; EC2's is used")
        now = self.ec2_clock.now(self.clock())
        instances = self.recent.merge(instances, now)
        slots = self.source.slots()
        queues = self.source.queues(AUTOSCALER_CONSTRAINT, AUTOSCALER_JOB_ATTRS, grouped=True)
        silent = self.schedds.silent(queues, now, self.config.lost_timeout_s)
        self.metrics.silent_schedds.set(len(silent))
        for name, why in sorted(silent.items()):
            self.event("schedd_silent", schedd=name, reason=f"{why}; its jobs are unknown "
                       "this pass: no worker without a startd ad is replaced")
        jobs = [Job.from_ad(ad) for ad in queues.ads]
        observed = observing.build(self.pool, instances, slots, jobs, now,
                                   self.config.arrival_window_s, silent_schedds=silent)
        for iid, address in sorted(observed.mismatched_ads.items()):
            if (iid, address) not in self._foreign_ads:
                self._foreign_ads.add((iid, address))
                self.event("ad_address_mismatch", instance=iid, address=address,
                           reason="a startd ad names this instance but not its private "
                                  "address; left out (forged, or a stale ad)")
        return observed, now

    def _launched_by_pool(self, instances: list[Ec2Instance]) -> list[Ec2Instance]:
        """Leave out instances tagged into the pool that it did not launch (wrong image
        or instance profile, aws/provenance.py): never counted, drained or removed."""
        kept = []
        for inst in instances:
            problem = self.cloud.provenance(inst)
            if problem is None:
                kept.append(inst)
            elif inst.id not in self._foreign:
                self._foreign.add(inst.id)
                self.event("foreign_instance", instance=inst.id,
                           reason=f"tagged into the pool but not launched by it ({problem}); "
                                  "never acted on")
        return kept

    def run_once(self, dry_run: bool = False,
                 fence: Callable[[], None] | None = None) -> PassResult:
        """One pass; `fence` (the lease's) is checked before every action."""
        # A pass makes some 10^6 short-lived objects (parsed XML, ads) that reference
        # counting frees; the cyclic collector would only walk them. It resumes afterwards.
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self._pass(dry_run, fence)
        finally:
            if collecting:
                gc.enable()

    def _pass(self, dry_run: bool, fence: Callable[[], None] | None) -> PassResult:
        self._events = []
        self.metrics.passes.inc()
        try:
            observed, now = self.observe()
        except Exception as exc:
            why = describe_exception(exc)
            self.metrics.errors.inc()
            self.event("skip", reason=f"cannot observe the pool, nothing done: {why}")
            return PassResult(None, None, None, skipped=why, events=self._events)
        try:
            self._refresh_shapes(now)
        except Exception as exc:
            why = describe_exception(exc)
            self.metrics.errors.inc()
            self.event("skip", reason=f"cannot resolve the instance shapes, nothing done: "
                                      f"{why}")
            return PassResult(None, None, None, skipped=why, events=self._events)
        learned = self.capacities.update(observed.observation, persist=not dry_run)
        observation = dataclasses.replace(observed.observation, capacities=learned)
        observed.observation = self.matcher.annotate(
            observation, effective_config(self.config, learned))
        plan = make_plan(observed.observation, self.config, now)
        self._record(plan, observed)
        outcome = None
        if not dry_run and not plan.is_empty:
            outcome = self.executor.execute(plan, observed, cycle=uuid.uuid4().hex[:12],
                                            fence=fence)
            self.recent.add(outcome.new_instances, now)
            self.metrics.launches.inc(len(outcome.launched))
            self.metrics.terminations.inc(len(outcome.removed) + len(outcome.replaced))
            self.metrics.errors.inc(len(outcome.errors))
        elif not dry_run and (not observed.tags.empty or observed.stale_ads):
            outcome = self.executor.execute(plan, observed, cycle="bookkeeping", fence=fence)
        return PassResult(plan, observed, outcome, events=self._events)

    def _refresh_shapes(self, now: float) -> None:
        """The config with the shapes EC2 offers now (cached by the source)."""
        if self._shapes is None:
            return
        config = self._shapes(self._base_config, now)
        if config != self.config:
            self.config = self.executor.config = config

    def _record(self, plan: Plan, observed: observing.Observed) -> None:
        m = self.metrics
        m.desired.set(plan.desired_workers)
        m.current.set(plan.current_workers)
        m.booting.set(plan.booting_workers)
        m.draining.set(observed.draining)
        m.idle_jobs.set(observed.jobs_idle)
        m.running_jobs.set(observed.jobs_running)
        m.unschedulable_jobs.set(sum(u.count for u in plan.unschedulable))
        self.event("plan", desired=plan.desired_workers, current=plan.current_workers,
                   booting=plan.booting_workers, idle_jobs=observed.jobs_idle,
                   running_jobs=observed.jobs_running,
                   actions=sum(1 for _ in plan.actions()))
        for action in plan.actions():
            self.event("decide", decision=type(action).__name__.lower(), **_fields(action))
        for u in plan.unschedulable:
            self.event("unschedulable", count=u.count, request_cpus=u.request_cpus,
                       request_memory_mb=u.request_memory_mb, request_gpus=u.request_gpus,
                       request_disk_mb=u.request_disk_mb, clusters=list(u.clusters),
                       reason=u.reason)
        for note in plan.notes:
            self.event("note", reason=note)

    def run_forever(self, stop: threading.Event, lease: Lease | None = None,
                    dry_run: bool = False, max_passes: int | None = None) -> int:
        """The loop; returns the number of passes made."""
        passes = 0
        while not stop.is_set() and (max_passes is None or passes < max_passes):
            started = time.monotonic()
            try:
                if lease is not None:
                    lease.acquire()
                    self.metrics.lease_held.set(1)
                self.run_once(dry_run=dry_run, fence=lease.fence if lease else None)
                self.metrics.last_pass.set(time.time())
            except LeaseHeld as exc:
                self.metrics.lease_held.set(0)
                self.event("standby", reason=str(exc))
            except Exception as exc:  # a pass that fails is logged; the next one comes
                self.metrics.errors.inc()
                self.event("error", step="pass", error=describe_exception(exc))
            passes += 1
            try:
                stop.wait(max(0.0, self.config.interval_s - (time.monotonic() - started)))
            except Exception as exc:  # never the end of the loop
                self.event("error", step="wait", error=describe_exception(exc))
                stop.wait(1.0)
        if lease is not None:
            try:
                lease.release()
            except Exception as exc:
                self.event("error", step="release lease", error=describe_exception(exc))
        return passes


def _fields(action: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return {k: (str(v) if not isinstance(v, int | float | str) else v)
            for k, v in asdict(action).items()}
