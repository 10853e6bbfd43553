"""Latency of `pool status` and `queue` per transport, on the sandbox's pool.

    sudo .venv/bin/python -m bench.pool_views [--repeat N] [--pool NAME]

Needs a running sandbox (`htcpool sandbox up`) whose pool has a central manager (run
`htcpool bootstrap` first); htcpool is installed on the central manager with the master
role's autoscaler feature if it is not there yet. For each transport (SSM, ssh, and the
htcondor bindings on the central manager) it times the query alone (in-process) and the
whole command as a user sees it (`htcpool pool status --json`, a new process each time).
Results go to the "pool_views" section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.results import git_revision, machine, update_section

HTCPOOL = str(Path(sys.executable).parent / "htcpool")


def _timed(fn: Callable[[], Any], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


ON_CM = r"""
import json, os, subprocess, sys, time
from orchestrator.condor.source import LocalSource
n = int(sys.argv[1])
def timed(fn):
    out = []
    for _ in range(n):
        t = time.perf_counter(); fn(); out.append(time.perf_counter() - t)
    return out
source = LocalSource()
source.slots(); source.jobs()
env = {**os.environ, "HTCPOOL_CONFIG": "/etc/htcpool/htcpool.toml"}
cli = lambda *a: subprocess.run(["/opt/htcpool/bin/htcpool", *a, "--json"], env=env,
                                check=True, capture_output=True)
print(json.dumps({"startd": timed(source.slots), "jobs": timed(source.jobs),
                  "status": timed(lambda: cli("pool", "status")),
                  "queue": timed(lambda: cli("queue"))}))
"""


def _install_on_central_manager(state: dict[str, Any], settings: Any, cm: str) -> None:
    """htcpool on the central manager, as the master role installs it for the autoscaler
    service (bootstrap.yml with htcondor_master_autoscaler_enabled; service stopped)."""
    from orchestrator.provision import REPO_ROOT, run_playbook
    from orchestrator.sandbox import control
    from orchestrator.sandbox.pool import aws_environment, manager_autoscaler_vars, sandbox_config

    if control.exec_in(settings, cm, ["test", "-x", "/opt/htcpool/bin/htcpool"],
                       check=False).returncode == 0:
        return
    config = sandbox_config(state)
    with aws_environment(state):
        run_playbook(config, REPO_ROOT / "playbooks" / "bootstrap.yml",
                     inventory=Path(state["inventory"]), limit="htcondor_central_manager",
                     extravars=manager_autoscaler_vars(state, config), progress=print)


def _bindings_on_central_manager(settings: Any, cm: str, repeat: int
                                 ) -> list[tuple[str, list[float]]]:
    """The local transport where it runs: htcpool's LocalSource (the official bindings) on
    the central manager, in-process and as `htcpool` commands."""
    import json

    from orchestrator.sandbox import control

    done = control.exec_in(settings, cm, ["/opt/htcpool/bin/python", "-c", ON_CM,
                                          str(repeat)], capture_output=True, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"bindings on the central manager failed: {last}")
    times = json.loads(done.stdout.strip().splitlines()[-1])
    return [("bindings on the central manager: startd ads (query only)", times["startd"]),
            ("bindings on the central manager: jobs (query only)", times["jobs"]),
            ("bindings on the central manager: `htcpool pool status` (new process)",
             times["status"]),
            ("bindings on the central manager: `htcpool queue` (new process)", times["queue"])]


def _old_way(cloud: Any, cm: str) -> None:
    """What the control panel did: SendCommand, then the default waiter (5 s polls)."""
    ssm = cloud.client("ssm")
    cid = ssm.send_command(InstanceIds=[cm], DocumentName="AWS-RunShellScript",
                           Parameters={"commands": ["condor_status"]})["Command"]["CommandId"]
    ssm.get_waiter("command_executed").wait(CommandId=cid, InstanceId=cm)
    ssm.get_command_invocation(CommandId=cid, InstanceId=cm)


def _config_file(state: dict[str, Any], pool: str, directory: Path) -> Path:
    key = Path(state["state_dir"]) / "ssh" / "id_ed25519"
    path = directory / "htcpool.toml"
    path.write_text(
        f'pool = "{pool}"\nregion = "{state["region"]}"\nendpoint_url = "{state["endpoint_url"]}"\n'
        f'[condor]\nssh_user = "root"\nssh_key_file = "{key}"\nssm_timeout_s = 120\n'
        'ssh_options = ["StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null", '
        '"LogLevel=ERROR"]\n')
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--pool", default="htcpool")
    args = parser.parse_args()

    from orchestrator.aws.ec2 import Cloud
    from orchestrator.condor.factory import pool_source_for
    from orchestrator.condor.source import PoolSource
    from orchestrator.config import load_config
    from orchestrator.sandbox import control
    from orchestrator.sandbox.settings import SandboxSettings

    state = control.require_state(SandboxSettings())
    creds = state["credentials"]
    os.environ.update({"AWS_ACCESS_KEY_ID": creds["aws_access_key_id"],
                       "AWS_SECRET_ACCESS_KEY": creds["aws_secret_access_key"]})
    os.environ.pop("AWS_PROFILE", None)
    rows: list[tuple[str, list[float]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        config_path = _config_file(state, args.pool, Path(tmp))
        config = load_config(str(config_path))
        cloud = Cloud(config)
        cm = cloud.central_manager()
        sources: dict[str, PoolSource] = {
            "ssm": pool_source_for(config, lambda: cloud, "ssm"),
            "ssh": pool_source_for(config, lambda: cloud, "ssh"),
        }
        _install_on_central_manager(state, SandboxSettings(), cm.id)
        rows += _bindings_on_central_manager(SandboxSettings(), cm.id, args.repeat)
        rows.append(("old approach: SSM condor_status + boto3's command_executed waiter "
                     "(default polling)", _timed(lambda: _old_way(cloud, cm.id), 2)))
        for name, source in sources.items():
            source.slots()  # warm up (SSH host keys, first SSM command, imports)
            rows.append((f"{name}: startd ads (query only)", _timed(source.slots, args.repeat)))
            rows.append((f"{name}: jobs (query only)", _timed(source.jobs, args.repeat)))
        env = {**os.environ, "HTCPOOL_CONFIG": str(config_path)}
        for transport in ("ssm", "ssh"):
            for command in (["pool", "status"], ["queue"]):
                argv = [HTCPOOL, *command, "--transport", transport, "--json"]
                rows.append((f"{transport}: `htcpool {' '.join(command)}` (new process)",
                             _timed(lambda a=argv: subprocess.run(  # type: ignore[misc]
                                 a, env=env, check=True, capture_output=True), args.repeat)))
    lines = ["| measure | runs | median s | max s |", "|---|---|---|---|"]
    for label, times in rows:
        lines.append(f"| {label} | {len(times)} | {statistics.median(times):.3f} | "
                     f"{max(times):.3f} |")
        print(f"{label:60s} median {statistics.median(times):.3f} s  max {max(times):.3f} s")
    help_s = _timed(lambda: subprocess.run([HTCPOOL, "--help"], check=True,
                                           capture_output=True), args.repeat)
    lines.append(f"| `htcpool --help` (new process) | {len(help_s)} | "
                 f"{statistics.median(help_s):.3f} | {max(help_s):.3f} |")
    body = (f"Command: `python -m bench.pool_views --repeat {args.repeat}`  \n"
            f"Machine: {machine()}  \nRevision: {git_revision()}, "
            f"{time.strftime('%Y-%m-%d')}\n\n" + "\n".join(lines) + "\n\n"
            "Targets: bindings < 0.1 s, SSM < 1.5 s, `htcpool --help` < 0.5 s. The bindings "
            "rows run on the central manager with the htcpool the master role installs there "
            "for the autoscaler service (`htcondor_master_autoscaler_enabled`).\n")
    update_section("pool_views", "Pool and queue views per transport", body)


if __name__ == "__main__":
    main()
