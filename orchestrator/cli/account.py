"""`htcpool zones` and `htcpool regions`: what the account offers in EC2."""

from __future__ import annotations

import click

from orchestrator.cli.common import cloud, print_json, print_table


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
