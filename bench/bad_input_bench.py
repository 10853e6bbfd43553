"""Bad input (issue 7): the strategies of tests/integration/test_bad_input.py with more examples.

Runs the three properties (command lines, configuration files, environment) through pytest,
so the moto server, the seeded pool and the strategies are exactly the test's, with
HTCPOOL_BAD_INPUT_EXAMPLES examples each and every failure counted instead of stopping at
the first; then writes the figures to bench/RESULTS.md (section "bad-input").

    .venv/bin/python bench/bad_input_bench.py [--examples 300] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.results import git_revision, machine, update_section  # noqa: E402

PROPERTIES = {"cli": "test_cli_arguments", "config": "test_config_files",
              "env": "test_environment"}
TITLES = {"cli": "command lines", "config": "configuration files", "env": "environment"}


def run(examples: int) -> tuple[list[dict[str, object]], float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        stats = Path(tmp) / "stats.jsonl"
        env = {**os.environ, "HTCPOOL_BAD_INPUT_EXAMPLES": str(examples),
               "HTCPOOL_BAD_INPUT_STATS": str(stats)}
        selector = " or ".join(PROPERTIES.values())
        start = time.monotonic()
        done = subprocess.run([str(REPO / ".venv" / "bin" / "pytest"), "-q", "-p", "no:logging",
                               "-p", "no:cacheprovider", "tests/integration/test_bad_input.py",
                               "-k", selector], cwd=REPO, env=env, capture_output=True,
                              text=True, check=False)
        elapsed = time.monotonic() - start
        rows = [json.loads(line) for line in stats.read_text().splitlines()] \
            if stats.exists() else []
    return rows, elapsed, done.returncode


def markdown(rows: list[dict[str, object]], elapsed: float, examples: int) -> str:
    lines = [
        f"Command: `bench/bad_input_bench.py --examples {examples}` (hypothesis, "
        "derandomized)  ",
        f"Machine: {machine()}  ",
        f"Revision: {git_revision()}",
        "",
        "Each case runs `htcpool` in-process against a seeded moto pool; it passes if it ends "
        "in a correct result or in exactly one `htcpool: error:` line with a documented "
        "non-zero exit status (no traceback), and if no instance's state or tags changed.",
        "",
        "| inputs | runs | bad inputs tried | failures | exit statuses seen |",
        "|---|---|---|---|---|",
    ]
    total = failed = 0
    for row in rows:
        name = str(row["property"])
        tried = int(row["tried"])  # type: ignore[call-overload]
        failures = list(row["failures"])  # type: ignore[call-overload]
        codes = dict(row["by_code"])  # type: ignore[call-overload]
        shown = ", ".join(f"{code}: {n}" for code, n in sorted(codes.items(),
                                                                key=lambda kv: int(kv[0])))
        lines.append(f"| {TITLES.get(name, name)} | 1 | {tried} | {len(failures)} | {shown} |")
        total += tried
        failed += len(failures)
    lines.append(f"| **all** | {len(rows)} | {total} | {failed} | |")
    lines += ["", f"Wall time {elapsed:.0f} s for {total} cases "
              f"({1000 * elapsed / max(total, 1):.0f} ms per case, moto start-up included)."]
    examples_of_failures = [f for row in rows for f in row["failures"]][:5]  # type: ignore
    if examples_of_failures:
        lines += ["", "First failures:", ""]
        lines += [f"- {kind} `{argv!r}`: {problem.splitlines()[0]}"
                  for kind, argv, problem in examples_of_failures]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=300)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    rows, elapsed, code = run(args.examples)
    if not rows:
        print(f"no figures: pytest exited {code}", file=sys.stderr)
        return 1
    text = markdown(rows, elapsed, args.examples)
    print(text)
    if not args.no_write:
        update_section("bad-input", "Bad input", text)
    return 0 if all(not r["failures"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
