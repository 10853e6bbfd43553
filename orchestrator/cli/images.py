"""`htcpool images list|bake` (also reachable as `htcpool image ...`)."""

from __future__ import annotations

from typing import Annotated

import typer

from orchestrator.cli.common import cloud, print_json, print_table
from orchestrator.cli.provision import DryRun, Extra, Json, Limit, run_named_playbook

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="The pool's worker images (newest first); bake a new one.")


@app.command("list")
def list_(ctx: typer.Context,
          json_out: Annotated[bool, typer.Option("--json", help="JSON output.")] = False) -> None:
    """The pool's worker images, newest first, with their version tags."""
    c = cloud(ctx)
    images = c.worker_images()
    if json_out:
        print_json([i.to_json() for i in images])
        return
    print_table(f"Worker images of pool {c.pool} ({c.region})",
                ("AMI", "Version", "Name", "State", "Created"),
                ([i.id, i.version or "-", i.name, i.state, i.created] for i in images),
                caption=f"{len(images)} image(s); the first is used by `instances create`")


@app.command()
def bake(ctx: typer.Context, extra: Extra = None, limit: Limit = None,
         dry_run: DryRun = False, json_out: Json = False) -> None:
    """Run playbooks/bake_worker_image.yml: a new versioned worker AMI, old ones rotated."""
    from orchestrator.provision import BAKE_WORKER_IMAGE

    run_named_playbook(ctx, BAKE_WORKER_IMAGE, extra, limit, dry_run, json_out)
