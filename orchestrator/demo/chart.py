"""A PNG of the run: workers (by state) above, the burst's jobs below, decisions marked."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from orchestrator.demo.monitor import Sample

COLOURS = {"launch": "tab:green", "drain": "tab:purple", "terminate": "tab:red",
           "stop": "tab:red", "start": "tab:green", "error": "black", "refused": "black"}


def write_png(samples: Sequence[Sample], decisions: Sequence[dict[str, Any]], path: Path,
              title: str = "htcpool demo") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s.t for s in samples]
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(11, 6.5),
                                      constrained_layout=True)
    top.stackplot(t, [s.busy for s in samples], [s.idle for s in samples],
                  [s.booting for s in samples], [s.draining for s in samples],
                  [s.terminating for s in samples],
                  labels=["busy", "idle", "booting", "draining", "terminating"],
                  colors=["tab:green", "tab:cyan", "gold", "tab:purple", "tab:red"],
                  step="post", alpha=0.8)
    top.set_ylabel("workers")
    top.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
    top.set_title(title)
    bottom.step(t, [s.jobs_idle for s in samples], where="post", label="idle", color="gold")
    bottom.step(t, [s.jobs_running for s in samples], where="post", label="running",
                color="tab:green")
    bottom.step(t, [s.jobs_done for s in samples], where="post", label="done",
                color="tab:blue")
    bottom.step(t, [s.cores_busy for s in samples], where="post", label="cores busy",
                color="tab:gray", linestyle="--")
    bottom.set_ylabel("jobs")
    bottom.set_xlabel("seconds after submit")
    bottom.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
    for d in decisions:
        for ax in (top, bottom):
            ax.axvline(d["t"], color=COLOURS.get(d["action"], "gray"), alpha=0.3, lw=0.8)
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
        ax.set_ylim(bottom=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
