"""The simulated pool: EC2-like instances with boot delays and per-second billing, each
with one partitionable startd once booted. It is also the simulator's executor: it builds
the Observation the policy sees and performs the Plan, as the live loop does with EC2 and
HTCondor.

A worker advertises what a real one of its type would (sim/hardware.py: nominal memory
less the kernel's share), jobs are placed by that, and the Observation carries what the
workers of each type that has joined advertised, as the live runtime learns it
(runtime/capacity.py), so the planner sizes shapes the same way in both.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass

from orchestrator.autoscaler.planner.config import AutoscalerConfig, InstanceShape
from orchestrator.autoscaler.planner.model import (
    Capacity,
    IdleJobs,
    Instance,
    Observation,
    Plan,
    RemovalAction,
    Startd,
    Submitted,
)
from orchestrator.sim.hardware import advertised_memory_mb
from orchestrator.vocabulary import TAG_POOL, TAG_ROLE, InstanceState

POOL = "sim"
BOOTING, UP, STOPPED, GONE = 0, 1, 2, 3
_TAGS = {TAG_POOL: POOL, TAG_ROLE: "worker"}
# The central manager is in every observation, as on EC2: the policy must leave it alone.
CENTRAL_MANAGER = Instance("i-cm", "m6i.large", InstanceState.RUNNING, 0.0,
                           {TAG_POOL: POOL, TAG_ROLE: "central-manager"})


@dataclass(frozen=True)
class SimParams:
    boot_s: float = 60.0  # launch to startd in the collector
    boot_jitter_s: float = 10.0  # uniform +/- around boot_s
    warm_boot_s: float = 25.0  # a stopped instance starting again
    negotiation_s: float = 20.0  # the negotiator's cycle
    min_billing_s: float = 60.0  # per-second billing with a 60 s minimum per start
    max_workers: int = 200
    seed: int = 0


class SimPool:
    def __init__(self, params: SimParams, config: AutoscalerConfig) -> None:
        self.p = params
        self.cfg = config
        self.rng = random.Random(params.seed)
        self.shape: list[InstanceShape] = []
        self.state: list[int] = []
        self.launched: list[float] = []  # start of the current billing segment
        self.free_cpus: list[int] = []
        self.free_mem: list[int] = []
        self.running: list[int] = []
        self.since: list[float | None] = []
        self.draining: list[bool] = []
        self._inst: list[Instance | None] = []
        self._sd: list[Startd | None] = []
        self.alive: dict[int, None] = {}  # booting or up, in launch order
        self.stopped: dict[int, None] = {}
        self.boots: list[tuple[float, int]] = []  # heap (ready time, worker)
        # What a worker of each type advertises, and what the types that have joined at
        # least once advertised (replaced, never changed in place: observations keep it).
        self._offers: dict[str, Capacity] = {}
        self.capacities: dict[str, Capacity] = {}
        self.paid_s = 0.0
        self.paid_core_s = 0.0
        self.cost = 0.0
        self.launches = 0
        self.terminations = 0
        self.active_cores = 0

    # --- lifecycle -------------------------------------------------------------------
    def launch(self, shape: InstanceShape, now: float, boot_s: float | None = None) -> int:
        w = len(self.shape)
        self.shape.append(shape)
        self.state.append(BOOTING)
        self.launched.append(now)
        offer = self.offer(shape)
        self.free_cpus.append(offer.cpus)
        self.free_mem.append(offer.memory_mb)
        self.running.append(0)
        self.since.append(None)
        self.draining.append(False)
        self._inst.append(None)
        self._sd.append(None)
        self.alive[w] = None
        self.launches += 1
        self.active_cores += shape.cpus
        self._boot(w, now, boot_s)
        return w

    def _boot(self, w: int, now: float, boot_s: float | None) -> None:
        if boot_s is None:
            j = self.p.boot_jitter_s
            boot_s = self.p.boot_s + (self.rng.uniform(-j, j) if j else 0.0)
        heapq.heappush(self.boots, (now + max(boot_s, 0.0), w))

    def join(self, w: int, now: float) -> bool:
        """Boot finished: the startd appears, wholly unclaimed. False if since removed."""
        if self.state[w] != BOOTING:
            return False
        self.state[w] = UP
        self.since[w] = now
        self._inst[w] = self._sd[w] = None
        name = self.shape[w].name
        if name not in self.capacities:
            self.capacities = {**self.capacities, name: self.offer(self.shape[w])}
        return True

    def offer(self, shape: InstanceShape) -> Capacity:
        """What a worker of `shape` advertises: its cores, its nominal memory less the
        kernel's share, and GPUs only if the worker image drives them (no disk: the
        simulator does not model it)."""
        cap = self._offers.get(shape.name)
        if cap is None:
            cap = Capacity(shape.cpus, advertised_memory_mb(shape.memory_mb),
                           shape.gpus if self.cfg.gpu_workers else 0)
            self._offers[shape.name] = cap
        return cap

    def _bill(self, w: int, now: float) -> None:
        s = max(now - self.launched[w], self.p.min_billing_s)
        self.paid_s += s
        self.paid_core_s += s * self.shape[w].cpus
        self.cost += s * self.shape[w].price_per_hour / 3600.0

    def remove(self, w: int, now: float, stop: bool = False) -> None:
        self._bill(w, now)
        del self.alive[w]
        self.active_cores -= self.shape[w].cpus
        self.state[w] = STOPPED if stop else GONE
        if stop:
            self.stopped[w] = None
        else:
            self.terminations += 1

    def finish(self, now: float) -> None:
        """End of the run: everything still alive is terminated (and billed) now."""
        for w in list(self.alive):
            self.remove(w, now)

    # --- jobs on workers -------------------------------------------------------------
    def claim_many(self, w: int, k: int, cpus: int, mem: int) -> None:
        """k jobs of `cpus` cores and `mem` MB each start on worker w."""
        self.free_cpus[w] -= k * cpus
        self.free_mem[w] -= k * mem
        self.running[w] += k
        self.since[w] = None
        self._sd[w] = None

    def release(self, w: int, cpus: int, mem: int, now: float) -> bool:
        """A job ended; True if the worker is now wholly unclaimed."""
        self.free_cpus[w] += cpus
        self.free_mem[w] += mem
        self.running[w] -= 1
        self._sd[w] = None
        if self.running[w] == 0:
            self.since[w] = now
            return True
        return False

    # --- the policy's view and the executor ------------------------------------------
    def instance(self, w: int) -> Instance:
        inst = self._inst[w]
        if inst is None:
            state = InstanceState.PENDING if self.state[w] == BOOTING else (
                InstanceState.STOPPED if self.state[w] == STOPPED else InstanceState.RUNNING)
            inst = Instance(f"i-{w:07d}", self.shape[w].name, state, self.launched[w], _TAGS)
            self._inst[w] = inst
        return inst

    def startd(self, w: int) -> Startd:
        sd = self._sd[w]
        if sd is None:
            s = self.offer(self.shape[w])
            sd = Startd(f"i-{w:07d}", s.cpus, self.free_cpus[w], s.memory_mb, self.free_mem[w],
                        s.gpus, s.gpus, self.running[w] > 0, self.since[w], self.draining[w])
            self._sd[w] = sd
        return sd

    def observe(self, idle: tuple[IdleJobs, ...], running_jobs: int,
                submitted: tuple[Submitted, ...] = (),
                running_requests: tuple[tuple[int, int], ...] = ()) -> Observation:
        insts = [CENTRAL_MANAGER]
        insts += [self.instance(w) for w in self.alive]
        insts += [self.instance(w) for w in self.stopped]
        sds = [self.startd(w) for w in self.alive if self.state[w] == UP]
        return Observation(POOL, tuple(insts), tuple(sds), idle, running_jobs, submitted,
                           running_requests, capacities=self.capacities)

    def apply(self, plan: Plan, now: float) -> None:
        """Perform a plan as the live executor does: replacements, undrains, starts,
        launches, drains, then removals re-checked (a claimed worker is never removed)."""
        for r in plan.replacements:
            w = self._worker(r.instance_id)
            if w in self.alive:
                self.remove(w, now)
            if r.relaunch:
                self._launch_type(r.instance_type, now)
        for s in plan.starts:
            w = self._worker(s.instance_id)
            if w in self.stopped:
                del self.stopped[w]
                self.state[w] = BOOTING
                self.launched[w] = now
                self.alive[w] = None
                self.active_cores += self.shape[w].cpus
                self._inst[w] = self._sd[w] = None
                self._boot(w, now, self.p.warm_boot_s)
        for launch in plan.launches:
            for _ in range(launch.count):
                self._launch_type(launch.instance_type, now)
        for u in plan.undrains:
            w = self._worker(u.instance_id)
            if w in self.alive:
                self.draining[w] = False
                self._sd[w] = None
        for d in plan.drains:
            w = self._worker(d.instance_id)
            if w in self.alive:
                self.draining[w] = True
                self._sd[w] = None
        for rm in plan.removals:
            w = self._worker(rm.instance_id)
            if w in self.alive and self.state[w] == UP and self.running[w] == 0:
                self.draining[w] = False
                self.remove(w, now, stop=rm.action is RemovalAction.STOP)

    def _launch_type(self, name: str, now: float) -> None:
        shape = self.cfg.shape(name)
        if shape is None:
            raise ValueError(f"policy asked for unknown instance type {name!r}")
        self.launch(shape, now)

    @staticmethod
    def _worker(instance_id: str) -> int:
        if not instance_id.startswith("i-") or instance_id == CENTRAL_MANAGER.instance_id:
            raise ValueError(f"the policy acted on {instance_id}, which is not a worker")
        return int(instance_id[2:])
