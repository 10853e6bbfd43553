"""The demo's summary arithmetic, on hand-made records (no sandbox)."""

from __future__ import annotations

import pytest

from orchestrator.demo.jobs import make_jobs, submit_file
from orchestrator.demo.summary import summarise, text, worker_lifetimes


def _ad(q: float, start: float, end: float, cpus: int, status: int = 4) -> dict[str, object]:
    return {"QDate": q, "JobStartDate": start, "CompletionDate": end,
            "RemoteWallClockTime": end - start, "RequestCpus": cpus, "JobStatus": status}


def _host(iid: str, role: str, transitions: list[tuple[float, str]]) -> dict[str, object]:
    return {"instance_id": iid, "tags": {"htcpool:role": role},
            "transitions": [list(t) for t in transitions]}


HOSTS = [
    _host("i-cm", "central-manager", [(50, "pending"), (51, "running")]),
    _host("i-old", "worker", [(10, "pending"), (20, "terminated")]),  # before this run
    _host("i-a", "worker", [(105, "pending"), (108, "running"), (190, "shutting-down"),
                            (195, "terminated")]),
    _host("i-b", "worker", [(106, "pending"), (109, "running"), (200, "shutting-down"),
                            (201, "terminated")]),
]


def test_numbers_come_from_history_and_transitions() -> None:
    history = [_ad(100, 120, 150, 2), _ad(100, 125, 140, 1), _ad(101, 130, 170, 1)]
    events = [{"ts": 104.0, "event": "launch", "count": 2, "instance_type": "t3.medium",
               "instances": ["i-a", "i-b"], "reason": "3 idle jobs"},
              {"ts": 104.0, "event": "plan"},
              {"ts": 185.0, "event": "terminate", "instance": "i-a", "reason": "idle"}]
    s = summarise(submitted=3, submitted_at=100.0, history=history, hosts=HOSTS,
                  events=events, cpus_per_worker=2, since=100.0, peak_workers=2, now=300.0)
    assert s.jobs_completed == 3
    assert s.first_start_s == 20
    assert s.last_completion_s == 70
    assert s.busy_core_s == 30 * 2 + 15 + 40
    assert s.workers_launched == 2
    assert s.instance_s == (195 - 105) + (201 - 106)
    assert s.core_s_paid == 2 * s.instance_s
    assert s.utilisation == pytest.approx(s.busy_core_s / s.core_s_paid)
    assert s.pool_empty_s == 101
    assert [d["action"] for d in s.decisions] == ["launch", "terminate"]
    assert s.decisions[0]["t"] == 4.0
    assert "3 of 3 completed" in text(s)


def test_a_live_worker_counts_until_now_and_the_pool_is_not_empty() -> None:
    hosts = [_host("i-c", "worker", [(110, "pending"), (112, "running")])]
    assert worker_lifetimes(hosts, since=100, now=160) == {"i-c": (110, 160)}
    s = summarise(submitted=1, submitted_at=100.0, history=[], hosts=hosts, events=[],
                  cpus_per_worker=2, since=100.0, peak_workers=1, now=160.0, timed_out=True)
    assert s.pool_empty_s is None and s.first_start_s is None and s.jobs_completed == 0
    assert s.utilisation == 0


def test_job_mix_is_seeded_and_mixed() -> None:
    jobs = make_jobs(40, seed=8)
    assert jobs == make_jobs(40, seed=8)
    assert {j.cpus for j in jobs} == {1, 2}
    assert len({j.memory_mb for j in jobs}) > 2
    assert all(256 <= j.memory_mb <= 2048 and 10 <= j.seconds <= 40 for j in jobs)
    sub = submit_file("b", jobs[:2])
    assert sub.count("\n  ") == 2 and "batch_name = b" in sub
