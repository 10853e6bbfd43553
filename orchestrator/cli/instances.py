"""`htcpool instances list|start|stop|reboot|terminate|create`."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from orchestrator.aws.ec2 import Lifecycle
from orchestrator.cli.common import (
    cloud,
    complete_instance_ids,
    print_json,
    print_table,
    progress_printer,
    say,
)
from orchestrator.errors import RefusedError

COLUMNS = ("ID", "Name", "AMI", "Type", "State", "Monitoring", "Private IP", "Role")
VERBS = {Lifecycle.START: "running", Lifecycle.STOP: "stopped",
         Lifecycle.REBOOT: "running (status ok)", Lifecycle.TERMINATE: "terminated"}
STATES = ("pending", "running", "stopping", "stopped", "shutting-down", "terminated")

json_option = click.option("--json", "json_out", is_flag=True, help="JSON output.")


def _lifecycle_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for deco in reversed([
        click.argument("ids", nargs=-1, required=True, shell_complete=complete_instance_ids),
        click.option("--wait/--no-wait", default=True, show_default=True,
                     help="Wait until the state is reached."),
        click.option("--force", is_flag=True, help="Act on instances outside the pool too "
                     "(and on the central manager)."),
        click.option("--dry-run", is_flag=True,
                     help="Check permissions and state; change nothing."),
        json_option,
    ]):
        f = deco(f)
    return f


@click.group(no_args_is_help=True)
def app() -> None:
    """List, create, start, stop, reboot and terminate the pool's instances."""


@app.command("list")
@click.option("--state", "-s", "states", multiple=True, type=click.Choice(STATES),
              help="Only these states (repeatable).")
@click.option("--role", "roles", multiple=True, help="Only these pool roles (repeatable).")
@click.option("--all", "all_pools", is_flag=True,
              help="Every instance in the region, whatever its pool tag.")
@json_option
@click.pass_context
def list_(ctx: click.Context, states: tuple[str, ...], roles: tuple[str, ...], all_pools: bool,
          json_out: bool) -> None:
    """The pool's instances: id, name, AMI, type, state, monitoring, private IP, role."""
    c = cloud(ctx)
    found = c.pool_instances(states=states, roles=roles, all_pools=all_pools)
    if json_out:
        print_json([i.to_json() for i in found])
        return
    title = f"All instances ({c.region})" if all_pools \
        else f"Instances in pool {c.pool} ({c.region})"
    print_table(title, (*COLUMNS, *(["Pool"] if all_pools else [])),
                ([i.id, i.name, i.image_id, i.instance_type, i.state.value, i.monitoring,
                  i.private_ip, i.role, *([i.pool] if all_pools else [])] for i in found),
                caption=f"{len(found)} instance(s)")


def _act(ctx: click.Context, action: Lifecycle, ids: tuple[str, ...], wait: bool, force: bool,
         dry_run: bool, json_out: bool) -> None:
    c = cloud(ctx)
    todo = c.act(action, list(ids), force=force, dry_run=dry_run)
    requested = {t.id for t in todo}
    skipped = [i for i in dict.fromkeys(ids) if i not in requested]
    for iid in skipped:
        say(f"{iid}: already {VERBS[action].split()[0]}, nothing to do")
    if dry_run:
        for inst in todo:
            say(f"dry run: would {action} {inst.id} ({inst.name or 'no name'}, {inst.state})")
    elif todo:
        say(f"{action}: requested for {', '.join(t.id for t in todo)}")
        if wait:
            c.wait(action, [t.id for t in todo], progress_printer(VERBS[action]))
    if json_out:
        shown = c.describe(list(ids)) if not dry_run else todo
        print_json({"action": action, "dry_run": dry_run, "requested": [t.id for t in todo],
                    "skipped": skipped, "waited": bool(wait and todo and not dry_run),
                    "instances": [i.to_json() for i in shown]})


@app.command()
@_lifecycle_options
@click.pass_context
def start(ctx: click.Context, ids: tuple[str, ...], wait: bool, force: bool, dry_run: bool,
          json_out: bool) -> None:
    """Start stopped instances (waits until running unless --no-wait)."""
    _act(ctx, Lifecycle.START, ids, wait, force, dry_run, json_out)


@app.command()
@_lifecycle_options
@click.pass_context
def stop(ctx: click.Context, ids: tuple[str, ...], wait: bool, force: bool, dry_run: bool,
         json_out: bool) -> None:
    """Stop running instances (their jobs are lost; waits until stopped)."""
    _act(ctx, Lifecycle.STOP, ids, wait, force, dry_run, json_out)


@app.command()
@_lifecycle_options
@click.pass_context
def reboot(ctx: click.Context, ids: tuple[str, ...], wait: bool, force: bool, dry_run: bool,
           json_out: bool) -> None:
    """Reboot running instances (waits until their status checks pass)."""
    _act(ctx, Lifecycle.REBOOT, ids, wait, force, dry_run, json_out)


@app.command()
@_lifecycle_options
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def terminate(ctx: click.Context, ids: tuple[str, ...], wait: bool, force: bool, dry_run: bool,
              json_out: bool, yes: bool) -> None:
    """Terminate instances (irreversible; asks first unless --yes)."""
    if not yes and not dry_run:
        cloud(ctx).describe(list(ids))  # bad ids and settings fail before the question
        try:
            confirmed = click.confirm(f"Terminate {' '.join(ids)}? This cannot be undone",
                                      default=False, err=True)
        except click.Abort:
            if sys.stdin.isatty():  # Ctrl-C at the prompt
                raise
            click.echo("", err=True)
            raise RefusedError("not confirmed (no answer on standard input; use --yes); "
                               "nothing terminated") from None
        if not confirmed:
            raise RefusedError("not confirmed; nothing terminated")
    _act(ctx, Lifecycle.TERMINATE, ids, wait, force, dry_run, json_out)


@app.command()
@click.option("--count", "-n", type=click.IntRange(1, 500), default=1, show_default=True,
              help="How many instances.")
@click.option("--ami", help="Image id (default: the pool's newest worker image).")
@click.option("--type", "-t", "itypes", multiple=True,
              help="Instance type; repeat for fallbacks, tried in order.")
@click.option("--subnet", "subnets", multiple=True,
              help="Subnet id (repeatable; default: the pool's subnets).")
@click.option("--client-token", help="Idempotency token: a request repeated with the same "
              "token launches nothing twice (default: a new one, printed).")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Wait until the instances are running.")
@click.option("--dry-run", is_flag=True, help="Check permissions; launch nothing.")
@json_option
@click.pass_context
def create(ctx: click.Context, count: int, ami: str | None, itypes: tuple[str, ...],
           subnets: tuple[str, ...], client_token: str | None, wait: bool, dry_run: bool,
           json_out: bool) -> None:
    """Launch workers: the pool's subnets, security group and profile, IMDSv2, pool tags."""
    import uuid

    from orchestrator.aws.records import LaunchRequest

    c = cloud(ctx)
    image = c.image(ami) if ami else c.newest_worker_image()
    token = client_token or uuid.uuid4().hex
    req = LaunchRequest(
        count=count, image_id=image.id,
        instance_types=list(itypes) or [c.config.worker.instance_type],
        subnets=list(subnets) or c.worker_subnets(),
        security_groups=c.worker_security_groups(),
        instance_profile=c.config.worker_instance_profile, client_token=token,
        key_name=c.config.worker.key_name)
    described = (f"{count} x {'/'.join(req.instance_types)} from {image.id}"
                 f"{' (' + image.version + ')' if image.version else ''} in "
                 f"{', '.join(req.subnets)}")
    if dry_run:
        c.launch(req, dry_run=True)
        say(f"dry run: would launch {described}")
        if json_out:
            print_json({"dry_run": True, "count": count, "image_id": image.id,
                        "instance_types": list(req.instance_types),
                        "subnets": list(req.subnets),
                        "security_groups": list(req.security_groups),
                        "instance_profile": req.instance_profile, "client_token": token})
        return
    say(f"launching {described} (client token {token})")
    launched = c.launch(req)
    ids = [i.id for i in launched]
    if wait and ids:
        c.wait(Lifecycle.START, ids, progress_printer("running"))
    final = c.describe(ids) if ids else []
    if json_out:
        print_json({"client_token": token, "instances": [i.to_json() for i in final]})
    else:
        print_table(f"Launched in pool {c.pool}", COLUMNS,
                    ([i.id, i.name, i.image_id, i.instance_type, i.state.value, i.monitoring,
                      i.private_ip, i.role] for i in final))
