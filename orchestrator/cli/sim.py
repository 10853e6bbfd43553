"""`htcpool sim`: replay job traces through the autoscaler policy against a simulated pool."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Replay SWF job traces through the autoscaler policy.")


@app.callback()
def sim() -> None:
    """Replay SWF job traces through the autoscaler policy against a simulated pool."""


@app.command("run")
def run(
    traces: Annotated[list[Path], typer.Argument(help="SWF files (gzip or plain).")],
    policy: Annotated[list[str] | None, typer.Option(
        "--policy", "-p", help="Scenario to run (repeatable): ours, ours-cost, ours-wait, "
        "old, parallelcluster, static-p95, ours:KEY=VALUE,... (a sweep point). Default: "
        "the first six.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON on stdout.")] = False,
    png: Annotated[Path | None, typer.Option(help="Write a PNG per trace here.")] = None,
    max_jobs: Annotated[int | None, typer.Option(help="Only the first N jobs.")] = None,
    max_workers: Annotated[int, typer.Option(help="Pool size limit.")] = 200,
    boot_s: Annotated[float, typer.Option(help="Mean instance boot delay.")] = 60.0,
    boot_jitter_s: Annotated[float, typer.Option(help="Boot delay jitter (+/-).")] = 10.0,
    negotiation_s: Annotated[float, typer.Option(help="Negotiator cycle.")] = 20.0,
    processes: Annotated[int, typer.Option(help="Scenarios run in parallel.")] = 2,
    seed: Annotated[int, typer.Option(help="Random seed (boot jitter).")] = 0,
) -> None:
    """Replay each trace under each policy setting and report waits, cost, utilization."""
    from orchestrator.sim.pool import SimParams
    from orchestrator.sim.report import dump_json, markdown, plot
    from orchestrator.sim.runner import run_trace

    params = SimParams(boot_s=boot_s, boot_jitter_s=boot_jitter_s,
                       negotiation_s=negotiation_s, max_workers=max_workers, seed=seed)
    reports = []
    for path in traces:
        rep = run_trace(path, params, policy, max_jobs=max_jobs, processes=processes)
        reports.append(rep)
        if not as_json:
            typer.echo(markdown(rep))
        if png is not None:
            out = plot(rep, png)
            if not as_json:
                typer.echo(f"wrote {out}\n")
    if as_json:
        typer.echo(dump_json(reports))
