"""What the demo shows while it runs: a sample every few seconds of the workers (from EC2
and the collector) and of the burst's jobs (from the schedd), drawn live with rich on a
terminal, or as one line per change otherwise (CI logs)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from orchestrator.aws.ec2 import Cloud
from orchestrator.condor.records import JobStatus
from orchestrator.condor.source import PoolSource
from orchestrator.vocabulary import LIVE_STATES, InstanceState, Role

WATCHED = [str(s) for s in (*LIVE_STATES, InstanceState.SHUTTING_DOWN)]


@dataclass(frozen=True)
class Sample:
    t: float                 # seconds after submit
    booting: int             # launched, no startd in the collector yet
    idle: int                # joined, nothing claimed
    busy: int                # joined, running jobs
    draining: int
    terminating: int         # shutting-down / stopping, or left the collector
    jobs_idle: int
    jobs_running: int
    jobs_held: int
    jobs_done: int
    cores_busy: int

    @property
    def workers(self) -> int:
        return self.booting + self.idle + self.busy + self.draining + self.terminating

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def counts(self) -> tuple[int, ...]:
        return tuple(v for k, v in asdict(self).items() if k != "t")


def take_sample(cloud: Cloud, source: PoolSource, batch: str, submitted: int,
                t0: float, joined: set[str] | None = None) -> Sample:
    """One sample; `joined` remembers the workers seen in the collector across samples, so
    one whose startd went away (drained, shutting down) is not taken for a booting one."""
    joined = set() if joined is None else joined
    instances = cloud.pool_instances(states=WATCHED, roles=[str(Role.WORKER)])
    slots = source.slots()
    jobs = source.jobs(f'JobBatchName == "{batch}"') if submitted else []
    by_instance: dict[str, list[Any]] = {}
    for slot in slots:
        if slot.ec2_instance_id:
            by_instance.setdefault(slot.ec2_instance_id, []).append(slot)
    booting = idle = busy = draining = terminating = cores = 0
    for inst in instances:
        group = by_instance.get(inst.id, [])
        if group:
            joined.add(inst.id)
        if inst.state in (InstanceState.SHUTTING_DOWN, InstanceState.STOPPING) or \
                (not group and inst.id in joined):
            terminating += 1
        elif not group:
            booting += 1
        elif any(s.state == "Drained" or s.activity == "Retiring" for s in group):
            draining += 1
        elif any(s.state == "Claimed" for s in group):
            busy += 1
        else:
            idle += 1
        cores += sum(s.cpus for s in group if s.state == "Claimed")
    count = {status: sum(1 for j in jobs if j.status == status) for status in JobStatus}
    done = submitted - len(jobs) if submitted else 0
    return Sample(t=round(time.time() - t0, 1), booting=booting, idle=idle, busy=busy,
                  draining=draining, terminating=terminating,
                  jobs_idle=count[JobStatus.IDLE], jobs_running=count[JobStatus.RUNNING],
                  jobs_held=count[JobStatus.HELD], jobs_done=done, cores_busy=cores)


def _mmss(seconds: float) -> str:
    return f"{int(seconds) // 60:02d}:{int(seconds) % 60:02d}"


class Display:
    """Live view on a terminal, plain lines elsewhere."""

    def __init__(self, console: Console, total_jobs: int, max_workers: int) -> None:
        self.console = console
        self.total = total_jobs
        self.max_workers = max_workers
        self._live: Live | None = None
        self._last: tuple[int, ...] | None = None

    def __enter__(self) -> Display:
        if self.console.is_terminal:
            self._live = Live(console=self.console, refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None

    def update(self, s: Sample, actions: Sequence[dict[str, Any]]) -> None:
        if self._live is not None:
            self._live.update(self.render(s, actions))
            return
        if s.counts() != self._last:
            self._last = s.counts()
            self.console.print(self.line(s), highlight=False, markup=False)

    def line(self, s: Sample) -> str:
        return (f"[{_mmss(s.t)}] workers: {s.booting} booting, {s.idle} idle, {s.busy} busy, "
                f"{s.draining} draining, {s.terminating} terminating | jobs: {s.jobs_idle} "
                f"idle, {s.jobs_running} running, {s.jobs_done}/{self.total} done"
                + (f", {s.jobs_held} held" if s.jobs_held else ""))

    def render(self, s: Sample, actions: Sequence[dict[str, Any]]) -> Group:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        table.add_row("elapsed", _mmss(s.t))
        table.add_row("workers", Text.assemble(
            (f"{s.booting} booting", "yellow"), "  ", (f"{s.idle} idle", "cyan"), "  ",
            (f"{s.busy} busy", "green"), "  ", (f"{s.draining} draining", "magenta"), "  ",
            (f"{s.terminating} terminating", "red"), f"   (max {self.max_workers})"))
        table.add_row("jobs", Text.assemble(
            (f"{s.jobs_idle} idle", "yellow"), "  ", (f"{s.jobs_running} running", "green"),
            "  ", (f"{s.jobs_done} done", "blue"), f" of {self.total}",
            (f"  {s.jobs_held} held", "red") if s.jobs_held else ""))
        table.add_row("cores busy", str(s.cores_busy))
        table.add_row("progress", ProgressBar(total=max(self.total, 1), completed=s.jobs_done,
                                              width=40))
        recent = Table.grid(padding=(0, 1))
        for a in actions[-6:]:
            recent.add_row(f"+{a['t']:.0f}s", a["action"], a["what"],
                           Text(a["reason"][:70], style="dim"))
        return Group(table, Text("autoscaler decisions", style="bold"), recent)
