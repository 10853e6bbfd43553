"""`htcpool menu`: the numbered control panel of the old tool, built on the same commands.

Each entry runs an ordinary `htcpool` command in this process (same options, same session,
same errors), so the panel shows exactly what the commands show.
"""

from __future__ import annotations

import traceback

import click

from orchestrator.errors import HtcpoolError, describe_exception

ENTRIES: dict[str, str] = {
    "1": "list instances", "2": "zones", "3": "start instance(s)", "4": "regions",
    "5": "stop instance(s)", "6": "create instance(s)", "7": "reboot instance(s)",
    "8": "images", "9": "condor_status", "10": "scaling", "11": "condor_q", "99": "exit",
}


def render_menu(pool: str) -> str:
    keys = [k for k in ENTRIES if k != "99"]
    lines = [f"htcpool control panel (pool {pool})", ""]
    for i in range(0, len(keys), 2):
        pair = keys[i:i + 2]
        lines.append("".join(f"{k:>3}  {ENTRIES[k]:<24}" for k in pair).rstrip())
    lines.append(f"{'99':>3}  {ENTRIES['99']}")
    return "\n".join(lines)


def _root_args(ctx: click.Context) -> list[str]:
    params = ctx.find_root().params
    args: list[str] = ["--debug"] if params.get("debug") else []
    for flag, key in (("--config", "config_path"), ("--region", "region"),
                      ("--profile", "profile"), ("--pool", "pool_name"),
                      ("--endpoint-url", "endpoint_url")):
        if params.get(key):
            args += [flag, str(params[key])]
    return args


def run_command(ctx: click.Context, args: list[str]) -> bool:
    """Run one htcpool command in-process; report errors in one line and carry on."""
    from orchestrator.cli import cli

    debug = bool(ctx.find_root().params.get("debug"))
    try:
        cli.main(args=_root_args(ctx) + args, prog_name="htcpool", standalone_mode=False)
        return True
    except click.exceptions.Exit as exc:
        return exc.exit_code == 0
    except click.exceptions.Abort:
        click.echo("(cancelled)", err=True)
    except click.ClickException as exc:
        exc.show()
    except HtcpoolError as exc:
        click.echo(f"htcpool: error: {exc}", err=True)
    except ModuleNotFoundError as exc:
        click.echo(f"htcpool: error: not available yet ({exc.name})", err=True)
    except Exception as exc:
        click.echo(f"htcpool: error: {describe_exception(exc)}", err=True)
    if debug:
        traceback.print_exc()
    return False


def _ids(prompt: str) -> list[str]:
    return click.prompt(prompt, default="", show_default=False).split()


def handle(ctx: click.Context, choice: str) -> None:
    if choice == "1":
        run_command(ctx, ["instances", "list"])
    elif choice == "2":
        run_command(ctx, ["zones"])
    elif choice == "4":
        run_command(ctx, ["regions"])
    elif choice == "8":
        run_command(ctx, ["images", "list"])
    elif choice == "9":
        run_command(ctx, ["pool", "status"])
    elif choice == "11":
        run_command(ctx, ["queue"])
    elif choice in ("3", "5", "7"):
        action = {"3": "start", "5": "stop", "7": "reboot"}[choice]
        ids = _ids(f"Instance id(s) to {action}")
        if not ids:
            click.echo("no instance given")
        elif action == "start" or click.confirm(f"{action.capitalize()} {' '.join(ids)}?"):
            run_command(ctx, ["instances", action, *ids])
    elif choice == "6":
        count = click.prompt("How many", type=click.IntRange(1, 500), default=1)
        ami = click.prompt("AMI (empty: newest worker image)", default="", show_default=False)
        if click.confirm(f"Launch {count} worker(s)?"):
            run_command(ctx, ["instances", "create", "--count", str(count),
                              *(["--ami", ami] if ami else [])])
    elif choice == "10":
        act = click.confirm("Act on the plan (no: show the plan only)?", default=False)
        run_command(ctx, ["scale", *([] if act else ["--dry-run"])])
    else:
        click.echo(f"unknown choice '{choice}'")


@click.command()
@click.pass_context
def menu(ctx: click.Context) -> None:
    """The interactive numbered control panel (1 list instances ... 99 exit)."""
    from orchestrator.cli.common import settings

    pool = settings(ctx).pool
    while True:
        click.echo(render_menu(pool))
        try:
            choice = click.prompt("Choice", default="", show_default=False).strip()
        except click.exceptions.Abort:
            click.echo()
            return
        if choice in ("99", "q", "quit", "exit"):
            return
        if choice:
            handle(ctx, choice)
        click.echo()
