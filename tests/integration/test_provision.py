"""Playbooks through ansible-runner for real (a local playbook on this machine's localhost
connection): progress is streamed, failures are one clear line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from orchestrator.config import Config
from orchestrator.errors import ExitStatus, NotFoundError
from orchestrator.provision import ProvisionError, run_playbook
from tests.support.cli import one_line_error

PLAYBOOK = """\
- name: Exercise the runner
  hosts: all
  connection: local
  gather_facts: false
  tasks:
    - name: Say hello
      ansible.builtin.debug:
        msg: "hello {{ htcpool_pool }}"
    - name: Fail on purpose
      ansible.builtin.fail:
        msg: "boom in {{ htcpool_pool }}"
      when: fail_it | default(false) | bool
    - name: Touch a file
      ansible.builtin.file:
        path: "{{ marker }}"
        state: touch
        mode: "0644"
      when: marker is defined
"""


@pytest.fixture()
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "playbooks").mkdir()
    for name in ("bootstrap.yml", "bake_worker_image.yml", "test.yml"):
        (tmp_path / "playbooks" / name).write_text(PLAYBOOK)
    (tmp_path / "hosts.ini").write_text("localhost ansible_connection=local "
                                        f"ansible_python_interpreter={sys.executable}\n")
    (tmp_path / "htcpool.toml").write_text(
        'pool = "provpool"\n[provision]\nplaybooks_dir = "playbooks"\n'
        'inventory = "hosts.ini"\n')
    monkeypatch.chdir(tmp_path)
    for var in ("HTCPOOL_POOL", "HTCPOOL_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def test_run_playbook_streams_progress(project: Path) -> None:
    lines: list[str] = []
    result = run_playbook(Config(pool="provpool"), project / "playbooks" / "test.yml",
                          inventory=project / "hosts.ini", progress=lines.append)
    assert result.ok and result.rc == 0
    assert "PLAY Exercise the runner" in lines and "TASK Say hello" in lines
    assert "  localhost: ok" in lines and "  localhost: skipped" in lines
    assert result.stats.get("ok", {}).get("localhost") == 1


def test_failure_names_host_task_and_message(project: Path) -> None:
    with pytest.raises(ProvisionError) as err:
        run_playbook(Config(pool="provpool"), project / "playbooks" / "test.yml",
                     inventory=project / "hosts.ini", extravars={"fail_it": "true"})
    assert str(err.value) == ("playbook test.yml failed on localhost at task 'Fail on purpose': "
                              "failed: boom in provpool")


def test_missing_playbook(project: Path) -> None:
    with pytest.raises(NotFoundError):
        run_playbook(Config(), project / "playbooks" / "nope.yml")


def test_bootstrap_command(project: Path, cli: Any) -> None:
    r = cli("bootstrap", "--json")
    assert r.code == 0, r.err
    assert "TASK Say hello" in r.err and "playbook bootstrap.yml: successful" in r.err
    assert json.loads(r.out)["status"] == "successful"


def test_bootstrap_failure_is_one_line(project: Path, cli: Any) -> None:
    r = cli("bootstrap", "--extra", "fail_it=true")
    assert r.code == ExitStatus.ERROR
    assert "at task 'Fail on purpose': failed: boom in provpool" in one_line_error(r)
    assert "TASK Fail on purpose" in r.err  # progress came first


def test_check_mode_changes_nothing(project: Path, cli: Any) -> None:
    marker = project / "marker"
    r = cli("image", "bake", "--dry-run", "-e", f"marker={marker}")
    assert r.code == 0, r.err
    assert "check mode" in r.err
    assert not marker.exists()
    r = cli("images", "bake", "-e", f"marker={marker}")
    assert r.code == 0 and marker.exists()


def test_bad_extra_and_missing_playbook_dir(project: Path, cli: Any) -> None:
    r = cli("bootstrap", "--extra", "novalue")
    assert r.code == ExitStatus.USAGE and "KEY=VALUE" in r.err
    (project / "htcpool.toml").write_text('[provision]\nplaybooks_dir = "elsewhere"\n')
    r = cli("bootstrap")
    assert r.code == ExitStatus.NOT_FOUND and "bootstrap.yml not found" in one_line_error(r)
