"""Where the sandbox keeps things and which names and addresses it uses.

Every name the sandbox creates on the machine starts with `htcp` (network namespaces,
links) or lives under its state directory (mounts, disks), so `down` can find leftovers
after a crash by name alone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

NAME_PREFIX = "htcp"
BRIDGE = "htcp0"
GATEWAY_IP = "198.18.0.1"
VPC_CIDR = "198.18.0.0/16"
DEFAULT_PORT = 4580
REGION = "us-east-1"
BASE_AMI_NAME = "debian-13-base"


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var)
    return Path(value) if value else Path.home() / fallback


@dataclass(frozen=True)
class SandboxSettings:
    cache_dir: Path = field(default_factory=lambda: _xdg("XDG_CACHE_HOME", ".cache") / "htcpool")
    state_dir: Path = field(
        default_factory=lambda: Path(
            os.environ.get("HTCPOOL_SANDBOX_DIR")
            or _xdg("XDG_STATE_HOME", ".local/state") / "htcpool" / "sandbox"
        )
    )
    port: int = int(os.environ.get("HTCPOOL_SANDBOX_PORT", DEFAULT_PORT))
    region: str = REGION

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def host_endpoint_url(self) -> str:
        return f"http://{GATEWAY_IP}:{self.port}"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "server.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "server.log"

    @property
    def instances_dir(self) -> Path:
        return self.state_dir / "instances"

    @property
    def images_dir(self) -> Path:
        return self.state_dir / "images"

    @property
    def ssh_key(self) -> Path:
        return self.state_dir / "ssh" / "id_ed25519"
