"""The reconcile benchmark's synthetic queue reads as HTCondor's would: Requirements an
expression in both forms (kept as text by the readers), RequestDisk in KiB, many distinct
requests, every one of them matched against the shapes."""

from __future__ import annotations

import json

from bench.reconcile_bench import (
    REQUIREMENTS,
    SHAPES,
    _classads,
    _job_dicts,
    _json_ads,
    requirements,
)
from orchestrator.autoscaler.planner.capacity import effective_config
from orchestrator.autoscaler.planner.config import AutoscalerConfig
from orchestrator.autoscaler.planner.model import Capacity, IdleJobs, Observation
from orchestrator.autoscaler.runtime.observe import idle_groups
from orchestrator.condor.ads import ads_from_json, plain
from orchestrator.condor.matching import ShapeMatcher
from orchestrator.condor.records import AUTOSCALER_JOB_ATTRS, Job
from orchestrator.sim.hardware import advertised_memory_mb

WORKERS = [(f"i-{n}", f"10.0.0.{n}", SHAPES[n % len(SHAPES)].name) for n in range(8)]
ATTRS = [*AUTOSCALER_JOB_ATTRS, "ProcId", "Owner", "RequestDisk"]


def test_requirements_are_expressions_in_both_forms() -> None:
    ads = _job_dicts(WORKERS, 400, 40)
    text = _json_ads(ads)
    assert '"\\/Expr((TARGET.Arch == \\"X86_64\\")' in text  # as condor_q -json writes it
    assert json.loads(text)[0]["Requirements"].startswith("/Expr(")
    from_json = ads_from_json(text, ATTRS)
    from_classads = [plain(ad, ATTRS) for ad in _classads(ads)]
    texts = []
    for read in (from_json, from_classads):
        jobs = [Job.from_ad(ad) for ad in read]
        # kept as text, as classad2 unparses it (=!= becomes isnt)
        texts.append({j.requirements for j in jobs})
        assert all("(TARGET.HasFileTransfer)" in (t or "") for t in texts[-1])
        assert {j.request_disk_mb for j in jobs} >= {1024, 2048, 3072, 4096}
    assert texts[0] == texts[1]
    assert len(texts[0]) == len({a["Requirements"] for a in ads}) > 10


def test_many_distinct_requests_and_each_matched() -> None:
    assert requirements(1) != requirements(3) and requirements(3) == REQUIREMENTS
    assert requirements(2) != requirements(4)
    jobs = [Job.from_ad(ad) for ad in ads_from_json(_json_ads(_job_dicts(WORKERS, 400, 40)),
                                                    ATTRS)]
    groups = idle_groups(jobs)
    assert len(groups) == 40 and sum(g.count for g in groups) == 400
    learned = {s.name: Capacity(s.cpus, advertised_memory_mb(s.memory_mb), 0, 26 * 1024)
               for s in SHAPES}
    cfg = effective_config(AutoscalerConfig(shapes=SHAPES), learned)
    obs = ShapeMatcher().annotate(Observation("bench", idle_jobs=tuple(groups),
                                              capacities=learned), cfg)
    matched: list[IdleJobs] = list(obs.idle_jobs)
    assert all(g.shapes is not None for g in matched)
    large = [g for g in matched if g.shapes and "c6i.large" in g.shapes]
    # c6i.large advertises 3,824 MB: not for 6,000 MB jobs, nor for clusters refusing it
    assert large and all(g.request_memory_mb < 3824 for g in large)
    assert all("c6i.large" not in (g.requirements or "") for g in large)
    assert any(g.shapes == frozenset({"r6i.large", "c6i.4xlarge"}) for g in matched)
