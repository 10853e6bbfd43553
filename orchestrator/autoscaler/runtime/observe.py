"""Observe the pool for the policy: EC2 instances by tag, startd ads by EC2InstanceId, idle
and running jobs. Two queries to HTCondor and one paginated DescribeInstances per pass.

How long a worker has been unclaimed is kept where it survives a restart of the
autoscaler: an `htcpool:idle-since` tag set when a worker is first seen wholly unclaimed
and removed when it is claimed again (a partitionable slot's own EnteredCurrentState does
not change when its dynamic slots come and go). Likewise `htcpool:joined` once a worker's
startd is first seen and `htcpool:missing-since` while a joined worker is absent from the
collector. The tag changes are returned, not made: only the executor has side effects.
"""

from __future__ import annotations

import datetime
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from orchestrator.autoscaler.planner.model import IdleJobs, Instance, Observation, Startd, Submitted
from orchestrator.aws.records import Ec2Instance
from orchestrator.condor.actions import DRAIN_REASON_PREFIX
from orchestrator.condor.records import ON_A_MACHINE, Job, JobStatus, Slot
from orchestrator.vocabulary import (
    LIVE_STATES,
    TAG_DRAINED,
    TAG_IDLE_SINCE,
    TAG_JOINED,
    TAG_MISSING_SINCE,
    InstanceState,
)


@dataclass
class TagChanges:
    """Bookkeeping tags the executor applies, batched: one CreateTags per (tag, value) and
    one DeleteTags per tag, a handful of calls per pass whatever the pool's size."""

    set: dict[str, dict[str, str]] = field(default_factory=dict)  # tag -> instance -> value
    clear: dict[str, list[str]] = field(default_factory=dict)  # tag -> instances

    def add(self, tag: str, instance_id: str, value: str) -> None:
        self.set.setdefault(tag, {})[instance_id] = value

    def remove(self, tag: str, instance_id: str) -> None:
        self.clear.setdefault(tag, []).append(instance_id)

    @property
    def empty(self) -> bool:
        return not any(self.set.values()) and not any(self.clear.values())


@dataclass
class Observed:
    observation: Observation
    machines: dict[str, str]  # instance id -> HTCondor machine name (for condor_drain)
    tags: TagChanges
    jobs_running: int
    jobs_idle: int
    draining: int
    # Startd ads of this pool's workers that EC2 says are stopped or gone (powered off,
    # terminated): the collector keeps them for CLASSAD_LIFETIME and the negotiator
    # matches jobs to them meanwhile. Instance id -> machine, for the executor to remove.
    stale_ads: dict[str, str] = field(default_factory=dict)
    # Ads naming one of the pool's instances but not advertising its private address,
    # left out: instance id -> the address they gave.
    mismatched_ads: dict[str, str] = field(default_factory=dict)
    private_ips: dict[str, str | None] = field(default_factory=dict)  # instance id -> IP


def _epoch(iso: str | None, default: float) -> float:
    if not iso:
        return default
    try:
        return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return default


def to_policy_instance(inst: Ec2Instance, now: float) -> Instance | None:
    """The policy's view of a live instance; None for one shutting down or gone."""
    if inst.state not in LIVE_STATES:
        return None
    return Instance(instance_id=inst.id, instance_type=inst.instance_type, state=inst.state,
                    launch_time=_epoch(inst.launch_time, now), tags=dict(inst.tags))


def startds_from_slots(slots: Iterable[Slot], tags: dict[str, dict[str, str]], now: float,
                       busy_machines: frozenset[str] = frozenset()
                       ) -> tuple[list[Startd], dict[str, str], TagChanges]:
    """Sum each worker's slots into one Startd (partitionable or static slots alike).

    A machine the schedd says runs a job counts as claimed even while the collector still
    shows it unclaimed: the two update at different moments, and a worker that just got
    its first job must not look idle in between."""
    by_instance: dict[str, list[Slot]] = defaultdict(list)
    for slot in slots:
        if slot.ec2_instance_id:
            by_instance[slot.ec2_instance_id].append(slot)
    startds, machines, changes = [], {}, TagChanges()
    for iid, group in sorted(by_instance.items()):
        claimed = any(s.claimed for s in group) or group[0].machine in busy_machines
        draining = any(s.draining for s in group)
        ours = any((s.drain_reason or "").startswith(DRAIN_REASON_PREFIX) for s in group)
        total_cpus = sum(s.cpus for s in group)
        total_mem = sum(s.memory_mb for s in group)
        total_gpus = sum(s.gpus for s in group)
        total_disk = sum(s.disk_kb for s in group) // 1024
        # What no claim holds (a draining machine's too: the planner decides whether a
        # drain is cancelled and the resources used again).
        free = [s for s in group if not s.claimed]
        free_cpus = sum(s.cpus for s in free)
        free_mem = sum(s.memory_mb for s in free)
        free_gpus = sum(s.gpus for s in free)
        free_disk = sum(s.disk_kb for s in free) // 1024
        machines[iid] = group[0].machine
        instance_tags = tags.get(iid, {})
        if not draining and TAG_DRAINED in instance_tags:
            changes.remove(TAG_DRAINED, iid)
        since: float | None = None
        if claimed:
            if TAG_IDLE_SINCE in instance_tags:
                changes.remove(TAG_IDLE_SINCE, iid)
        else:
            recorded = instance_tags.get(TAG_IDLE_SINCE)
            try:
                since = float(recorded) if recorded is not None else None
            except ValueError:
                since = None
            if since is None:
                since = now
                changes.add(TAG_IDLE_SINCE, iid, f"{now:.0f}")
        startds.append(Startd(instance_id=iid, total_cpus=total_cpus, free_cpus=free_cpus,
                              total_memory_mb=total_mem, free_memory_mb=free_mem,
                              total_gpus=total_gpus, free_gpus=free_gpus, claimed=claimed,
                              unclaimed_since=since, draining=draining,
                              drained_by_us=draining and ours, total_disk_mb=total_disk,
                              free_disk_mb=free_disk))
    return startds, machines, changes


def idle_groups(jobs: Iterable[Job]) -> list[IdleJobs]:
    """Idle jobs grouped by (request, Requirements, cluster): 10,000 jobs become a handful
    of groups."""
    groups: dict[tuple[int, int, int, int, str, int], list[Job]] = defaultdict(list)
    for job in jobs:
        if job.status == JobStatus.IDLE:
            key = (max(job.request_cpus, 1), max(job.request_memory_mb, 0),
                   max(job.request_gpus, 0), max(job.request_disk_mb, 0),
                   job.requirements or "", job.cluster)
            groups[key].append(job)
    out = []
    for (cpus, mem, gpus, disk, req, cluster), members in sorted(groups.items()):
        qdates = [j.qdate for j in members if j.qdate is not None]
        out.append(IdleJobs(request_cpus=cpus, request_memory_mb=mem, request_gpus=gpus,
                            count=sum(j.count for j in members), cluster=cluster,
                            qdate=float(min(qdates)) if qdates else None,
                            request_disk_mb=disk, requirements=req or None))
    return out


def recent_submits(jobs: Iterable[Job], now: float, window_s: float) -> list[Submitted]:
    """Idle and running jobs submitted within `window_s`, by (QDate, cores), oldest first:
    what the policy's arrival forecast reads."""
    if window_s <= 0:
        return []
    counts: dict[tuple[float, int], int] = defaultdict(int)
    for job in jobs:
        if ((job.status is JobStatus.IDLE or job.status in ON_A_MACHINE)
                and job.qdate is not None
                and now - window_s <= job.qdate <= now):
            counts[(float(job.qdate), max(job.request_cpus, 1))] += job.count
    return [Submitted(q, c, n) for (q, c), n in sorted(counts.items())]


def running_requests(jobs: Iterable[Job]) -> list[tuple[int, int]]:
    """Jobs on a machine counted by requested cores, smallest first."""
    counts: dict[int, int] = defaultdict(int)
    for job in jobs:
        if job.status in ON_A_MACHINE:
            counts[max(job.request_cpus, 1)] += job.count
    return sorted(counts.items())


def presence_tags(instances: Iterable[Instance], pool: str, with_startd: set[str],
                  busy: frozenset[str], changes: TagChanges, now: float) -> None:
    """Record which workers joined the pool, and since when a joined one is missing from
    the collector (cleared once its startd is back, or once it is stopped)."""
    for inst in instances:
        if not inst.is_worker_of(pool):
            continue
        iid = inst.instance_id
        if iid in with_startd:
            if not inst.has_joined:
                changes.add(TAG_JOINED, iid, f"{now:.0f}")
            if TAG_MISSING_SINCE in inst.tags:
                changes.remove(TAG_MISSING_SINCE, iid)
        elif inst.state is InstanceState.RUNNING and (inst.has_joined or iid in busy):
            if TAG_MISSING_SINCE not in inst.tags:
                changes.add(TAG_MISSING_SINCE, iid, f"{now:.0f}")
        elif inst.state is InstanceState.STOPPED and TAG_MISSING_SINCE in inst.tags:
            changes.remove(TAG_MISSING_SINCE, iid)


def build(pool: str, instances: Iterable[Ec2Instance], slots: Iterable[Slot],
          jobs: Iterable[Job], now: float, arrival_window_s: float = 0.0,
          silent_schedds: Iterable[str] = ()) -> Observed:
    """Pure assembly of an Observation from what the cloud and the collector returned
    (with the arrivals of the last `arrival_window_s` when the forecast is on, and the
    schedds whose queues could not be read)."""
    instance_list = list(instances)
    policy_instances = [p for i in instance_list if (p := to_policy_instance(i, now)) is not None]
    tags = {i.instance_id: dict(i.tags) for i in policy_instances}
    known = set(tags)
    # EC2InstanceId is self-reported: an ad counts as an instance's only when it advertises
    # that instance's private address (a forged ad for a busy worker must not make it look
    # idle). The drains go to that address too (condor/actions.py).
    private_ip = {i.id: i.private_ip for i in instance_list}
    slot_list, mismatched = [], {}
    for s in slots:
        iid = s.ec2_instance_id
        if iid in known and (s.address_ip is None or s.address_ip != private_ip.get(iid)):
            mismatched[iid] = s.address or "no MyAddress"
        else:
            slot_list.append(s)
    job_list = list(jobs)  # one record per job, or per group of a grouped query (count)
    running_on: dict[str, int] = defaultdict(int)  # machine: jobs running on it
    for j in job_list:
        if j.status in ON_A_MACHINE and j.remote_host:
            running_on[j.remote_host.rpartition("@")[2]] += j.count
    busy = frozenset(running_on)
    # Every startd ad names its machine, ours or not, so a running job maps to an instance
    # through it; a job whose machine has no ad (collector restarted) maps to none.
    machine_instance = {s.machine: s.ec2_instance_id for s in slot_list if s.ec2_instance_id}
    busy_instances = frozenset(machine_instance[m] for m in running_on
                               if m in machine_instance)
    unmapped = sum(n for m, n in running_on.items() if m not in machine_instance)
    # Startds of instances we cannot see (another pool, already terminated) are left out.
    startds, machines, changes = startds_from_slots(
        [s for s in slot_list if s.ec2_instance_id in known], tags, now, busy)
    presence_tags(policy_instances, pool, {s.instance_id for s in startds}, busy_instances,
                  changes, now)
    live = {i.instance_id for i in policy_instances
            if i.state in (InstanceState.PENDING, InstanceState.RUNNING)}
    stale = {s.ec2_instance_id: s.machine for s in slot_list
             if s.ec2_instance_id and s.ec2_instance_id not in live
             and (s.ec2_instance_id in known or s.pool == pool)}
    idle = idle_groups(job_list)
    running = sum(j.count for j in job_list if j.status in ON_A_MACHINE)
    obs = Observation(pool=pool, instances=tuple(policy_instances), startds=tuple(startds),
                      idle_jobs=tuple(idle), running_jobs=running,
                      submitted=tuple(recent_submits(job_list, now, arrival_window_s)),
                      running_requests=tuple(running_requests(job_list)),
                      busy_instances=busy_instances, unmapped_running=unmapped,
                      silent_schedds=tuple(sorted(silent_schedds)))
    return Observed(observation=obs, machines=machines, tags=changes, jobs_running=running,
                    jobs_idle=sum(g.count for g in idle),
                    draining=sum(1 for s in startds if s.draining), stale_ads=stale,
                    mismatched_ads=mismatched, private_ips=private_ip)
