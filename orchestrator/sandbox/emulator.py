"""moto's EC2 and SSM, extended so that API calls act on real sandbox hosts.

moto keeps the records (instances, tags, security groups, profiles, metadata options,
parameters); this module adds what happens to the machines: RunInstances boots hosts,
Stop/Start/Reboot/Terminate power them, CreateImage snapshots a disk into a layer that
later launches boot from, and SSM's AWS-RunShellScript runs commands on the targeted hosts
for real. State transitions go through the intermediate states EC2 shows (pending,
stopping, shutting-down), so boto3 waiters do real waiting.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import json
import logging
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrator.sandbox import hardware
from orchestrator.sandbox.hosts import Host
from orchestrator.sandbox.settings import SandboxSettings

log = logging.getLogger("htcpool.sandbox")

STATE_CODES = {"pending": 0, "running": 16, "shutting-down": 32, "terminated": 48,
               "stopping": 64, "stopped": 80}
SSM_OUTPUT_LIMIT = 24000  # what GetCommandInvocation returns inline on AWS


# instance id -> [(epoch, state)]: the emulator's own record of every transition, so the
# demo and the tests can account for instance-seconds independently of the orchestrator.
TRANSITIONS: dict[str, list[tuple[float, str]]] = {}


def _set_state(instance: Any, name: str) -> None:
    instance._state.name = name
    instance._state.code = STATE_CODES[name]
    TRANSITIONS.setdefault(instance.id, []).append((time.time(), name))


class HostWorker:
    """Runs one host's operations in order, off the API thread."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name=f"host-{host.instance_id}",
                                        daemon=True)
        self._thread.start()

    def submit(self, op: Callable[[], None]) -> None:
        self._queue.put(op)

    def close(self) -> None:
        self._queue.put(None)

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _loop(self) -> None:
        while (op := self._queue.get()) is not None:
            try:
                op()
            except Exception:
                log.exception("operation on %s failed", self.host.instance_id)


class Emulator:
    """The sandbox's cloud: moto backends plus hosts, images and command runs."""

    def __init__(self, settings: SandboxSettings, base_layer: Path, authorized_key: str,
                 account_id: str = "123456789012") -> None:
        from moto.ec2.models import ec2_backends
        from moto.ssm.models import ssm_backends

        self.settings = settings
        self.authorized_key = authorized_key
        self.ec2 = ec2_backends[account_id][settings.region]
        self.ssm = ssm_backends[account_id][settings.region]
        self.layers: dict[str, list[Path]] = {}
        self.workers: dict[str, HostWorker] = {}
        self.lock = threading.RLock()
        self.base_ami = self.ec2.register_image(
            name=settings_base_name(), description="Debian 13 (trixie) minbase for htcpool")
        self.base_ami.add_tag("htcpool:sandbox", "base")
        self.layers[self.base_ami.id] = [base_layer]
        # EC2's eventual consistency and slow agents, on demand (the control API sets them):
        # instances younger than hide_new_s are not listed and cannot be tagged yet; SSM
        # commands start ssm_delay_s late (and run even if cancelled meanwhile, as an agent
        # that already took them does).
        self.hide_new_s = 0.0
        self.ssm_delay_s = 0.0

    # --- helpers -----------------------------------------------------------------------
    def instances(self) -> list[Any]:
        return [i for r in self.ec2.reservations.values() for i in r.instances]

    def too_new(self, instance_id: str) -> bool:
        """True while EC2 would not list this just-launched instance yet (hide_new_s)."""
        if self.hide_new_s <= 0:
            return False
        seen = TRANSITIONS.get(instance_id)
        return seen is not None and bool(seen) and time.time() - seen[0][0] < self.hide_new_s

    def instance_by_ip(self, address: str) -> Any | None:
        for inst in self.instances():
            if inst.private_ip == address and inst.state not in ("terminated",):
                return inst
        return None

    def host_env(self) -> dict[str, str]:
        url = self.settings.host_endpoint_url
        # Only what differs from EC2: where the APIs are. Instance metadata is at its real
        # address (hosts.py), and code on a host learns its region from it, as on EC2.
        return {"AWS_ENDPOINT_URL": url}

    def hosts_file(self) -> str:
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
                 f"{self.settings.gateway_ip}\tsandbox-gateway"]
        for inst in self.instances():
            if inst.state != "terminated":
                short = inst.private_dns_name.split(".")[0]
                lines.append(f"{inst.private_ip}\t{inst.private_dns_name} {short}")
        return "\n".join(lines) + "\n"

    def refresh_hosts_files(self) -> None:
        text = self.hosts_file()
        for worker in list(self.workers.values()):
            with contextlib.suppress(OSError):
                worker.host.write_hosts(text)

    def host(self, instance_id: str) -> Host:
        from orchestrator.errors import NotFoundError

        with self.lock:
            if instance_id not in self.workers:
                raise NotFoundError(f"no sandbox host for {instance_id}")
            return self.workers[instance_id].host

    # --- EC2 hooks (called from the patched backend methods) -----------------------------
    def check_image(self, image_id: str) -> None:
        from moto.ec2.exceptions import EC2ClientError, InvalidAMIIdError

        if image_id not in self.ec2.amis:
            raise InvalidAMIIdError(image_id)
        if image_id not in self.layers:
            raise EC2ClientError("InvalidAMIID.Unavailable",
                                 f"The image '{image_id}' has no root filesystem in this sandbox")
        if self.ec2.amis[image_id].state != "available":
            raise EC2ClientError("InvalidAMIID.Unavailable",
                                 f"The image '{image_id}' is {self.ec2.amis[image_id].state}")

    def on_launched(self, instances: list[Any]) -> None:
        import ipaddress

        vpc = ipaddress.ip_network(self.settings.vpc_cidr)
        for inst in instances:
            if ipaddress.ip_address(inst.private_ip) not in vpc:
                raise ValueError(f"{inst.private_ip} is outside the sandbox VPC {vpc}")
        with self.lock:
            for inst in instances:
                _set_state(inst, "pending")
                disk = self.settings.instances_dir / inst.id
                host = Host(net=self.settings, instance_id=inst.id, address=inst.private_ip,
                            fqdn=inst.private_dns_name, disk=disk,
                            layers=list(self.layers[inst.image_id]), env=self.host_env(),
                            authorized_key=self.authorized_key,
                            hardware=hardware.for_instance(self.ec2, inst.instance_type))
                disk.mkdir(parents=True, exist_ok=True)
                (disk / "layers.json").write_text(json.dumps([str(p) for p in host.layers]))
                self.workers[inst.id] = HostWorker(host)
            self.refresh_hosts_files()
        for inst in instances:
            self.workers[inst.id].submit(functools.partial(self._boot, inst))

    def _boot(self, inst: Any) -> None:
        if inst.state not in ("pending",):
            return
        try:
            self.workers[inst.id].host.boot(self.hosts_file())
        except Exception as exc:
            log.error("instance %s failed to boot: %s", inst.id, exc)
            self.workers[inst.id].host.shutdown()
            _set_state(inst, "stopped")
            inst._reason = "Server.InternalError: the host failed to boot"
            return
        if inst.state == "pending":
            _set_state(inst, "running")
            log.info("instance %s running at %s", inst.id, inst.private_ip)

    def on_start(self, inst: Any) -> None:
        _set_state(inst, "pending")
        self.workers[inst.id].submit(lambda: self._boot(inst))

    def on_stop(self, inst: Any, hard: bool = False) -> None:
        _set_state(inst, "stopping")

        def op() -> None:
            host = self.workers[inst.id].host
            host.power_off_hard() if hard else host.shutdown()
            if inst.state == "stopping":
                _set_state(inst, "stopped")
        self.workers[inst.id].submit(op)

    def on_reboot(self, inst: Any) -> None:
        def op() -> None:
            host = self.workers[inst.id].host
            host.shutdown()
            if inst.state == "running":
                host.boot(self.hosts_file())
        self.workers[inst.id].submit(op)

    def on_terminate(self, inst: Any) -> None:
        _set_state(inst, "shutting-down")
        worker = self.workers[inst.id]

        def op() -> None:
            worker.host.destroy()
            _set_state(inst, "terminated")
            with self.lock:
                self.workers.pop(inst.id, None)
            worker.close()
            self.refresh_hosts_files()
        worker.submit(op)

    def on_create_image(self, ami: Any, instance_id: str) -> None:
        ami.state = "pending"
        worker = self.workers[instance_id]
        target = self.settings.images_dir / ami.id

        def op() -> None:
            host = worker.host
            target.mkdir(parents=True, exist_ok=True)
            layer = target / "layer"
            # The upper directory holds exactly this instance's changes (whiteouts and
            # opaque-directory xattrs included), so it stacks on the parent's layers.
            subprocess.run(["cp", "-a", "--reflink=auto", str(host.disk / "upper"),
                            str(layer)], check=True)
            for key in (layer / "etc" / "ssh").glob("ssh_host_*"):
                key.unlink()
            # The hardware is the instance's, not the image's: each host gets its own.
            (layer / hardware.CONFIG_FILE).unlink(missing_ok=True)
            with self.lock:
                self.layers[ami.id] = [layer, *host.layers]
            (target / "layers.json").write_text(json.dumps([str(p) for p in self.layers[ami.id]]))
            ami.state = "available"
            log.info("image %s created from %s", ami.id, instance_id)
        worker.submit(op)

    def on_deregister(self, ami_id: str) -> None:
        with self.lock:
            layers = self.layers.pop(ami_id, None)
            in_use = any(layers and layers[0] in w.host.layers for w in self.workers.values())
        if layers and ami_id != self.base_ami.id and not in_use:
            shutil.rmtree(self.settings.images_dir / ami_id, ignore_errors=True)

    # --- SSM ---------------------------------------------------------------------------
    def resolve_targets(self, instance_ids: list[str], targets: list[dict[str, Any]]) -> list[str]:
        ids = list(instance_ids or [])
        for target in targets or []:
            key, values = target["Key"], target["Values"]
            if key == "InstanceIds":
                ids += values
            elif key.startswith("tag:"):
                name = key[4:]
                ids += [i.id for i in self.instances() if i.state == "running"
                        and i.get_tags() and any(t["key"] == name and t["value"] in values
                                                 for t in i.get_tags())]
        return sorted(set(ids))

    def run_command(self, command: Any, script: str, timeout_s: float) -> None:
        now = datetime.datetime.now(datetime.UTC)
        for inv in command.invocations:
            inv.update(Status="InProgress", StatusDetails="InProgress", ResponseCode=-1,
                       ExecutionStartDateTime=now.isoformat(), ExecutionEndDateTime="",
                       ExecutionElapsedTime="PT0S")
        command.status = command.status_details = "InProgress"
        command.completed_count = 0
        for inv in command.invocations:
            threading.Thread(target=self._invoke, args=(command, inv, script, timeout_s),
                             daemon=True).start()

    def _invoke(self, command: Any, inv: dict[str, Any], script: str, timeout_s: float) -> None:
        if self.ssm_delay_s > 0:
            time.sleep(self.ssm_delay_s)
        start = time.monotonic()
        try:
            argv = self.host(inv["InstanceId"]).command(script)
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    start_new_session=True)
            try:
                out, err = proc.communicate(timeout=timeout_s)
                status, code = ("Success" if proc.returncode == 0 else "Failed"), proc.returncode
                details = status
            except subprocess.TimeoutExpired:
                import os
                import signal

                os.killpg(proc.pid, signal.SIGKILL)
                out, err = proc.communicate()
                status, code, details = "TimedOut", -1, "ExecutionTimedOut"
        except Exception as exc:
            out, err, status, code, details = b"", str(exc).encode(), "Failed", -1, "Undeliverable"
        elapsed = time.monotonic() - start
        inv.update(
            Status=status, StatusDetails=details, ResponseCode=code,
            StandardOutputContent=out.decode(errors="replace")[:SSM_OUTPUT_LIMIT],
            StandardErrorContent=err.decode(errors="replace")[:SSM_OUTPUT_LIMIT],
            ExecutionEndDateTime=datetime.datetime.now(datetime.UTC).isoformat(),
            ExecutionElapsedTime=f"PT{elapsed:.3f}S")
        with self.lock:
            command.completed_count += 1
            if status != "Success":
                command.error_count += 1
            if all(i["Status"] not in ("InProgress", "Pending") for i in command.invocations):
                statuses = {i["Status"] for i in command.invocations}
                final = next((s for s in ("TimedOut", "Failed") if s in statuses), "Success")
                command.status = command.status_details = final

    # --- teardown ----------------------------------------------------------------------
    def destroy_all(self) -> None:
        with self.lock:
            workers = list(self.workers.values())
        threads = [threading.Thread(target=w.host.destroy) for w in workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)


def settings_base_name() -> str:
    from orchestrator.sandbox.settings import BASE_AMI_NAME

    return BASE_AMI_NAME
