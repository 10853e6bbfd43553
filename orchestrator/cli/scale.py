"""`htcpool scale` (one pass) and `htcpool autoscale` (the loop)."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import click

from orchestrator.cli.common import cloud as get_cloud
from orchestrator.cli.common import print_json, print_table, say, settings

if TYPE_CHECKING:
    from orchestrator.autoscaler.runtime.loop import Autoscaler, PassResult


def build_autoscaler(ctx: click.Context, transport: str | None,
                     emit: Any = None) -> Autoscaler:
    from orchestrator.autoscaler.runtime.build import build_autoscaler as build

    config = settings(ctx)
    return build(config, cloud=get_cloud(ctx, config), transport=transport, emit=emit)


def _result_json(result: PassResult) -> dict[str, Any]:
    plan = asdict(result.plan) if result.plan is not None else None
    outcome = asdict(result.outcome) if result.outcome is not None else None
    return {"skipped": result.skipped, "plan": plan, "outcome": outcome,
            "events": result.events}


@click.command()
@click.option("--once", is_flag=True, help="One pass (the default; kept for scripts).")
@click.option("--dry-run", is_flag=True, help="Print the plan; launch, drain and remove nothing.")
@click.option("--json", "as_json", is_flag=True, help="The plan, outcome and events as JSON.")
@click.option("--transport", type=click.Choice(["auto", "local", "ssm", "ssh"]), default=None,
              help="How to reach HTCondor (default: the config file's).")
@click.option("--no-lease", is_flag=True,
              help="Act without the pool's lease (unsafe while an autoscaler runs).")
@click.pass_context
def scale(ctx: click.Context, once: bool, dry_run: bool, as_json: bool,
          transport: str | None, no_lease: bool) -> None:
    """One autoscaler pass: observe EC2 and HTCondor, plan, and act unless --dry-run.

    Acting takes the pool's lease for the pass, as `htcpool autoscale` does each pass: while
    another autoscaler holds it, nothing is done (exit 5)."""
    from orchestrator.autoscaler.runtime.build import pool_lease

    events: list[dict[str, Any]] = []
    autoscaler = build_autoscaler(ctx, transport, emit=events.append)
    lease = None if dry_run or no_lease else pool_lease(autoscaler)
    if lease is not None:
        lease.acquire()  # LeaseHeld: one error line, nothing done
    try:
        result = autoscaler.run_once(dry_run=dry_run, fence=lease.fence if lease else None)
    finally:
        if lease is not None:
            lease.release()
    if as_json:
        print_json(_result_json(result))
    else:
        _print_result(result, dry_run)
    if result.skipped:  # a failure like any other: one error line, exit 1
        from orchestrator.cli import one_line

        say(f"htcpool: error: pass skipped: {one_line(result.skipped)}")
        raise click.exceptions.Exit(1)
    if result.outcome is not None and result.outcome.errors:
        for err in result.outcome.errors:
            say(f"htcpool: error: {err}")
        raise click.exceptions.Exit(1)


def _print_result(result: PassResult, dry_run: bool) -> None:
    if result.skipped:  # reported by the caller, as an error
        return
    assert result.plan is not None and result.observed is not None
    obs, plan = result.observed, result.plan
    say(f"pool {obs.observation.pool}: {plan.current_workers} workers "
        f"({plan.booting_workers} booting, {obs.draining} draining), {obs.jobs_idle} idle and "
        f"{obs.jobs_running} running jobs; wants {plan.desired_workers}")
    rows = []
    for event in result.events:
        if event["event"] == "decide":
            target = event.get("instance_id") or f"{event.get('count', '')} x " \
                                                 f"{event.get('instance_type', '')}"
            rows.append((event["decision"], target, event.get("reason", "")))
    if rows:
        print_table("plan" + (" (dry run: nothing done)" if dry_run else ""),
                    ["action", "target", "reason"], rows)
    else:
        say("nothing to do")
    for event in result.events:
        if event["event"] in ("note", "unschedulable"):
            say(f"note: {event.get('reason')}")
    if result.outcome is not None:
        out = result.outcome
        say(f"done: launched {len(out.launched)}, started {len(out.started)}, drained "
            f"{len(out.drained)}, undrained {len(out.undrained)}, removed {len(out.removed)}, "
            f"replaced {len(out.replaced)}, kept {len(out.kept)}, errors {len(out.errors)}")


@click.command()
@click.option("--interval", "interval_s", type=click.FloatRange(min=1, max=3600), default=None,
              help="Seconds between passes (default: autoscaler.interval_s, 20).")
@click.option("--dry-run", is_flag=True, help="Plan and log every pass, act on nothing.")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None,
              help="Serve Prometheus metrics on 127.0.0.1:PORT.")
@click.option("--passes", type=click.IntRange(min=1), default=None,
              help="Stop after this many passes (default: run until stopped).")
@click.option("--no-lease", is_flag=True,
              help="Do not take the pool's lease (unsafe with two autoscalers).")
@click.option("--transport", type=click.Choice(["auto", "local", "ssm", "ssh"]), default=None)
@click.pass_context
def autoscale(ctx: click.Context, interval_s: float | None, dry_run: bool,
              metrics_port: int | None, passes: int | None, no_lease: bool,
              transport: str | None) -> None:
    """Run the autoscaler loop in the foreground (SIGTERM or Ctrl-C stops it cleanly).

    Each decision is one JSON line on stderr. Only one autoscaler acts on a pool at a time:
    the others wait on the pool's lease (a DynamoDB table)."""
    from orchestrator.autoscaler.runtime.build import pool_lease, prepare_for_passes

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)
    autoscaler = build_autoscaler(ctx, transport,
                                  emit=lambda r: click.echo(json.dumps(r, default=str), err=True))
    if interval_s is not None:
        autoscaler.config = type(autoscaler.config).model_validate(
            {**autoscaler.config.model_dump(), "interval_s": interval_s})
    if metrics_port is not None:
        autoscaler.metrics.serve(metrics_port)
    lease = None if no_lease else pool_lease(autoscaler)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    prepare_for_passes(autoscaler)
    autoscaler.event("start", interval_s=autoscaler.config.interval_s, dry_run=dry_run,
                     policy=autoscaler.config.policy)
    done = autoscaler.run_forever(stop, lease=lease, dry_run=dry_run, max_passes=passes)
    autoscaler.event("stop", passes=done)
