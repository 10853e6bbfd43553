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


def all_schedds_argv(constraint: str | None, attrs: Sequence[str],
                     grouped: bool = False) -> list[str]:
    """Every schedd the collector lists, each once; the local one alone while a restarted
    collector has heard from none yet. Any schedd that does not answer fails the command,
    as a pass that cannot read the whole queue acts on nothing."""
    tool, *args = condor_q_argv(constraint, attrs, grouped)
    query = shlex.join(args)
    script = ('names=$(condor_status -schedd -af Name) || exit $?; '
              f'if [ -z "$names" ]; then exec {tool} {query}; fi; '
              f'for s in $names; do {tool} -name "$s" {query} || exit $?; done')
    return ["sh", "-c", script]
