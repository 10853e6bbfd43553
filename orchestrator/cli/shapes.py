"""`htcpool shapes`: the instance types the autoscaler would launch, with their prices."""

from __future__ import annotations

import click

from orchestrator.cli.common import cloud, print_json, print_table, settings

COLUMNS = ("Name", "Arch", "CPUs", "Memory (MiB)", "GPUs", "On-demand $/h", "Spot $/h")


@click.command()
@click.option("--spot/--no-spot", default=None,
              help="Also read current spot prices (default: the config's autoscaler.spot).")
@click.option("--json", "json_out", is_flag=True, help="JSON output.")
@click.pass_context
def shapes(ctx: click.Context, spot: bool | None, json_out: bool) -> None:
    """The autoscaler's shapes: its instance_types and shape_filter resolved in the region
    (DescribeInstanceTypes, the Pricing API, DescribeSpotPriceHistory), or the config's
    own [[autoscaler.shapes]] when it lists them."""
    from orchestrator.aws.instance_types import resolve_shapes
    from orchestrator.clock import wall

    config = settings(ctx)
    cfg = config.autoscaler
    if spot is not None and spot != cfg.spot:
        cfg = cfg.model_copy(update={"spot": spot})
    if "shapes" in cfg.model_fields_set:  # used as they are: no AWS call
        found, source, order = cfg.shapes, "the config's [[autoscaler.shapes]]", "as listed"
    else:
        c = cloud(ctx, config)
        found = resolve_shapes(c.shape_catalog(), cfg, wall()).shapes
        source, order = f"EC2 in {c.region}", "cheapest first"
    if json_out:
        print_json([s.model_dump() for s in found])
        return
    print_table(f"Autoscaler shapes ({source})", COLUMNS, (
        [s.name, s.arch, s.cpus, s.memory_mb, s.gpus, f"{s.price_per_hour:.4f}",
         "-" if s.spot_price_per_hour is None else f"{s.spot_price_per_hour:.4f}"]
        for s in found), caption=f"{len(found)} shape(s), {order}")
