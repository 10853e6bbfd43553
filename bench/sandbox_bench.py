"""Sandbox speed: cold image build, warm `up`, launches, CreateImage, SSM, `down`.

    sudo .venv/bin/python -m bench.sandbox_bench [--cold] [--repeat N]

`--cold` also times a full image build into a throwaway cache directory (about a minute).
Targets (issue 2): cold build < 5 min, warm up < 15 s, 1 instance running < 10 s,
8 instances < 25 s, SSM round trip < 1 s, down < 10 s.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.results import git_revision, machine, update_section
from orchestrator.sandbox import control
from orchestrator.sandbox.settings import SandboxSettings

TARGETS = {"cold image build": 300, "warm sandbox up": 15, "RunInstances -> running (1)": 10,
           "RunInstances -> running (8)": 25, "CreateImage -> available": None,
           "SSM round trip": 1, "sandbox down (with 9 hosts)": 10}


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _clients(state: dict[str, Any]) -> tuple[Any, Any]:
    import boto3

    # The sandbox's admin: these are the emulator's own timings (untagged instances), not a
    # user's calls, which the sandbox would refuse the operator (it enforces IAM).
    creds = state["admin_credentials"]
    session = boto3.Session(aws_access_key_id=creds["aws_access_key_id"],
                            aws_secret_access_key=creds["aws_secret_access_key"],
                            region_name=state["region"])
    return (session.client("ec2", endpoint_url=state["endpoint_url"]),
            session.client("ssm", endpoint_url=state["endpoint_url"]))


def _launch(ec2: Any, ami: str, count: int) -> list[str]:
    resp = ec2.run_instances(ImageId=ami, MinCount=count, MaxCount=count, InstanceType="t3.small")
    ids = [i["InstanceId"] for i in resp["Instances"]]
    # Poll at 0.2 s: the number measured is the sandbox's, not the waiter's default delay.
    ec2.get_waiter("instance_running").wait(InstanceIds=ids,
                                            WaiterConfig={"Delay": 0.2, "MaxAttempts": 1000})
    return ids


def _ssm_round_trip(ssm: Any, iid: str) -> None:
    cid = ssm.send_command(InstanceIds=[iid], DocumentName="AWS-RunShellScript",
                           Parameters={"commands": ["hostname"]})["Command"]["CommandId"]
    while True:
        inv = ssm.get_command_invocation(CommandId=cid, InstanceId=iid)
        if inv["Status"] not in ("Pending", "InProgress"):
            return
        time.sleep(0.02)


def run(cold: bool, repeat: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {k: [] for k in TARGETS}
    if cold:
        from orchestrator.sandbox.image import ensure_base_image

        with tempfile.TemporaryDirectory(prefix="htcpool-cold-") as cache:
            results["cold image build"].append(
                _timed(lambda: ensure_base_image(Path(cache), progress=lambda _m: None)))
    settings = SandboxSettings(state_dir=Path("/tmp/htcpool-bench/sandbox"))
    for _ in range(repeat):
        _round(settings, results)
    return results


def _round(settings: SandboxSettings, results: dict[str, list[float]]) -> None:
    control.down(settings, progress=lambda _m: None)
    results["warm sandbox up"].append(
        _timed(lambda: control.up(settings, progress=lambda _m: None)))
    state = control.require_state(settings)
    ec2, ssm = _clients(state)
    one: list[str] = []
    results["RunInstances -> running (1)"].append(
        _timed(lambda: one.extend(_launch(ec2, state["base_ami"], 1))))
    results["RunInstances -> running (8)"].append(
        _timed(lambda: _launch(ec2, state["base_ami"], 8)))
    for _ in range(5):
        results["SSM round trip"].append(_timed(lambda: _ssm_round_trip(ssm, one[0])))

    def image() -> None:
        ami = ec2.create_image(InstanceId=one[0], Name=f"bench-{time.time()}")["ImageId"]
        ec2.get_waiter("image_available").wait(ImageIds=[ami],
                                               WaiterConfig={"Delay": 0.2, "MaxAttempts": 500})
    results["CreateImage -> available"].append(_timed(image))
    results["sandbox down (with 9 hosts)"].append(
        _timed(lambda: control.down(settings, progress=lambda _m: None)))


def report(results: dict[str, list[float]], cmd: str) -> str:
    rows = ["| measure | runs | median s | max s | target s | met |", "|---|---|---|---|---|---|"]
    for name, values in results.items():
        if not values:
            continue
        target = TARGETS[name]
        med = statistics.median(values)
        met = "-" if target is None else ("yes" if max(values) < target else "NO")
        rows.append(f"| {name} | {len(values)} | {med:.2f} | {max(values):.2f} | "
                    f"{target if target is not None else '-'} | {met} |")
    return (f"Command: `{cmd}`  \nMachine: {machine()}  \nRevision: {git_revision()}, "
            f"{time.strftime('%Y-%m-%d')}\n\n" + "\n".join(rows) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cold", action="store_true", help="also time a cold image build")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    results = run(args.cold, args.repeat)
    cmd = "python -m bench.sandbox_bench" + (" --cold" if args.cold else "") + \
        f" --repeat {args.repeat}"
    text = report(results, cmd)
    print(text)
    update_section("sandbox", "Sandbox", text)


if __name__ == "__main__":
    main()
