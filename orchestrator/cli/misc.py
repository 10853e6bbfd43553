"""`htcpool zones`, `htcpool regions` and `htcpool config`."""

from __future__ import annotations

import click

from orchestrator.cli.common import cloud, print_json, print_table, say, settings


@click.command()
@click.option("--json", "json_out", is_flag=True, help="JSON output.")
@click.pass_context
def zones(ctx: click.Context, json_out: bool) -> None:
    """Availability zones of the region."""
    c = cloud(ctx)
    found = c.zones()
    if json_out:
        print_json(found)
        return
    print_table(f"Availability zones in {c.region}", ("Zone", "Zone ID", "State"),
                ([z["name"], z["id"], z["state"]] for z in found))


@click.command()
@click.option("--json", "json_out", is_flag=True, help="JSON output.")
@click.pass_context
def regions(ctx: click.Context, json_out: bool) -> None:
    """Regions available to the account."""
    c = cloud(ctx)
    found = c.regions()
    if json_out:
        print_json(found)
        return
    print_table("Regions", ("Region", "Endpoint", "Opt-in"),
                ([r["name"], r["endpoint"], r["opt_in"]] for r in found))


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
