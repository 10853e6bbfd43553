"""The Ansible roles converged for real by molecule on sandbox hosts.

The session's shared pool is built by the two scenarios (tests/support/pool.py): `sandbox`
converges a central manager and two workers from the base image with
playbooks/bootstrap.yml unchanged, converges again (molecule's idempotence: zero changed
tasks), then verifies with real HTCondor commands (both workers in condor_status over
IDTOKENS, a job runs on a worker, an unauthenticated write is refused); `bake` bakes the
worker image with playbooks/bake_worker_image.yml unchanged, and an instance from it joins
the pool with no Ansible run. These tests read what those runs proved.
"""

from __future__ import annotations

import re

import pytest

from tests.support.pool import PoolHandle

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]


def test_roles_converge_idempotently_and_the_pool_works(sandbox_pool: PoolHandle) -> None:
    build = sandbox_pool.build
    assert build is not None
    converge = build.require("converge")
    # Both workers and the central manager were configured by the roles.
    recap = re.findall(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+"
                       r"failed=(\d+)", converge.output, re.M)
    converged = {host for host, ok, changed, unreachable, failed in recap
                 if host != "localhost" and int(ok) > 0 and unreachable == failed == "0"}
    assert len(converged) >= 3, recap
    # molecule fails the step, naming the tasks, if the second converge changed anything;
    # its own recap must also show every host converged again with nothing changed.
    idempotence = build.require("idempotence")
    again = re.findall(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+"
                       r"failed=(\d+)", idempotence.output, re.M)
    hosts = {host for host, ok, *_ in again if host != "localhost" and int(ok) > 0}
    assert hosts >= converged, (hosts, idempotence.tail)
    assert all(changed == "0" for _, _, changed, _, _ in again), idempotence.tail
    build.require("verify")


def test_baked_worker_image_joins_without_ansible(sandbox_pool: PoolHandle) -> None:
    build = sandbox_pool.build
    assert build is not None
    build.require("bake")
    verify = build.require("bake_verify")
    assert "Wait until the new instance's startd is in condor_status" in verify.output
    assert sandbox_pool.pool.worker_image.startswith("ami-")
