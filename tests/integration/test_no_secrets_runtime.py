"""Issue 7: credentials never reach htcpool's output, its logs or the argv of what it starts.

The CLI runs against the moto server with canary credentials (in the environment, as
always); every line it prints (tables, JSON, errors, --debug tracebacks) and every log record
(root logger at INFO, botocore included) is searched for the secret key and session token,
and the command lines of the processes it starts (ssh for the pool views, ansible-playbook
through ansible-runner) for any secret.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

SECRET = "CanarySecretKey0000000000000000000000000"  # 40 characters, like a real one
SESSION = "CanarySessionToken" + "x" * 100
KEY_ID = "AKIA" + "CANARY0000000000"  # split, so the repository scan does not flag it


@pytest.fixture()
def canary(aws: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return aws


class _All(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # a record that cannot be formatted is not a leak
            self.lines.append(str(record.msg))


@pytest.fixture()
def all_logs() -> Any:
    handler = _All()
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    # INFO: the level `htcpool autoscale` logs at. At DEBUG botocore itself logs the signed
    # canonical request, session token included; tests/unit/test_no_secrets.py checks that
    # htcpool never turns DEBUG on for botocore.
    root.setLevel(logging.INFO)
    yield handler
    root.removeHandler(handler)
    root.setLevel(old)


def _no_secret(text: str, where: str) -> None:
    for value in (SECRET, SESSION):
        assert value not in text, f"a credential appears in {where}"


@pytest.mark.parametrize("argv", [
    ["instances", "list"],
    ["instances", "list", "--json", "--all"],
    ["zones", "--json"],
    ["images", "list"],
    ["instances", "create", "--dry-run", "--json"],
    ["instances", "stop", "i-0123456789abcdef0"],
    ["--debug", "instances", "stop", "i-0123456789abcdef0"],
    ["--debug", "--region", "moon-1", "zones"],
    ["scale", "--dry-run", "--json", "--transport", "ssm"],
])
def test_cli_output_and_logs_carry_no_credentials(canary: Any, cli: Any, all_logs: Any,
                                                  argv: list[str]) -> None:
    try:
        result = cli(*argv)
        out, err = result.out, result.err
    except Exception as exc:  # --debug re-raises: the traceback text is output too
        import traceback

        out, err = "", "".join(traceback.format_exception(exc))
    _no_secret(out, "stdout")
    _no_secret(err, "stderr")
    _no_secret("\n".join(all_logs.lines), "the log")
    assert all_logs.lines, "nothing was logged: the check would be vacuous"


def test_ssh_transport_argv_carries_no_credentials(canary: Any, cli: Any, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []

    def fake_run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        seen.append(list(argv))
        return subprocess.CompletedProcess(argv, 0, "[]", "")

    monkeypatch.setattr("orchestrator.condor.remote.subprocess.run", fake_run)
    config = tmp_path / "ssh.toml"
    config.write_text('[condor]\nssh_host = "cm.invalid"\nssh_user = "admin"\n'
                      'ssh_key_file = "~/.ssh/pool"\n')
    r = cli("--config", str(config), "pool", "status", "--transport", "ssh", "--json")
    assert r.code == 0, r.err
    r = cli("--config", str(config), "queue", "--transport", "ssh")
    assert r.code == 0, r.err
    assert seen and all(a[0] == "ssh" for a in seen)
    for argv in seen:
        joined = " ".join(argv)
        _no_secret(joined, "the ssh command line")
        assert KEY_ID not in joined


def test_playbook_variables_go_in_a_private_file_not_argv(
        canary: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ansible-runner puts a dict of extra variables on ansible-playbook's command line;
    run_playbook writes them to env/extravars (0600) instead."""
    import ansible_runner

    from orchestrator.config import Config
    from orchestrator.provision import run_playbook

    captured: dict[str, Any] = {}

    class FakeRunner:
        status = "successful"
        rc = 0
        stats: dict[str, Any] = {}  # noqa: RUF012
        stdout = None

    def fake_run(**kwargs: Any) -> FakeRunner:
        captured.update(kwargs)
        path = Path(kwargs["private_data_dir"]) / "env" / "extravars"
        captured["file"] = json.loads(path.read_text())
        captured["mode"] = stat.S_IMODE(os.stat(path).st_mode)
        return FakeRunner()

    monkeypatch.setattr(ansible_runner, "run", fake_run)
    playbook = tmp_path / "p.yml"
    playbook.write_text("- hosts: localhost\n  tasks: []\n")
    token = "eyJhbGciOiJIUzI1NiJ9" + ".eyJzdWIiOiJ0ZXN0In0.canary-signature-canary"
    run_playbook(Config(pool="p"), playbook, extravars={"htcondor_worker_token": token},
                 limit="workers")
    assert "extravars" not in captured, "a dict of extravars would end up in argv"
    assert captured["file"]["htcondor_worker_token"] == token
    assert captured["mode"] == 0o600
    assert token not in str(captured.get("cmdline") or "")
    _no_secret(json.dumps(captured.get("envvars") or {}), "ansible-runner's envvars")


def test_ansible_runner_really_would_put_a_dict_on_the_command_line(tmp_path: Path) -> None:
    """Why the file matters (checked against the installed ansible-runner)."""
    from ansible_runner.config.runner import RunnerConfig

    rc = RunnerConfig(private_data_dir=str(tmp_path), playbook="p.yml",
                      extravars={"secret_thing": "canary-value"})
    rc.prepare()
    assert any("canary-value" in part for part in rc.command)
