"""CPU time of one autoscaler plan() at scale: 10,000 idle jobs x 1,000 instances.

Usage: .venv/bin/python bench/policy_scale.py [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import random
import time

from orchestrator.autoscaler.planner.config import AutoscalerConfig
from orchestrator.autoscaler.planner.model import IdleJobs, Instance, Observation, Startd
from orchestrator.autoscaler.planner.strategies import plan
from orchestrator.vocabulary import TAG_POOL, TAG_ROLE, InstanceState


def observation(n_jobs: int, n_instances: int, distinct: int, seed: int = 0) -> Observation:
    """A big pool, mostly busy, a few idle, and a queue of `distinct` request shapes."""
    rng = random.Random(seed)
    cfg = AutoscalerConfig()
    shapes = [s for s in cfg.shapes if s.gpus == 0 and s.cpus <= 16]
    insts, sds = [], []
    for k in range(n_instances):
        s = rng.choice(shapes)
        iid = f"i-{k:08x}"
        state = InstanceState.PENDING if k % 50 == 0 else InstanceState.RUNNING
        insts.append(Instance(iid, s.name, state, 1000.0 + k,
                              {TAG_POOL: "htcpool", TAG_ROLE: "worker"}))
        if state is InstanceState.RUNNING:
            idle = k % 10 == 0
            free = s.cpus if idle else rng.randint(0, 1)
            sds.append(Startd(iid, s.cpus, free, s.memory_mb, free * 1024, 0, 0, not idle,
                              5000.0 if idle else None))
    reqs = [(rng.choice([1, 1, 1, 2, 4, 8]), rng.choice([512, 1024, 2048, 4096]))
            for _ in range(distinct)]
    jobs = [IdleJobs(c, m, 0, 1, cluster=n, qdate=9000.0)
            for n, (c, m) in enumerate(rng.choice(reqs) for _ in range(n_jobs))]
    insts.append(Instance("i-cm", "m6i.large", InstanceState.RUNNING, 0.0,
                          {TAG_POOL: "htcpool", TAG_ROLE: "central-manager"}))
    return Observation("htcpool", tuple(insts), tuple(sds), tuple(jobs), 3000)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    cfg = AutoscalerConfig(max_workers=2000, max_launch_per_cycle=500)
    rows = []
    for distinct in (1, 24):
        obs = observation(10_000, 1_000, distinct)
        best = float("inf")
        for _ in range(args.repeat):
            t0 = time.process_time()
            p = plan(obs, cfg, now=10_000.0)
            best = min(best, time.process_time() - t0)
        rows.append({"idle_jobs": 10_000, "instances": 1_000, "distinct_requests": distinct,
                     "cpu_s": round(best, 4), "launches": sum(x.count for x in p.launches),
                     "removals": len(p.removals)})
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(r)


if __name__ == "__main__":
    main()
