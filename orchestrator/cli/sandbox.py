"""`htcpool sandbox up | down | status | exec`."""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from orchestrator.sandbox.settings import SandboxSettings

app = typer.Typer(help="Local EC2/SSM sandbox whose instances are real hosts.",
                  no_args_is_help=True, add_completion=False)


def _settings() -> SandboxSettings:
    from orchestrator.sandbox.settings import SandboxSettings

    return SandboxSettings()


def _say(msg: str) -> None:
    typer.echo(msg, err=True)


@app.command()
def up(json_out: Annotated[bool, typer.Option("--json", help="Print status as JSON.")] = False
       ) -> None:
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
def status(json_out: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False
           ) -> None:
    """Endpoint, region, credentials, base AMI and hosts."""
    from orchestrator.sandbox import control

    _print_status(control.status(_settings()), json_out)


@app.command(name="exec", context_settings={"allow_interspersed_args": False})
def exec_(host: Annotated[str, typer.Argument(help="Instance id, address, hostname or Name.")],
          command: Annotated[list[str], typer.Argument(help="Command (after --).")]) -> None:
    """Run a command as root on a sandbox host: `htcpool sandbox exec HOST -- CMD...`."""
    from orchestrator.sandbox import control

    if command and command[0] == "--":
        command = command[1:]
    argv = control.host_command(_settings(), host, command)
    sys.stdout.flush()
    os.execvp(argv[0], argv)


def _print_status(st: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(st, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"endpoint   {st['endpoint_url']} (from hosts: {st['host_endpoint_url']})")
    console.print(f"region     {st['region']}    base AMI {st['base_ami']}")
    console.print(f"inventory  {st['inventory']}")
    console.print(f"use it     export HTCPOOL_ENDPOINT_URL={st['endpoint_url']} "
                  f"HTCPOOL_REGION={st['region']}; credentials: `htcpool sandbox status --json`")
    table = Table("instance", "address", "hostname", "state", "role")
    for h in st["hosts"]:
        table.add_row(h["instance_id"], h["address"], h["hostname"], h["state"],
                      h["tags"].get("htcpool:role", ""))
    console.print(table)
