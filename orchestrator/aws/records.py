"""Records for EC2 things the pool uses: instances, images, launch requests.

Plain dataclasses (no boto3 import), shared by aws/ec2.py, the CLI and the autoscaler runtime.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator.vocabulary import (
    TAG_NAME,
    TAG_POOL,
    TAG_ROLE,
    TAG_VERSION,
    InstanceState,
    LaunchedBy,
    Role,
)

CAPACITY_ERRORS = frozenset({"InsufficientInstanceCapacity", "InstanceLimitExceeded",
                             "Unsupported", "InsufficientCapacity", "VcpuLimitExceeded"})
# What a spot request may meet besides those: on-demand is tried next.
SPOT_ERRORS = frozenset({"MaxSpotInstanceCountExceeded", "SpotMaxPriceTooLow",
                         "InsufficientSpotCapacity"})


@dataclass(frozen=True)
class Ec2Instance:
    """One instance as DescribeInstances reports it (any instance, ours or not)."""

    id: str
    name: str
    image_id: str
    instance_type: str
    state: InstanceState
    monitoring: str
    private_ip: str | None
    private_dns: str | None
    public_ip: str | None
    zone: str | None
    subnet_id: str | None
    launch_time: str | None
    tags: dict[str, str] = field(default_factory=dict)
    # The instance profile's ARN: unlike tags, nothing htcpool's policies allow can change it.
    instance_profile_arn: str | None = None

    @property
    def instance_profile(self) -> str | None:
        """The instance profile's name (the last part of its ARN)."""
        return self.instance_profile_arn.rpartition("/")[2] if self.instance_profile_arn \
            else None

    @property
    def pool(self) -> str | None:
        return self.tags.get(TAG_POOL)

    @property
    def role(self) -> str | None:
        return self.tags.get(TAG_ROLE)

    @classmethod
    def from_api(cls, raw: dict[str, Any]) -> Ec2Instance:
        tags = {t["Key"]: t["Value"] for t in raw.get("Tags", [])}
        launch: Any = raw.get("LaunchTime")
        return cls(
            id=raw["InstanceId"], name=tags.get(TAG_NAME, ""), image_id=raw.get("ImageId", ""),
            instance_type=raw.get("InstanceType", ""), state=InstanceState(raw["State"]["Name"]),
            monitoring=raw.get("Monitoring", {}).get("State", ""),
            private_ip=raw.get("PrivateIpAddress") or None,
            private_dns=raw.get("PrivateDnsName") or None,
            public_ip=raw.get("PublicIpAddress") or None,
            zone=raw.get("Placement", {}).get("AvailabilityZone"),
            subnet_id=raw.get("SubnetId"),
            launch_time=launch.isoformat() if hasattr(launch, "isoformat") else launch,
            tags=tags, instance_profile_arn=(raw.get("IamInstanceProfile") or {}).get("Arn"))

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "image_id": self.image_id,
                "instance_type": self.instance_type, "state": self.state.value,
                "monitoring": self.monitoring, "private_ip": self.private_ip,
                "private_dns": self.private_dns, "public_ip": self.public_ip, "zone": self.zone,
                "subnet_id": self.subnet_id, "launch_time": self.launch_time,
                "pool": self.pool, "role": self.role, "instance_profile": self.instance_profile,
                "tags": self.tags}


@dataclass(frozen=True)
class Image:
    id: str
    name: str
    state: str
    version: str | None
    created: str
    tags: dict[str, str] = field(default_factory=dict)
    root_device: str = ""  # RootDeviceName: where a launch sizes the root volume
    root_volume_gb: int = 0  # its snapshot's size: a launch may not ask for less

    @classmethod
    def from_api(cls, raw: dict[str, Any]) -> Image:
        tags = {t["Key"]: t["Value"] for t in raw.get("Tags", [])}
        root = str(raw.get("RootDeviceName") or "")
        size = next((int(m.get("Ebs", {}).get("VolumeSize") or 0)
                     for m in raw.get("BlockDeviceMappings", [])
                     if m.get("DeviceName") == root), 0)
        return cls(id=raw["ImageId"], name=raw.get("Name", ""), state=raw.get("State", ""),
                   version=tags.get(TAG_VERSION), created=raw.get("CreationDate", ""), tags=tags,
                   root_device=root, root_volume_gb=size)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "state": self.state, "version": self.version,
                "created": self.created, "tags": self.tags}


@dataclass(frozen=True)
class LaunchRequest:
    """What to launch: `count` instances, trying `instance_types` then `subnets` in order
    (all of them as spot first when `spot`, then on-demand)."""

    count: int
    image_id: str
    instance_types: Sequence[str]
    subnets: Sequence[str]
    security_groups: Sequence[str]
    instance_profile: str
    client_token: str = field(default_factory=lambda: uuid.uuid4().hex)
    launched_by: LaunchedBy = LaunchedBy.CLI
    role: Role = Role.WORKER
    key_name: str = ""
    spot: bool = False
    # Root volume size (GiB) per instance type, on the image's root device; a type not
    # listed keeps the image's own size.
    root_device: str = ""
    root_volume_gb: Mapping[str, int] = field(default_factory=dict)
