"""`make demo` figures: run the demo (or read a finished run's summary) and record them.

    sudo .venv/bin/python -m bench.demo_bench [--jobs 40] [--from-summary PATH --wall S]

Runs `python -m orchestrator.demo` as `make demo` does, times it, and writes the "demo"
section of bench/RESULTS.md: command, machine, load, wall time, phases, and the summary's
numbers (from HTCondor's job history and the emulator's instance records).
Target (issue 8): under 10 minutes with a warm image cache.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.results import git_revision, machine, update_section

REPO = Path(__file__).resolve().parents[1]
FIGURE = REPO / "bench" / "figures" / "demo.png"


def _f(value: Any, unit: str = " s") -> str:
    return "n/a" if value is None else f"{value:.1f}{unit}"


def section(summary: dict[str, Any], command: str, wall_s: float, load: str) -> str:
    phases = summary.get("phases", {})
    util = summary.get("utilisation")
    rows = [("whole run (wall clock)", f"{wall_s:.0f} s (target < 600 s)")]
    rows += [(f"phase: {k}", f"{v:.0f} s") for k, v in phases.items()]
    rows.append(("rest (make deps, summary, teardown.yml, sandbox down)",
                 f"{wall_s - sum(phases.values()):.0f} s"))
    rows += [
        ("jobs completed", f"{summary['jobs_completed']} of {summary['jobs_submitted']}"),
        ("submit -> first job start", _f(summary.get("first_start_s"))),
        ("submit -> last job done", _f(summary.get("last_completion_s"))),
        ("wait per job, mean / max", f"{_f(summary.get('mean_wait_s'))} / "
                                     f"{_f(summary.get('max_wait_s'))}"),
        ("submit -> pool back to 0 workers", _f(summary.get("pool_empty_s"))),
        ("workers launched / peak", f"{summary['workers_launched']} / "
                                    f"{summary['peak_workers']}"),
        ("instance-seconds (emulator records)", f"{summary['instance_s']:.0f}"),
        ("core-seconds paid", f"{summary['core_s_paid']:.0f}"),
        ("busy core-seconds (job history)", f"{summary['busy_core_s']:.0f}"),
        ("used / paid", "n/a" if util is None else f"{100 * util:.0f}%"),
    ]
    lines = [f"Command: `{command}` (warm image cache), {summary['jobs_submitted']} jobs. "
             f"Machine: {machine()}; load average before the run {load} (the test suite "
             f"was running on the other sandbox). Revision {git_revision()}.", "",
             "| measure | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    lines += ["", "Decisions (seconds after submit):", "", "```"]
    lines += [f"{d['t']:+7.1f}  {d['action']:<9} {d['what']:<22} {d['reason']}"
              for d in summary.get("decisions", [])]
    lines.append("```")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--jobs", type=int, default=40)
    p.add_argument("--from-summary", type=Path, default=None)
    p.add_argument("--wall", type=float, default=None, help="wall time of that run")
    p.add_argument("--command", default="make demo")
    p.add_argument("--load", default=None, help="load average before that run")
    a = p.parse_args(argv)
    load = a.load or " ".join(f"{x:.2f}" for x in os.getloadavg())
    if a.from_summary is not None:
        summary_path, wall = a.from_summary, a.wall or 0.0
    else:
        summary_path = REPO / "artifacts" / "demo-bench" / "summary.json"
        start = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "orchestrator.demo", "--jobs", str(a.jobs),
                               "--summary-json", str(summary_path)], cwd=REPO, check=False)
        wall = time.monotonic() - start
        if done.returncode != 0:
            print(f"demo failed (exit {done.returncode}); nothing recorded", file=sys.stderr)
            return done.returncode
    summary = json.loads(summary_path.read_text())
    body = section(summary, a.command, wall, load)
    png = Path(summary.get("files", {}).get("png", ""))
    if png.is_file():
        FIGURE.parent.mkdir(exist_ok=True)
        shutil.copyfile(png, FIGURE)
        body += f"\n\nChart of this run: `{FIGURE.relative_to(REPO)}`."
    update_section("demo", "make demo", body)
    print(f"recorded in bench/RESULTS.md ({wall:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
