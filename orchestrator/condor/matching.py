"""Which shapes a group of idle jobs can run on, by HTCondor's own ClassAd matching.

Each shape gets the machine ad a worker of it would advertise (OpSys, Arch, its resources
as its workers offer them, EC2InstanceType, the image's custom attributes and START, from
the autoscaler's config), and each distinct job request (Requirements text and resource
requests) is matched against every one in both directions, as the negotiator does.
Results are cached per request until the shapes change: a pass over 10,000 idle jobs in a
few hundred groups costs a few thousand matches once, then dictionary lookups.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

from orchestrator.autoscaler.planner.config import AutoscalerConfig, InstanceShape
from orchestrator.autoscaler.planner.model import IdleJobs, Observation

log = logging.getLogger("htcpool.matching")

# EC2's architecture names as HTCondor's Arch spells them.
CONDOR_ARCH = {"x86_64": "X86_64", "arm64": "aarch64"}
# Requests differ by Requirements text and four numbers; past this many cached results the
# cache starts over (a queue of that many distinct requests is already unusual).
CACHE_LIMIT = 100_000

RequestKey = tuple[str, int, int, int, int]
_MISS = object()


def machine_ad(shape: InstanceShape, cfg: AutoscalerConfig) -> Any:
    """The ad a worker of `shape` (sized as it offers) would advertise, as the negotiator
    sees a whole partitionable slot."""
    import classad2

    ad = classad2.ClassAd()
    disk_kb = shape.disk_mb * 1024
    for name, value in (("OpSys", "LINUX"), ("Arch", CONDOR_ARCH[shape.arch]),
                        ("Cpus", shape.cpus), ("TotalCpus", shape.cpus),
                        ("Memory", shape.memory_mb), ("TotalMemory", shape.memory_mb),
                        ("Disk", disk_kb), ("TotalDisk", disk_kb),
                        ("GPUs", shape.gpus), ("TotalGPUs", shape.gpus),
                        ("EC2InstanceType", shape.name), ("HasFileTransfer", True),
                        ("SlotType", "Partitionable"), ("PartitionableSlot", True)):
        ad[name] = value
    for name, expr in cfg.machine_attrs:
        ad[name] = classad2.ExprTree(expr)
    ad["Start"] = classad2.ExprTree(cfg.start)
    ad["Requirements"] = classad2.ExprTree("START")
    return ad


def job_ad(key: RequestKey) -> Any:
    import classad2

    requirements, cpus, memory_mb, disk_mb, gpus = key
    ad = classad2.ClassAd()
    ad["RequestCpus"] = cpus
    ad["RequestMemory"] = memory_mb
    ad["RequestDisk"] = disk_mb * 1024
    ad["RequestGPUs"] = gpus
    ad["Requirements"] = classad2.ExprTree(requirements or "true")
    return ad


class ShapeMatcher:
    """Matches idle job groups to shapes; keep one per autoscaler (it caches)."""

    def __init__(self) -> None:
        self._fingerprint: tuple[Any, ...] | None = None
        self._machines: list[tuple[str, Any]] = []
        self._cache: dict[RequestKey, frozenset[str] | None] = {}

    def _prepare(self, cfg: AutoscalerConfig) -> None:
        fingerprint = (cfg.shapes, cfg.machine_attrs, cfg.start)
        if fingerprint == self._fingerprint:
            return
        self._machines = [(s.name, machine_ad(s, cfg)) for s in cfg.shapes]
        self._cache.clear()
        self._fingerprint = fingerprint

    def shapes_for(self, key: RequestKey) -> frozenset[str] | None:
        """The shapes whose machine ad and this request match each other; None if the
        Requirements cannot be parsed (then any shape with the resources will do)."""
        hit = self._cache.get(key, _MISS)
        if hit is not _MISS:
            return hit  # type: ignore[return-value]
        try:
            job = job_ad(key)
        except Exception as err:  # a malformed expression: do not guess it away
            log.warning("cannot parse Requirements %r: %s", key[0][:200], err)
            found: frozenset[str] | None = None
        else:
            found = frozenset(name for name, machine in self._machines
                              if job.symmetricMatch(machine))
        if len(self._cache) >= CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = found
        return found

    def annotate(self, obs: Observation, cfg: AutoscalerConfig) -> Observation:
        """`obs` with each idle group's matching shapes set; `cfg`'s shapes must be sized
        as their workers offer (planner/capacity.effective_config)."""
        self._prepare(cfg)
        idle: Sequence[IdleJobs] = obs.idle_jobs
        out = [dataclasses.replace(j, shapes=self.shapes_for(
            (j.requirements or "", max(j.request_cpus, 1), max(j.request_memory_mb, 0),
             max(j.request_disk_mb, 0), max(j.request_gpus, 0)))) for j in idle]
        return dataclasses.replace(obs, idle_jobs=tuple(out))
