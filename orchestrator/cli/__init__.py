"""The `htcpool` command: a root group whose subcommands are imported only when used.

`main()` turns known errors into one line on stderr and an exit status; `--debug`
re-raises them. Subcommand modules each expose a click command or group and are listed in
`COMMANDS`, so `htcpool --help` imports neither boto3 nor htcondor.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from orchestrator.errors import ExitStatus, HtcpoolError

# name -> (module, attribute, one-line help). The attribute is a click command or group.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "sandbox": ("orchestrator.cli.sandbox", "app", "Local EC2/SSM sandbox with real hosts."),
    "instances": ("orchestrator.cli.instances", "app",
                  "List, create, start, stop, reboot, terminate."),
    "images": ("orchestrator.cli.images", "app", "The pool's worker images; bake a new one."),
    "image": ("orchestrator.cli.images", "app", "Same as `images` (image bake, image list)."),
    "zones": ("orchestrator.cli.account", "zones", "Availability zones of the region."),
    "regions": ("orchestrator.cli.account", "regions", "Regions available to the account."),
    "pool": ("orchestrator.cli.pool", "app", "Pool views (condor_status)."),
    "queue": ("orchestrator.cli.pool", "queue", "Queue view (condor_q): per owner and batch."),
    "bootstrap": ("orchestrator.cli.provision", "bootstrap", "Run the bootstrap playbook."),
    "scale": ("orchestrator.cli.scale", "scale",
              "One autoscaler pass: plan, and act unless --dry-run."),
    "autoscale": ("orchestrator.cli.scale", "autoscale", "Run the autoscaler loop."),
    "shapes": ("orchestrator.cli.shapes", "shapes",
               "Instance types the autoscaler may launch, with their prices."),
    "sim": ("orchestrator.cli.sim", "app", "Replay job traces through the autoscaler policy."),
    "menu": ("orchestrator.cli.menu", "menu", "The interactive numbered control panel."),
    "config": ("orchestrator.cli.settings", "config", "Validate the configuration; show it."),
}


def _load(name: str) -> click.Command:
    module_name, attr, _ = COMMANDS[name]
    cmd = getattr(importlib.import_module(module_name), attr)
    if not isinstance(cmd, click.Command):
        raise TypeError(f"{module_name}.{attr} is not a click command")
    cmd.name = name
    return cmd


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        return _load(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, envvar="HTCPOOL_DEBUG", help="Show tracebacks.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="HTCPOOL_CONFIG",
              help="Config file (default: ./htcpool.toml, then ~/.config/htcpool/config.toml).")
@click.option("--region", envvar="HTCPOOL_REGION", help="AWS region (overrides the config file).")
@click.option("--profile", envvar="HTCPOOL_PROFILE",
              help="AWS profile (overrides the config file).")
@click.option("--pool", "pool_name", envvar="HTCPOOL_POOL",
              help="Pool name (the htcpool:pool tag).")
@click.option("--endpoint-url", envvar="HTCPOOL_ENDPOINT_URL",
              help="AWS API endpoint (the sandbox's, for example).")
@click.version_option(package_name="htcpool")
@click.pass_context
def cli(ctx: click.Context, debug: bool, config_path: str | None, region: str | None,
        profile: str | None, pool_name: str | None, endpoint_url: str | None) -> None:
    """htcpool: an HTCondor pool on AWS EC2, sized by its queue."""
    ctx.obj = {
        "debug": debug,
        "config_path": config_path,
        "overrides": {"region": region, "profile": profile, "pool": pool_name,
                      "endpoint_url": endpoint_url},
    }


def _debug_requested(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get("HTCPOOL_DEBUG", "") not in ("", "0")


def main(argv: list[str] | None = None) -> Any:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return cli.main(args=args, prog_name="htcpool", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("htcpool: interrupted", err=True)
        sys.exit(ExitStatus.CTRL_C)
    except KeyboardInterrupt:
        click.echo("htcpool: interrupted", err=True)
        sys.exit(ExitStatus.CTRL_C)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.NoArgsIsHelpError as exc:  # a group alone: its help, not an error
        exc.show()
        sys.exit(ExitStatus.USAGE)
    except click.ClickException as exc:
        ctx = getattr(exc, "ctx", None)
        hint = f" (try '{ctx.command_path} --help')" if ctx is not None else ""
        click.echo(f"htcpool: error: {one_line(exc.format_message())}{hint}", err=True)
        sys.exit(ExitStatus.USAGE)
    except HtcpoolError as exc:
        if _debug_requested(args):
            raise
        click.echo(f"htcpool: error: {one_line(str(exc))}", err=True)
        sys.exit(exc.exit_status)
    except Exception as exc:  # botocore and friends: still one line unless --debug
        if _debug_requested(args):
            raise
        from orchestrator.errors import describe_exception

        click.echo(f"htcpool: error: {one_line(describe_exception(exc))}", err=True)
        sys.exit(ExitStatus.ERROR)


def one_line(text: str) -> str:
    """An error message as one line: newlines, terminal escapes and other control characters
    (which user input such as an instance id can carry into it) are shown escaped."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text).strip() \
        or "(no message)"
