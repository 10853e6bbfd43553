"""Fault soak: N randomized autoscaler runs on the sandbox, faults injected, counted.

    sudo .venv/bin/python -m bench.fault_soak --runs 30 --seed 1 [--budget-min 240]

Brings up its own sandbox (index 0, state in /tmp/htcpool-soak) and builds one pool. Each
run starts from an empty pool, submits a random burst of short jobs, runs `htcpool
autoscale` and injects a random mix of faults:
- API: 5xx and throttling on any call, capacity errors for one instance shape, failing
  SSM commands; replies lost after the call was carried out (RunInstances,
  TerminateInstances, CreateTags) and replies slower than the client's time-out;
- EC2's eventual consistency (new instances unlisted and untaggable for a while) and SSM
  commands that start late (and run even after being cancelled);
- the autoscaler: kill -9 (then a restart), a second `htcpool autoscale` on the same pool,
  a restart whose host clock is 10 minutes off;
- HTCondor: a restart of condor on the central manager, of its schedd alone (running jobs
  reconnect), of a worker's condor while it is drained; a worker powered off under a job.
Every counter is read from HTCondor's job history and the EC2 records, never from the
autoscaler's log. Replay one run with `--seed S --first K --runs 1`. Writes the
"fault_soak" section of bench/RESULTS.md (`--render DIR --notes FILE` writes it again from a
finished soak's files with a reviewed paragraph); the sandbox is always taken down.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.results import git_revision, machine, update_section
from orchestrator.sandbox import control
from orchestrator.sandbox.settings import SandboxSettings
from tests.support.pool import (
    PoolHandle,
    history,
    launched_since,
    remove_all_jobs,
    start_autoscaler,
    stop_autoscaler,
)
from tests.support.sandbox import SandboxHandle

ROOT = Path("/tmp/htcpool-soak")
# The pool's shapes (build below): a capacity error on one falls back to the other. Each
# worker advertises its type's vCPUs (2 for both), so the "double launch" bound counts
# by the shapes' cpus (workers_needed).
SHAPES = ("t3.medium", "t3.large")
LEASE_S = 20  # job_lease_duration: a lost host's job is idle again after this, not 40 min
JOBS_TIMEOUT_S = 480.0
EMPTY_TIMEOUT_S = 240.0
POLL_S = 3.0
ALIVE = ("pending", "running", "stopping", "stopped", "shutting-down")
SECTION, TITLE = "fault_soak", "Fault soak: randomized runs on the sandbox"
FAULT_LINE = re.compile(r"fault injected: (\w+) -> (\w+)( \(after carrying it out\))?")
READ_TIMEOUT_S = 8.0  # the soak's [aws] read_timeout_s: slow replies beyond it time out
CLOCK_JUMP_S = 600.0


def log(msg: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", flush=True)


@dataclass
class Plan:
    """One run's random draws, all made up front so the seed alone replays the run."""

    jobs: list[tuple[int, int]]  # (cpus, seconds)
    api_5xx: dict[str, Any] | None
    throttle: dict[str, Any] | None
    ice_shape: str | None
    ssm: dict[str, Any] | None
    kill_at_s: float | None
    cm_restart_at_s: float | None
    poweroff_after_s: float | None
    lost_reply: dict[str, Any] | None = None  # action, remaining
    slow_reply: dict[str, Any] | None = None  # action, delay_s, remaining
    hide_new_s: float | None = None
    ssm_delay_s: float | None = None
    second_autoscaler_at_s: float | None = None
    clock_jump_at_s: float | None = None
    clock_jump_s: float = 0.0
    schedd_restart_at_s: float | None = None
    startd_restart_drained: bool = False

    @property
    def cores(self) -> int:
        return sum(c for c, _ in self.jobs)


def draw(rng: random.Random) -> Plan:
    def maybe(p: float = 0.6) -> bool:
        return rng.random() < p

    jobs = [(rng.choice((1, 1, 1, 2, 2)), rng.randint(10, 40)) for _ in range(rng.randint(4, 10))]
    return Plan(
        jobs=jobs,
        api_5xx={"code": rng.choice(("InternalError", "ServiceUnavailable")),
                 "probability": round(rng.uniform(0.1, 0.3), 2),
                 "remaining": rng.randint(3, 10)} if maybe() else None,
        throttle={"probability": round(rng.uniform(0.1, 0.3), 2),
                  "remaining": rng.randint(2, 8)} if maybe() else None,
        ice_shape=rng.choice(SHAPES) if maybe(0.5) else None,
        ssm={"probability": 0.5, "remaining": rng.randint(1, 4)} if maybe() else None,
        kill_at_s=round(rng.uniform(3, 45), 1) if maybe() else None,
        cm_restart_at_s=round(rng.uniform(10, 60), 1) if maybe(0.4) else None,
        poweroff_after_s=round(rng.uniform(0, 15), 1) if maybe() else None,
        lost_reply={"action": rng.choice(("RunInstances", "TerminateInstances", "CreateTags")),
                    "remaining": rng.randint(1, 3)} if maybe(0.5) else None,
        slow_reply={"action": rng.choice(("DescribeInstances", "RunInstances",
                                          "GetCommandInvocation")),
                    "delay_s": READ_TIMEOUT_S + 2, "remaining": rng.randint(1, 2)}
        if maybe(0.4) else None,
        hide_new_s=round(rng.uniform(5, 20), 1) if maybe(0.4) else None,
        ssm_delay_s=round(rng.uniform(1, 6), 1) if maybe(0.4) else None,
        second_autoscaler_at_s=round(rng.uniform(0, 30), 1) if maybe(0.4) else None,
        clock_jump_at_s=round(rng.uniform(5, 40), 1) if maybe(0.4) else None,
        clock_jump_s=rng.choice((-CLOCK_JUMP_S, CLOCK_JUMP_S)),
        schedd_restart_at_s=round(rng.uniform(10, 50), 1) if maybe(0.4) else None,
        startd_restart_drained=maybe(0.4),
    )


@dataclass
class RunResult:
    run: int
    seed: str
    plan: dict[str, Any]
    faults: dict[str, int] = field(default_factory=dict)
    launched: int = 0
    bound: int = 0
    unjoined: int = 0
    killed: list[int] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    double: int = 0
    victim_jobs: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0


def submit_burst(pool: PoolHandle, jobs: list[tuple[int, int]], log_name: str) -> int:
    """One cluster, one `queue` per job (its own cpus and duration), with a short lease."""
    body = "".join(f"request_cpus = {c}\narguments = {s}\nqueue\n" for c, s in jobs)
    sub = (f"executable = /bin/sleep\nrequest_memory = 512\njob_lease_duration = {LEASE_S}\n"
           f"log = {log_name}\n{body}")
    out = pool.sandbox.exec(pool.cm, f"""set -e
id alice >/dev/null 2>&1 || useradd -m alice
cd /home/alice
cat > soak.sub <<'EOF'
{sub}EOF
chown alice soak.sub
su alice -c "condor_submit -terse soak.sub"
""").stdout
    return int(out.strip().split(".")[0])


def observe(pool: PoolHandle, cluster: int) -> tuple[set[str], dict[int, str], set[str]]:
    """One look at the central manager: the instances whose startd is in the collector
    (the definition of "joined"), ProcId -> instance id of the worker running it, and the
    instances whose startd is draining."""
    out = pool.sandbox.exec(pool.cm, "condor_status -json -attributes "
                                     "Machine,EC2InstanceId,Draining; "
                                     "echo '#--'; condor_q -allusers -json -attributes "
                                     f"ProcId,JobStatus,RemoteHost -constraint "
                                     f"'ClusterId == {cluster}'", check=False).stdout
    slots_text, _, jobs_text = out.partition("#--")
    try:  # either daemon may be restarting (empty or cut-off answer)
        slots = json.loads(slots_text.strip() or "[]")
        jobs = json.loads(jobs_text.strip() or "[]")
    except ValueError:
        return set(), {}, set()
    by_machine = {s["Machine"]: s["EC2InstanceId"] for s in slots if s.get("EC2InstanceId")}
    draining = {s["EC2InstanceId"] for s in slots if s.get("EC2InstanceId") and s.get("Draining")}
    running = {j["ProcId"]: by_machine[j["RemoteHost"].split("@", 1)[-1]] for j in jobs
               if j.get("JobStatus") == 2 and by_machine.get(
                   str(j.get("RemoteHost", "")).split("@", 1)[-1])}
    return set(by_machine.values()), running, draining


def completed(pool: PoolHandle, cluster: int) -> list[dict[str, Any]]:
    try:
        return [j for j in history(pool, cluster) if j["JobStatus"] == 4]
    except ValueError:
        return []


def fault_counts(settings: SandboxSettings, offset: int) -> tuple[dict[str, int], int]:
    """Injected API faults by kind since `offset` in the sandbox server's log (it logs each)."""
    with open(settings.log_file, "rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
        end = f.tell()
    counts: dict[str, int] = {}
    for action, code, after in FAULT_LINE.findall(text):
        kind = ("capacity (InsufficientInstanceCapacity)" if code == "InsufficientInstanceCapacity"
                else "throttling (RequestLimitExceeded)" if code == "RequestLimitExceeded"
                else "SSM command failure" if code == "InternalServerError"
                else "reply lost after the call succeeded" if after
                else "reply slower than the client's time-out" if code == "delay"
                else "API 5xx")
        counts[kind] = counts.get(kind, 0) + 1
        counts[f"  on {action}"] = counts.get(f"  on {action}", 0) + 1
    return counts, end


def restart_drained(sandbox: SandboxHandle, draining: set[str], run: int, when: str) -> int:
    """Restart condor on one draining worker (the first by id); the number restarted."""
    target = sorted(draining)[0]
    sandbox.exec(target, "systemctl restart condor", check=False, timeout=120)
    log(f"run {run}: condor restarted on {target} while it drained, {when}")
    return 1


def inject(sandbox: SandboxHandle, plan: Plan) -> None:
    if plan.api_5xx:
        sandbox.inject("*", plan.api_5xx["code"], status=503,
                       probability=plan.api_5xx["probability"],
                       remaining=plan.api_5xx["remaining"])
    if plan.throttle:
        sandbox.inject("*", "RequestLimitExceeded", status=400, **plan.throttle)
    if plan.ice_shape:
        sandbox.inject("RunInstances", "InsufficientInstanceCapacity",
                       match={"InstanceType": plan.ice_shape}, remaining=-1)
    if plan.ssm:
        sandbox.inject("SendCommand", "InternalServerError", status=500, **plan.ssm)
    if plan.lost_reply:
        sandbox.inject(plan.lost_reply["action"], "InternalError", status=500, after=True,
                       remaining=plan.lost_reply["remaining"])
    if plan.slow_reply:
        sandbox.inject(plan.slow_reply["action"], "", delay_s=plan.slow_reply["delay_s"],
                       remaining=plan.slow_reply["remaining"])
    if plan.hide_new_s or plan.ssm_delay_s:
        sandbox.behave(hide_new_s=plan.hide_new_s or 0.0, ssm_delay_s=plan.ssm_delay_s or 0.0)


def htcpool_terminate(pool: PoolHandle, ids: list[str]) -> None:
    if ids:
        pool.htcpool("instances", "terminate", "--yes", *ids)


def workers_needed(cores: int, pool: PoolHandle) -> int:
    """The most workers bin-packing a burst of `cores` (jobs of 1 or 2 cores) can take:
    every one of the pool's fewest-core shape, each advertising that shape's cpus."""
    return math.ceil(cores / min(s.cpus for s in pool.pool.config.autoscaler.shapes))


def one_run(pool: PoolHandle, run: int, seed: int, workdir: Path) -> RunResult:
    run_seed = f"{seed}:{run}"
    rng = random.Random(run_seed)
    plan = draw(rng)
    res = RunResult(run=run, seed=run_seed, plan=asdict(plan))
    log(f"run {run} seed {run_seed}: {json.dumps(asdict(plan))}")
    sandbox, settings = pool.sandbox, pool.sandbox.settings
    # Start empty: no faults, no jobs, no workers (an earlier failed run may have left some).
    sandbox.clear_faults()
    remove_all_jobs(pool)
    htcpool_terminate(pool, [i["InstanceId"] for i in pool.workers()])
    offset = settings.log_file.stat().st_size
    started = time.time()
    t0 = time.monotonic()
    cluster = submit_burst(pool, plan.jobs, f"soak-{run}.log")
    inject(sandbox, plan)
    alog = workdir / f"autoscale-{run}.log"
    proc = start_autoscaler(pool, alog)
    second: subprocess.Popen[bytes] | None = None
    jumped = schedd_restarts = startd_restarts = 0
    kills = restarts = 0
    victims: list[str] = []
    joined: set[str] = set()
    poweroff_due: float | None = None
    done: list[dict[str, Any]] = []
    try:
        deadline = t0 + JOBS_TIMEOUT_S
        while time.monotonic() < deadline:
            now = time.monotonic() - t0
            if proc.poll() is not None:  # a fault took the autoscaler down: that is a finding
                res.errors.append(f"autoscaler exited {proc.returncode} by itself at {now:.0f} s")
                proc = start_autoscaler(pool, alog)
            if plan.kill_at_s is not None and not kills and now >= plan.kill_at_s:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                kills += 1
                log(f"run {run}: autoscaler killed (-9) at {now:.0f} s, restarted")
                proc = start_autoscaler(pool, alog)
            if plan.cm_restart_at_s is not None and not restarts and now >= plan.cm_restart_at_s:
                sandbox.exec(pool.cm, "systemctl restart condor", check=False, timeout=120)
                restarts += 1
                log(f"run {run}: condor restarted on the central manager at {now:.0f} s")
            if plan.second_autoscaler_at_s is not None and second is None \
                    and now >= plan.second_autoscaler_at_s:
                second = start_autoscaler(pool, workdir / f"autoscale-{run}-second.log")
                log(f"run {run}: a second autoscaler started at {now:.0f} s")
            if plan.clock_jump_at_s is not None and not jumped and now >= plan.clock_jump_at_s:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                proc = start_autoscaler(pool, alog, env={
                    "HTCPOOL_TEST_CLOCK_OFFSET_S": f"{plan.clock_jump_s:.0f}"})
                jumped += 1
                log(f"run {run}: autoscaler restarted with its clock {plan.clock_jump_s:+.0f} s "
                    f"off at {now:.0f} s")
            if plan.schedd_restart_at_s is not None and not schedd_restarts \
                    and now >= plan.schedd_restart_at_s:
                sandbox.exec(pool.cm, "condor_restart -daemon schedd", check=False, timeout=60)
                schedd_restarts += 1
                log(f"run {run}: the schedd restarted at {now:.0f} s")
            seen, placed, draining = observe(pool, cluster)
            joined |= seen
            if plan.startd_restart_drained and not startd_restarts and draining:
                startd_restarts += restart_drained(sandbox, draining, run, f"at {now:.0f} s")
            if plan.poweroff_after_s is not None and not victims:
                if placed and poweroff_due is None:
                    poweroff_due = now + plan.poweroff_after_s
                if placed and poweroff_due is not None and now >= poweroff_due:
                    victim = rng.choice(sorted(set(placed.values())))
                    sandbox.api(f"poweroff/{victim}", "POST")
                    victims.append(victim)
                    res.victim_jobs = sorted(p for p, i in placed.items() if i == victim)
                    log(f"run {run}: powered off {victim} running jobs {res.victim_jobs} "
                        f"at {now:.0f} s")
            done = completed(pool, cluster)
            if len(done) == len(plan.jobs):
                break
            time.sleep(POLL_S)
        else:
            res.errors.append(f"jobs not all complete after {JOBS_TIMEOUT_S:.0f} s")
        # The pool must scale in with the API healthy again (faults are the run's, not the
        # teardown's); the powered-off worker stays stopped: it is its owner's to remove.
        sandbox.clear_faults()
        deadline = time.monotonic() + EMPTY_TIMEOUT_S
        while pool.workers(states=("pending", "running", "stopping", "shutting-down")):
            seen, _, draining = observe(pool, cluster)
            joined |= seen
            if plan.startd_restart_drained and not startd_restarts and draining:
                startd_restarts += restart_drained(sandbox, draining, run, "(scale-in)")
            if time.monotonic() > deadline:
                res.errors.append(f"workers still up {EMPTY_TIMEOUT_S:.0f} s after the jobs")
                break
            time.sleep(POLL_S)
    finally:
        sandbox.clear_faults()
        for which, p in (("autoscaler", proc), ("second autoscaler", second)):
            if p is None:
                continue
            try:
                rc = stop_autoscaler(p)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                rc = p.wait()
            if rc != 0:
                res.errors.append(f"{which} exited {rc} on SIGTERM")
    res.faults, _ = fault_counts(settings, offset)
    for kind, n in (("autoscaler kill -9", kills), ("central manager condor restart", restarts),
                    ("worker power-off under a job", len(victims)),
                    ("second autoscaler on the pool", int(second is not None)),
                    ("autoscaler clock jump (restart 10 min off)", jumped),
                    ("schedd restart, jobs reconnecting", schedd_restarts),
                    ("worker condor restart while drained", startd_restarts),
                    ("EC2 listing lags new instances", int(bool(plan.hide_new_s))),
                    ("SSM commands start late", int(bool(plan.ssm_delay_s)))):
        if n:
            res.faults[kind] = n
    done = completed(pool, cluster)
    by_proc = {j["ProcId"]: j for j in done}
    res.lost = [p for p in range(len(plan.jobs)) if p not in by_proc]
    res.killed = sorted(p for p, j in by_proc.items() if j.get("ExitCode") != 0 or (
        j.get("NumJobStarts", 1) > 1 and p not in res.victim_jobs))
    ever = launched_since(pool, started)
    res.launched = len(ever)
    res.unjoined = len([i for i in ever if i["InstanceId"] not in joined
                        and i["InstanceId"] not in victims])
    res.bound = workers_needed(plan.cores, pool) + len(victims) + res.unjoined
    res.double = max(0, res.launched - res.bound)
    # The run's cleanup, through htcpool as an operator would: the stopped victim goes.
    htcpool_terminate(pool, [i["InstanceId"] for i in pool.workers() if i["InstanceId"]
                             in victims])
    res.orphans = [i["InstanceId"] for i in pool.workers(states=ALIVE)]
    (workdir / f"history-{run}.json").write_text(json.dumps(done, indent=1))
    (workdir / f"jobs-{run}.log").write_text(sandbox.exec(
        pool.cm, f"cat /home/alice/soak-{run}.log", check=False).stdout)
    res.wall_s = time.monotonic() - t0
    remove_all_jobs(pool)
    log(f"run {run} done in {res.wall_s:.0f} s: launched {res.launched} (bound {res.bound}), "
        f"killed {res.killed}, lost {res.lost}, orphans {res.orphans}, errors {res.errors}, "
        f"faults {res.faults}")
    return res


def final_teardown(pool: PoolHandle) -> tuple[list[str], list[str]]:
    """htcpool terminates any worker left, then teardown.yml removes the rest of the pool.
    Returns (workers alive before teardown.yml, pool instances alive after it)."""
    from orchestrator.provision import REPO_ROOT, run_playbook
    from orchestrator.sandbox.pool import aws_environment

    htcpool_terminate(pool, [i["InstanceId"] for i in pool.workers()])
    workers = [i["InstanceId"] for i in pool.workers(states=ALIVE)]
    with aws_environment(pool.sandbox.state):
        run_playbook(pool.pool.config, REPO_ROOT / "playbooks" / "teardown.yml",
                     inventory=pool.pool.inventory, progress=lambda _m: None,
                     extravars={"htcpool_teardown_confirm": pool.pool.config.pool})
    res = pool.sandbox.client("ec2").describe_instances(Filters=[
        {"Name": "tag:htcpool:pool", "Values": [pool.pool.config.pool]},
        {"Name": "instance-state-name", "Values": list(ALIVE)}])["Reservations"]
    return workers, [i["InstanceId"] for r in res for i in r["Instances"]]


def build(sandbox: SandboxHandle) -> PoolHandle:
    from orchestrator.autoscaler.planner.config import InstanceShape
    from orchestrator.config import AwsSettings
    from orchestrator.sandbox.pool import SANDBOX_SHAPE, aws_environment, build_pool, config_toml

    # A second 2-core shape, so a capacity error on one has somewhere to fall back to.
    large = InstanceShape(name="t3.large", cpus=2, memory_mb=8192, price_per_hour=0.0832)
    with aws_environment(sandbox.state):
        # The queue's need only (no forecast spare), so "double launch" has a sharp bound.
        built = build_pool(sandbox.state, progress=lambda m: log(f"[pool] {m}"), max_workers=10,
                           idle_timeout_s=15.0, interval_s=3.0, arrival_window_s=0.0,
                           spare_largest_jobs=0, shapes=(SANDBOX_SHAPE, large))
    # A short client time-out, so the slow replies the soak injects time out and are retried.
    built.config = built.config.model_copy(update={"aws": AwsSettings(
        read_timeout_s=READ_TIMEOUT_S)})
    config = sandbox.settings.state_dir / "htcpool.toml"
    config.write_text(config_toml(built.config))
    return PoolHandle(sandbox=sandbox, pool=built, config_file=config)


def section(results: list[RunResult], args: argparse.Namespace, wall_s: float,
            end_orphans: tuple[list[str], list[str]] | None, leftovers: dict[str, list[str]],
            load: str, notes: str = "") -> str:
    kinds: dict[str, int] = {}
    for r in results:
        for k, v in r.faults.items():
            kinds[k] = kinds.get(k, 0) + v
    other = (" (the test suite's sandbox, index 1, was up alongside)"
             if Path("/sys/class/net/htcp1br").exists() else "")
    failures = [r for r in results if r.errors or r.killed or r.lost or r.orphans or r.double]
    lines = [
        f"Command: `.venv/bin/python -m bench.fault_soak --runs {args.runs} --seed {args.seed}"
        f"{f' --first {args.first}' if args.first else ''}` (as root, warm image cache). "
        f"Machine: {machine()}; load average before the soak {load}{other}. "
        f"Revision {git_revision()}.", "",
        f"Runs: {len(results)} of {args.runs} asked (seeds `{args.seed}:<run>`), whole soak "
        f"{wall_s / 60:.1f} min wall clock including one pool build (about 3 min) and the "
        "teardown.", "",
        "| faults injected (all runs) | count |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in sorted(kinds.items()) if not k.startswith("  ")]
    total = sum(v for k, v in kinds.items() if not k.startswith("  "))
    by_call = ", ".join(f"{k.strip()[3:]} {v}" for k, v in sorted(kinds.items())
                        if k.startswith("  "))
    lines += [f"| **total** | {total} |", "", f"API faults by the call that failed: {by_call}.", "",
              "| counter | value |", "|---|---|",
              f"| jobs killed by the autoscaler | {sum(len(r.killed) for r in results)} |",
              f"| jobs lost | {sum(len(r.lost) for r in results)} |",
              f"| orphaned instances after each run's cleanup | "
              f"{sum(len(r.orphans) for r in results)} |",
              "| orphaned workers after the final `htcpool instances terminate` | "
              f"{'n/a' if end_orphans is None else len(end_orphans[0])} |",
              "| pool instances alive after teardown.yml | "
              f"{'n/a' if end_orphans is None else len(end_orphans[1])} |",
              "| sandbox leftovers after `down` (processes, mounts, netns, links) | "
              f"{sum(len(v) for v in leftovers.values())} |",
              f"| double launches | {sum(r.double for r in results)} |",
              f"| runs with an error (timeout, autoscaler exit != 0) | "
              f"{len([r for r in results if r.errors])} |", "",
              "| run | seed | jobs (cores) | faults | launched / bound (never seen) | killed | "
              "lost | orphans | double | wall |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        faults = ", ".join(f"{k} {v}" for k, v in r.faults.items() if not k.startswith("  "))
        lines.append(f"| {r.run} | `{r.seed}` | {len(r.plan['jobs'])} "
                     f"({sum(c for c, _ in r.plan['jobs'])}) | {faults or 'none'} | "
                     f"{r.launched} / {r.bound} ({r.unjoined}) | {len(r.killed)} | {len(r.lost)} | "
                     f"{len(r.orphans)} | {r.double} | {r.wall_s:.0f} s |")
    lines += ["", "Definitions (all from HTCondor's job history and the EC2 records):", "",
              "- *killed by the autoscaler*: a completed job with ExitCode != 0, or with "
              "NumJobStarts > 1 that was not running on the powered-off worker when it was "
              "powered off (those are expected to start twice).",
              "- *lost*: submitted but not in the history as completed (JobStatus 4) when the "
              f"run ends ({JOBS_TIMEOUT_S:.0f} s limit).",
              "- *orphaned*: an instance of the pool other than the central manager that is not "
              "terminated after the run's cleanup (the autoscaler scales in to 0; the "
              "powered-off worker, left stopped by design, is terminated with `htcpool "
              "instances terminate`); at the end, also after teardown.yml and `sandbox down`.",
              "- *double launches*: worker instances launched during the run beyond "
              "ceil(cores requested / cpus of the pool's fewest-core shape) + powered-off "
              "workers + launched workers that never appeared in the collector (polled every "
              "3 s); each worker advertises its type's vCPUs (both shapes have 2) and the "
              "autoscaler runs with no forecast spare, so the first term is exactly what "
              "bin-packing the burst needs.",
              "- Faults: API faults counted from the sandbox server's log (one line per "
              "injected error, whoever made the call); the others counted by the soak. Each "
              "run draws each kind independently: 5xx on any call (p 0.6; per call p 0.1-0.3, "
              "up to 3-10 times), throttling (0.6; p 0.1-0.3, up to 2-8 times), "
              "InsufficientInstanceCapacity for every RunInstances of one of the two shapes "
              "(0.5), SendCommand HTTP 500 (0.6; p 0.5, up to 1-4), a reply lost after "
              "RunInstances, TerminateInstances or CreateTags succeeded (0.5; 1-3 times), a "
              f"reply {READ_TIMEOUT_S + 2:.0f} s late against a {READ_TIMEOUT_S:.0f} s client "
              "time-out on DescribeInstances, RunInstances or GetCommandInvocation (0.4; 1-2 "
              "times), new instances unlisted and untaggable for 5-20 s (0.4), SSM commands "
              "starting 1-6 s late (0.4), kill -9 of the autoscaler at 3-45 s (0.6), a second "
              "autoscaler from 0-30 s (0.4), a restart of the autoscaler with its clock "
              f"{CLOCK_JUMP_S / 60:.0f} min fast or slow at 5-40 s (0.4), `systemctl restart "
              "condor` on the central manager at 10-60 s (0.4), `condor_restart -daemon "
              "schedd` at 10-50 s (0.4), condor restarted on the first worker seen draining "
              "(0.4), power-off of a worker 0-15 s after the first job runs (0.6).",
              f"- Jobs: 4-10 per run, 1 or 2 CPUs, 10-40 s, job_lease_duration {LEASE_S} s; "
              "autoscaler interval 3 s, idle timeout 15 s, max 10 workers."]
    if failures:
        lines += ["", "Runs with a non-zero counter or an error:", ""]
        lines += [f"- run {r.run} (seed `{r.seed}`): killed {r.killed}, lost {r.lost}, "
                  f"orphans {r.orphans}, double {r.double}, errors {r.errors}"
                  for r in failures]
    if notes:
        lines += ["", notes.rstrip()]
    return "\n".join(lines)


def render(workdir: Path, notes: str) -> int:
    """Write the section again from a finished soak's files (to add reviewed notes)."""
    summary = json.loads((workdir / "summary.json").read_text())
    results = [RunResult(**r) for r in json.loads((workdir / "runs.json").read_text())]
    end = summary["end_orphans"]
    update_section(SECTION, TITLE, section(
        results, argparse.Namespace(**summary["args"]), summary["wall_s"],
        None if end is None else (end[0], end[1]), summary["leftovers"], summary["load"], notes))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--first", type=int, default=0, help="number of the first run (replay)")
    p.add_argument("--budget-min", type=float, default=240.0,
                   help="start no run that could end after this (minutes since start)")
    p.add_argument("--no-record", action="store_true", help="do not write bench/RESULTS.md")
    p.add_argument("--render", type=Path, default=None, metavar="DIR",
                   help="only rewrite the section from a finished soak's DIR/summary.json")
    p.add_argument("--notes", type=Path, default=None,
                   help="a reviewed paragraph (Markdown) to append to the section")
    args = p.parse_args(argv)
    notes = args.notes.read_text() if args.notes else ""
    if args.render is not None:
        return render(args.render, notes)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    settings = SandboxSettings(state_dir=ROOT / "sandbox", index=0)
    workdir = ROOT / time.strftime("%Y%m%d-%H%M%S")
    workdir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    results: list[RunResult] = []
    end_orphans: tuple[list[str], list[str]] | None = None
    try:
        state = control.up(settings, progress=lambda m: log(f"[sandbox] {m}"))
        pool = build(SandboxHandle(settings=settings, state=state))
        for run in range(args.first, args.first + args.runs):
            if time.monotonic() - start + (JOBS_TIMEOUT_S / 2) > args.budget_min * 60:
                log(f"time budget reached: {len(results)} runs done")
                break
            try:
                results.append(one_run(pool, run, args.seed, workdir))
            except (AssertionError, subprocess.SubprocessError, OSError) as err:
                log(f"run {run} failed: {err}")
                results.append(RunResult(run=run, seed=f"{args.seed}:{run}", plan={"jobs": []},
                                         errors=[f"{type(err).__name__}: {str(err)[:300]}"]))
            (workdir / "runs.json").write_text(json.dumps([asdict(r) for r in results],
                                                          indent=1))
        end_orphans = final_teardown(pool)
        log(f"final: workers alive {end_orphans[0]}, pool instances alive {end_orphans[1]}")
    finally:
        control.down(settings, progress=lambda m: log(f"[sandbox] {m}"))
    leftovers = control.leftovers(settings)
    wall = time.monotonic() - start
    log(f"sandbox leftovers: {leftovers}; soak {wall / 60:.1f} min; details in {workdir}")
    (workdir / "summary.json").write_text(json.dumps({
        "args": {"runs": args.runs, "seed": args.seed, "first": args.first}, "wall_s": wall,
        "end_orphans": end_orphans, "leftovers": leftovers, "load": load}, indent=1))
    if results and not args.no_record:
        update_section(SECTION, TITLE,
                       section(results, args, wall, end_orphans, leftovers, load, notes))
        log("recorded in bench/RESULTS.md")
    bad = any(r.killed or r.lost or r.orphans or r.double for r in results) or \
        any(leftovers.values()) or end_orphans is None or any(end_orphans)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
