"""`htcpool bootstrap` (and the shared runner for `htcpool images bake`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from orchestrator.cli.common import print_json, say, settings


def playbook_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for deco in reversed([
        click.option("--extra", "-e", multiple=True,
                     help="Extra variable KEY=VALUE for the playbook (repeatable)."),
        click.option("--limit", help="Only these hosts or groups."),
        click.option("--dry-run", "--check", "dry_run", is_flag=True,
                     help="Ansible check mode: report what would change, change nothing."),
        click.option("--json", "json_out", is_flag=True, help="A JSON summary at the end."),
    ]):
        f = deco(f)
    return f


def parse_extra(pairs: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"'{pair}' is not KEY=VALUE", param_hint="--extra")
        out[key.strip()] = value
    return out


def run_named_playbook(ctx: click.Context, name: str, extra: tuple[str, ...],
                       limit: str | None, dry_run: bool, json_out: bool) -> None:
    from orchestrator.provision import find_inventory, find_playbook, run_playbook

    variables = parse_extra(extra)
    config = settings(ctx)
    playbook = find_playbook(config, name)
    inventory = find_inventory(config)
    say(f"running {playbook} ({'check mode, ' if dry_run else ''}inventory "
        f"{inventory or 'none'}, pool {config.pool})")
    result = run_playbook(config, playbook, inventory=inventory, extravars=variables,
                          check=dry_run, limit=limit, progress=say)
    say(f"playbook {playbook.name}: {result.status}")
    if json_out:
        print_json({"playbook": result.playbook, "status": result.status, "rc": result.rc,
                    "check": dry_run, "stats": result.stats})


@click.command()
@playbook_options
@click.pass_context
def bootstrap(ctx: click.Context, extra: tuple[str, ...], limit: str | None, dry_run: bool,
              json_out: bool) -> None:
    """Run playbooks/bootstrap.yml: central manager and workers installed and configured."""
    from orchestrator.provision import BOOTSTRAP

    run_named_playbook(ctx, BOOTSTRAP, extra, limit, dry_run, json_out)
