"""The demo's burst of jobs: a seeded mix of sizes, submitted on the central manager as an
unprivileged user, and the history HTCondor keeps of them."""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from typing import Any

from orchestrator.errors import HtcpoolError
from orchestrator.sandbox import control
from orchestrator.sandbox.settings import SandboxSettings

USER = "htcdemo"
HISTORY_ATTRS = ("ClusterId", "ProcId", "Owner", "JobStatus", "JobBatchName", "RequestCpus",
                 "RequestMemory", "QDate", "JobStartDate", "JobCurrentStartDate",
                 "CompletionDate", "RemoteWallClockTime", "LastRemoteHost", "ExitCode")


class DemoError(HtcpoolError):
    """The demo could not go on (submission failed, timed out, ...)."""


@dataclass(frozen=True)
class JobSpec:
    cpus: int
    memory_mb: int
    seconds: int


def make_jobs(count: int, seed: int = 8) -> list[JobSpec]:
    """Mixed sizes: 1-2 CPUs, 256-2048 MB, 10-40 s of sleep; the same list for a seed."""
    rng = random.Random(seed)
    return [JobSpec(cpus=rng.choice((1, 1, 2)), memory_mb=rng.choice((256, 512, 1024, 2048)),
                    seconds=rng.randint(10, 40)) for _ in range(count)]


def submit_file(batch: str, jobs: list[JobSpec]) -> str:
    rows = "\n".join(f"  {j.cpus}, {j.memory_mb}, {j.seconds}" for j in jobs)
    return (f"executable = /bin/sleep\narguments = $(seconds)\ntransfer_executable = false\n"
            f"should_transfer_files = YES\nwhen_to_transfer_output = ON_EXIT\n"
            f"request_cpus = $(cpus)\nrequest_memory = $(memory)\nrequest_disk = 10240\n"
            f"batch_name = {batch}\ninitialdir = /home/{USER}\nlog = {batch}.log\n"
            f"queue cpus, memory, seconds from (\n{rows}\n)\n")


def submit(settings: SandboxSettings, host: str, batch: str, jobs: list[JobSpec]) -> int:
    """Submit the burst on `host` as the unprivileged demo user; return the cluster id."""
    script = (f"set -e; id -u {USER} >/dev/null 2>&1 || useradd -m {USER}; "
              f"cat > /home/{USER}/{batch}.sub; chown {USER}: /home/{USER}/{batch}.sub; "
              f"cd /home/{USER}; runuser -u {USER} -- condor_submit -terse {batch}.sub")
    done = control.exec_in(settings, host, ["/bin/bash", "-c", script],
                           input=submit_file(batch, jobs), capture_output=True, timeout=120)
    found = re.search(r"^(\d+)\.0 - \d+\.\d+", done.stdout, re.M)
    if done.returncode != 0 or found is None:
        reason = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise DemoError(f"condor_submit failed on {host}: {reason[:300]}")
    return int(found.group(1))


def history_argv(batch: str) -> list[str]:
    return ["condor_history", "-json", "-constraint", f'JobBatchName == "{batch}"',
            "-attributes", ",".join(HISTORY_ATTRS)]


def parse_history(text: str) -> list[dict[str, Any]]:
    """`condor_history -json` output (a JSON list, or nothing when there is no job)."""
    text = text.strip()
    if not text:
        return []
    ads = json.loads(text)
    if not isinstance(ads, list):
        raise DemoError("condor_history returned something other than a list of ads")
    return [ad for ad in ads if isinstance(ad, dict)]
