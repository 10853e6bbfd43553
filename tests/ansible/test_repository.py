"""Check-mode runs of htcondor_common's repository tasks on faked platforms.

Nothing executes (connection htcpool_null); the assertions are on the arguments each
task was templated with: the official repository, key and release-RPM URLs."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.ansible import OFFICIAL, PLATFORMS, UNSUPPORTED, make_check_runner

REPO_TASKS = (
    "Ensure the HTCondor signing key is present.",
    "Ensure the HTCondor apt source is configured.",
    "Ensure the EPEL signing key is trusted.",
    "Ensure EPEL is installed.",
    "Ensure the CRB repository is enabled.",
    "Ensure the HTCondor signing key is trusted.",
    "Ensure the htcondor-release package of the series is installed.",
    "Ensure the mirrored HTCondor repository is configured.",
    "Ensure HTCondor is installed.",
)


def ran(run: Any, host: str, name: str) -> dict[str, Any]:
    record = run.task(host, name)
    assert record["status"] != "skipped", f"{name} was skipped on {host}"
    return record["args"]


def skipped(run: Any, host: str, name: str) -> bool:
    return all(r["status"] == "skipped" for r in run.for_host(host) if r["name"].endswith(name))


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    runner = make_check_runner(tmp_path_factory.mktemp("default"))
    return runner("htcondor_common", PLATFORMS)


@pytest.mark.parametrize(("host", "flavour", "codename"), [
    ("debian12", "debian", "bookworm"),
    ("debian13", "debian", "trixie"),
    ("ubuntu2204", "ubuntu", "jammy"),
    ("ubuntu2404", "ubuntu", "noble"),
])
def test_deb_platforms_use_the_official_signed_repository(default_run: Any, host: str,
                                                          flavour: str, codename: str) -> None:
    key = ran(default_run, host, "Ensure the HTCondor signing key is present.")
    assert key["url"] == f"{OFFICIAL}/keys/HTCondor-24.x-Key"
    assert key["dest"] == "/etc/apt/keyrings/htcondor.asc"
    source = ran(default_run, host, "Ensure the HTCondor apt source is configured.")
    assert source["dest"] == "/etc/apt/sources.list.d/htcondor.sources"
    assert ran(default_run, host, "Ensure HTCondor is installed.")["name"] == ["condor"]
    for rpm_task in ("Ensure EPEL is installed.",
                     "Ensure the htcondor-release package of the series is installed."):
        assert skipped(default_run, host, rpm_task)
    del flavour, codename  # the source's content is checked in test_templates.py


@pytest.mark.parametrize(("host", "dist", "crb"), [
    ("rocky9", "el9", "crb"),
    ("alma9", "el9", "crb"),
    ("rhel9", "el9", "codeready-builder-for-rhel-9-x86_64-rpms"),
])
def test_el9_uses_the_release_rpm_with_epel_and_crb(default_run: Any, host: str, dist: str,
                                                   crb: str) -> None:
    assert ran(default_run, host, "Ensure the HTCondor signing key is trusted.")["key"] == \
        f"{OFFICIAL}/keys/HTCondor-24.x-Key"
    release = ran(default_run, host,
                  "Ensure the htcondor-release package of the series is installed.")
    assert release["name"] == f"{OFFICIAL}/24.x/htcondor-release-current.{dist}.noarch.rpm"
    assert ran(default_run, host, "Ensure EPEL is installed.")["name"] == \
        "https://dl.fedoraproject.org/pub/epel/epel-release-latest-9.noarch.rpm"
    assert ran(default_run, host, "Ensure the EPEL signing key is trusted.")["key"] == \
        "https://dl.fedoraproject.org/pub/epel/RPM-GPG-KEY-EPEL-9"
    assert ran(default_run, host, "Ensure the CRB repository is enabled.")["name"] == [crb]
    assert skipped(default_run, host, "Ensure the HTCondor apt source is configured.")


def test_amazon_linux_2023_needs_neither_epel_nor_crb(default_run: Any) -> None:
    release = ran(default_run, "al2023",
                  "Ensure the htcondor-release package of the series is installed.")
    assert release["name"] == f"{OFFICIAL}/24.x/htcondor-release-current.amzn2023.noarch.rpm"
    assert ran(default_run, "al2023", "Ensure the HTCondor signing key is trusted.")["key"] == \
        f"{OFFICIAL}/keys/HTCondor-24.x-Key"
    assert skipped(default_run, "al2023", "Ensure EPEL is installed.")
    assert skipped(default_run, "al2023", "Ensure the CRB repository is enabled.")


def test_series_23x_changes_every_url(check_role: Any) -> None:
    hosts = {h: PLATFORMS[h] for h in ("debian12", "ubuntu2204", "rocky9", "al2023")}
    run = check_role("htcondor_common", hosts, {"htcondor_common_series": "23.x"})
    assert ran(run, "debian12", "Ensure the HTCondor signing key is present.")["url"] == \
        f"{OFFICIAL}/keys/HTCondor-23.x-Key"
    assert ran(run, "rocky9", "Ensure the htcondor-release package of the series is installed."
               )["name"] == f"{OFFICIAL}/23.x/htcondor-release-current.el9.noarch.rpm"
    assert ran(run, "al2023", "Ensure the htcondor-release package of the series is installed."
               )["name"] == f"{OFFICIAL}/23.x/htcondor-release-current.amzn2023.noarch.rpm"


def test_mirror_urls_override_the_official_ones(check_role: Any) -> None:
    mirror = "http://mirror.example.internal/htcondor"
    hosts = {h: PLATFORMS[h] for h in ("debian13", "rocky9")}
    run = check_role("htcondor_common", hosts, {
        "htcondor_common_repository_base_url": mirror,
        "htcondor_common_rpm_repository_baseurl": f"{mirror}/24.x/el9/$basearch/release",
    })
    assert ran(run, "debian13", "Ensure the HTCondor signing key is present.")["url"] == \
        f"{mirror}/keys/HTCondor-24.x-Key"
    repo = ran(run, "rocky9", "Ensure the mirrored HTCondor repository is configured.")
    assert repo["baseurl"] == f"{mirror}/24.x/el9/$basearch/release"
    assert repo["gpgkey"] == f"{mirror}/keys/HTCondor-24.x-Key"
    assert repo["gpgcheck"] is True
    assert skipped(run, "rocky9", "Ensure the htcondor-release package of the series is installed.")


def test_sandbox_repository_variables(check_role: Any) -> None:
    run = check_role("htcondor_common", {"debian13": PLATFORMS["debian13"]}, {
        "htcondor_common_apt_repository_url": "http://198.18.0.1:4580/apt",
        "htcondor_common_apt_key_url": "http://198.18.0.1:4580/apt/htcpool-sandbox.asc",
        "htcondor_common_apt_suite": "trixie",
    })
    assert ran(run, "debian13", "Ensure the HTCondor signing key is present.")["url"] == \
        "http://198.18.0.1:4580/apt/htcpool-sandbox.asc"


@pytest.mark.parametrize("host", sorted(UNSUPPORTED))
def test_unsupported_platform_fails_before_touching_the_host(check_role: Any, host: str) -> None:
    run = check_role("htcondor_common", {host: UNSUPPORTED[host]}, ignore_errors=False)
    assert run.returncode != 0
    failed = [r for r in run.for_host(host) if r["status"] == "failed"]
    assert failed
    assert failed[0]["name"].endswith("Fail early on a distribution the role does not support.")
    assert "does not support" in (failed[0]["msg"] or "")
    assert "Nothing was installed" in (failed[0]["msg"] or "")
    names = [r["name"] for r in run.for_host(host)]
    assert not any(name.endswith(task) for name in names for task in REPO_TASKS)


def test_unknown_series_fails_before_touching_the_host(check_role: Any) -> None:
    run = check_role("htcondor_common", {"debian12": PLATFORMS["debian12"]},
                     {"htcondor_common_series": "8.9"}, ignore_errors=False)
    assert run.returncode != 0
    failed = [r for r in run.for_host("debian12") if r["status"] == "failed"]
    assert failed[0]["name"].endswith("Fail early on an HTCondor series the role does not know.")


def test_weakened_security_is_refused(check_role: Any) -> None:
    run = check_role("htcondor_common", {"debian12": PLATFORMS["debian12"]},
                     {"htcondor_common_allow_extra": {"WRITE": ["*"]}}, ignore_errors=False)
    assert run.returncode != 0
    failed = [r for r in run.for_host("debian12") if r["status"] == "failed"]
    assert failed[0]["name"].endswith(
        "Fail early on settings weaker than the pool's security baseline.")
