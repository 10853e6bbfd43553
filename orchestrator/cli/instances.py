"""`htcpool instances list|start|stop|reboot|terminate|create`."""

from __future__ import annotations

from typing import Annotated

import click
import typer

from orchestrator.cli.common import (
    cloud,
    complete_instance_ids,
    print_json,
    print_table,
    progress_printer,
    say,
)
from orchestrator.errors import RefusedError

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="List, create, start, stop, reboot and terminate the pool's instances.")

Ids = Annotated[list[str], typer.Argument(help="Instance ids (i-...).", show_default=False,
                                          autocompletion=complete_instance_ids)]
Wait = Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until the state is reached.")]
Force = Annotated[bool, typer.Option("--force", help="Act on instances outside the pool too.")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Check and say what would happen.")]
Json = Annotated[bool, typer.Option("--json", help="JSON output.")]

COLUMNS = ("ID", "Name", "AMI", "Type", "State", "Monitoring", "Private IP", "Role")
VERBS = {"start": "running", "stop": "stopped", "reboot": "running (status ok)",
         "terminate": "terminated"}


@app.command("list")
def list_(ctx: typer.Context,
          state: Annotated[list[str] | None, typer.Option(
              "--state", "-s", help="Only these states (repeatable).")] = None,
          role: Annotated[list[str] | None, typer.Option(
              "--role", help="Only these pool roles (repeatable).")] = None,
          all_pools: Annotated[bool, typer.Option(
              "--all", help="Every instance in the region, whatever its pool tag.")] = False,
          json_out: Json = False) -> None:
    """The pool's instances: id, name, AMI, type, state, monitoring, private IP, role."""
    from orchestrator.cloud import State

    valid = {s.value for s in State}
    for s in state or []:
        if s not in valid:
            raise click.BadParameter(f"'{s}' is not one of {', '.join(sorted(valid))}",
                                     param_hint="--state")
    c = cloud(ctx)
    found = c.pool_instances(states=state, roles=role, all_pools=all_pools)
    if json_out:
        print_json([i.to_json() for i in found])
        return
    title = f"Instances in pool {c.pool} ({c.region})" if not all_pools \
        else f"All instances ({c.region})"
    print_table(title, (*COLUMNS, *(["Pool"] if all_pools else [])),
                ([i.id, i.name, i.image_id, i.instance_type, i.state.value, i.monitoring,
                  i.private_ip, i.role, *([i.pool] if all_pools else [])] for i in found),
                caption=f"{len(found)} instance(s)")


def _act(ctx: typer.Context, action: str, ids: list[str], wait: bool, force: bool,
         dry_run: bool, json_out: bool) -> None:
    c = cloud(ctx)
    todo = c.act(action, ids, force=force, dry_run=dry_run)
    skipped = [i for i in ids if i not in {t.id for t in todo}]
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
        print_json({"action": action, "dry_run": dry_run, "requested": [t.id for t in todo],
                    "skipped": skipped, "waited": bool(wait and todo and not dry_run),
                    "instances": [i.to_json() for i in c.describe(ids)] if not dry_run
                    else [t.to_json() for t in todo]})


@app.command()
def start(ctx: typer.Context, ids: Ids, wait: Wait = True, force: Force = False,
          dry_run: DryRun = False, json_out: Json = False) -> None:
    """Start stopped instances (waits until running unless --no-wait)."""
    _act(ctx, "start", ids, wait, force, dry_run, json_out)


@app.command()
def stop(ctx: typer.Context, ids: Ids, wait: Wait = True, force: Force = False,
         dry_run: DryRun = False, json_out: Json = False) -> None:
    """Stop running instances (jobs on them are lost; waits until stopped)."""
    _act(ctx, "stop", ids, wait, force, dry_run, json_out)


@app.command()
def reboot(ctx: typer.Context, ids: Ids, wait: Wait = True, force: Force = False,
           dry_run: DryRun = False, json_out: Json = False) -> None:
    """Reboot running instances (waits until their status checks pass)."""
    _act(ctx, "reboot", ids, wait, force, dry_run, json_out)


@app.command()
def terminate(ctx: typer.Context, ids: Ids, wait: Wait = True, force: Force = False,
              dry_run: DryRun = False, json_out: Json = False,
              yes: Annotated[bool, typer.Option("--yes", "-y",
                                                help="Do not ask for confirmation.")] = False,
              ) -> None:
    """Terminate instances (irreversible; asks first unless --yes)."""
    if not yes and not dry_run and not click.confirm(
            f"Terminate {' '.join(ids)}? This cannot be undone", default=False, err=True):
        raise RefusedError("not confirmed; nothing terminated")
    _act(ctx, "terminate", ids, wait, force, dry_run, json_out)


@app.command()
def create(ctx: typer.Context,
           count: Annotated[int, typer.Option("--count", "-n", min=1, max=500,
                                              help="How many instances.")] = 1,
           ami: Annotated[str | None, typer.Option(
               "--ami", help="Image id (default: the pool's newest worker image).")] = None,
           itype: Annotated[list[str] | None, typer.Option(
               "--type", "-t", help="Instance type; repeat for fallbacks in order.")] = None,
           subnet: Annotated[list[str] | None, typer.Option(
               "--subnet", help="Subnet id (repeatable; default: the pool's).")] = None,
           client_token: Annotated[str | None, typer.Option(
               "--client-token", help="Idempotency token: the same token never launches "
                                      "twice (default: a new one, printed).")] = None,
           wait: Wait = True, dry_run: DryRun = False, json_out: Json = False) -> None:
    """Launch workers in the pool's subnets and security group, IMDSv2 required, tagged."""
    import uuid

    from orchestrator.cloud import LaunchRequest

    c = cloud(ctx)
    image = c.image(ami) if ami else c.newest_worker_image()
    token = client_token or uuid.uuid4().hex
    req = LaunchRequest(
        count=count, image_id=image.id,
        instance_types=itype or [c.config.worker.instance_type],
        subnets=subnet or c.worker_subnets(), security_groups=c.worker_security_groups(),
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
                        "instance_types": list(req.instance_types), "subnets": list(req.subnets),
                        "security_groups": list(req.security_groups),
                        "instance_profile": req.instance_profile, "client_token": token})
        return
    say(f"launching {described} (client token {token})")
    launched = c.launch(req)
    ids = [i.id for i in launched]
    if wait and ids:
        c.wait("start", ids, progress_printer("running"))
    final = c.describe(ids) if ids else []
    if json_out:
        print_json({"client_token": token, "instances": [i.to_json() for i in final]})
    else:
        print_table(f"Launched in pool {c.pool}", COLUMNS,
                    ([i.id, i.name, i.image_id, i.instance_type, i.state.value, i.monitoring,
                      i.private_ip, i.role] for i in final))
