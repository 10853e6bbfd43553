"""`htcpool sandbox up/down`: idempotent, interruptible, and clean after a crash.

These run before any test that uses the session sandbox (see tests/conftest.py ordering).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.paths import REPO
from tests.support.sandbox import sandbox_settings, wait_for

pytestmark = [pytest.mark.sandbox, pytest.mark.lifecycle]
HTCPOOL = str(REPO / ".venv" / "bin" / "htcpool")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["HTCPOOL_SANDBOX_DIR"] = str(sandbox_settings().state_dir)
    env["HTCPOOL_SANDBOX_INDEX"] = str(sandbox_settings().index)
    return env


def _cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([HTCPOOL, *args], capture_output=True, text=True, env=_env(),
                          timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(autouse=True)
def _root_and_clean() -> None:
    if os.geteuid() != 0:
        pytest.skip("the sandbox needs root")
    from orchestrator.sandbox import control

    control.down(sandbox_settings(), progress=lambda _m: None)


def _leftovers() -> dict[str, list[str]]:
    from orchestrator.sandbox import control

    return control.leftovers(sandbox_settings())


def test_up_twice_status_and_down_leave_nothing() -> None:
    _cli("sandbox", "up")
    first = json.loads(_cli("sandbox", "status", "--json").stdout)
    _cli("sandbox", "up")  # a second up reuses the running sandbox
    second = json.loads(_cli("sandbox", "status", "--json").stdout)
    assert first["base_ami"] == second["base_ami"]
    for key in ("endpoint_url", "region", "credentials", "base_ami", "hosts"):
        assert key in first
    assert first["credentials"]["aws_access_key_id"]
    assert first["hosts"] == []
    _cli("sandbox", "down")
    assert not any(_leftovers().values()), _leftovers()
    # status on a stopped sandbox is a one-line error with a non-zero exit
    proc = _cli("sandbox", "status", check=False)
    assert proc.returncode != 0
    assert proc.stderr.strip().startswith("htcpool: error: the sandbox is not running")
    assert len(proc.stderr.strip().splitlines()) == 1


def _signal_pending(pid: int, sig: int) -> bool:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("ShdPnd:"):
            return bool(int(line.split()[1], 16) & (1 << (sig - 1)))
    return False


def _sigint_ignored() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_during_up_leaves_nothing(sig: signal.Signals) -> None:
    """Ctrl-C (or SIGTERM) while `up` waits for its server. The server is held (SIGSTOP) as
    soon as `up` records it, so `up` cannot finish first however warm the image cache; it is
    let go once `up`'s cleanup has asked it to stop (SIGTERM pending). `up` starts with
    SIGINT ignored, as a background job of a script does: Ctrl-C must still clean up."""
    pid_file = sandbox_settings().pid_file
    proc = subprocess.Popen([HTCPOOL, "sandbox", "up"], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_sigint_ignored)
    try:
        text = wait_for(lambda: (pid_file.exists() and pid_file.read_text().strip())
                        or proc.poll() is not None, timeout=120, interval=0.01,
                        what="`up` to start its server")
        assert proc.poll() is None, f"`up` ended before starting its server: {text}"
        server = int(text)
        os.kill(server, signal.SIGSTOP)
        try:
            proc.send_signal(sig)
            wait_for(lambda: proc.poll() is not None or _signal_pending(server, signal.SIGTERM),
                     timeout=60, interval=0.05, what="`up` to stop its server")
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(server, signal.SIGCONT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0 and "Traceback" not in err, err
    assert not any(_leftovers().values()), _leftovers()


def test_down_cleans_up_after_a_crashed_server() -> None:
    import boto3

    _cli("sandbox", "up")
    state = json.loads(_cli("sandbox", "status", "--json").stdout)
    # The harness's own instances (untagged): the sandbox's admin, from the state file.
    creds = json.loads((Path(state["state_dir"]) / "state.json").read_text())[
        "admin_credentials"]
    ec2 = boto3.client("ec2", endpoint_url=state["endpoint_url"], region_name=state["region"],
                       aws_access_key_id=creds["aws_access_key_id"],
                       aws_secret_access_key=creds["aws_secret_access_key"])
    ids = [i["InstanceId"] for i in ec2.run_instances(
        ImageId=state["base_ami"], MinCount=2, MaxCount=2, InstanceType="t3.micro")["Instances"]]
    ec2.get_waiter("instance_running").wait(InstanceIds=ids, WaiterConfig={"Delay": 1})
    pid = int((Path(state["state_dir"]) / "server.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not Path(f"/proc/{pid}").exists() or
             Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z", timeout=10, what="crash")
    time.sleep(0.2)
    left = _leftovers()
    assert left["netns"] and left["mounts"], "the hosts outlive a crashed server"
    _cli("sandbox", "down")
    assert not any(_leftovers().values()), _leftovers()


def test_leftovers_find_a_hosts_orphaned_processes_by_network_namespace(
        tmp_path: Path) -> None:
    """A host's processes outlive systemd-nspawn if its init is orphaned (the power-off bug
    fixed in Host._kill): their command lines name nothing of the sandbox, but they run
    in one of its network namespaces, which is how leftovers() finds them and sweep()
    ends them."""
    from orchestrator.sandbox import control
    from orchestrator.sandbox.settings import SandboxSettings

    # The tests' index, down (autouse fixture): nothing else has its prefix now.
    settings = SandboxSettings(state_dir=tmp_path / "state", index=sandbox_settings().index)
    netns = f"{settings.prefix}-i-0orphan"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    orphan = subprocess.Popen(["ip", "netns", "exec", netns, "sleep", "300"],
                              start_new_session=True)
    try:
        wait_for(lambda: str(orphan.pid) in control.leftovers(settings)["processes"],
                 timeout=10, interval=0.1, what="the process in the namespace to be found")
        assert control.leftovers(settings)["netns"] == [netns]
        control.sweep(settings, progress=lambda _m: None)
        assert orphan.wait(timeout=30) != 0
        assert not any(control.leftovers(settings).values())
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait()
        subprocess.run(["ip", "netns", "del", netns], check=False, capture_output=True)
