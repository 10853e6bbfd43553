"""Shared fixtures. `sandbox`: one local sandbox (real hosts, real HTCondor) per test session.

The sandbox is brought up on first use and taken down at the end of the session, even
when tests fail; the teardown then checks that nothing of it is left on the machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
TEST_STATE_DIR = Path(os.environ.get("HTCPOOL_TEST_SANDBOX_DIR", "/tmp/htcpool-tests/sandbox"))


@dataclass
class SandboxHandle:
    """What a test needs to drive the sandbox: boto3 clients, host commands, faults."""

    settings: Any
    state: dict[str, Any]
    _session: Any = field(default=None, repr=False)

    @property
    def endpoint_url(self) -> str:
        return str(self.state["endpoint_url"])

    @property
    def base_ami(self) -> str:
        return str(self.state["base_ami"])

    def env(self) -> dict[str, str]:
        """Environment for subprocesses (credentials go here, never on command lines)."""
        creds = self.state["credentials"]
        env = dict(os.environ)
        env.update({
            "AWS_ACCESS_KEY_ID": creds["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": creds["aws_secret_access_key"],
            "AWS_DEFAULT_REGION": self.state["region"],
            "HTCPOOL_ENDPOINT_URL": self.endpoint_url,
            "HTCPOOL_REGION": self.state["region"],
            "HTCPOOL_SANDBOX_DIR": str(self.settings.state_dir),
            "PATH": f"{REPO / '.venv' / 'bin'}:{os.environ.get('PATH', '')}",
        })
        env.pop("AWS_PROFILE", None)
        return env

    def session(self) -> Any:
        import boto3

        if self._session is None:
            creds = self.state["credentials"]
            self._session = boto3.Session(
                aws_access_key_id=creds["aws_access_key_id"],
                aws_secret_access_key=creds["aws_secret_access_key"],
                region_name=self.state["region"])
        return self._session

    def client(self, service: str) -> Any:
        return self.session().client(service, endpoint_url=self.endpoint_url)

    def exec(self, host: str, script: str, check: bool = True,
             timeout: float = 600) -> subprocess.CompletedProcess[str]:
        from orchestrator.sandbox import control

        proc = control.exec_in(self.settings, host, ["/bin/bash", "-c", script],
                               capture_output=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"on {host}: {script!r} exited {proc.returncode}\n"
                                 f"stdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-2000:]}")
        return proc

    def api(self, path: str, method: str = "GET", body: dict[str, Any] | None = None) -> Any:
        from orchestrator.sandbox import control

        return control.api(self.settings, path, method, body)

    def hosts(self) -> list[dict[str, Any]]:
        return list(self.api("hosts"))

    def inject(self, action: str, code: str, **kwargs: Any) -> None:
        self.api("faults", "POST", {"action": action, "code": code, **kwargs})

    def clear_faults(self) -> None:
        self.api("faults", "DELETE")

    def run(self, count: int = 1, image_id: str | None = None, wait: bool = True,
            **kwargs: Any) -> list[str]:
        ec2 = self.client("ec2")
        resp = ec2.run_instances(ImageId=image_id or self.base_ami, MinCount=count,
                                 MaxCount=count, InstanceType=kwargs.pop("InstanceType", "t3.small"),
                                 **kwargs)
        ids = [i["InstanceId"] for i in resp["Instances"]]
        if wait:
            ec2.get_waiter("instance_running").wait(
                InstanceIds=ids, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
        return ids

    def terminate(self, ids: list[str]) -> None:
        if not ids:
            return
        ec2 = self.client("ec2")
        ec2.terminate_instances(InstanceIds=ids)
        ec2.get_waiter("instance_terminated").wait(
            InstanceIds=ids, WaiterConfig={"Delay": 1, "MaxAttempts": 120})


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the sandbox needs root")


def sandbox_settings() -> Any:
    from orchestrator.sandbox.settings import SandboxSettings

    return SandboxSettings(state_dir=TEST_STATE_DIR)


@pytest.fixture(scope="session")
def sandbox() -> Iterator[SandboxHandle]:
    _need_root()
    from orchestrator.sandbox import control

    settings = sandbox_settings()
    state = control.up(settings, progress=lambda m: print(f"[sandbox] {m}", flush=True))
    try:
        yield SandboxHandle(settings=settings, state=state)
    finally:
        control.down(settings, progress=lambda m: print(f"[sandbox] {m}", flush=True))
        left = control.leftovers(settings)
        assert not any(left.values()), f"sandbox leftovers after down: {left}"


@pytest.fixture
def instances(sandbox: SandboxHandle) -> Iterator[list[str]]:
    """A list tests append instance ids to; they are terminated after the test."""
    ids: list[str] = []
    yield ids
    sandbox.clear_faults()
    live = []
    ec2 = sandbox.client("ec2")
    for res in ec2.describe_instances(InstanceIds=ids)["Reservations"] if ids else []:
        live += [i["InstanceId"] for i in res["Instances"] if i["State"]["Name"] != "terminated"]
    sandbox.terminate(live)


def wait_for(predicate: Any, timeout: float = 120, interval: float = 0.5,
             what: str = "condition") -> Any:
    """Poll until predicate() is truthy; return its value. Time is a limit, not an assertion."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    # Lifecycle tests bring sandboxes up and down themselves: run them before the session
    # sandbox exists.
    items.sort(key=lambda item: 0 if item.get_closest_marker("lifecycle") else 1)
