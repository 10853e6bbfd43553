"""The command lines the remote transports run on the central manager (argv lists)."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from orchestrator.condor.ads import group_projection
from orchestrator.condor.records import JOB_ATTRS, SLOT_ATTRS


def condor_status_argv(constraint: str | None = None) -> list[str]:
    argv = ["condor_status", "-json", "-attributes", ",".join(SLOT_ATTRS)]
    return [*argv, "-constraint", constraint] if constraint else argv


def condor_q_argv(constraint: str | None = None, attrs: Sequence[str] = JOB_ATTRS,
                  grouped: bool = False) -> list[str]:
    argv = ["condor_q", "-allusers", "-json"]
    if grouped:
        argv += ["-group-by", "-attributes", ",".join(group_projection(attrs))]
    else:
        argv += ["-attributes", ",".join(attrs)]
    return [*argv, "-constraint", constraint] if constraint else argv


# Marks the output of each schedd's condor_q in schedd_queues_argv's output.
SCHEDD_MARK, FAILED_MARK = "@@htcpool-schedd ", "@@htcpool-failed "
# Seconds one schedd may take to answer before it counts as silent.
SCHEDD_TIMEOUT_S = 20


def schedd_queues_argv(constraint: str | None, attrs: Sequence[str],
                       grouped: bool = False) -> list[str]:
    """Every schedd the collector lists, each once, each under a marker line with its
    name; one that fails or does not answer within SCHEDD_TIMEOUT_S is marked failed and
    the others are still read. The local schedd alone (named "-") while a restarted
    collector has heard from none yet."""
    tool, *args = condor_q_argv(constraint, attrs, grouped)
    query = shlex.join(args)
    script = ('names=$(condor_status -schedd -af Name) || exit $?; '
              f'if [ -z "$names" ]; then echo "{SCHEDD_MARK}-"; '
              f'timeout {SCHEDD_TIMEOUT_S} {tool} {query} || echo "{FAILED_MARK}- $?"; '
              'exit 0; fi; '
              f'for s in $names; do echo "{SCHEDD_MARK}$s"; '
              f'timeout {SCHEDD_TIMEOUT_S} {tool} -name "$s" {query} '
              f'|| echo "{FAILED_MARK}$s $?"; done')
    return ["sh", "-c", script]


def split_schedd_output(text: str) -> list[tuple[str, str, str | None]]:
    """(schedd, its output, why it failed or None) from schedd_queues_argv's output."""
    out: list[tuple[str, str, str | None]] = []
    name: str | None = None
    lines: list[str] = []
    failed: str | None = None

    def flush() -> None:
        if name is not None:
            out.append((name, "\n".join(lines), failed))

    for line in text.splitlines():
        if line.startswith(SCHEDD_MARK):
            flush()
            name, lines, failed = line[len(SCHEDD_MARK):].strip(), [], None
        elif line.startswith(FAILED_MARK) and name is not None:
            code = line[len(FAILED_MARK):].rsplit(" ", 1)[-1]
            failed = ("did not answer within "
                      f"{SCHEDD_TIMEOUT_S} s" if code == "124" else f"condor_q exit {code}")
        else:
            lines.append(line)
    flush()
    return out
