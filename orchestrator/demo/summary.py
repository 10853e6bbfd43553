"""The demo's numbers, from independent records: HTCondor's job history (when each job was
queued, started and finished, and for how long it held how many cores) and the emulator's
own record of every instance state transition (what the instances cost)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from orchestrator.vocabulary import TAG_ROLE, Role

COMPLETED = 4
# Executed actions worth a line on the timeline (plan/keep/note events are not decisions).
ACTIONS = ("launch", "start", "drain", "terminate", "stop", "refused", "error")


def _num(ad: dict[str, Any], key: str) -> float | None:
    value = ad.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else None


@dataclass(frozen=True)
class JobTimes:
    queued: float
    started: float | None
    completed: float | None
    wall_s: float
    cpus: int
    status: int


def job_times(history: Iterable[dict[str, Any]]) -> list[JobTimes]:
    out = []
    for ad in history:
        started = _num(ad, "JobStartDate") or _num(ad, "JobCurrentStartDate")
        out.append(JobTimes(queued=_num(ad, "QDate") or 0.0, started=started,
                            completed=_num(ad, "CompletionDate") or None,
                            wall_s=_num(ad, "RemoteWallClockTime") or 0.0,
                            cpus=int(_num(ad, "RequestCpus") or 1),
                            status=int(_num(ad, "JobStatus") or 0)))
    return out


def worker_lifetimes(hosts: Iterable[dict[str, Any]], since: float, now: float
                     ) -> dict[str, tuple[float, float]]:
    """Instance id -> (first pending, terminated or `now`) for the workers launched at or
    after `since`, from the emulator's transition records."""
    out = {}
    for host in hosts:
        if host.get("tags", {}).get(TAG_ROLE) != Role.WORKER:
            continue
        transitions = sorted((float(t), str(s)) for t, s in host.get("transitions", []))
        pending = [t for t, s in transitions if s == "pending"]
        if not pending or pending[0] < since:
            continue
        ended = [t for t, s in transitions if s == "terminated" and t >= pending[0]]
        out[host["instance_id"]] = (pending[0], ended[0] if ended else now)
    return out


@dataclass
class Summary:
    jobs_submitted: int
    jobs_completed: int
    submitted_at: float
    first_start_s: float | None          # first job start - first QDate
    last_completion_s: float | None      # last completion - first QDate
    mean_wait_s: float | None            # start - QDate, averaged over the jobs
    max_wait_s: float | None
    busy_core_s: float                   # sum of RemoteWallClockTime x RequestCpus
    workers_launched: int
    instance_s: float                    # sum over workers of pending .. terminated
    cpus_per_worker: int
    core_s_paid: float                   # instance_s x cpus_per_worker
    utilisation: float | None            # busy_core_s / core_s_paid
    peak_workers: int
    pool_empty_s: float | None           # when the last worker terminated, after submit
    timed_out: bool = False
    decisions: list[dict[str, Any]] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def decisions(events: Iterable[dict[str, Any]], t0: float) -> list[dict[str, Any]]:
    out = []
    for e in events:
        if e.get("event") not in ACTIONS:
            continue
        target = e.get("instance") or ", ".join(e.get("instances") or []) or ""
        what = f"{e.get('count')} x {e.get('instance_type')}" if e["event"] == "launch" \
            else target
        out.append({"t": round(float(e["ts"]) - t0, 1), "action": e["event"], "what": what,
                    "reason": str(e.get("reason") or e.get("error") or "")})
    return out


def summarise(*, submitted: int, submitted_at: float, history: list[dict[str, Any]],
              hosts: list[dict[str, Any]], events: list[dict[str, Any]], cpus_per_worker: int,
              since: float, peak_workers: int, now: float | None = None,
              timed_out: bool = False) -> Summary:
    now = time.time() if now is None else now
    jobs = job_times(history)
    done = [j for j in jobs if j.status == COMPLETED]
    first_q = min((j.queued for j in jobs), default=None)
    starts = [j.started for j in jobs if j.started is not None]
    ends = [j.completed for j in done if j.completed is not None]
    waits = [j.started - j.queued for j in jobs if j.started is not None]
    lives = worker_lifetimes(hosts, since, now)
    instance_s = sum(end - start for start, end in lives.values())
    terminated = [end for end in (e for _, e in lives.values()) if end < now]
    busy = sum(j.wall_s * j.cpus for j in done)
    paid = instance_s * cpus_per_worker
    return Summary(
        jobs_submitted=submitted, jobs_completed=len(done), submitted_at=submitted_at,
        first_start_s=min(starts) - first_q if starts and first_q is not None else None,
        last_completion_s=max(ends) - first_q if ends and first_q is not None else None,
        mean_wait_s=sum(waits) / len(waits) if waits else None,
        max_wait_s=max(waits) if waits else None,
        busy_core_s=busy, workers_launched=len(lives), instance_s=instance_s,
        cpus_per_worker=cpus_per_worker, core_s_paid=paid,
        utilisation=busy / paid if paid else None, peak_workers=peak_workers,
        pool_empty_s=max(terminated) - submitted_at
        if terminated and len(terminated) == len(lives) else None,
        timed_out=timed_out, decisions=decisions(events, submitted_at))


def _s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} s"


def text(s: Summary) -> str:
    """The summary as the demo prints it."""
    lines = ["Decisions (seconds after submit):"]
    for d in s.decisions:
        lines.append(f"  {d['t']:+7.1f}  {d['action']:<9} {d['what']:<22} {d['reason']}")
    if not s.decisions:
        lines.append("  (none)")
    util = "n/a" if s.utilisation is None else f"{100 * s.utilisation:.0f}%"
    lines += [
        "",
        f"Jobs: {s.jobs_completed} of {s.jobs_submitted} completed (HTCondor job history)",
        f"  submit to first job start   {_s(s.first_start_s)}",
        f"  submit to last completion   {_s(s.last_completion_s)}",
        f"  wait per job (mean / max)   {_s(s.mean_wait_s)} / {_s(s.max_wait_s)}",
        f"Workers: {s.workers_launched} launched, at most {s.peak_workers} at once; "
        f"pool back to zero {_s(s.pool_empty_s)} after submit",
        f"  instance-seconds (pending..terminated, emulator records)  {s.instance_s:.0f}",
        f"  core-seconds paid ({s.cpus_per_worker} per worker)                    "
        f"{s.core_s_paid:.0f}",
        f"  busy core-seconds (wall clock x cpus, job history)         {s.busy_core_s:.0f}"
        f"  -> {util} used",
    ]
    if s.phases:
        lines.append("Phases: " + ", ".join(f"{k} {v:.0f} s" for k, v in s.phases.items()))
    return "\n".join(lines)
