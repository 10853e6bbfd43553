"""How long `make test` takes, and where the time goes: read from the log of a run.

    CI=true make test PYTEST_ARGS=--durations=50 > suite.log 2>&1
    .venv/bin/python -m bench.suite_time suite.log [--before OLD.log --before-rev REV]

Writes the "suite" section of bench/RESULTS.md: pytest's wall time and test count, the
slowest steps (pytest's --durations), and the same figures of an earlier log beside them
when one is given (to show what a change to the suite's structure bought).
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from pathlib import Path

from bench.results import git_revision, machine, update_section

SECTION, TITLE = "suite", "Test suite: `make test`"
SUMMARY = re.compile(r"=+ (?P<counts>.*?) in (?P<secs>[\d.]+)s(?: \([\d:]+\))? =+$")
DURATION = re.compile(r"^(?P<secs>[\d.]+)s (?P<when>setup|call|teardown)\s+(?P<test>\S+)$")


@dataclass
class Run:
    seconds: float
    counts: str
    durations: list[tuple[float, str, str]] = field(default_factory=list)

    def by_file(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for secs, _when, test in self.durations:
            name = test.split("::")[0]
            out[name] = out.get(name, 0.0) + secs
        return out


def read(path: Path) -> Run:
    text = path.read_text(errors="replace").splitlines()
    run: Run | None = None
    durations = []
    for line in text:
        if (m := DURATION.match(line.strip())) is not None:
            durations.append((float(m["secs"]), m["when"], m["test"]))
        if (m := SUMMARY.search(line.strip())) is not None:
            run = Run(float(m["secs"]), m["counts"])
    if run is None:
        raise SystemExit(f"{path}: no pytest summary line found")
    run.durations = sorted(durations, reverse=True)
    return run


def render(after: Run, before: Run | None, before_rev: str, top: int) -> str:
    lines = [f"Command: `CI=true make test PYTEST_ARGS=--durations=50`, then "
             f"`.venv/bin/python -m bench.suite_time LOG`. Machine: {machine()}. "
             f"Revision: {git_revision()}.", "",
             "| | pytest wall time | tests |", "|---|---|---|",
             f"| this revision | {after.seconds / 60:.1f} min | {after.counts} |"]
    if before is not None:
        lines.append(f"| {before_rev} | {before.seconds / 60:.1f} min | {before.counts} |")
    lines += ["", f"Slowest steps of this revision (pytest --durations, top {top}):", "",
              "| seconds | step | test |", "|---|---|---|"]
    lines += [f"| {s:.0f} | {w} | `{t}` |" for s, w, t in after.durations[:top]]
    files = sorted(after.by_file().items(), key=lambda kv: -kv[1])
    old = before.by_file() if before else {}
    lines += ["", "Time per test file (sum of the listed steps"
              + (f"; {before_rev} beside it" if before else "") + "):", "",
              "| file | seconds |" + (f" {before_rev} |" if before else ""),
              "|---|---|" + ("---|" if before else "")]
    for name, secs in files[:top]:
        lines.append(f"| `{name}` | {secs:.0f} |" + (f" {old.get(name, 0):.0f} |"
                                                     if before else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("log", type=Path)
    p.add_argument("--before", type=Path, default=None)
    p.add_argument("--before-rev", default="before")
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--notes", type=Path, default=None, help="a reading to append (Markdown)")
    args = p.parse_args(argv)
    body = render(read(args.log), read(args.before) if args.before else None,
                  args.before_rev, args.top)
    if args.notes:
        body += "\n\n" + args.notes.read_text().rstrip()
    update_section(SECTION, TITLE, body)
    print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
