"""Helpers for the Ansible tests: fake platforms, template rendering with Ansible's own
templar, and check-mode role runs that execute nothing (connection htcpool_null, with the
plugins and playbooks under tests/ansible/)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.support.paths import BIN, REPO

ROLES = REPO / "roles"
HERE = REPO / "tests" / "ansible"

OFFICIAL = "https://research.cs.wisc.edu/htcondor/repo"


def _facts(distribution: str, os_family: str, major: str, version: str, release: str,
           arch: str = "x86_64") -> dict[str, str]:
    return {
        "distribution": distribution,
        "os_family": os_family,
        "distribution_major_version": major,
        "distribution_version": version,
        "distribution_release": release,
        "architecture": arch,
        "pkg_mgr": "apt" if os_family == "Debian" else "dnf",
        "service_mgr": "systemd",
        "fqdn": "ip-10-0-0-5.ec2.internal",
    }


PLATFORMS: dict[str, dict[str, str]] = {
    "debian12": _facts("Debian", "Debian", "12", "12.7", "bookworm"),
    "debian13": _facts("Debian", "Debian", "13", "13.1", "trixie"),
    "ubuntu2204": _facts("Ubuntu", "Debian", "22", "22.04", "jammy"),
    "ubuntu2404": _facts("Ubuntu", "Debian", "24", "24.04", "noble"),
    "rocky9": _facts("Rocky", "RedHat", "9", "9.4", "Blue Onyx"),
    "alma9": _facts("AlmaLinux", "RedHat", "9", "9.4", "Seafoam Ocelot"),
    "rhel9": _facts("RedHat", "RedHat", "9", "9.4", "Plow"),
    "al2023": _facts("Amazon", "RedHat", "2023", "2023", ""),
}

UNSUPPORTED: dict[str, dict[str, str]] = {
    "ubuntu2004": _facts("Ubuntu", "Debian", "20", "20.04", "focal"),
    "centos7": _facts("CentOS", "RedHat", "7", "7.9", "Core"),
    "fedora40": _facts("Fedora", "RedHat", "40", "40", ""),
    "amazon2": _facts("Amazon", "RedHat", "2", "2", ""),
    "suse15": _facts("SLES", "Suse", "15", "15.5", ""),
}


# --- rendering with Ansible's templar ---------------------------------------------------

def _trust(value: Any) -> Any:
    from ansible.template import trust_as_template

    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, list):
        return [_trust(v) for v in value]
    if isinstance(value, dict):
        return {k: _trust(v) for k, v in value.items()}
    return value


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text()) or {}
    assert isinstance(data, dict), path
    return data


def os_vars_file(role: str, facts: Mapping[str, str]) -> Path | None:
    """The vars/ file the role's first_found picks for these facts."""
    candidates = [
        f"{facts['os_family']}-{facts['distribution']}.yml",
        f"{facts['distribution']}.yml",
        f"{facts['os_family']}.yml",
    ]
    for name in candidates:
        path = ROLES / role / "vars" / name
        if path.is_file():
            return path
    return None


def role_vars(platform: str, overrides: Mapping[str, Any] | None = None,
              roles: tuple[str, ...] = ("htcondor_common", "htcondor_master",
                                        "htcondor_worker")) -> dict[str, Any]:
    facts = {**PLATFORMS, **UNSUPPORTED}[platform]
    variables: dict[str, Any] = {}
    for role in roles:
        variables.update(_load(ROLES / role / "defaults" / "main.yml"))
    for role in roles:
        main = ROLES / role / "vars" / "main.yml"
        if main.is_file():
            variables.update(_load(main))
        os_file = os_vars_file(role, facts)
        if os_file is not None:
            variables.update(_load(os_file))
    variables.update(overrides or {})
    variables = _trust(variables)
    variables["ansible_facts"] = dict(facts)
    variables["ansible_managed"] = "Ansible managed"
    variables["inventory_hostname"] = platform
    return variables


def render_string(expression: str, variables: Mapping[str, Any]) -> str:
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar, trust_as_template

    templar = Templar(loader=DataLoader(), variables=dict(variables))
    return str(templar.template(trust_as_template(expression)))


def render_template(role: str, name: str, variables: Mapping[str, Any]) -> str:
    source = (ROLES / role / "templates" / name).read_text()
    return render_string(source, variables)


def condor_config(text: str) -> dict[str, str]:
    """KEY = VALUE lines of a condor config (last one wins, as in HTCondor)."""
    knobs: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or line.lower().startswith("use "):
            continue
        key, sep, value = line.partition("=")
        if sep:
            knobs[key.strip().upper()] = value.strip()
    return knobs


# --- check-mode runs --------------------------------------------------------------------

def ansible_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(ROLES),
        "ANSIBLE_ACTION_PLUGINS": str(HERE / "plugins" / "action"),
        "ANSIBLE_CALLBACK_PLUGINS": str(HERE / "plugins" / "callback"),
        "ANSIBLE_CONNECTION_PLUGINS": str(HERE / "plugins" / "connection"),
        "ANSIBLE_CALLBACKS_ENABLED": "htcpool_record_args",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-local"),
        "ANSIBLE_HOME": str(tmp_path / "ansible-home"),
        "HTCPOOL_RECORD_FILE": str(tmp_path / "record.jsonl"),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    })
    env.pop("AWS_ENDPOINT_URL", None)
    return env


class CheckRun:
    def __init__(self, records: list[dict[str, Any]], returncode: int, output: str) -> None:
        self.records = records
        self.returncode = returncode
        self.output = output

    def for_host(self, host: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r["host"] == host]

    def task(self, host: str, name: str) -> dict[str, Any]:
        found = [r for r in self.for_host(host) if r["name"].endswith(name)]
        assert found, f"no task {name!r} on {host}; ran: {[r['name'] for r in self.for_host(host)]}"
        return found[-1]


def make_check_runner(tmp_path: Path) -> Callable[..., CheckRun]:
    """A function that runs one role in check mode on fake hosts under tmp_path."""

    def run(role: str, hosts: Mapping[str, Mapping[str, str]],
            host_vars: Mapping[str, Any] | None = None, ignore_errors: bool = True,
            check: bool = True) -> CheckRun:
        inventory = {"all": {"hosts": {
            name: {"ansible_connection": "htcpool_null", "htcpool_test_facts": dict(facts),
                   **dict(host_vars or {})}
            for name, facts in hosts.items()}}}
        inv = tmp_path / "inventory.yml"
        inv.write_text(yaml.safe_dump(inventory))
        record = tmp_path / "record.jsonl"
        record.unlink(missing_ok=True)
        # Without --check nothing runs either: the htcpool_null connection executes nothing.
        cmd = [str(BIN / "ansible-playbook"), *(["--check"] if check else []), "-i", str(inv),
               "-e", f"htcpool_test_role={role}",
               "-e", f"htcpool_test_ignore_errors={str(ignore_errors).lower()}",
               str(HERE / "playbooks" / "check_role.yml")]
        proc = subprocess.run(cmd, env=ansible_env(tmp_path), capture_output=True, text=True,
                              timeout=600, check=False)
        records = [json.loads(line) for line in record.read_text().splitlines()] \
            if record.exists() else []
        return CheckRun(records, proc.returncode, proc.stdout + proc.stderr)

    return run
