"""Where the sandbox keeps things and which names and addresses it uses.

Every name a sandbox creates on the machine starts with `htcp<index>` (network
namespaces, links) or lives under its state directory (mounts, disks), so `down` can find
leftovers after a crash by name alone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.paths import user_cache_dir, xdg_dir

NAME_PREFIX = "htcp"
DEFAULT_PORT = 4580
# Sandboxes may run side by side (a developer's and the tests', and two more for parallel
# work): each has its own index, bridge, name prefix, port and addresses inside
# 198.18.0.0/15: 0 and 1 a /16 each (hosts only ever get addresses in its six default /20
# subnets, the lower half), 2 and 3 the upper /17 of those.
MAX_INDEX = 3
REGION = "us-east-1"
BASE_AMI_NAME = "debian-13-base"


@dataclass(frozen=True)
class SandboxSettings:
    cache_dir: Path = field(default_factory=user_cache_dir)
    state_dir: Path = field(
        default_factory=lambda: Path(
            os.environ.get("HTCPOOL_SANDBOX_DIR")
            or xdg_dir("XDG_STATE_HOME", ".local/state") / "htcpool" / "sandbox"
        )
    )
    index: int = int(os.environ.get("HTCPOOL_SANDBOX_INDEX", "0"))
    port: int = 0
    region: str = REGION

    def __post_init__(self) -> None:
        if not 0 <= self.index <= MAX_INDEX:
            raise ValueError(f"sandbox index must be 0..{MAX_INDEX}, not {self.index}")
        if not self.port:
            port = int(os.environ.get("HTCPOOL_SANDBOX_PORT", DEFAULT_PORT + self.index))
            object.__setattr__(self, "port", port)

    @property
    def prefix(self) -> str:
        """Every netns and link of this sandbox starts with it (htcp0-..., htcp0v...)."""
        return f"{NAME_PREFIX}{self.index}"

    @property
    def bridge(self) -> str:
        return f"{self.prefix}br"

    @property
    def gateway_ip(self) -> str:
        if self.index <= 1:
            return f"198.{18 + self.index}.0.1"
        return f"198.{16 + self.index}.128.1"

    @property
    def vpc_cidr(self) -> str:
        if self.index <= 1:
            return f"198.{18 + self.index}.0.0/16"
        return f"198.{16 + self.index}.128.0/17"

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def host_endpoint_url(self) -> str:
        return f"http://{self.gateway_ip}:{self.port}"

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
