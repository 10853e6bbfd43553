"""The session's sandbox as tests drive it: boto3 clients, commands on hosts, injected
faults, and a wait that reports what it saw when it times out."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.paths import REPO

TEST_STATE_DIR = Path(os.environ.get("HTCPOOL_TEST_SANDBOX_DIR", "/tmp/htcpool-tests/sandbox"))
# Index 1 (its own bridge, names and 198.19.0.0/16), so a developer's sandbox (index 0) or
# `make demo` can stay up while the tests run.
TEST_SANDBOX_INDEX = int(os.environ.get("HTCPOOL_TEST_SANDBOX_INDEX", "1"))


@dataclass
class SandboxHandle:
    """What a test needs to drive the sandbox: boto3 clients, host commands, faults.

    The sandbox enforces IAM (orchestrator/sandbox/iam_enforce.py): `client()` is the
    harness's own (the sandbox's admin: setting up a scenario, looking at the result);
    `env()` (the CLI, ansible-playbook, molecule) and `operator_client()` are the pool's
    operator with the shipped policies, as a user runs them."""

    settings: Any
    state: dict[str, Any]
    _sessions: dict[str, Any] = field(default_factory=dict, repr=False)

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
            "HTCPOOL_SANDBOX_INDEX": str(self.settings.index),
            "PATH": f"{REPO / '.venv' / 'bin'}:{os.environ.get('PATH', '')}",
        })
        env.pop("AWS_PROFILE", None)
        return env

    def session(self, who: str = "admin_credentials") -> Any:
        import boto3

        if who not in self._sessions:
            creds = self.state[who]
            self._sessions[who] = boto3.Session(
                aws_access_key_id=creds["aws_access_key_id"],
                aws_secret_access_key=creds["aws_secret_access_key"],
                aws_session_token=creds.get("aws_session_token"),
                region_name=self.state["region"])
        return self._sessions[who]

    def client(self, service: str) -> Any:
        """The harness's client (the sandbox's admin)."""
        return self.session().client(service, endpoint_url=self.endpoint_url)

    def operator_client(self, service: str) -> Any:
        """The pool's operator, with iam/operator-policy.json as a user has it."""
        return self.session("credentials").client(service, endpoint_url=self.endpoint_url)

    def client_with(self, service: str, creds: dict[str, str]) -> Any:
        """A client with other credentials (an instance role's session, another pool's
        operator: `api("operator", "POST", {"pool": ...})`)."""
        import boto3

        return boto3.client(service, endpoint_url=self.endpoint_url,
                            region_name=self.state["region"],
                            aws_access_key_id=creds.get("AccessKeyId")
                            or creds["aws_access_key_id"],
                            aws_secret_access_key=creds.get("SecretAccessKey")
                            or creds["aws_secret_access_key"],
                            aws_session_token=creds.get("Token"))

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
        """No injected fault, and EC2/SSM behave at once again (see behave)."""
        self.api("faults", "DELETE")

    def behave(self, hide_new_s: float | None = None, ssm_delay_s: float | None = None
               ) -> None:
        """EC2's eventual consistency (just-launched instances unlisted and untaggable for
        hide_new_s) and SSM commands that start ssm_delay_s late."""
        body = {k: v for k, v in (("hide_new_s", hide_new_s), ("ssm_delay_s", ssm_delay_s))
                if v is not None}
        self.api("behaviour", "POST", body)

    def run(self, count: int = 1, image_id: str | None = None, wait: bool = True,
            **kwargs: Any) -> list[str]:
        ec2 = self.client("ec2")
        itype = kwargs.pop("InstanceType", "t3.small")
        resp = ec2.run_instances(ImageId=image_id or self.base_ami, MinCount=count,
                                 MaxCount=count, InstanceType=itype, **kwargs)
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


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the sandbox needs root")


def sandbox_settings() -> Any:
    from orchestrator.sandbox.settings import SandboxSettings

    return SandboxSettings(state_dir=TEST_STATE_DIR, index=TEST_SANDBOX_INDEX)


def wait_for(predicate: Any, timeout: float = 120, interval: float = 0.5,
             what: str = "condition", report: Callable[[], str] | None = None) -> Any:
    """Poll until predicate() is truthy; return its value. Time is a limit, not an assertion.
    On a time-out, report() says what the system looked like (a CI run leaves no sandbox to
    look at afterwards)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = ""
            if report is not None:
                try:
                    detail = "\n" + report()
                except Exception as exc:  # the report must not hide the time-out
                    detail = f"\n(no report: {exc!r})"
            raise AssertionError(f"timed out waiting for {what}{detail}")
        time.sleep(interval)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())
