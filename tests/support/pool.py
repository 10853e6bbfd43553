"""The shared pool (a bootstrapped central manager and a baked worker image on the session
sandbox) and what tests do with it: submit jobs as an ordinary user, read HTCondor's
history, run the autoscaler as a user would, and report the pool's state when a wait
times out."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.paths import HTCPOOL, REPO
from tests.support.sandbox import SandboxHandle


@dataclass
class PoolHandle:
    """A bootstrapped pool on the session sandbox: central manager + baked worker image."""

    sandbox: SandboxHandle
    pool: Any  # orchestrator.sandbox.pool.SandboxPool
    config_file: Path
    build: SharedPoolBuild | None = None

    @property
    def cm(self) -> str:
        return str(self.pool.central_manager)

    def env(self, **extra: str) -> dict[str, str]:
        return {**self.sandbox.env(), "HTCPOOL_CONFIG": str(self.config_file), **extra}

    def htcpool(self, *args: str, check: bool = True, timeout: float = 600
                ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(REPO / ".venv" / "bin" / "htcpool"), *args], env=self.env(),
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"htcpool {' '.join(args)} exited {proc.returncode}:\n"
                                 f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
        return proc

    def workers(self, states: tuple[str, ...] = ("pending", "running", "stopping", "stopped")
                ) -> list[dict[str, Any]]:
        ec2 = self.sandbox.client("ec2")
        res = ec2.describe_instances(Filters=[
            {"Name": "tag:htcpool:pool", "Values": [self.pool.config.pool]},
            {"Name": "tag:htcpool:role", "Values": ["worker"]},
            {"Name": "instance-state-name", "Values": list(states)}])["Reservations"]
        return [i for r in res for i in r["Instances"]]


@dataclass
class ManagerHtcpool:
    """htcpool as the master role installs it on the central manager (autoscaler service)."""

    pool: PoolHandle
    extravars: dict[str, Any]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`htcpool ARGS` on the central manager as root, with the role's configuration."""
        import shlex

        return self.pool.sandbox.exec(
            self.pool.cm, f"HTCPOOL_CONFIG={AUTOSCALER_CONFIG} /opt/htcpool/bin/htcpool "
                          f"{shlex.join(args)}", check=check)

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--json").stdout)

    def bootstrap(self, **overrides: Any) -> Any:
        """The central manager's role gets the autoscaler's policy (aws_resources.yml with
        htcpool_central_manager_autoscaler, as iam/README.md says to enable it with the
        service: the sandbox enforces IAM, so the service acts with exactly that role), then
        bootstrap.yml on the central manager only; returns bootstrap's per-host stats."""
        from orchestrator.provision import run_playbook
        from orchestrator.sandbox.pool import aws_environment

        with aws_environment(self.pool.sandbox.state):
            run_playbook(self.pool.pool.config, REPO / "playbooks" / "aws_resources.yml",
                         inventory=self.pool.pool.inventory,
                         extravars={"htcpool_central_manager_autoscaler": True})
            result = run_playbook(
                self.pool.pool.config, REPO / "playbooks" / "bootstrap.yml",
                inventory=self.pool.pool.inventory, limit="htcondor_central_manager",
                extravars={**self.extravars, **overrides})
        return result.stats


AUTOSCALER_CONFIG = "/etc/htcpool/htcpool.toml"


def submit(pool: PoolHandle, count: int, seconds: int, cpus: int = 1, memory: int = 512,
           owner: str = "alice", extra: str = "", host: str | None = None) -> int:
    """`count` jobs sleeping `seconds`, submitted as `owner` (an ordinary user) on the
    central manager (or `host`); `extra` adds submit commands. Their events go to
    /home/<owner>/jobs.log."""
    out = pool.sandbox.exec(host or pool.cm, f"""set -e
id {owner} >/dev/null 2>&1 || useradd -m {owner}
cd /home/{owner}
cat > job-$$.sub <<EOF
executable = /bin/sleep
arguments = {seconds}
request_cpus = {cpus}
request_memory = {memory}
log = jobs.log
{extra}
queue {count}
EOF
chown {owner} job-$$.sub
su {owner} -c "condor_submit -terse job-$$.sub"
""").stdout
    return int(out.strip().split(".")[0])


def job_events(pool: PoolHandle, owner: str, host: str | None = None) -> dict[str, int]:
    """How many events of each kind the owner's job event log holds: "evicted" (004),
    "terminated" (005), "aborted" (009), "held" (012), "disconnected" (022) ..."""
    names = {"000": "submitted", "001": "executing", "004": "evicted", "005": "terminated",
             "006": "image size", "007": "shadow exception", "009": "aborted",
             "012": "held", "013": "released", "022": "disconnected", "023": "reconnected",
             "024": "reconnect failed", "028": "attributes", "040": "file transfer"}
    text = pool.sandbox.exec(host or pool.cm, f"cat /home/{owner}/jobs.log 2>/dev/null",
                             check=False).stdout
    counts: dict[str, int] = {}
    for line in text.splitlines():
        code = line[:3]
        if len(line) > 4 and code.isdigit() and line[3] == " " and line[4] == "(":
            name = names.get(code, code)
            counts[name] = counts.get(name, 0) + 1
    return counts


def history(pool: PoolHandle, cluster: int, host: str | None = None) -> list[dict[str, Any]]:
    out = pool.sandbox.exec(
        host or pool.cm, f"condor_history -json -constraint 'ClusterId == {cluster}' "
                         "-attributes ClusterId,ProcId,JobStatus,ExitCode,NumJobStarts,"
                         "JobCurrentStartDate,CompletionDate", check=False).stdout.strip()
    return json.loads(out) if out else []


def queue_states(pool: PoolHandle, cluster: int) -> list[int]:
    out = pool.sandbox.exec(pool.cm, "condor_q -allusers -json -attributes JobStatus "
                                     f"-constraint 'ClusterId == {cluster}'",
                            check=False).stdout.strip()
    return [ad["JobStatus"] for ad in json.loads(out)] if out else []


def start_autoscaler(pool: PoolHandle, log: Path, *extra: str,
                     env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with open(log, "ab") as f:
        return subprocess.Popen([HTCPOOL, "autoscale", *extra], env=pool.env(**(env or {})),
                                stdout=f, stderr=f, start_new_session=True)


def stop_autoscaler(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=120)


def events(log: Path) -> list[dict[str, Any]]:
    return json_lines(log.read_text(errors="replace"))


def json_lines(text: str) -> list[dict[str, Any]]:
    """The autoscaler's decision lines (one JSON object each) among other output."""
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
    return out


def launched_since(pool: PoolHandle, since: float) -> list[dict[str, Any]]:
    return [i for i in pool.workers(states=("pending", "running", "stopping", "stopped",
                                            "shutting-down", "terminated"))
            if i["LaunchTime"].timestamp() >= since - 1]


def no_workers(pool: PoolHandle) -> bool:
    """Nothing left that a worker could come back from (terminations have finished)."""
    return not pool.workers(states=("pending", "running", "stopping", "stopped",
                                    "shutting-down"))


def pool_report(pool: PoolHandle, log: Path) -> str:
    """What a failed wait leaves to go on: our workers in EC2 (state, htcpool tags), the
    startd ads in the collector, each live worker's last StartLog lines, and the
    autoscaler's last decisions."""
    now = time.time()
    lines = ["workers in EC2:"]
    workers = pool.workers(states=("pending", "running", "stopping", "stopped", "shutting-down"))
    for w in workers:
        tags = {t["Key"]: t["Value"] for t in w.get("Tags", [])
                if t["Key"] not in ("htcpool:pool", "htcpool:role", "Name")}
        lines.append(f"  {w['InstanceId']} {w['State']['Name']}, launched "
                     f"{now - w['LaunchTime'].timestamp():.0f}s ago, tags {tags}")
    ads = pool.sandbox.exec(pool.cm, "condor_status -json -attributes "
                                     "EC2InstanceId,State,Activity,EnteredCurrentState",
                            check=False)
    lines.append(f"startd ads in the collector: {ads.stdout.strip() or ads.stderr.strip()}")
    for w in workers:
        if w["State"]["Name"] == "running":
            try:
                tail = pool.sandbox.exec(w["InstanceId"], "tail -n 8 /var/log/condor/StartLog",
                                         check=False).stdout
            except Exception as exc:
                tail = repr(exc)
            lines.append(f"{w['InstanceId']} StartLog:\n{tail.rstrip()}")
    decisions = [e for e in events(log) if e.get("event") != "plan"][-15:]
    lines.append("autoscaler's last events:")
    lines += [f"  {now - e.get('ts', now):.0f}s ago "
              f"{json.dumps({k: v for k, v in e.items() if k not in ('ts', 'pool')})[:300]}"
              for e in decisions]
    return "\n".join(lines)


def remove_all_jobs(pool: PoolHandle) -> None:
    # Each owner removes their own jobs: root's tools authenticate with the pool's token
    # here, an identity that may administer daemons but not edit other users' jobs.
    pool.sandbox.exec(pool.cm, "for u in $(condor_q -allusers -af Owner | sort -u); do "
                               "su $u -c 'condor_rm -all' >/dev/null 2>&1; done; true")


def config_with(pool: PoolHandle, directory: Path, **autoscaler: Any) -> dict[str, str]:
    """The session pool's configuration with some autoscaler settings changed."""
    from orchestrator.sandbox.pool import config_toml

    config = pool.pool.config
    changed = config.model_copy(update={"autoscaler": config.autoscaler.model_copy(
        update=autoscaler)})
    path = directory / "htcpool.toml"
    path.write_text(config_toml(changed))
    return {"HTCPOOL_CONFIG": str(path)}




def clean(pool: PoolHandle) -> None:
    """What the autoscaler would leave: no workers, no jobs, no faults."""
    pool.sandbox.clear_faults()
    remove_all_jobs(pool)
    pool.sandbox.terminate([i["InstanceId"] for i in pool.workers()])


# --- the one pool of a test session ---------------------------------------------------------

@dataclass
class Step:
    """One molecule command of the shared pool's build, as it ran."""

    argv: list[str]
    returncode: int
    output: str
    seconds: float

    @property
    def tail(self) -> str:
        return self.output[-6000:]


def molecule(sandbox: SandboxHandle, command: str, scenario: str, ephemeral: Path) -> Step:
    """`molecule COMMAND -s SCENARIO` against the session sandbox (its inventory, base
    image and credentials), with this session's own molecule state."""
    env = sandbox.env()
    env.update({
        "HTCPOOL_SANDBOX_INVENTORY": sandbox.state["inventory"],
        "HTCPOOL_SANDBOX_BASE_AMI": sandbox.base_ami,
        "AWS_ENDPOINT_URL": sandbox.endpoint_url,
        "AWS_REGION": sandbox.state["region"],
        "ANSIBLE_FORCE_COLOR": "0",
        "PY_COLORS": "0",
        # A fresh state per session: a stale "prepared" from an earlier run must not skip
        # this run's prepare.
        "MOLECULE_EPHEMERAL_DIRECTORY": str(ephemeral / scenario),
    })
    argv = [str(REPO / ".venv" / "bin" / "molecule"), command, "-s", scenario]
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=1800, check=False)
    step = Step(argv[1:], proc.returncode, proc.stdout + proc.stderr,
                round(time.monotonic() - started, 1))
    print(f"[pool] molecule {command} -s {scenario}: exit {step.returncode} in "
          f"{step.seconds:.0f} s", flush=True)
    return step


@dataclass
class SharedPoolBuild:
    """What building the shared pool proved (tests/e2e/test_roles_molecule.py reads it)."""

    steps: dict[str, Step]

    def require(self, name: str) -> Step:
        step = self.steps[name]
        if step.returncode != 0:
            raise AssertionError(f"molecule {' '.join(step.argv)} failed:\n{step.tail}")
        return step


def build_shared_pool(sandbox: SandboxHandle) -> PoolHandle:
    """The roles build the session's pool, as molecule's scenarios describe it:
    - sandbox: a central manager and two workers from the base image converged by
      playbooks/bootstrap.yml, converged again (idempotence: nothing may change), and
      verified with real HTCondor commands;
    - bake: the workers go (the central manager stays), playbooks/bake_worker_image.yml
      bakes an image, and an instance launched from it must join with no Ansible run.
    Converge failures raise (no pool to test); idempotence and verify are recorded for
    their tests. Workers left by the verifications are terminated."""
    import tempfile

    from orchestrator.aws.ec2 import Cloud
    from orchestrator.sandbox.pool import SandboxPool, aws_environment, config_toml, sandbox_config

    ephemeral = Path(tempfile.mkdtemp(prefix="molecule-", dir=sandbox.settings.state_dir))
    steps: dict[str, Step] = {}
    build = SharedPoolBuild(steps)
    for name, (command, scenario) in {
            "converge": ("converge", "sandbox"), "idempotence": ("idempotence", "sandbox"),
            "verify": ("verify", "sandbox"), "bake": ("converge", "bake"),
            "bake_verify": ("verify", "bake")}.items():
        steps[name] = molecule(sandbox, command, scenario, ephemeral)
        if name in ("converge", "bake"):
            build.require(name)
    # The queue's need only (no forecast spare): the tests count the workers a burst
    # launches.
    config = sandbox_config(sandbox.state, max_workers=10, idle_timeout_s=15.0,
                            interval_s=3.0, arrival_window_s=0.0, spare_largest_jobs=0)
    with aws_environment(sandbox.state):
        cloud = Cloud(config)
        built = SandboxPool(config=config, state=sandbox.state,
                            central_manager=cloud.central_manager().id,
                            worker_image=cloud.newest_worker_image().id)
    config_file = Path(sandbox.settings.state_dir) / "htcpool.toml"
    config_file.write_text(config_toml(config))
    handle = PoolHandle(sandbox=sandbox, pool=built, config_file=config_file, build=build)
    clean(handle)
    return handle
