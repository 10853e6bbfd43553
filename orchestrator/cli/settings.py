"""`htcpool config`: the effective settings, validated."""

from __future__ import annotations

import click

from orchestrator.cli.common import print_json, say, settings


@click.command()
@click.option("--json", "json_out", is_flag=True, help="JSON output.")
@click.pass_context
def config(ctx: click.Context, json_out: bool) -> None:
    """Validate the configuration and show the effective settings (file, environment and
    flags merged). Makes no AWS call; exits 2 on a malformed file."""
    effective = settings(ctx).model_dump(mode="json")
    if json_out:
        print_json(effective)
        return
    for key, value in effective.items():
        if isinstance(value, dict):
            for sub, item in value.items():
                say(f"{key}.{sub} = {item!r}")
        else:
            say(f"{key} = {value!r}")
