"""Check-mode runs of the master and worker roles (nothing executes): where secrets go,
and that image mode writes none."""

from __future__ import annotations

import json
from typing import Any

from tests.support.ansible import PLATFORMS

SECRET = "eyJhbGciOiJIUzI1NiIsImtpZCI6IlBPT0wifQ.eyJpc3MiOiJodGNwb29sIn0.c2VjcmV0LXNpZ25hdHVyZQ"


def touched_paths(run: Any, host: str) -> list[tuple[str, str]]:
    """(task name, path) for every file-writing task that was not skipped."""
    out = []
    for record in run.for_host(host):
        if record["status"] == "skipped":
            continue
        args = record["args"]
        path = args.get("dest") or args.get("path")
        if record["action"] in ("ansible.builtin.copy", "ansible.builtin.template") and path:
            out.append((record["name"], str(path)))
    return out


def test_image_mode_writes_no_pool_secret(check_role: Any) -> None:
    run = check_role("htcondor_worker", {"debian13": PLATFORMS["debian13"]}, {
        "htcondor_worker_image_mode": True,
        # Even when a token is around (say, in group_vars), image mode must not use it.
        "htcondor_worker_token": SECRET,
        "htcondor_worker_condor_host": "ip-198-18-0-4.ec2.internal",
    })
    records = run.for_host("debian13")
    assert SECRET not in json.dumps([r["args"] for r in records])
    written = [path for _, path in touched_paths(run, "debian13")]
    secret_dirs = ("/etc/condor/tokens.d", "/etc/condor/passwords.d")
    assert not any(p.startswith(secret_dirs) for p in written)
    assert "/etc/condor/config.d/90-htcpool-pool.conf" not in written
    assert "/etc/systemd/system/htcpool-worker-firstboot.service" in written
    removed = run.task("debian13", "Ensure no pool secret or membership is baked into the image.")
    assert removed["status"] != "skipped"
    token = run.task("debian13", "Ensure the pool token is installed (token only; the signing key "
                                 "stays on the central manager).")
    assert token["status"] == "skipped"


def test_live_worker_gets_the_token_never_the_key(check_role: Any) -> None:
    run = check_role("htcondor_worker", {"ubuntu2404": PLATFORMS["ubuntu2404"]}, {
        "htcondor_worker_token": SECRET,
        "htcondor_worker_condor_host": "ip-10-0-0-4.ec2.internal",
        "instance_id": "i-0123456789abcdef0",
    })
    token = run.task("ubuntu2404", "Ensure the pool token is installed (token only; the signing "
                                   "key stays on the central manager).")
    assert token["args"]["dest"] == "/etc/condor/tokens.d/htcpool-pool"
    assert token["args"]["mode"] == "0600"
    key = run.task("ubuntu2404", "Ensure no pool signing key is present on the worker.")
    assert key["args"] == {**key["args"], "path": "/etc/condor/passwords.d/POOL", "state": "absent"}


def test_live_worker_without_pool_settings_fails_first(check_role: Any) -> None:
    run = check_role("htcondor_worker", {"debian12": PLATFORMS["debian12"]}, ignore_errors=False,
                     check=False)
    assert run.returncode != 0
    failed = [r for r in run.for_host("debian12") if r["status"] == "failed"]
    assert failed[0]["name"].endswith("Fail early on what the role depending on this one requires.")
    assert "needs htcondor_worker_condor_host" in run.output
    assert not [r for r in run.for_host("debian12") if "Ensure HTCondor is installed." in r["name"]]


def test_central_manager_keeps_the_signing_key(check_role: Any) -> None:
    run = check_role("htcondor_master", {"rocky9": PLATFORMS["rocky9"]},
                     {"private_dns_name": "ip-10-0-0-4.ec2.internal"})
    written = dict(touched_paths(run, "rocky9"))
    assert "/etc/condor/config.d/20-htcpool-central-manager.conf" in written.values()
    key = run.task("rocky9",
                   "Ensure the pool's IDTOKENS signing key exists (central manager only).")
    assert key["args"]["creates"] == "/etc/condor/passwords.d/POOL"
    assert "condor_store_cred add -c -i" in key["args"]["cmd"]
    token = run.task("rocky9", "Ensure the pool token exists.")
    assert "condor_token_create -identity condor@htcpool -key POOL" in token["args"]["cmd"]
    # Check mode publishes nothing.
    for name in ("Publish the central manager's address in SSM Parameter Store.",
                 "Publish the workers' token in SSM Parameter Store (SecureString)."):
        assert run.task("rocky9", name)["status"] == "skipped"


def test_gpu_driver_is_installed_only_when_enabled(check_role: Any) -> None:
    live = {"htcondor_worker_token": SECRET, "htcondor_worker_condor_host": "cm"}
    name = "Ensure the GPU driver packages are installed."
    run = check_role("htcondor_worker", {"debian13": PLATFORMS["debian13"]}, live)
    assert not [r for r in run.for_host("debian13") if r["name"].endswith(name)]
    facts = {**PLATFORMS["debian13"], "kernel": "6.12.48+deb13-cloud-amd64"}
    run = check_role("htcondor_worker", {"debian13": facts},
                     {**live, "htcondor_worker_gpu_enabled": True})
    install = run.task("debian13", name)
    assert install["args"]["name"] == ["linux-headers-6.12.48+deb13-cloud-amd64",
                                       "nvidia-driver", "nvidia-smi"]
    config = run.task("debian13", "Ensure the worker's configuration is in place.")
    assert config["status"] != "skipped"


def test_gpu_without_a_driver_list_fails_with_the_reason(check_role: Any) -> None:
    run = check_role("htcondor_worker", {"rocky9": PLATFORMS["rocky9"]}, {
        "htcondor_worker_token": SECRET, "htcondor_worker_condor_host": "cm",
        "htcondor_worker_gpu_enabled": True})
    refused = run.task("rocky9", "Fail when no GPU driver package is known for this "
                                 "distribution.")
    assert refused["status"] == "failed"
    assert "CUDA repository is out of this role's scope" in run.output
    custom = check_role("htcondor_worker", {"rocky9": PLATFORMS["rocky9"]}, {
        "htcondor_worker_token": SECRET, "htcondor_worker_condor_host": "cm",
        "htcondor_worker_gpu_enabled": True,
        "htcondor_worker_gpu_packages": ["nvidia-driver-cuda", "nvidia-driver"]})
    install = custom.task("rocky9", "Ensure the GPU driver packages are installed.")
    assert install["args"]["name"] == ["nvidia-driver-cuda", "nvidia-driver"]
