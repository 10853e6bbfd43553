"""`htcpool zones` and `htcpool regions`."""

from __future__ import annotations

from typing import Annotated

import typer

from orchestrator.cli.common import cloud, print_json, print_table


def zones(ctx: typer.Context,
          json_out: Annotated[bool, typer.Option("--json", help="JSON output.")] = False) -> None:
    """Availability zones of the region."""
    c = cloud(ctx)
    found = c.zones()
    if json_out:
        print_json(found)
        return
    print_table(f"Availability zones in {c.region}", ("Zone", "Zone ID", "State"),
                ([z["name"], z["id"], z["state"]] for z in found))


def regions(ctx: typer.Context,
            json_out: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
            ) -> None:
    """Regions available to the account."""
    c = cloud(ctx)
    found = c.regions()
    if json_out:
        print_json(found)
        return
    print_table("Regions", ("Region", "Endpoint", "Opt-in"),
                ([r["name"], r["endpoint"], r["opt_in"]] for r in found))
