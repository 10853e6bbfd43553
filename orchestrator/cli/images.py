"""`htcpool images list|bake` (also reachable as `htcpool image ...`)."""

from __future__ import annotations

import click

from orchestrator.cli.common import cloud, print_json, print_table
from orchestrator.cli.provision import playbook_options, run_named_playbook


@click.group(no_args_is_help=True)
def app() -> None:
    """The pool's worker images (newest first); bake a new one."""


@app.command("list")
@click.option("--json", "json_out", is_flag=True, help="JSON output.")
@click.pass_context
def list_(ctx: click.Context, json_out: bool) -> None:
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
@playbook_options
@click.pass_context
def bake(ctx: click.Context, extra: tuple[str, ...], limit: str | None, dry_run: bool,
         json_out: bool) -> None:
    """Run playbooks/bake_worker_image.yml: a new versioned worker AMI, old ones rotated."""
    from orchestrator.provision import BAKE_WORKER_IMAGE

    run_named_playbook(ctx, BAKE_WORKER_IMAGE, extra, limit, dry_run, json_out)
