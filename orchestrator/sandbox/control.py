"""Bring the sandbox up and down, report on it, and run commands on its hosts.

`up` builds (or reuses) the cached base image in the foreground, so its progress shows
and Ctrl-C is honoured, then starts the daemon and waits until it answers. `down` asks the
daemon to stop and then sweeps anything left by name, so it also cleans up after a crash.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrator.errors import NotFoundError, SandboxError
from orchestrator.sandbox.settings import SandboxSettings

Progress = Callable[[str], None]
UP_TIMEOUT_S = 120.0


def _require_root() -> None:
    if os.geteuid() != 0:
        raise SandboxError("the sandbox needs root (namespaces, mounts, systemd-nspawn)")


def read_state(settings: SandboxSettings) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads(settings.state_file.read_text())
    except (OSError, ValueError):
        return None
    pid = state.get("pid")
    if not isinstance(pid, int) or not _alive(pid):
        return None
    return state


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def require_state(settings: SandboxSettings) -> dict[str, Any]:
    state = read_state(settings)
    if state is None:
        raise SandboxError("the sandbox is not running (start it with `htcpool sandbox up`)")
    return state


def up(settings: SandboxSettings, progress: Progress = print) -> dict[str, Any]:
    _require_root()
    state = read_state(settings)
    if state is not None:
        progress(f"sandbox already up on {state['endpoint_url']}")
        return state
    other = active_elsewhere(settings)
    if other is not None:
        raise SandboxError(f"sandbox {settings.index} is already running from {other}; stop it "
                           f"with HTCPOOL_SANDBOX_DIR={other} htcpool sandbox down, or use "
                           f"HTCPOOL_SANDBOX_INDEX={1 - settings.index} for a second one")
    sweep(settings, progress=lambda _m: None)  # leftovers of a crashed sandbox
    try:
        from orchestrator.sandbox.image import ensure_base_image

        ensure_base_image(settings.cache_dir, progress)
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        log = open(settings.log_file, "ab")  # noqa: SIM115 (handed to the daemon)
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.sandbox.server",
             "--state-dir", str(settings.state_dir), "--port", str(settings.port),
             "--index", str(settings.index)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            cwd=str(Path(__file__).resolve().parents[2]))
        log.close()
        settings.pid_file.write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + UP_TIMEOUT_S
        while time.monotonic() < deadline:
            state = read_state(settings)
            if state is not None:
                progress(f"sandbox up on {state['endpoint_url']} (base AMI {state['base_ami']})")
                return state
            if proc.poll() is not None:
                raise SandboxError(f"the sandbox server exited: {_log_tail(settings)}")
            time.sleep(0.1)
        raise SandboxError(f"the sandbox did not come up in {UP_TIMEOUT_S:.0f} s: "
                           f"{_log_tail(settings)}")
    except BaseException:
        down(settings, progress=lambda _m: None)
        raise


def active_elsewhere(settings: SandboxSettings) -> str | None:
    """The state directory of a live sandbox server other than ours (names are global)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "orchestrator.sandbox.server" in args and "--state-dir" in args:
            other = args[args.index("--state-dir") + 1]
            index = int(args[args.index("--index") + 1]) if "--index" in args else 0
            if index == settings.index and Path(other).resolve() != settings.state_dir.resolve():
                return other
    return None


def _log_tail(settings: SandboxSettings) -> str:
    try:
        lines = settings.log_file.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    errors = [ln for ln in lines if "ERROR" in ln or "Error" in ln]
    return (errors or lines or ["no log"])[-1][-300:]


def down(settings: SandboxSettings, progress: Progress = print) -> None:
    _require_root()
    pid = None
    with contextlib.suppress(OSError, ValueError):
        pid = int(settings.pid_file.read_text())
    if pid is not None and _alive(pid) and _is_our_server(pid, settings):
        progress("stopping the sandbox server and its hosts")
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 90
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    sweep(settings, progress)
    settings.pid_file.unlink(missing_ok=True)
    settings.state_file.unlink(missing_ok=True)
    progress("sandbox down")


def _is_our_server(pid: int, settings: SandboxSettings) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"orchestrator.sandbox.server" in cmdline and str(settings.state_dir).encode() in cmdline


def _netns_inodes(names: list[str]) -> set[int]:
    out = set()
    for name in names:
        with contextlib.suppress(OSError):
            out.add(os.stat(f"/run/netns/{name}").st_ino)
    return out


def leftovers(settings: SandboxSettings) -> dict[str, list[str]]:
    """What of a sandbox exists on this machine: its daemons by command line, and every
    process inside one of its hosts' network namespaces (a host's init and whatever it
    runs, even when orphaned from systemd-nspawn), its mounts, namespaces and links."""
    root = str(settings.state_dir)
    netns = [n for n in os.listdir("/run/netns") if n.startswith(settings.prefix + "-")] \
        if os.path.isdir("/run/netns") else []
    inside = _netns_inodes(netns)
    procs = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
            in_host = bool(inside) and os.stat(entry / "ns" / "net").st_ino in inside
        except OSError:
            continue
        joined = b" ".join(args)
        if in_host or ((b"systemd-nspawn" in joined or b"orchestrator.sandbox.server" in joined)
                       and root.encode() in joined):
            procs.append(entry.name)
    with open("/proc/mounts") as f:
        mounts = [line.split()[1] for line in f if line.split()[1].startswith(root + "/")]
    links = [ln.split(":")[1].strip().split("@")[0] for ln in subprocess.run(
        ["ip", "-o", "link", "show"], capture_output=True, text=True).stdout.splitlines()
        if ln.split(":")[1].strip().startswith(settings.prefix)]
    return {"processes": procs, "mounts": mounts, "netns": netns, "links": links}


def sweep(settings: SandboxSettings, progress: Progress = print) -> None:
    found = leftovers(settings)
    for pid in found["processes"]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGTERM)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_alive(int(p)) for p in found["processes"]):
        time.sleep(0.1)
    for pid in found["processes"]:
        if _alive(int(pid)):
            os.kill(int(pid), signal.SIGKILL)
    for target in sorted(leftovers(settings)["mounts"], key=len, reverse=True):
        subprocess.run(["umount", "-l", target], check=False)
    for ns in found["netns"]:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    for link in found["links"]:
        subprocess.run(["ip", "link", "del", link], check=False, capture_output=True)
    subprocess.run(["ip", "link", "del", settings.bridge], check=False, capture_output=True)
    for sub in ("instances", "images"):
        subprocess.run(["rm", "-rf", "--one-file-system", str(settings.state_dir / sub)],
                       check=False)
    if any(found.values()):
        progress("removed leftovers: " + ", ".join(f"{len(v)} {k}" for k, v in found.items()
                                                    if v))


def api(settings: SandboxSettings, path: str, method: str = "GET",
        body: dict[str, Any] | None = None) -> Any:
    """Call the sandbox's control API (localhost only)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"{settings.endpoint_url}/_sandbox/{path}", data=data,
                                 method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def status(settings: SandboxSettings) -> dict[str, Any]:
    state = require_state(settings)
    keys = ("endpoint_url", "host_endpoint_url", "region", "credentials", "base_ami",
            "apt_repo", "ssh", "inventory", "state_dir")
    out: dict[str, Any] = {k: state[k] for k in keys}
    out["hosts"] = [{k: h[k] for k in ("instance_id", "address", "hostname", "state",
                                       "image_id", "tags")}
                    for h in api(settings, "hosts")]
    return out


def find_host(settings: SandboxSettings, name: str) -> dict[str, Any]:
    """A host by instance id, address, hostname or Name tag."""
    hosts: list[dict[str, Any]] = [h for h in api(settings, "hosts")
                                   if h["state"] != "terminated"]
    for h in hosts:
        short = h["hostname"].split(".")[0]
        if name in (h["instance_id"], h["address"], h["hostname"], short,
                    h["tags"].get("Name")):
            return h
    raise NotFoundError(f"no sandbox host named {name!r}")


def host_command(settings: SandboxSettings, name: str, argv: list[str]) -> list[str]:
    """The argv that runs `argv` as root inside host `name`."""
    host = find_host(settings, name)
    if not host["nspawn_pid"]:
        raise SandboxError(f"host {host['instance_id']} is {host['state']}, not running")
    from orchestrator.sandbox.hosts import init_pid

    leader = init_pid(int(host["nspawn_pid"]), host["instance_id"])
    env = ["env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "HOME=/root", "LANG=C.UTF-8", "TERM=" + os.environ.get("TERM", "dumb")]
    login = 'set -a; . /etc/environment 2>/dev/null; set +a; cd /root 2>/dev/null; exec "$@"'
    return ["nsenter", "-t", str(leader), "-a", "-r", "-w", *env, "/bin/sh", "-c", login,
            "sh", *argv]


def exec_in(settings: SandboxSettings, name: str, argv: list[str], **kwargs: Any
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(host_command(settings, name, argv), text=True, **kwargs)
