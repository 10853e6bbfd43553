"""Shared fixtures; the helpers behind them live in tests/support/.

`sandbox`: one local sandbox (real hosts, real HTCondor) per test session, brought up on
first use and taken down at the end, even when tests fail; the teardown checks that
nothing of it is left on the machine. `sandbox_pool`: one pool per session on it, built
once by the roles (molecule) and shared by every test that needs a pool.

Order is set by markers only: `lifecycle` tests (their own sandboxes) run first, then the
rest, then `pool_teardown` (removes the shared pool), then `last` (reads the whole
session's API log).
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.pool import ManagerHtcpool, PoolHandle, build_shared_pool, clean
from tests.support.sandbox import SandboxHandle, need_root, sandbox_settings

ORDER = ("lifecycle", None, "pool_teardown", "last")


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    def rank(item: Any) -> int:
        for n, marker in enumerate(ORDER):
            if marker is not None and item.get_closest_marker(marker):
                return n
        return ORDER.index(None)

    items.sort(key=rank)  # stable: file order within each rank


@pytest.fixture(scope="session")
def sandbox() -> Iterator[SandboxHandle]:
    need_root()
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


@pytest.fixture(scope="session")
def sandbox_pool(sandbox: SandboxHandle) -> PoolHandle:
    """The session's one pool: AWS resources, a central manager and two workers converged
    by the roles (molecule, twice: the second run must change nothing) and verified, then
    a worker image baked and verified to join with no Ansible run. Tests get it with no
    worker left (tests/support/pool.py: build_shared_pool)."""
    return build_shared_pool(sandbox)


@pytest.fixture
def clean_pool(sandbox_pool: PoolHandle) -> Iterator[PoolHandle]:
    """The shared pool as the autoscaler would leave it (no workers, no jobs, no faults);
    afterwards, faults cleared and the central manager's condor running again."""
    clean(sandbox_pool)
    yield sandbox_pool
    sandbox_pool.sandbox.clear_faults()
    sandbox_pool.sandbox.exec(sandbox_pool.cm, "systemctl start condor")


@pytest.fixture(scope="session")
def manager_htcpool(sandbox_pool: PoolHandle) -> ManagerHtcpool:
    """The master role's autoscaler feature applied to the shared pool's central manager,
    service installed but stopped (tests start it when they need it)."""
    from orchestrator.sandbox.pool import manager_autoscaler_vars

    extravars = manager_autoscaler_vars(sandbox_pool.sandbox.state, sandbox_pool.pool.config)
    handle = ManagerHtcpool(pool=sandbox_pool, extravars=extravars)
    handle.bootstrap()
    return handle
