"""Run the pool's Ansible playbooks through ansible-runner, streaming progress.

`run_playbook()` reports each play, task and host result through a callback as it happens
and raises `ProvisionError` naming the first failed host, task and message if the playbook
fails (or the playbook/inventory is missing, or ansible-playbook cannot be found).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.config import Config
from orchestrator.errors import HtcpoolError, NotFoundError

REPO_ROOT = Path(__file__).resolve().parents[1]
BOOTSTRAP = "bootstrap.yml"
BAKE_WORKER_IMAGE = "bake_worker_image.yml"


class ProvisionError(HtcpoolError):
    pass


@dataclass
class Failure:
    host: str
    task: str
    message: str


@dataclass
class PlaybookResult:
    playbook: str
    status: str
    rc: int
    failures: list[Failure] = field(default_factory=list)
    stats: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "successful" and self.rc == 0


def _resolve(path: str, base: Path | None) -> Path:
    p = Path(path).expanduser()
    if p.is_absolute():
        return p
    candidates = [Path.cwd() / p] + ([base / p] if base else []) + [REPO_ROOT / p]
    return next((c for c in candidates if c.exists()), candidates[0])


def find_playbook(config: Config, name: str) -> Path:
    base = Path(config.source).parent if config.source else None
    path = _resolve(config.provision.playbooks_dir, base) / name
    if not path.is_file():
        raise NotFoundError(f"playbook {path} not found (set [provision] playbooks_dir)")
    return path.resolve()


def find_inventory(config: Config) -> Path | None:
    base = Path(config.source).parent if config.source else None
    path = _resolve(config.provision.inventory, base)
    return path.resolve() if path.exists() else None


def _message(res: Mapping[str, Any]) -> str:
    def last_line(value: Any) -> str:
        lines = [ln for ln in str(value).strip().splitlines() if ln.strip()]
        return lines[-1][:300] if lines else ""

    text = next((last_line(res[k]) for k in ("msg", "stderr", "reason", "exception")
                 if res.get(k)), "failed")
    module_stderr = next((ln for ln in str(res.get("module_stderr", "")).splitlines()
                          if ln.strip()), "")
    return f"{text} ({module_stderr[:200]})" if module_stderr else text


def describe_event(event: Mapping[str, Any]) -> tuple[str, Failure | None]:
    """(one progress line or "", a Failure if the event is one)."""
    kind = event.get("event", "")
    data = event.get("event_data", {}) or {}
    host = str(data.get("host", ""))
    task = str(data.get("task", ""))
    res = data.get("res", {}) or {}
    if kind == "playbook_on_play_start":
        return f"PLAY {data.get('play', '')}", None
    if kind == "playbook_on_task_start":
        return f"TASK {task}", None
    if kind == "runner_on_ok":
        return f"  {host}: {'changed' if res.get('changed') else 'ok'}", None
    if kind == "runner_on_skipped":
        return f"  {host}: skipped", None
    if kind in ("runner_on_failed", "runner_on_unreachable"):
        what = "unreachable" if kind.endswith("unreachable") else "failed"
        if data.get("ignore_errors"):
            return f"  {host}: {what} (ignored): {_message(res)}", None
        failure = Failure(host, task, f"{what}: {_message(res)}")
        return f"  {host}: {failure.message}", failure
    return "", None


def _env(config: Config, inventory_dir: Path | None) -> dict[str, str]:
    env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1", "HTCPOOL_POOL": config.pool}
    roles = REPO_ROOT / "roles"
    if roles.is_dir():
        env["ANSIBLE_ROLES_PATH"] = str(roles)
    if config.region:
        env["AWS_REGION"] = env["AWS_DEFAULT_REGION"] = config.region
    if config.profile:
        env["AWS_PROFILE"] = config.profile
    if config.endpoint_url:
        env["AWS_ENDPOINT_URL"] = config.endpoint_url
    return env


@contextmanager
def _interruptible() -> Iterator[threading.Event]:
    """Ctrl-C / SIGTERM cancel the playbook, then reach the caller as KeyboardInterrupt.

    ansible-runner would otherwise install its own handlers for good (on the main thread),
    leaving every later Ctrl-C of the process silently ignored."""
    event = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield event
        return
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in saved:
        signal.signal(sig, lambda *_: event.set())
    try:
        yield event
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def run_playbook(config: Config, playbook: Path, *, inventory: Path | None = None,
                 extravars: Mapping[str, Any] | None = None, check: bool = False,
                 limit: str | None = None,
                 progress: Callable[[str], None] | None = None) -> PlaybookResult:
    """Run one playbook; stream progress lines; raise ProvisionError if it fails."""
    import ansible_runner

    if not playbook.is_file():
        raise NotFoundError(f"playbook {playbook} not found")
    if inventory is not None and not inventory.exists():
        raise NotFoundError(f"inventory {inventory} not found")
    failures: list[Failure] = []

    def on_event(event: dict[str, Any]) -> bool:
        line, failure = describe_event(event)
        if failure:
            failures.append(failure)
        if line and progress:
            progress(line)
        return True

    cmdline = " ".join([*(["--check", "--diff"] if check else []),
                        *([f"--limit {limit}"] if limit else [])]) or None
    vars_ = {"htcpool_pool": config.pool, **(extravars or {})}
    with tempfile.TemporaryDirectory(prefix="htcpool-ansible-") as private:
        # Extra variables go in a file (-e @env/extravars, readable by us only): given as a
        # dict, ansible-runner would put them on ansible-playbook's command line, where any
        # local user can read them (a token passed with -e, for example).
        env_dir = Path(private) / "env"
        env_dir.mkdir(mode=0o700)
        fd = os.open(env_dir / "extravars", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(vars_, fh)
        try:
            with _interruptible() as interrupted:
                runner = ansible_runner.run(
                    private_data_dir=private, project_dir=str(REPO_ROOT),
                    playbook=str(playbook), inventory=str(inventory) if inventory else None,
                    envvars=_env(config, inventory), cmdline=cmdline,
                    event_handler=on_event, quiet=True, suppress_env_files=True,
                    cancel_callback=interrupted.is_set)
        except (OSError, RuntimeError, ValueError) as err:
            raise ProvisionError(f"could not start ansible-playbook: {err}") from err
        if interrupted.is_set():
            raise KeyboardInterrupt
        stats = dict(runner.stats or {}) if getattr(runner, "stats", None) else {}
        stdout = runner.stdout.read() if runner.rc and not failures else ""
    result = PlaybookResult(playbook.name, str(runner.status), int(runner.rc or 0),
                            failures, stats)
    if not result.ok:
        if failures:
            first = failures[0]
            more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
            raise ProvisionError(f"playbook {playbook.name} failed on {first.host} at task "
                                 f"'{first.task}': {first.message}{more}")
        tail = [ln for ln in stdout.splitlines() if ln.strip()]
        reason = tail[-1][:300] if tail else f"status {result.status}"
        raise ProvisionError(f"playbook {playbook.name} failed (exit {result.rc}): {reason}")
    return result
