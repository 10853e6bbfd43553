"""Shared plumbing for the CLI groups: settings, one Cloud per run, tables, JSON, progress."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import click

from orchestrator.config import Config, load_config

if TYPE_CHECKING:
    from rich.console import Console

    from orchestrator.aws.ec2 import Cloud

_CLOUDS: dict[str, Cloud] = {}  # one boto3 session per run (the menu reuses it)


def _root_params(ctx: click.Context | None) -> dict[str, Any]:
    root: Any = ctx.find_root() if ctx is not None else click.get_current_context().find_root()
    return dict(root.params or {})


def settings(ctx: click.Context | None = None, **extra: Any) -> Config:
    """The effective Config for this invocation (root flags > environment > file)."""
    params = _root_params(ctx)
    overrides = {"region": params.get("region"), "profile": params.get("profile"),
                 "pool": params.get("pool_name"), "endpoint_url": params.get("endpoint_url"),
                 **extra}
    return load_config(params.get("config_path"), overrides)


def cloud(ctx: click.Context | None = None, config: Config | None = None) -> Cloud:
    from orchestrator.aws.ec2 import Cloud

    config = config or settings(ctx)
    key = config.model_dump_json()
    if key not in _CLOUDS:
        _CLOUDS[key] = Cloud(config)
    return _CLOUDS[key]


def stdout_console() -> Console:
    from rich.console import Console

    tty = sys.stdout.isatty()
    return Console(width=None if tty else 200, highlight=False, soft_wrap=not tty)


def stderr_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def print_table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]],
                caption: str | None = None) -> None:
    """A rich table; never narrower than its content (ids must stay whole to copy them)."""
    from rich.table import Table

    cells = [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max([len(col), *(len(r[i]) for r in cells)]) for i, col in enumerate(columns)]
    table = Table(title=title, caption=caption, header_style="bold")
    for col, width in zip(columns, widths, strict=True):
        table.add_column(col, no_wrap=True, min_width=width)
    for row in cells:
        table.add_row(*row)
    console = stdout_console()
    natural = sum(w + 3 for w in widths) + 1
    console.print(table, width=max(console.width, natural), crop=False)


def say(message: str) -> None:
    """A progress or status line on stderr (never mixed into --json output)."""
    click.echo(message, err=True)


def progress_printer(verb: str) -> Callable[[int, int, str], None]:
    """A callback for Cloud.wait: one line per instance, or one line rewritten on a TTY."""
    tty = sys.stderr.isatty()

    def report(done: int, total: int, current: str) -> None:
        text = (f"waiting for {current} to be {verb} ({done}/{total} done)" if current
                else f"all {total} {verb}")
        if tty:
            click.echo(f"\r\x1b[K{text}", err=True, nl=not current)
        else:
            say(text)

    return report


def complete_instance_ids(ctx: click.Context, param: click.Parameter,
                          incomplete: str) -> list[str]:
    """Shell completion: the pool's instance ids (nothing if AWS is unreachable)."""
    try:
        found = cloud(ctx).pool_instances()
    except Exception:
        return []
    return [i.id for i in found if i.id.startswith(incomplete)]
