"""The pool's workers as the policy sees them: joined, booting, never joined, lost, missing,
stopped; and what of them is capacity for idle jobs."""

from __future__ import annotations

from dataclasses import dataclass, field

from orchestrator.autoscaler.planner.config import AutoscalerConfig
from orchestrator.autoscaler.planner.model import Instance, Observation, Startd
from orchestrator.autoscaler.planner.packing import Bin
from orchestrator.vocabulary import InstanceState


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
                        and not obs.jobs_may_be_unseen):
                    pool.lost.append(inst)
                else:
                    pool.missing.append(inst)
            elif obs.jobs_may_be_unseen:
                held += 1
                pool.missing.append(inst)
            else:
                pool.not_joined.append(inst)
        # STOPPING: on its way out; neither capacity nor a candidate.
    if notes is not None and pool.missing:
        unseen = (f"{obs.unmapped_running} running jobs are on machines without a startd ad"
                  if obs.unmapped_running else
                  f"schedds {', '.join(obs.silent_schedds)} did not answer")
        notes.append(f"{len(pool.missing)} workers missing from the collector, kept and "
                     f"counted as booting" + (
                         f" ({held} never joined, held: {unseen})" if held else ""))
    return pool


def free_bins(pool: Pool) -> list[Bin]:
    """Free resources of joined workers that are not draining."""
    return [Bin(i.instance_id, sd.free_cpus, sd.free_memory_mb, sd.free_gpus,
                shape=i.instance_type, disk_mb=sd.free_disk_mb if sd.total_disk_mb else None)
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
