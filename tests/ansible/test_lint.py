"""ansible-lint (production profile), yamllint and --syntax-check on every playbook."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.ansible import BIN, REPO

PLAYBOOKS = sorted((REPO / "playbooks").glob("*.yml"))


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")
    return env


def test_ansible_lint_production_profile_is_clean() -> None:
    proc = subprocess.run([str(BIN / "ansible-lint"), "--profile", "production", "--nocolor",
                           "playbooks", "roles", "molecule"],
                          cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_yamllint_is_clean() -> None:
    proc = subprocess.run([str(BIN / "yamllint"), "-s", "roles", "playbooks", "inventory",
                           "molecule", "requirements.yml"],
                          cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("playbook", PLAYBOOKS, ids=lambda p: p.name)
def test_playbook_syntax(playbook: Path) -> None:
    proc = subprocess.run([str(BIN / "ansible-playbook"), "--syntax-check", "-i", "localhost,",
                           str(playbook)],
                          cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_role_has_specs_readme_and_documented_defaults() -> None:
    import yaml

    for role in ("htcondor_common", "htcondor_master", "htcondor_worker"):
        base = REPO / "roles" / role
        defaults = yaml.safe_load((base / "defaults" / "main.yml").read_text())
        specs = yaml.safe_load((base / "meta" / "argument_specs.yml").read_text())
        options = specs["argument_specs"]["main"]["options"]
        readme = (base / "README.md").read_text()
        for name in defaults:
            assert name.startswith(role + "_"), name
            assert name in options, f"{name} missing from {role}/meta/argument_specs.yml"
            assert name in readme, f"{name} missing from {role}/README.md"


def test_role_docs_are_generated_from_defaults() -> None:
    """The roles' argument specs and README variable sections are what scripts/role_docs.py
    makes of defaults/main.yml, and the master role's dependency lists what it makes of
    requirements/autoscaler.txt."""
    proc = subprocess.run([str(BIN / "python"), "scripts/role_docs.py", "--check"],
                          cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("scenario", ["sandbox", "bake"])
def test_molecule_scenario_parses_and_its_playbooks_pass_syntax_check(
        scenario: str, tmp_path: Path) -> None:
    """The scenarios need the live sandbox to run; here only their config and syntax."""
    inventory = tmp_path / "inventory.yml"
    inventory.write_text("all:\n  hosts: {}\n")
    env = _env()
    env.pop("ANSIBLE_CONFIG")
    env.update({"HTCPOOL_SANDBOX_INVENTORY": str(inventory),
                "HTCPOOL_SANDBOX_BASE_AMI": "ami-12345678",
                "MOLECULE_EPHEMERAL_DIRECTORY": str(tmp_path / "ephemeral")})
    proc = subprocess.run([str(BIN / "molecule"), "syntax", "-s", scenario], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
