"""Shared fixtures. `sandbox`: one local sandbox (real hosts, real HTCondor) per test session.

The sandbox is brought up on first use and taken down at the end of the session, even
when tests fail; the teardown then checks that nothing of it is left on the machine.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
TEST_STATE_DIR = Path(os.environ.get("HTCPOOL_TEST_SANDBOX_DIR", "/tmp/htcpool-tests/sandbox"))
# Index 1 (its own bridge, names and 198.19.0.0/16), so a developer's sandbox (index 0) or
# `make demo` can stay up while the tests run.
TEST_SANDBOX_INDEX = int(os.environ.get("HTCPOOL_TEST_SANDBOX_INDEX", "1"))


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
            "HTCPOOL_SANDBOX_INDEX": str(self.settings.index),
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


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the sandbox needs root")


def sandbox_settings() -> Any:
    from orchestrator.sandbox.settings import SandboxSettings

    return SandboxSettings(state_dir=TEST_STATE_DIR, index=TEST_SANDBOX_INDEX)


@pytest.fixture(scope="session")
def sandbox() -> Iterator[SandboxHandle]:
    _need_root()
    from orchestrator.sandbox import control

    settings = sandbox_settings()
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    # One test session per test sandbox: a second one must not reuse (and then take down)
    # the sandbox another session is running its tests on.
    lock = open(settings.state_dir.parent / f".session-{settings.index}.lock", "w")  # noqa: SIM115
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pytest.fail(f"another test session is using the test sandbox {settings.state_dir}; "
                    "wait for it or set HTCPOOL_TEST_SANDBOX_DIR/HTCPOOL_TEST_SANDBOX_INDEX")
    state = control.up(settings, progress=lambda m: print(f"[sandbox] {m}", flush=True))
    try:
        yield SandboxHandle(settings=settings, state=state)
    finally:
        control.down(settings, progress=lambda m: print(f"[sandbox] {m}", flush=True))
        left = control.leftovers(settings)
        lock.close()
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


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    # Lifecycle tests bring sandboxes up and down themselves: run them before the session
    # sandbox exists.
    items.sort(key=lambda item: 0 if item.get_closest_marker("lifecycle") else 1)
    # Tests marked `last` (the IAM coverage check over the session's API log) run after
    # everything else; the sort is stable, so the order above is kept otherwise.
    items.sort(key=lambda item: 1 if item.get_closest_marker("last") else 0)


@dataclass
class PoolHandle:
    """A bootstrapped pool on the session sandbox: central manager + baked worker image."""

    sandbox: SandboxHandle
    pool: Any  # orchestrator.sandbox.pool.SandboxPool
    config_file: Path

    @property
    def cm(self) -> str:
        return str(self.pool.central_manager)

    def env(self, **extra: str) -> dict[str, str]:
        return {**self.sandbox.env(), "HTCPOOL_CONFIG": str(self.config_file), **extra}

    def htcpool(self, *args: str, check: bool = True, timeout: float = 600
                ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(REPO / ".venv" / "bin" / "htcpool"), *args], env=self.env(),
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"htcpool {' '.join(args)} exited {proc.returncode}:\n"
                                 f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
        return proc

    def workers(self, states: tuple[str, ...] = ("pending", "running", "stopping", "stopped")
                ) -> list[dict[str, Any]]:
        ec2 = self.sandbox.client("ec2")
        res = ec2.describe_instances(Filters=[
            {"Name": "tag:htcpool:pool", "Values": [self.pool.config.pool]},
            {"Name": "tag:htcpool:role", "Values": ["worker"]},
            {"Name": "instance-state-name", "Values": list(states)}])["Reservations"]
        return [i for r in res for i in r["Instances"]]


@pytest.fixture(scope="session")
def sandbox_pool(sandbox: SandboxHandle) -> Iterator[PoolHandle]:
    """aws_resources.yml, a central manager, bootstrap.yml and bake_worker_image.yml, run
    once per session the way the README tells users to (about three minutes)."""
    from orchestrator.sandbox.pool import aws_environment, build_pool, config_toml

    with aws_environment(sandbox.state):
        # The queue's need only (no forecast spare): the tests count the workers a burst
        # launches.
        built = build_pool(sandbox.state, progress=lambda m: print(f"[pool] {m}", flush=True),
                           max_workers=10, idle_timeout_s=15.0, interval_s=3.0,
                           arrival_window_s=0.0, spare_largest_jobs=0)
        config_file = Path(sandbox.settings.state_dir) / "htcpool.toml"
        config_file.write_text(config_toml(built.config))
        yield PoolHandle(sandbox=sandbox, pool=built, config_file=config_file)


@dataclass
class ManagerHtcpool:
    """htcpool as the master role installs it on the central manager (autoscaler service)."""

    pool: PoolHandle
    extravars: dict[str, Any]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`htcpool ARGS` on the central manager as root, with the role's configuration."""
        import shlex

        return self.pool.sandbox.exec(
            self.pool.cm, f"HTCPOOL_CONFIG={AUTOSCALER_CONFIG} /opt/htcpool/bin/htcpool "
                          f"{shlex.join(args)}", check=check)

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--json").stdout)

    def bootstrap(self, **overrides: Any) -> Any:
        """bootstrap.yml on the central manager only; returns ansible's per-host stats."""
        from orchestrator.provision import run_playbook
        from orchestrator.sandbox.pool import aws_environment

        with aws_environment(self.pool.sandbox.state):
            result = run_playbook(
                self.pool.pool.config, REPO / "playbooks" / "bootstrap.yml",
                inventory=self.pool.pool.inventory, limit="htcondor_central_manager",
                extravars={**self.extravars, **overrides})
        return result.stats


AUTOSCALER_CONFIG = "/etc/htcpool/htcpool.toml"


@pytest.fixture(scope="session")
def manager_htcpool(sandbox_pool: PoolHandle) -> ManagerHtcpool:
    """The master role's autoscaler feature applied to the session pool's central manager,
    service installed but stopped (tests start it when they need it)."""
    from orchestrator.sandbox.pool import manager_autoscaler_vars

    extravars = manager_autoscaler_vars(sandbox_pool.sandbox.state, sandbox_pool.pool.config)
    handle = ManagerHtcpool(pool=sandbox_pool, extravars=extravars)
    handle.bootstrap()
    return handle
