"""The sandbox daemon: `python -m orchestrator.sandbox.server --state-dir DIR --port N`.

Started (detached) by `htcpool sandbox up`; stops on SIGTERM after powering off and
removing every host, then the bridge. Everything it creates is named so that
`htcpool sandbox down` can also clean up after it if it dies. It enforces IAM as AWS does
(iam_enforce): the state file holds the pool operator's keys (`credentials`) and the
sandbox admin's (`admin_credentials`); instances get their roles' sessions from metadata.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from orchestrator.sandbox.settings import SandboxSettings

# The pool the sandbox's operator user is made for (htcpool's default pool name, as in
# playbooks/group_vars/all/pool.yml); POST /_sandbox/operator makes one for another pool.
DEFAULT_POOL = "htcpool"


def _patch_default_vpc(cidr: str) -> None:
    """Make moto's default VPC the sandbox's 198.18.0.0/16, so PrivateIpAddress = host address."""
    from moto.ec2.models.vpcs import VPCBackend

    def create_default_vpc(self: Any) -> Any:
        vpc = self.create_vpc(cidr_block=cidr, is_default=True)
        for zone in self.describe_availability_zones():
            self.create_default_subnet(zone.name)
        return vpc

    VPCBackend.create_default_vpc = create_default_vpc  # type: ignore[method-assign]


def ensure_ssh_key(path: Path) -> str:
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "htcpool-sandbox",
                        "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


def serve(settings: SandboxSettings) -> int:
    os.environ["MOTO_EC2_LOAD_DEFAULT_AMIS"] = "false"
    os.environ.setdefault("MOTO_ALLOW_NONEXISTENT_REGION", "false")
    # AWS managed policies (AmazonSSMManagedInstanceCore, ...) exist in every account.
    os.environ["MOTO_IAM_LOAD_MANAGED_POLICIES"] = "true"
    log = logging.getLogger("htcpool.sandbox")
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    from orchestrator.sandbox import iam_enforce, inventory, moto_fixes, patches, pricing
    from orchestrator.sandbox.emulator import Emulator
    from orchestrator.sandbox.hosts import ensure_bridge, ip
    from orchestrator.sandbox.http import Front
    from orchestrator.sandbox.iam_principals import Principals
    from orchestrator.sandbox.image import ensure_base_image

    image = ensure_base_image(settings.cache_dir, progress=log.info)
    pubkey = ensure_ssh_key(settings.ssh_key)
    settings.instances_dir.mkdir(parents=True, exist_ok=True)
    settings.images_dir.mkdir(parents=True, exist_ok=True)
    ensure_bridge(settings)
    _patch_default_vpc(settings.vpc_cidr)
    moto_fixes.apply()
    pricing.install()  # the Pricing API, spot prices, instance types per region
    emu = Emulator(settings, image.rootfs, pubkey)
    patches.install(emu)
    # IAM as on AWS: the sandbox's own admin, the pool's operator with the shipped policy,
    # instance roles through instance metadata; then every call is authorized.
    principals = Principals(account=emu.ec2.account_id, region=settings.region)
    admin = principals.admin()
    creds = principals.operator(os.environ.get("HTCPOOL_POOL") or DEFAULT_POOL)
    principals.aws_managed_ssm_key()
    iam_enforce.install()
    front = Front(emu, DomainDispatcherApplication(create_backend_app), image.repo,
                  principals=principals)
    servers = [make_server(addr, settings.port, front, threaded=True,
                           request_handler=MotoRequestHandler)
               for addr in ("127.0.0.1", settings.gateway_ip)]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for t in threads:
        t.start()

    inv = inventory.write(settings, creds)
    state = {
        "ready": True, "pid": os.getpid(), "endpoint_url": settings.endpoint_url,
        "host_endpoint_url": settings.host_endpoint_url, "region": settings.region,
        # The operator's keys (what the CLI, playbooks and molecule use), and the admin's
        # (the sandbox's and the test harness's own set-up only).
        "credentials": creds, "admin_credentials": admin, "base_ami": emu.base_ami.id,
        "image_key": image.key,
        "apt_repo": {"url": f"{settings.host_endpoint_url}/apt", "suite": "trixie",
                     "component": "main",
                     "key_url": f"{settings.host_endpoint_url}/apt/htcpool-sandbox.asc"},
        "ssh": {"user": "root", "private_key": str(settings.ssh_key)},
        "inventory": str(inv), "state_dir": str(settings.state_dir), "index": settings.index,
    }
    tmp = settings.state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    os.chmod(tmp, 0o600)
    tmp.rename(settings.state_file)
    log.info("sandbox ready on %s (base AMI %s)", settings.endpoint_url, emu.base_ami.id)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    log.info("stopping: powering off %d hosts", len(emu.workers))
    settings.state_file.unlink(missing_ok=True)
    for s in servers:
        s.shutdown()
    emu.destroy_all()
    ip("link", "del", settings.bridge, check=False)
    log.info("sandbox stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="htcpool-sandbox-server")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--index", type=int, default=0)
    args = parser.parse_args(argv)
    settings = SandboxSettings(state_dir=args.state_dir, port=args.port, index=args.index)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    try:
        return serve(settings)
    except Exception:
        logging.getLogger("htcpool.sandbox").exception("sandbox server failed")
        settings.state_file.unlink(missing_ok=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
