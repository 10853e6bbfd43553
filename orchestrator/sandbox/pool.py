"""A whole pool on the sandbox, the way a user builds one on EC2: AWS resources
(playbooks/aws_resources.yml), a central manager bootstrapped by playbooks/bootstrap.yml,
and a worker image baked by playbooks/bake_worker_image.yml. Used by `make demo` and the
end-to-end tests, so both exercise exactly what the README tells people to run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.autoscaler.planner.config import AutoscalerConfig, InstanceShape
from orchestrator.aws.ec2 import Cloud, Lifecycle
from orchestrator.aws.records import LaunchRequest
from orchestrator.config import CondorSettings, Config, WorkerSettings
from orchestrator.provision import REPO_ROOT, run_playbook
from orchestrator.vocabulary import LaunchedBy, Role

Progress = Callable[[str], None]
# The instance type's nominal vCPUs and memory, as DescribeInstanceTypes gives them. A
# sandbox worker of this type advertises these vCPUs and the memory less what the kernel
# keeps (orchestrator/sandbox/hardware.py), as an EC2 instance would.
SANDBOX_SHAPE = InstanceShape(name="t3.medium", cpus=2, memory_mb=4096, price_per_hour=0.0416)


def sandbox_config(state: dict[str, Any], pool: str = "htcpool",
                   **autoscaler: Any) -> Config:
    """The Config a user would write to point htcpool at this sandbox."""
    # The shapes come from the sandbox's EC2 (DescribeInstanceTypes, the Pricing API), as
    # on AWS: the instance types are named, not described.
    settings = {"interval_s": 5.0, "idle_timeout_s": 20.0, "join_timeout_s": 180.0,
                "max_workers": 6, "instance_types": (SANDBOX_SHAPE.name,), **autoscaler}
    return Config(pool=pool, region=state["region"], endpoint_url=state["endpoint_url"],
                  condor=CondorSettings(transport="ssm", ssm_timeout_s=60),
                  worker=WorkerSettings(instance_type=SANDBOX_SHAPE.name),
                  autoscaler=AutoscalerConfig(**settings))


def config_toml(config: Config) -> str:
    """The same settings as a config file (for `--keep` and the CLI in tests). Values are
    JSON scalars and arrays, which TOML reads the same way; unset ones are left out."""
    a = config.autoscaler.model_dump(mode="json")
    shapes = a.pop("shapes") if "shapes" in config.autoscaler.model_fields_set else []
    a.pop("shapes", None)
    lines = [f'pool = "{config.pool}"', f'region = "{config.region}"',
             f'endpoint_url = "{config.endpoint_url}"', "", "[aws]"]
    lines += [f"{key} = {json.dumps(value)}"
              for key, value in config.aws.model_dump(mode="json").items()]
    lines += ["", "[condor]",
             f'transport = "{config.condor.transport}"', "", "[worker]",
             f'instance_type = "{config.worker.instance_type}"', "", "[autoscaler]"]
    lines += [f"{key} = {_toml(value)}" for key, value in a.items() if value is not None]
    for shape in shapes:
        lines += ["", "[[autoscaler.shapes]]"]
        lines += [f"{key} = {json.dumps(value)}" for key, value in shape.items()
                  if value is not None]
    return "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    """A JSON scalar or array as it is (TOML reads them alike); a table inline."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()
                               if v is not None) + "}"
    return json.dumps(value)


def manager_autoscaler_vars(state: dict[str, Any], config: Config,
                            service_state: str = "stopped") -> dict[str, Any]:
    """Extra variables that make bootstrap.yml install htcpool and its autoscaler service on
    the sandbox's central manager, with this config's autoscaler settings."""
    a = config.autoscaler
    return {
        "htcondor_master_autoscaler_enabled": True,
        "htcondor_master_autoscaler_service_state": service_state,
        # From inside the hosts the sandbox's API is on the bridge's gateway.
        "htcondor_master_autoscaler_endpoint_url": state["host_endpoint_url"],
        "htcondor_master_autoscaler_region": state["region"],
        "htcondor_master_autoscaler_worker": {"instance_type": config.worker.instance_type},
        "htcondor_master_autoscaler_settings": a.model_dump(mode="json", exclude={"shapes"}),
        "htcondor_master_autoscaler_shapes": [s.model_dump(mode="json") for s in a.shapes]
        if "shapes" in a.model_fields_set else [],
    }


@contextmanager
def aws_environment(state: dict[str, Any]) -> Iterator[None]:
    """The sandbox's operator credentials in this process's environment, never on argv."""
    creds = state["credentials"]
    wanted = {"AWS_ACCESS_KEY_ID": creds["aws_access_key_id"],
              "AWS_SECRET_ACCESS_KEY": creds["aws_secret_access_key"],
              "AWS_DEFAULT_REGION": state["region"], "AWS_REGION": state["region"]}
    saved = {k: os.environ.get(k) for k in [*wanted, "AWS_PROFILE"]}
    os.environ.update(wanted)
    os.environ.pop("AWS_PROFILE", None)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@dataclass
class SandboxPool:
    config: Config
    state: dict[str, Any]
    central_manager: str
    worker_image: str

    @property
    def inventory(self) -> Path:
        return Path(self.state["inventory"])


def _playbook(config: Config, state: dict[str, Any], name: str, progress: Progress,
              **extravars: Any) -> None:
    run_playbook(config, REPO_ROOT / "playbooks" / name, inventory=Path(state["inventory"]),
                 extravars=extravars, progress=progress)


def launch_central_manager(cloud: Cloud, state: dict[str, Any]) -> str:
    """The pool's central manager, reused if one runs already (re-runs are safe)."""
    existing = cloud.pool_instances(states=["pending", "running"],
                                    roles=[str(Role.CENTRAL_MANAGER)])
    if existing:
        return existing[0].id
    req = LaunchRequest(count=1, image_id=state["base_ami"], instance_types=["t3.medium"],
                        subnets=cloud.default_subnets(),
                        security_groups=cloud.worker_security_groups(),
                        instance_profile=cloud.config.central_manager_instance_profile,
                        role=Role.CENTRAL_MANAGER, launched_by=LaunchedBy.PLAYBOOK,
                        client_token=f"{cloud.pool}-central-manager")
    (cm,) = cloud.launch(req)
    cloud.wait(Lifecycle.START, [cm.id])
    return cm.id


def build_pool(state: dict[str, Any], progress: Progress, pool: str = "htcpool",
               **autoscaler: Any) -> SandboxPool:
    """AWS resources, central manager, bootstrap, worker image: what `make demo` shows."""
    config = sandbox_config(state, pool=pool, **autoscaler)
    cloud = Cloud(config)
    progress("provisioning the pool's security group and instance profile (aws_resources.yml)")
    _playbook(config, state, "aws_resources.yml", progress)
    progress("launching the central manager")
    cm = launch_central_manager(cloud, state)
    progress(f"bootstrapping the central manager {cm} (bootstrap.yml)")
    _playbook(config, state, "bootstrap.yml", progress)
    images = cloud.worker_images()
    if images:
        image = images[0].id
        progress(f"reusing worker image {image}")
    else:
        progress("baking the worker image (bake_worker_image.yml)")
        _playbook(config, state, "bake_worker_image.yml", progress,
                  htcpool_bake_base_ami=state["base_ami"])
        image = cloud.newest_worker_image().id
    return SandboxPool(config=config, state=state, central_manager=cm, worker_image=image)
