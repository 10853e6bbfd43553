"""The demo, step by step: sandbox up; a pool built by the project's playbooks (AWS
resources, central manager bootstrap, worker image bake); the autoscaler in a thread; a
burst of real jobs; live progress until every job ran and the pool is back to zero
workers; a summary from HTCondor's history and the emulator's records, and a chart. Then
the sandbox is torn down, or left up with `--keep`. Ctrl-C at any point tears it down.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.markup import escape

from orchestrator.demo import jobs as burst
from orchestrator.demo.monitor import Display, Sample, take_sample
from orchestrator.demo.procs import end_children, off_main_thread
from orchestrator.demo.summary import Summary, decisions, summarise, text
from orchestrator.errors import HtcpoolError, describe_exception
from orchestrator.sandbox import control
from orchestrator.sandbox.settings import SandboxSettings
from orchestrator.signals import raise_on_interrupt

SAMPLE_EVERY_S = 2.0
DEFAULT_OUT = Path("artifacts/demo")
# build_pool's progress lines that start a phase, and the phase's name in the summary.
PHASES = {"provisioning": "aws_resources", "launching the central": "central_manager",
          "bootstrapping": "bootstrap", "baking": "bake", "reusing worker image": "bake"}


@dataclass(frozen=True)
class Options:
    keep: bool
    jobs: int
    seed: int
    summary_json: Path
    png: Path
    timeout_s: float
    teardown_playbook: bool

    @property
    def out_dir(self) -> Path:
        return self.summary_json.parent

    def raw(self, name: str) -> Path:
        """Where a raw record goes: next to the summary (history.json, instances.json...)."""
        return self.out_dir / f"{self.summary_json.stem}.{name}.json"


def parse(argv: list[str] | None) -> Options:
    p = argparse.ArgumentParser(prog="python -m orchestrator.demo", description=__doc__)
    p.add_argument("--keep", action="store_true", help="leave the sandbox up afterwards")
    p.add_argument("--jobs", type=int, default=40, help="jobs in the burst (default 40)")
    p.add_argument("--seed", type=int, default=8, help="seed of the job mix (default 8)")
    p.add_argument("--summary-json", type=Path, default=DEFAULT_OUT / "summary.json",
                   help="the summary as JSON; raw records are written next to it")
    p.add_argument("--png", type=Path, default=None,
                   help="the chart (default: next to the summary, chart.png)")
    p.add_argument("--timeout", type=float, default=900.0,
                   help="give up this many seconds after submitting (default 900)")
    p.add_argument("--no-teardown-playbook", action="store_true",
                   help="skip playbooks/teardown.yml before taking the sandbox down")
    a = p.parse_args(argv)
    if a.jobs < 1:
        p.error("--jobs must be at least 1")
    png = a.png or a.summary_json.parent / "chart.png"
    return Options(keep=a.keep, jobs=a.jobs, seed=a.seed, summary_json=a.summary_json,
                   png=png, timeout_s=a.timeout, teardown_playbook=not a.no_teardown_playbook)


class Demo:
    def __init__(self, opts: Options, settings: SandboxSettings, console: Console) -> None:
        self.opts = opts
        self.settings = settings
        self.console = console
        self.state: dict[str, Any] | None = None
        self.borrowed = False
        self.pool: Any = None
        self.events: list[dict[str, Any]] = []
        self.phases: dict[str, float] = {}
        self._phase: tuple[str, float] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._status: Any = None
        opts.out_dir.mkdir(parents=True, exist_ok=True)
        self._log: IO[str] = open(opts.out_dir / "demo.log", "w")  # noqa: SIM115

    # --- messages ------------------------------------------------------------------------
    def say(self, message: str) -> None:
        self._log.write(f"{time.strftime('%H:%M:%S')} {message}\n")
        self._log.flush()
        self.console.print(message, highlight=False, markup=False)

    def phase(self, name: str) -> None:
        now = time.monotonic()
        if self._phase is not None:
            label, started = self._phase
            self.phases[label] = round(self.phases.get(label, 0.0) + now - started, 1)
        self._phase = (name, now) if name else None

    def ansible(self, line: str) -> None:
        """build_pool's progress: phase lines shown, task lines in the log (and spinner)."""
        self._log.write(f"{time.strftime('%H:%M:%S')} {line}\n")
        self._log.flush()
        start = next((name for prefix, name in PHASES.items() if line.startswith(prefix)), None)
        if start is not None:
            self.phase(start)
            self.console.print(f"[bold]==>[/bold] {escape(line)}", highlight=False)
        elif self._status is not None and line.startswith("TASK "):
            self._status.update(f"  {escape(line[5:][:100])}")

    @contextlib.contextmanager
    def spinner(self, what: str) -> Iterator[None]:
        if not self.console.is_terminal:
            yield
            return
        with self.console.status(what) as status:
            self._status = status
            try:
                yield
            finally:
                self._status = None

    def log_traceback(self) -> None:
        import traceback

        self._log.write(traceback.format_exc())
        self._log.flush()

    def on_event(self, record: dict[str, Any]) -> None:
        self.events.append(record)
        self._log.write(json.dumps(record, default=str) + "\n")
        self._log.flush()

    # --- the steps -------------------------------------------------------------------------
    def run(self) -> Summary:
        from orchestrator.sandbox.pool import aws_environment, build_pool

        o = self.opts
        self.say(f"htcpool demo: sandbox {self.settings.index} ({self.settings.state_dir}); "
                 f"{o.jobs} jobs; outputs in {o.out_dir}/")
        self.phase("sandbox_up")
        # A sandbox that was up before the demo is someone's (a test session's, or one
        # left with --keep): the demo removes its pool afterwards but leaves the sandbox.
        self.borrowed = control.read_state(self.settings) is not None
        self.state = control.up(self.settings, progress=self.say)
        with aws_environment(self.state):
            with self.spinner("building the pool"):
                state = self.state
                # Queue-only scaling (no forecast spare), so the demo shows the queue's
                # need launched and the pool emptied after the idle timeout.
                self.pool = off_main_thread(lambda: build_pool(
                    state, self.ansible, arrival_window_s=0.0, spare_largest_jobs=0))
            self.phase("")
            self.say(f"pool ready: central manager {self.pool.central_manager}, worker image "
                     f"{self.pool.worker_image}")
            return self._burst()

    def _burst(self) -> Summary:
        from orchestrator.autoscaler.runtime.build import build_autoscaler
        from orchestrator.aws.ec2 import Cloud
        from orchestrator.condor.factory import pool_source_for
        from orchestrator.sandbox.pool import SANDBOX_SHAPE

        o, config = self.opts, self.pool.config
        scaler = build_autoscaler(config, emit=self.on_event)
        watch_cloud = Cloud(config)
        watch = pool_source_for(config, lambda: watch_cloud)
        a = config.autoscaler
        self.say(f"autoscaler: every {a.interval_s:.0f} s, idle timeout {a.idle_timeout_s:.0f} "
                 f"s, {a.min_workers}..{a.max_workers} workers of {SANDBOX_SHAPE.name} "
                 f"({SANDBOX_SHAPE.cpus} CPUs, {SANDBOX_SHAPE.memory_mb} MB)")
        since = time.time()
        self._thread = threading.Thread(target=scaler.run_forever, args=(self._stop,),
                                        name="autoscaler", daemon=True)
        self._thread.start()
        batch = f"htcpool-demo-{int(since)}"
        specs = burst.make_jobs(o.jobs, o.seed)
        self.phase("burst")
        t0 = time.time()
        cluster = burst.submit(self.settings, self.pool.central_manager, batch, specs)
        cores = sum(j.cpus for j in specs)
        self.say(f"submitted {o.jobs} jobs as user {burst.USER} (cluster {cluster}, batch "
                 f"{batch}): {cores} cores, {sum(j.seconds * j.cpus for j in specs)} "
                 f"core-seconds of sleep")
        samples, timed_out = self._watch(watch_cloud, watch, batch, t0, a.max_workers)
        self._stop_autoscaler()
        self.phase("")
        history = self._history(watch, batch, o.jobs)
        hosts: list[dict[str, Any]] = control.api(self.settings, "hosts")
        summary = summarise(submitted=o.jobs, submitted_at=t0, history=history, hosts=hosts,
                            events=self.events, cpus_per_worker=SANDBOX_SHAPE.cpus,
                            since=since, peak_workers=max((s.workers for s in samples),
                                                          default=0),
                            timed_out=timed_out)
        summary.phases = dict(self.phases)
        self._write(summary, samples, history, hosts, batch, since)
        return summary

    def _watch(self, cloud: Any, source: Any, batch: str, t0: float, max_workers: int
               ) -> tuple[list[Sample], bool]:
        samples: list[Sample] = []
        joined: set[str] = set()
        with Display(self.console, self.opts.jobs, max_workers) as display:
            while True:
                started = time.monotonic()
                try:
                    s = take_sample(cloud, source, batch, self.opts.jobs, t0, joined)
                except Exception as err:  # one missed sample is no failure (AWS, SSM, ...)
                    self._log.write(f"sample skipped: {describe_exception(err)}\n")
                else:
                    samples.append(s)
                    display.update(s, decisions(self.events, t0))
                    if s.jobs_done >= self.opts.jobs and s.workers == 0:
                        return samples, False
                if time.time() - t0 > self.opts.timeout_s:
                    return samples, True
                time.sleep(max(0.0, SAMPLE_EVERY_S - (time.monotonic() - started)))

    def _history(self, source: Any, batch: str, expected: int) -> list[dict[str, Any]]:
        """condor_history for the batch (the history file may trail the queue briefly)."""
        history: list[dict[str, Any]] = []
        for _ in range(10):
            history = burst.parse_history(source.run_tool(burst.history_argv(batch)))
            if len(history) >= expected:
                break
            time.sleep(1)
        return history

    def _write(self, summary: Summary, samples: list[Sample], history: list[dict[str, Any]],
               hosts: list[dict[str, Any]], batch: str, since: float) -> None:
        from orchestrator.demo.chart import write_png

        o = self.opts
        records = {"history": history, "instances": hosts, "events": self.events,
                   "samples": [s.to_json() for s in samples]}
        for name, data in records.items():
            o.raw(name).write_text(json.dumps(data, indent=1, default=str) + "\n")
        # `since`: when the autoscaler started; workers launched before it are not the
        # demo's (the instance records cover the sandbox's whole life).
        out = {**summary.to_json(), "batch": batch, "jobs_seed": o.seed, "since": since,
               "files": {name: str(o.raw(name)) for name in records} | {"png": str(o.png)}}
        o.summary_json.write_text(json.dumps(out, indent=2) + "\n")
        write_png(samples, summary.decisions, o.png,
                  title=f"htcpool demo: {o.jobs} jobs, autoscaled workers")

    def _stop_autoscaler(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=70)  # an SSM call in flight ends within its timeout

    # --- afterwards ------------------------------------------------------------------------
    def finish(self) -> None:
        """--keep: leave the sandbox up and say how to use it; else remove the pool, then
        take the sandbox down unless it was up before the demo."""
        if self.opts.keep:
            self._keep()
            return
        self.phase("teardown")
        if self.opts.teardown_playbook and self.pool is not None and self.state is not None:
            self._teardown_playbook()
        if self.borrowed:
            self.say(f"the sandbox was up before the demo: left up ({self.settings.state_dir})")
        else:
            control.down(self.settings, progress=self.say)
        self.phase("")

    def _teardown_playbook(self) -> None:
        from orchestrator.provision import REPO_ROOT, run_playbook
        from orchestrator.sandbox.pool import aws_environment

        assert self.state is not None
        self.say("==> removing the pool's instances, images and resources (teardown.yml)")
        try:
            with aws_environment(self.state), self.spinner("teardown.yml"):
                inventory = Path(self.state["inventory"])
                off_main_thread(lambda: run_playbook(
                    self.pool.config, REPO_ROOT / "playbooks" / "teardown.yml",
                    inventory=inventory, progress=self.ansible,
                    extravars={"htcpool_teardown_confirm": self.pool.config.pool}))
        except HtcpoolError as err:  # the sandbox goes anyway
            self.say(f"teardown.yml failed ({err}); taking the sandbox down regardless")

    def _keep(self) -> None:
        from orchestrator.sandbox.pool import config_toml, sandbox_config

        if self.state is None:
            self.say("the sandbox did not come up; nothing to keep")
            return
        config = self.pool.config if self.pool is not None else sandbox_config(self.state)
        path = self.settings.state_dir / "htcpool.toml"
        path.write_text(config_toml(config))
        get = ("$(htcpool sandbox status --json | python3 -c 'import json,sys; "
               "print(json.load(sys.stdin)[\"credentials\"][\"{}\"])')")
        self.say("\nThe sandbox is still up. To point htcpool and Ansible at it:\n"
                 f"  export HTCPOOL_SANDBOX_INDEX={self.settings.index} "
                 f"HTCPOOL_SANDBOX_DIR={self.settings.state_dir}\n"
                 f"  export HTCPOOL_CONFIG={path}\n"
                 "  # the pool operator's credentials: htcpool sandbox status --json\n"
                 f"  export AWS_ACCESS_KEY_ID={get.format('aws_access_key_id')}\n"
                 f"  export AWS_SECRET_ACCESS_KEY={get.format('aws_secret_access_key')}\n"
                 "  htcpool pool status; htcpool queue; htcpool instances list; "
                 "htcpool autoscale\n"
                 f"  ansible-playbook -i {self.state['inventory']} playbooks/bootstrap.yml\n"
                 "  htcpool sandbox down   # when done")

    def abort(self) -> None:
        """Ctrl-C: stop everything we started and take the sandbox down (unless it was up
        before the demo)."""
        self._stop.set()
        server = None
        with contextlib.suppress(OSError, ValueError):
            server = int(self.settings.pid_file.read_text())
        end_children(keep={server} if server else set())
        if not self.borrowed:
            control.down(self.settings, progress=lambda _m: None)

    def close(self) -> None:
        self._log.close()


def main(argv: list[str] | None = None) -> int:
    opts = parse(argv)
    if os.geteuid() != 0:
        print("htcpool demo: error: the sandbox needs root (run `make demo` as root)",
              file=sys.stderr)
        return 1
    console = Console(highlight=False)
    if not console.is_terminal:  # CI logs: one record a line, never wrapped
        console = Console(highlight=False, soft_wrap=True)
    errors = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)
    settings = SandboxSettings()
    raise_on_interrupt()  # Ctrl-C and SIGTERM both tear down
    demo = Demo(opts, settings, console)
    started = time.monotonic()
    try:
        rc = 0
        try:
            summary = demo.run()
            console.print("\n" + text(summary), highlight=False, markup=False)
            console.print(f"\nsummary: {opts.summary_json}   chart: {opts.png}")
            if summary.timed_out:
                rc = 1
                errors.print(f"htcpool demo: error: timed out after {opts.timeout_s:.0f} s "
                             f"with {summary.jobs_completed} of {summary.jobs_submitted} jobs "
                             "completed, or workers still in the pool")
        except HtcpoolError as err:
            rc = 1
            errors.print(f"htcpool demo: error: {err}")
        except Exception as err:  # unexpected: still tear down; the traceback goes to the log
            rc = 1
            demo.log_traceback()
            errors.print(f"htcpool demo: error: {describe_exception(err)} (details in "
                         f"{opts.out_dir / 'demo.log'})")
        demo.finish()
        console.print(f"htcpool demo: {'done' if rc == 0 else 'failed'} in "
                      f"{time.monotonic() - started:.0f} s", highlight=False)
        return rc
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        demo.abort()
        print("\nhtcpool demo: interrupted; " + ("the sandbox was up before the demo and is "
              "left up" if demo.borrowed else "the sandbox is torn down"), file=sys.stderr)
        return 130
    finally:
        demo.close()
