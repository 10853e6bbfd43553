"""`htcpool pool status` (condor_status) and `htcpool queue` (condor_q)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from orchestrator.cli.common import cloud, print_json, print_table, settings

if TYPE_CHECKING:
    from orchestrator.condor.source import PoolSource


def view_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for deco in reversed([
        click.option("--transport", type=click.Choice(["auto", "local", "ssm", "ssh"]),
                     help="auto: the bindings on the central manager, else ssh if "
                          "[condor] ssh_host is set, else SSM."),
        click.option("--constraint", help="A ClassAd constraint, as for condor_status/condor_q."),
        click.option("--json", "json_out", is_flag=True, help="JSON output."),
    ]):
        f = deco(f)
    return f


def open_view(ctx: click.Context, transport: str | None) -> PoolSource:
    from orchestrator.condor.factory import pool_source_for

    config = settings(ctx)
    return pool_source_for(config, lambda: cloud(ctx, config), transport)


@click.group(no_args_is_help=True)
def app() -> None:
    """Pool views (condor_status)."""


@app.command()
@view_options
@click.pass_context
def status(ctx: click.Context, transport: str | None, constraint: str | None,
           json_out: bool) -> None:
    """Slots by machine: state, activity, load, memory; totals by state and activity."""
    from orchestrator.condor.views import summarize_pool

    source = open_view(ctx, transport)
    slots = source.slots(constraint)
    summary = summarize_pool(slots)
    if json_out:
        print_json({"transport": source.transport.value, "where": source.where,
                    "slots": [s.to_json() for s in slots], **summary.to_json()})
        return
    rows = sorted(slots, key=lambda s: (s.machine, s.name))
    print_table(f"Pool status ({source.where})",
                ("Machine", "Slot", "Instance", "State", "Activity", "Load", "Memory MB",
                 "CPUs"),
                ([s.machine, s.name.split("@")[0], s.ec2_instance_id, s.state, s.activity,
                  f"{s.load_avg:.2f}", s.memory_mb, s.cpus] for s in rows))
    states = sorted(summary.by_state.items())
    print_table("Totals", ("Machines", "Slots", "CPUs", "Memory MB",
                           *(name for name, _ in states)),
                [[len(summary.machines), summary.slots, summary.cpus, summary.memory_mb,
                  *(n for _, n in states)]])


@click.command()
@view_options
@click.pass_context
def queue(ctx: click.Context, transport: str | None, constraint: str | None,
          json_out: bool) -> None:
    """Jobs per owner and per batch: idle, running, held, totals (condor_q -allusers)."""
    from orchestrator.condor.views import summarize_queue

    source = open_view(ctx, transport)
    jobs = source.jobs(constraint)
    summary = summarize_queue(jobs)
    if json_out:
        print_json({"transport": source.transport.value, "where": source.where,
                    **summary.to_json()})
        return
    cols = ("Idle", "Running", "Held", "Other", "Total")
    print_table(f"Queue by owner ({source.where})", ("Owner", *cols),
                ([r.owner, r.idle, r.running, r.held, r.other, r.total] for r in summary.owners))
    print_table("Queue by batch", ("Owner", "Batch", *cols),
                ([r.owner, r.batch, r.idle, r.running, r.held, r.other, r.total]
                 for r in summary.batches))
    t = summary.totals
    click.echo(f"Total: {t.total} jobs; {t.idle} idle, {t.running} running, {t.held} held, "
               f"{t.other} other")
