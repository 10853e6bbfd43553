"""Sandbox hosts: one network namespace, one overlay root and one systemd-nspawn each.

A host is what an emulated EC2 instance *is*: its PrivateIpAddress is the address of eth0
in its namespace, its root filesystem is the AMI's layers (read-only, lower) plus its own
disk (upper, kept across stop/start like an EBS root volume), and systemd runs as PID 1.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.errors import SandboxError
from orchestrator.sandbox import hardware
from orchestrator.sandbox.settings import SandboxSettings

BOOT_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0
IMDS_ADDRESS = "169.254.169.254"
# Inside each host's namespace, connections to the instance metadata address go to the
# sandbox's front (which tells instances apart by their source address, as the real IMDS
# does by the interface a request arrives on). A table of its own, which the host's own
# firewall (the worker role's) leaves alone; NAT comes after that firewall's filter.
IMDS_NAT = """table ip htcpool-sandbox {{
  chain imds {{
    type nat hook output priority -100; policy accept;
    ip daddr {imds} tcp dport 80 dnat to {gateway}:{port}
  }}
}}
"""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise SandboxError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def ensure_bridge(net: SandboxSettings) -> None:
    bridge, prefixlen = net.bridge, net.vpc_cidr.split("/")[1]
    if ip("link", "show", bridge, check=False).returncode != 0:
        ip("link", "add", bridge, "type", "bridge")
    addrs = ip("-4", "addr", "show", "dev", bridge).stdout
    if f"{net.gateway_ip}/" not in addrs:
        ip("addr", "add", f"{net.gateway_ip}/{prefixlen}", "dev", bridge)
    ip("link", "set", bridge, "up")


def netns_name(net: SandboxSettings, instance_id: str) -> str:
    return f"{net.prefix}-{instance_id}"


def veth_name(net: SandboxSettings, instance_id: str) -> str:
    # Interface names are limited to 15 characters.
    return f"{net.prefix}v" + hashlib.sha1(instance_id.encode()).hexdigest()[:9]


def init_pid(nspawn_pid: int, instance_id: str, timeout_s: float = 10.0) -> int:
    """The container's init: systemd-nspawn's child (it may take a moment to appear)."""
    deadline = time.monotonic() + timeout_s
    while True:
        for task in Path(f"/proc/{nspawn_pid}/task").iterdir():
            children = (task / "children").read_text().split()
            if children:
                return int(children[0])
        if time.monotonic() > deadline:
            raise SandboxError(f"host {instance_id} has no init process")
        time.sleep(0.05)


@dataclass
class Host:
    """One instance's host. Methods block; the caller serialises operations per host."""

    net: SandboxSettings
    instance_id: str
    address: str
    fqdn: str
    disk: Path
    layers: list[Path]
    env: dict[str, str] = field(default_factory=dict)
    authorized_key: str = ""
    # HTCondor configuration standing for the instance type's cores and memory
    # (sandbox/hardware.py), written at every boot; empty: none.
    hardware: str = ""
    proc: subprocess.Popen[bytes] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def netns(self) -> str:
        return netns_name(self.net, self.instance_id)

    @property
    def root(self) -> Path:
        return self.disk / "root"

    # --- network -------------------------------------------------------------------
    def create_network(self) -> None:
        ensure_bridge(self.net)
        ns, veth = self.netns, veth_name(self.net, self.instance_id)
        prefixlen = self.net.vpc_cidr.split("/")[1]
        if not Path(f"/run/netns/{ns}").exists():
            ip("netns", "add", ns)
        if ip("link", "show", veth, check=False).returncode != 0:
            ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        ip("link", "set", veth, "master", self.net.bridge, "up")
        if f"{self.address}/" not in ip("-n", ns, "-4", "addr", "show", "dev", "eth0").stdout:
            ip("-n", ns, "addr", "add", f"{self.address}/{prefixlen}", "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "up")
        ip("-n", ns, "link", "set", "lo", "up")
        # A default route without a gateway: tools that need one (Ansible's facts) see it,
        # but nothing can leave the bridge because nobody routes beyond it.
        ip("-n", ns, "route", "replace", "default", "dev", "eth0")
        self._imds_nat(ns)

    def _imds_nat(self, ns: str) -> None:
        rules = IMDS_NAT.format(imds=IMDS_ADDRESS, gateway=self.net.gateway_ip,
                                port=self.net.port)
        subprocess.run(["ip", "netns", "exec", ns, "nft", "delete", "table", "ip",
                        "htcpool-sandbox"], capture_output=True, check=False)
        proc = subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=rules,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise SandboxError(f"instance metadata address in {ns}: {proc.stderr.strip()}")

    def delete_network(self) -> None:
        ip("link", "del", veth_name(self.net, self.instance_id), check=False)
        ip("netns", "del", self.netns, check=False)

    # --- disk ----------------------------------------------------------------------
    def mount(self) -> None:
        for sub in ("upper", "work", "root"):
            (self.disk / sub).mkdir(parents=True, exist_ok=True)
        if os.path.ismount(self.root):
            return
        lower = ":".join(str(p) for p in self.layers)
        opts = f"lowerdir={lower},upperdir={self.disk / 'upper'},workdir={self.disk / 'work'}"
        proc = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(self.root)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise SandboxError(f"mounting the root of {self.instance_id}: {proc.stderr.strip()}")

    def unmount(self) -> None:
        if os.path.ismount(self.root):
            subprocess.run(["umount", str(self.root)], check=False)
            if os.path.ismount(self.root):
                subprocess.run(["umount", "-l", str(self.root)], check=False)

    def _first_boot(self) -> None:
        """What cloud-init would do on EC2: unique machine id and ssh host keys."""
        marker = self.disk / "first-boot-done"
        if marker.exists():
            return
        (self.root / "etc" / "machine-id").write_text(secrets.token_hex(16) + "\n")
        for key in (self.root / "etc" / "ssh").glob("ssh_host_*"):
            key.unlink()
        subprocess.run(["ssh-keygen", "-A", "-f", str(self.root)], check=True,
                       capture_output=True)
        marker.write_text("")

    def write_identity(self, hosts_file: str) -> None:
        etc = self.root / "etc"
        (etc / "hostname").write_text(self.fqdn + "\n")
        self.write_hosts(hosts_file)
        resolv = etc / "resolv.conf"
        if resolv.is_symlink() or resolv.exists():
            resolv.unlink()
        resolv.write_text("")
        env_lines = "".join(f'{k}="{v}"\n' for k, v in sorted(self.env.items()))
        (etc / "environment").write_text(env_lines)
        conf = etc / "systemd" / "system.conf.d"
        conf.mkdir(parents=True, exist_ok=True)
        default_env = " ".join(f'"{k}={v}"' for k, v in sorted(self.env.items()))
        (conf / "htcpool-sandbox.conf").write_text(
            "# Written by the htcpool sandbox: how code on this host reaches its AWS APIs.\n"
            f"[Manager]\nDefaultEnvironment={default_env}\n")
        if self.authorized_key:
            ssh = self.root / "root" / ".ssh"
            ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
            (ssh / "authorized_keys").write_text(self.authorized_key + "\n")
            os.chmod(ssh / "authorized_keys", 0o600)

    def write_hosts(self, hosts_file: str) -> None:
        if os.path.ismount(self.root):
            (self.root / "etc" / "hosts").write_text(hosts_file)

    # --- power -----------------------------------------------------------------------
    def boot(self, hosts_file: str, timeout_s: float = BOOT_TIMEOUT_S) -> None:
        """Mount, start systemd, and return once sshd answers."""
        with self._lock:
            if self.running:
                return
            self.create_network()
            self.mount()
            self._first_boot()
            self.write_identity(hosts_file)
            hardware.write(self.root, self.hardware)
            log = open(self.disk / "console.log", "ab")  # noqa: SIM115 (owned by the child)
            self.proc = subprocess.Popen(
                ["systemd-nspawn", "--boot", "--quiet", "--register=no", "--keep-unit",
                 "--console=read-only", "--resolv-conf=off", "--link-journal=no",
                 f"--directory={self.root}",
                 f"--machine={self.instance_id}", f"--hostname={self.fqdn}",
                 f"--network-namespace-path=/run/netns/{self.netns}",
                 # Root on an EC2 instance manages its own firewall (the worker role's
                 # metadata guard); nspawn drops this capability by default.
                 "--capability=CAP_NET_ADMIN"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
            log.close()
        self._wait_ssh(timeout_s)

    def _wait_ssh(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise SandboxError(f"host {self.instance_id} exited while booting "
                                   f"(see {self.disk / 'console.log'})")
            try:
                with socket.create_connection((self.address, 22), timeout=1) as sock:
                    sock.settimeout(2)
                    if sock.recv(8).startswith(b"SSH-"):
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise SandboxError(f"host {self.instance_id} did not answer on ssh in {timeout_s:.0f} s")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def shutdown(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Clean poweroff (nspawn turns SIGTERM into a halt of the container), then unmount."""
        with self._lock:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    self._kill()
            self.proc = None
            self.unmount()

    def power_off_hard(self) -> None:
        """Pull the plug: what a host failure looks like (fault tests use it)."""
        with self._lock:
            if self.proc is not None and self.proc.poll() is None:
                self._kill()
            self.proc = None
            self.unmount()

    def _kill(self) -> None:
        """SIGKILL the container's init first: it runs in its own session, so killing
        systemd-nspawn's process group alone leaves it (and every process of the host,
        jobs included) running as an orphan. An init's death ends its PID namespace."""
        assert self.proc is not None
        with contextlib.suppress(SandboxError, OSError):  # no init yet, or already gone
            os.kill(init_pid(self.proc.pid, self.instance_id, timeout_s=1.0), signal.SIGKILL)
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def destroy(self) -> None:
        self.shutdown()
        self.delete_network()
        shutil.rmtree(self.disk, ignore_errors=True)

    # --- commands ----------------------------------------------------------------------
    def leader_pid(self) -> int:
        """PID (in our namespace) of the container's init, for nsenter."""
        if not self.running or self.proc is None:
            raise SandboxError(f"host {self.instance_id} is not running")
        return init_pid(self.proc.pid, self.instance_id)

    def command(self, script: str) -> list[str]:
        """argv that runs `script` as root inside the host, with a login-like environment."""
        env = ["env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "HOME=/root", "LANG=C.UTF-8", *(f"{k}={v}" for k, v in sorted(self.env.items()))]
        return ["nsenter", "-t", str(self.leader_pid()), "-a", "-r", "-w", *env,
                "/bin/bash", "-c", script or "true"]
