"""`htcpool sandbox up | down | status | exec`."""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from orchestrator.sandbox.settings import SandboxSettings

json_option = click.option("--json", "json_out", is_flag=True, help="Print status as JSON.")


def _settings() -> SandboxSettings:
    from orchestrator.sandbox.settings import SandboxSettings

    return SandboxSettings()


def _say(msg: str) -> None:
    click.echo(msg, err=True)


@click.group(no_args_is_help=True)
def app() -> None:
    """Local EC2/SSM sandbox whose instances are real hosts."""


@app.command()
@json_option
def up(json_out: bool) -> None:
    """Build or reuse the base image, start the emulator and print how to use it."""
    from orchestrator.sandbox import control
    from orchestrator.signals import raise_on_interrupt

    settings = _settings()
    raise_on_interrupt()  # `up` removes what it started on Ctrl-C or SIGTERM
    control.up(settings, progress=_say)
    _print_status(control.status(settings), json_out)


@app.command()
def down() -> None:
    """Remove every host, mount, namespace, bridge and server of the sandbox."""
    from orchestrator.sandbox import control

    control.down(_settings(), progress=_say)


@app.command()
@click.option("--json", "json_out", is_flag=True, help="Machine-readable.")
def status(json_out: bool) -> None:
    """Endpoint, region, credentials, base AMI and hosts."""
    from orchestrator.sandbox import control

    _print_status(control.status(_settings()), json_out)


@app.command(name="exec", context_settings={"allow_interspersed_args": False})
@click.argument("host")
@click.argument("command", nargs=-1, required=True)
def exec_(host: str, command: tuple[str, ...]) -> None:
    """Run a command as root on a sandbox host: `htcpool sandbox exec HOST -- CMD...`.

    HOST is an instance id, address, hostname or Name tag."""
    from orchestrator.sandbox import control

    argv = list(command)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise click.UsageError("no command given (htcpool sandbox exec HOST -- CMD...)")
    full = control.host_command(_settings(), host, argv)
    sys.stdout.flush()
    os.execvp(full[0], full)


def _print_status(st: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(st, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    from orchestrator.vocabulary import TAG_ROLE

    console = Console()
    console.print(f"endpoint   {st['endpoint_url']} (from hosts: {st['host_endpoint_url']})")
    console.print(f"region     {st['region']}    base AMI {st['base_ami']}")
    console.print(f"inventory  {st['inventory']}")
    console.print(f"use it     export HTCPOOL_ENDPOINT_URL={st['endpoint_url']} "
                  f"HTCPOOL_REGION={st['region']}; credentials: `htcpool sandbox status --json`")
    table = Table("instance", "address", "hostname", "state", "role")
    for h in st["hosts"]:
        table.add_row(h["instance_id"], h["address"], h["hostname"], h["state"],
                      h["tags"].get(TAG_ROLE, ""))
    console.print(table)
