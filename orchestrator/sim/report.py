"""Outputs of a simulation: a Markdown table, JSON for machines, a PNG per trace."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from orchestrator.sim.runner import TraceReport

COLUMNS = ("policy", "wait mean s", "p50 s", "p95 s", "max s", "inst-hours", "cost $", "util",
           "launches", "terminations", "p95 - bound s", "cost / bound")


def _fmt(x: float) -> str:
    if x != x:  # NaN
        return "-"
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}" if abs(x) < 10 else f"{x:.1f}"


def markdown(rep: TraceReport) -> str:
    b = rep.bounds
    dropped = ", ".join(f"{n:,} {why}" for why, n in rep.dropped.items()) or "none"
    lines = [
        f"**{rep.trace}**: {rep.jobs_simulated:,} jobs simulated of {rep.jobs_in_file:,} "
        f"(dropped: {dropped}; asking more than any shape's workers advertise, kept and "
        f"never run: {rep.beyond_advertised:,}); span {rep.span_s / 86400:.1f} days; p95 demand "
        f"{rep.demand_p95_cores:.0f} cores. Bounds: wait {b.wait_s:.0f} s (cold start), "
        f"cost ${b.cost:,.2f} ({b.instance_hours:,.0f} instance-hours), utilization 1.0.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for m in rep.metrics:
        never = f" ({m.never_started} never ran" if m.never_started else ""
        if m.never_started:
            never += (f", {m.unschedulable} of them reported unschedulable)"
                      if m.unschedulable else ")")
        cells = [m.label + never, _fmt(m.wait_mean_s), _fmt(m.wait_p50_s), _fmt(m.wait_p95_s),
                 _fmt(m.wait_max_s), _fmt(m.instance_hours), f"{m.cost:,.2f}",
                 f"{m.utilization:.3f}", f"{m.launches:,}", f"{m.terminations:,}",
                 _fmt(m.p95_over_bound_s), f"{m.cost_over_bound:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_json(reports: list[TraceReport]) -> list[dict[str, Any]]:
    out = []
    for r in reports:
        d = asdict(r)
        d.pop("samples")
        out.append(d)
    return out


def dump_json(reports: list[TraceReport]) -> str:
    return json.dumps(to_json(reports), indent=2, default=str)


def plot(rep: TraceReport, directory: Path) -> Path:
    """Demand vs worker cores over time, and the p95-wait vs cost frontier."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 5), gridspec_kw={"width_ratios": [2, 1]})
    shown = [n for n in ("ours", "old", "parallelcluster", "static-p95") if rep.samples.get(n)]
    for k, name in enumerate(shown):
        samples = rep.samples[name]
        t = [s[0] / 86400 for s in samples]
        if k == 0:
            ax1.fill_between(t, [s[1] for s in samples], step="post", color="0.8",
                             label="demand (cores asked)")
        ax1.step(t, [s[2] for s in samples], where="post", lw=0.8, alpha=0.85,
                 label=f"{name} worker cores")
    ax1.set_xlabel("days (bin means)")
    ax1.set_ylabel("cores")
    ax1.set_title(f"{rep.trace}: demand vs workers")
    ax1.legend(fontsize=7, loc="upper right")
    front, best = [], float("inf")  # our non-dominated settings, cheapest first
    for m in sorted((m for m in rep.metrics if m.scenario.startswith("ours")),
                    key=lambda m: (m.cost, m.wait_p95_s)):
        if m.wait_p95_s < best:
            front.append(m)
            best = m.wait_p95_s
    ax2.plot([m.cost for m in front], [max(m.wait_p95_s, 1.0) for m in front], "-",
             color="tab:blue", lw=0.8, label="ours: frontier of the settings")
    for m in rep.metrics:
        mine = m.scenario.startswith("ours")
        ax2.plot([m.cost], [max(m.wait_p95_s, 1.0)], "o" if mine else "s",
                 color="tab:blue" if mine else "tab:red", ms=5)
        ax2.annotate(m.scenario.removeprefix("ours:"), (m.cost, max(m.wait_p95_s, 1.0)),
                     fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax2.axvline(rep.bounds.cost, color="grey", ls="--", lw=0.8, label="cost bound")
    ax2.axhline(rep.bounds.wait_s, color="grey", ls=":", lw=0.8, label="cold-start wait")
    ax2.set_xlabel("cost $")
    ax2.set_ylabel("p95 wait s (log)")
    ax2.set_yscale("log")
    ax2.tick_params(axis="x", labelrotation=30)
    ax2.set_title("p95 wait vs cost: ours (blue) and the others")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    path = directory / f"sim-{rep.trace}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
