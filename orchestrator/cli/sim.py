"""`htcpool sim`: replay job traces through the autoscaler policy against a simulated pool."""

from __future__ import annotations

from pathlib import Path

import click


@click.group(no_args_is_help=True)
def app() -> None:
    """Replay SWF job traces through the autoscaler policy against a simulated pool."""


@app.command("run")
@click.argument("traces", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--policy", "-p", "policy", multiple=True,
              help="Scenario to run (repeatable): ours, ours-cost, ours-wait, old, "
                   "parallelcluster, static-p95, ours:KEY=VALUE,... (a sweep point). Default: "
                   "the first six.")
@click.option("--json", "as_json", is_flag=True, help="JSON on stdout.")
@click.option("--png", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write a PNG per trace here.")
@click.option("--max-jobs", type=int, default=None, help="Only the first N jobs.")
@click.option("--max-workers", type=int, default=200, show_default=True,
              help="Pool size limit.")
@click.option("--boot-s", type=float, default=60.0, show_default=True,
              help="Mean instance boot delay.")
@click.option("--boot-jitter-s", type=float, default=10.0, show_default=True,
              help="Boot delay jitter (+/-).")
@click.option("--negotiation-s", type=float, default=20.0, show_default=True,
              help="Negotiator cycle.")
@click.option("--processes", type=int, default=2, show_default=True,
              help="Scenarios run in parallel.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Random seed (boot jitter).")
def run(traces: tuple[Path, ...], policy: tuple[str, ...], as_json: bool, png: Path | None,
        max_jobs: int | None, max_workers: int, boot_s: float, boot_jitter_s: float,
        negotiation_s: float, processes: int, seed: int) -> None:
    """Replay each trace under each policy setting and report waits, cost, utilization."""
    from orchestrator.sim.pool import SimParams
    from orchestrator.sim.report import dump_json, markdown, plot
    from orchestrator.sim.runner import run_trace

    params = SimParams(boot_s=boot_s, boot_jitter_s=boot_jitter_s,
                       negotiation_s=negotiation_s, max_workers=max_workers, seed=seed)
    reports = []
    for path in traces:
        rep = run_trace(path, params, list(policy) or None, max_jobs=max_jobs,
                        processes=processes)
        reports.append(rep)
        if not as_json:
            click.echo(markdown(rep))
        if png is not None:
            out = plot(rep, png)
            if not as_json:
                click.echo(f"wrote {out}\n")
    if as_json:
        click.echo(dump_json(reports))
