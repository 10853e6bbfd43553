"""`htcpool bootstrap` (and the shared runner for `htcpool images bake`)."""

from __future__ import annotations

from typing import Annotated, Any

import click
import typer

from orchestrator.cli.common import AnyContext, print_json, say, settings

Extra = Annotated[list[str] | None, typer.Option(
    "--extra", "-e", help="Extra variable KEY=VALUE for the playbook (repeatable).")]
Limit = Annotated[str | None, typer.Option("--limit", help="Only these hosts/groups.")]
DryRun = Annotated[bool, typer.Option(
    "--dry-run", "--check", help="Ansible check mode: report what would change.")]
Json = Annotated[bool, typer.Option("--json", help="JSON summary at the end.")]


def parse_extra(pairs: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"'{pair}' is not KEY=VALUE", param_hint="--extra")
        out[key.strip()] = value
    return out


def run_named_playbook(ctx: AnyContext, name: str, extra: list[str] | None,
                       limit: str | None, dry_run: bool, json_out: bool,
                       more_vars: dict[str, Any] | None = None) -> None:
    from orchestrator.provision import find_inventory, find_playbook, run_playbook

    config = settings(ctx)
    playbook = find_playbook(config, name)
    inventory = find_inventory(config)
    say(f"running {playbook} ({'check mode, ' if dry_run else ''}inventory "
        f"{inventory or 'none'}, pool {config.pool})")
    result = run_playbook(config, playbook, inventory=inventory,
                          extravars={**(more_vars or {}), **parse_extra(extra)},
                          check=dry_run, limit=limit, progress=say)
    say(f"playbook {playbook.name}: {result.status}")
    if json_out:
        print_json({"playbook": result.playbook, "status": result.status, "rc": result.rc,
                    "check": dry_run, "stats": result.stats})


def bootstrap(ctx: typer.Context, extra: Extra = None, limit: Limit = None,
              dry_run: DryRun = False, json_out: Json = False) -> None:
    """Run playbooks/bootstrap.yml: central manager and workers installed and configured."""
    from orchestrator.provision import BOOTSTRAP

    run_named_playbook(ctx, BOOTSTRAP, extra, limit, dry_run, json_out)
