"""The menu driven through a pseudo-terminal (pexpect), and shell completion, both as real
`htcpool` processes against the moto server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pexpect
import pytest

HTCPOOL = str(Path(sys.executable).parent / "htcpool")


@pytest.fixture()
def env(aws: Any) -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if k.startswith(("AWS_", "HTCPOOL_", "XDG_", "PATH", "HOME", "LANG"))}


def spawn_menu(env: dict[str, str]) -> pexpect.spawn:
    child = pexpect.spawn(HTCPOOL, ["menu"], env={**env, "TERM": "dumb", "COLUMNS": "200"},
                          encoding="utf-8", timeout=60, dimensions=(50, 200))
    child.expect("htcpool control panel \\(pool testpool\\)")
    child.expect("Choice: ")
    return child


def test_menu_session(aws: Any, env: dict[str, str]) -> None:
    child = spawn_menu(env)
    for entry in ("1  list instances", "11  condor_q", "99  exit"):
        assert entry in child.before
    child.sendline("2")
    child.expect("us-east-1a")
    child.expect("Choice: ")
    child.sendline("4")
    child.expect("eu-west-1")
    child.expect("Choice: ")
    child.sendline("1")
    child.expect(aws.cm)
    child.expect("Choice: ")
    child.sendline("5")
    child.expect("Instance id\\(s\\) to stop: ")
    child.sendline(aws.workers[0])
    child.expect(r"Stop .*\? \[y/N\]: ")
    child.sendline("y")
    child.expect("all 1 stopped")
    child.expect("Choice: ")
    child.sendline("3")
    child.expect("Instance id\\(s\\) to start: ")
    child.sendline(aws.workers[0])
    child.expect("all 1 running")
    child.expect("Choice: ")
    child.sendline("8")
    child.expect("20260301-000000")
    child.expect("Choice: ")
    child.sendline("7")
    child.expect("to reboot: ")
    child.sendline("i-0123456789abcdef0")
    child.expect(r"\[y/N\]: ")
    child.sendline("y")
    child.expect("htcpool: error: unknown instance")  # an error keeps the panel open
    child.expect("Choice: ")
    child.sendline("42")
    child.expect("unknown choice '42'")
    child.expect("Choice: ")
    child.sendline("99")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert aws.state(aws.workers[0]) == "running"


def test_menu_create_and_pool_views(aws: Any, env: dict[str, str]) -> None:
    child = spawn_menu(env)
    child.sendline("6")
    child.expect("How many \\[1\\]: ")
    child.sendline("2")
    child.expect("AMI .*: ")
    child.sendline("")
    child.expect(r"Launch 2 worker\(s\)\? \[y/N\]: ")
    child.sendline("y")
    child.expect("all 2 running")
    child.expect("Choice: ")
    child.sendline("9")  # moto's SSM runs nothing: a clear error, and the panel goes on
    child.expect("htcpool: error: .*no output")
    child.expect("Choice: ")
    child.sendline("10")
    child.expect(r"Act on the plan.*\[y/N\]: ")
    child.sendline("n")
    child.expect("Choice: ")
    child.sendeof()  # Ctrl-D ends the panel too
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    workers = aws.ec2.describe_instances(Filters=[
        {"Name": "tag:htcpool:role", "Values": ["worker"]},
        {"Name": "tag:htcpool:pool", "Values": ["testpool"]}])["Reservations"]
    assert sum(len(r["Instances"]) for r in workers) == 4


def complete(env: dict[str, str], words: str) -> list[str]:
    cword = len(words.split()) - (0 if words.endswith(" ") else 1)
    done = subprocess.run([HTCPOOL], env={**env, "_HTCPOOL_COMPLETE": "bash_complete",
                                          "COMP_WORDS": words, "COMP_CWORD": str(cword)},
                          capture_output=True, text=True, timeout=60, check=True)
    return [line.split(",", 1)[1] for line in done.stdout.splitlines() if "," in line]


def test_completion_script_and_commands(aws: Any, env: dict[str, str]) -> None:
    script = subprocess.run([HTCPOOL], env={**env, "_HTCPOOL_COMPLETE": "bash_source"},
                            capture_output=True, text=True, timeout=60, check=True).stdout
    assert "_htcpool_completion" in script and "complete " in script
    assert complete(env, "htcpool inst") == ["instances"]
    assert set(complete(env, "htcpool instances ")) >= {"list", "start", "stop", "create"}
    assert "--no-wait" in complete(env, "htcpool instances stop --no")
    assert complete(env, "htcpool pool status --transport s") == ["ssm", "ssh"]


def test_completion_of_instance_ids(aws: Any, env: dict[str, str]) -> None:
    ids = complete(env, "htcpool instances stop i-")
    assert set(ids) == {aws.cm, *aws.workers}
    env_bad = {**env, "HTCPOOL_ENDPOINT_URL": "http://127.0.0.1:9"}
    assert complete(env_bad, "htcpool instances stop i-") == []  # quietly nothing
