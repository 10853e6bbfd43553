"""`make demo`, shortened: the whole flow runs, and its summary agrees with HTCondor's job
history and the emulator's instance records (the raw copies it saves next to the summary).

The demo runs on the session's sandbox, where the shared pool is already built, so it
reuses the central manager and the worker image (as `make demo` does on a warm sandbox;
building them is what the shared pool's own tests prove). It removes the pool afterwards
(playbooks/teardown.yml) and leaves the sandbox it found up: so it runs after every test
that needs the pool (marker `pool_teardown`). The Ctrl-C test brings up and takes down a
sandbox of its own (lifecycle), on index 0 by default.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.paths import REPO
from tests.support.pool import PoolHandle, clean

DEMO_DIR = Path(os.environ.get("HTCPOOL_TEST_DEMO_SANDBOX_DIR",
                               "/tmp/htcpool-tests/demo-sandbox"))
DEMO_INDEX = int(os.environ.get("HTCPOOL_TEST_DEMO_SANDBOX_INDEX", "0"))
JOBS = 8
POOL = "htcpool"
pytestmark = [pytest.mark.sandbox, pytest.mark.slow, pytest.mark.timeout(3000)]


def _settings() -> Any:
    from orchestrator.sandbox.settings import SandboxSettings

    return SandboxSettings(state_dir=DEMO_DIR, index=DEMO_INDEX)


def _env() -> dict[str, str]:
    """The Ctrl-C test's own sandbox for the subprocess; skip if we cannot have it."""
    if os.geteuid() != 0:
        pytest.skip("the sandbox needs root")
    from orchestrator.sandbox import control

    other = control.active_elsewhere(_settings())
    if other is not None:
        pytest.skip(f"sandbox index {DEMO_INDEX} is in use from {other} (set "
                    "HTCPOOL_TEST_DEMO_SANDBOX_INDEX to a free one)")
    return dict(os.environ, HTCPOOL_SANDBOX_INDEX=str(DEMO_INDEX),
                HTCPOOL_SANDBOX_DIR=str(DEMO_DIR),
                PATH=f"{REPO / '.venv' / 'bin'}:{os.environ.get('PATH', '')}")


def _pool_resources(pool: PoolHandle) -> dict[str, list[str]]:
    """What of the pool is left in the sandbox's EC2, IAM and SSM."""
    sandbox = pool.sandbox
    ec2, iam, ssm = sandbox.client("ec2"), sandbox.client("iam"), sandbox.client("ssm")
    tagged = [{"Name": "tag:htcpool:pool", "Values": [POOL]}]
    instances = [i["InstanceId"] for r in ec2.describe_instances(Filters=[
        *tagged, {"Name": "instance-state-name",
                  "Values": ["pending", "running", "stopping", "stopped"]}])["Reservations"]
                 for i in r["Instances"]]
    images = [i["ImageId"] for i in ec2.describe_images(Owners=["self"], Filters=tagged)["Images"]]
    groups = [g["GroupId"] for g in ec2.describe_security_groups(Filters=tagged)["SecurityGroups"]]
    roles = [r["RoleName"] for r in iam.list_roles()["Roles"]
             if r["RoleName"].startswith(f"htcpool-{POOL}-")]
    params = [p["Name"] for p in ssm.describe_parameters(ParameterFilters=[
        {"Key": "Name", "Option": "BeginsWith", "Values": [f"/htcpool/{POOL}/"]}])["Parameters"]]
    return {"instances": instances, "images": images, "security_groups": groups,
            "roles": roles, "parameters": params}


@pytest.fixture(scope="module")
def demo(sandbox_pool: PoolHandle, tmp_path_factory: pytest.TempPathFactory
         ) -> dict[str, Any]:
    sandbox = sandbox_pool.sandbox
    clean(sandbox_pool)  # earlier tests' jobs would keep the demo's workers busy
    out = tmp_path_factory.mktemp("demo")
    env = {**sandbox.env(), "PATH": f"{REPO / '.venv' / 'bin'}:{os.environ.get('PATH', '')}"}
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator.demo", "--jobs", str(JOBS),
         "--summary-json", str(out / "summary.json"), "--png", str(out / "demo.png"),
         "--timeout", "1200"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=2700)
    return {"proc": proc, "out": out, "left": _pool_resources(sandbox_pool)}


def _load(demo: dict[str, Any], name: str) -> Any:
    return json.loads((demo["out"] / name).read_text())


def _ok(demo: dict[str, Any]) -> None:
    proc = demo["proc"]
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"


@pytest.mark.pool_teardown
def test_demo_runs_the_burst_and_leaves_nothing(demo: dict[str, Any]) -> None:
    _ok(demo)
    out = demo["proc"].stdout
    assert f"Jobs: {JOBS} of {JOBS} completed" in out
    assert "reusing worker image" in out  # the shared pool's, not a second bake
    assert "the sandbox was up before the demo: left up" in out
    assert "Traceback" not in demo["proc"].stderr
    assert not any(demo["left"].values()), demo["left"]


@pytest.mark.pool_teardown
def test_job_numbers_match_condor_history(demo: dict[str, Any]) -> None:
    _ok(demo)
    summary = _load(demo, "summary.json")
    history = _load(demo, "summary.history.json")
    assert len(history) == JOBS == summary["jobs_submitted"] == summary["jobs_completed"]
    assert {ad["JobStatus"] for ad in history} == {4}
    assert {ad["Owner"] for ad in history} == {"htcdemo"}  # not root
    assert {ad["JobBatchName"] for ad in history} == {summary["batch"]}
    first_queued = min(ad["QDate"] for ad in history)
    first_start = min(ad.get("JobStartDate") or ad["JobCurrentStartDate"] for ad in history)
    assert summary["first_start_s"] == pytest.approx(first_start - first_queued)
    assert summary["last_completion_s"] == pytest.approx(
        max(ad["CompletionDate"] for ad in history) - first_queued)
    busy = sum(ad["RemoteWallClockTime"] * ad["RequestCpus"] for ad in history)
    assert summary["busy_core_s"] == pytest.approx(busy)
    # mixed sizes, as the issue asks
    assert len({(ad["RequestCpus"], ad["RequestMemory"]) for ad in history}) > 1


@pytest.mark.pool_teardown
def test_instance_numbers_match_the_emulator(demo: dict[str, Any]) -> None:
    _ok(demo)
    summary = _load(demo, "summary.json")
    hosts = _load(demo, "summary.instances.json")
    history = _load(demo, "summary.history.json")
    # The sandbox's records cover the whole session: the demo's workers are those
    # launched since its autoscaler started.
    workers = [h for h in hosts if h["tags"].get("htcpool:role") == "worker"
               and min(t for t, s in h["transitions"] if s == "pending") >= summary["since"]]
    assert workers, "the autoscaler launched no worker"
    assert {h["tags"].get("htcpool:launched-by") for h in workers} == {"autoscaler"}
    total = 0.0
    for h in workers:
        states = [s for _, s in h["transitions"]]
        assert states[0] == "pending" and states[-1] == "terminated", states  # back to zero
        times = {s: t for t, s in reversed(h["transitions"])}  # first time of each state
        total += times["terminated"] - times["pending"]
    assert summary["workers_launched"] == len(workers)
    assert summary["instance_s"] == pytest.approx(total)
    assert summary["core_s_paid"] == pytest.approx(total * 2)
    # nothing ran anywhere but on those workers, so they were paid for at least the work
    names = {h["hostname"] for h in workers}
    assert {ad["LastRemoteHost"].split("@")[-1] for ad in history} <= names
    assert summary["busy_core_s"] <= summary["core_s_paid"]
    actions = {d["action"] for d in summary["decisions"]}
    assert {"launch", "terminate"} <= actions, actions


@pytest.mark.pool_teardown
def test_chart_is_a_png(demo: dict[str, Any]) -> None:
    _ok(demo)
    import matplotlib.image

    png = demo["out"] / "demo.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width, _ = matplotlib.image.imread(png).shape
    assert height > 100 and width > 100
    samples = _load(demo, "summary.samples.json")
    assert samples and max(s["jobs_done"] for s in samples) == JOBS


@pytest.mark.lifecycle
def test_ctrl_c_while_bootstrapping_tears_everything_down(tmp_path: Path) -> None:
    """Interrupted in the middle of a playbook: exit 130, one line, nothing left (no host,
    mount, link, namespace, nor an ansible-playbook still working on the inventory)."""
    import signal
    import time

    from orchestrator.sandbox import control

    env = _env()
    out = tmp_path / "interrupted"
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.demo", "--jobs", "2",
         "--summary-json", str(out / "summary.json")],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    seen = []
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        seen.append(line)
        if not line or "bootstrapping the central manager" in line:
            break
    assert "bootstrapping" in seen[-1], "".join(seen)
    time.sleep(5)  # inside the playbook
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "htcpool demo: interrupted; the sandbox is torn down"
    assert "Traceback" not in err
    assert not any(control.leftovers(_settings()).values()), control.leftovers(_settings())
    still = [p for p in Path("/proc").iterdir() if p.name.isdigit() and
             _cmdline(p).find(str(DEMO_DIR)) >= 0]
    assert not still, [_cmdline(p) for p in still]


def _cmdline(proc_dir: Path) -> str:
    try:
        return (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
