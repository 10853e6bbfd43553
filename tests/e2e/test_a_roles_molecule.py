"""The Ansible roles converged for real by molecule on sandbox hosts (issue 3).

`sandbox`: a central manager and two workers from the base image, playbooks/bootstrap.yml
unchanged, a second converge that must change nothing, then verification with real
HTCondor commands (both workers in condor_status over IDTOKENS, a job runs on a worker, an
unauthenticated write is refused). `bake`: playbooks/bake_worker_image.yml unchanged, and
an instance from the new image joins the pool with no Ansible run. These run first in the
session sandbox (the file name sorts first) and leave no instance behind.
"""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import REPO, SandboxHandle

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]


def _molecule(sandbox: SandboxHandle, scenario: str) -> None:
    env = sandbox.env()
    env.update({
        "HTCPOOL_SANDBOX_INVENTORY": sandbox.state["inventory"],
        "HTCPOOL_SANDBOX_BASE_AMI": sandbox.base_ami,
        "AWS_ENDPOINT_URL": sandbox.endpoint_url,
        "AWS_REGION": sandbox.state["region"],
        "ANSIBLE_FORCE_COLOR": "0",
        "PY_COLORS": "0",
    })
    proc = subprocess.run([str(REPO / ".venv" / "bin" / "molecule"), "test", "-s", scenario],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    tail = (proc.stdout + proc.stderr)[-6000:]
    assert proc.returncode == 0, f"molecule test -s {scenario} failed:\n{tail}"
    if scenario == "sandbox":
        assert "idempotence" in proc.stdout + proc.stderr


def test_roles_converge_idempotently_and_the_pool_works(sandbox: SandboxHandle) -> None:
    _molecule(sandbox, "sandbox")


def test_baked_worker_image_joins_without_ansible(sandbox: SandboxHandle) -> None:
    _molecule(sandbox, "bake")
