"""htcpool settings: a TOML file, then the environment, then flags (each overriding the last).

Where the file is looked for, first match wins:
  1. `--config PATH` or `HTCPOOL_CONFIG` (must exist);
  2. `./htcpool.toml`;
  3. `$XDG_CONFIG_HOME/htcpool/config.toml` (default `~/.config/htcpool/config.toml`).

File format (every key optional; unknown keys are errors that name the key):

    pool = "htcpool"                  # the htcpool:pool tag value
    region = "us-east-1"              # else AWS_REGION / AWS_DEFAULT_REGION / the profile
    profile = "default"               # AWS named profile
    endpoint_url = "http://127.0.0.1:4580"   # an AWS API emulator (the sandbox)

    [aws]
    retry_mode = "standard"           # botocore retry mode: standard | adaptive
    max_attempts = 5                  # bounded retries per API call (1-20)
    wait_timeout_s = 600              # how long start/stop/... wait for a state
    wait_delay_s = 5                  # waiter polling interval
    connect_timeout_s = 10            # per API call; a timed-out call is retried
    read_timeout_s = 60

    [condor]
    transport = "auto"                # auto | local | ssm | ssh
    ssm_timeout_s = 60                # SendCommand: give up after this long
    ssh_host = ""                     # default: the central manager's private IP
    ssh_user = ""                     # default: your ssh config
    ssh_key_file = ""
    ssh_options = []                  # extra `-o` options, e.g. ["ProxyJump=bastion"]

    [worker]                          # `instances create` (empty = discover by tags)
    instance_type = "t3.medium"
    subnets = []                      # default: subnets tagged htcpool:pool=<pool>
    security_groups = []              # default: groups tagged htcpool:pool=<pool>
    instance_profile = ""             # default: "htcpool-<pool>-instance" (aws_resources.yml)
    key_name = ""                     # no SSH key pair by default (SSM instead)

    [provision]
    playbooks_dir = "playbooks"
    inventory = "inventory/aws_ec2.yml"

    [autoscaler]                      # every key: docs/autoscaler.md
    policy = "binpack"                # binpack | naive | parallelcluster
    interval_s = 20
    idle_timeout_s = 150
    surplus_idle_s = 40               # idle workers beyond the queue's need and spare go sooner
    join_timeout_s = 600              # never joined by then: replaced
    lost_timeout_s = 1200             # joined once, gone from the collector this long: replaced
    min_workers = 0
    max_workers = 100
    max_launch_per_cycle = 100
    warm_pool = false                 # stop idle workers instead of terminating them
    spot = false                      # spot workers, on-demand where spot has no capacity
    instance_types = ["c6i", "r6i.large"]   # types or families; sizes and prices from EC2
    gpu_workers = false               # the worker image drives GPUs
    machine_attrs = { HasScratch = "true" }  # what the image advertises, for Requirements
    [autoscaler.shape_filter]         # which of those EC2 offers are used
    max_cpus = 32

Environment: HTCPOOL_POOL, HTCPOOL_REGION, HTCPOOL_PROFILE, HTCPOOL_ENDPOINT_URL (also read
by the CLI flags of the same names) and HTCPOOL_TRANSPORT.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from orchestrator.autoscaler.planner.config import AutoscalerConfig
from orchestrator.errors import ConfigError

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class AwsSettings(_Section):
    retry_mode: Literal["standard", "adaptive"] = "standard"
    max_attempts: int = Field(default=5, ge=1, le=20)
    wait_timeout_s: float = Field(default=600.0, gt=0, le=86400)
    wait_delay_s: float = Field(default=5.0, gt=0, le=3600)
    # A call whose reply takes longer is retried (botocore counts it as a transient error).
    connect_timeout_s: float = Field(default=10.0, gt=0, le=300)
    read_timeout_s: float = Field(default=60.0, gt=0, le=900)


class CondorSettings(_Section):
    transport: Literal["auto", "local", "ssm", "ssh"] = "auto"
    ssm_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    ssh_host: str = ""
    ssh_user: str = ""
    ssh_key_file: str = ""
    ssh_options: list[str] = Field(default_factory=list)


class WorkerSettings(_Section):
    instance_type: str = "t3.medium"
    subnets: list[str] = Field(default_factory=list)
    security_groups: list[str] = Field(default_factory=list)
    instance_profile: str = ""
    key_name: str = ""


class ProvisionSettings(_Section):
    playbooks_dir: str = "playbooks"
    inventory: str = "inventory/aws_ec2.yml"


class Config(_Section):
    pool: str = "htcpool"
    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None
    aws: AwsSettings = Field(default_factory=AwsSettings)
    condor: CondorSettings = Field(default_factory=CondorSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    provision: ProvisionSettings = Field(default_factory=ProvisionSettings)
    autoscaler: AutoscalerConfig = Field(default_factory=AutoscalerConfig)
    source: str | None = Field(default=None, exclude=True)  # the file it came from, if any

    @field_validator("pool")
    @classmethod
    def _pool_name(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise ValueError("must be 1-63 letters, digits, '.', '_' or '-'")
        return value

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value and not re.match(r"^https?://", value):
            raise ValueError("must start with http:// or https://")
        return value or None

    @property
    def worker_instance_profile(self) -> str:
        return self.worker.instance_profile or f"htcpool-{self.pool}-instance"

    @property
    def central_manager_instance_profile(self) -> str:
        """The central manager's own profile (aws_resources.yml): the workers' grants, plus
        the autoscaler's actions when it runs there (iam/README.md)."""
        return f"htcpool-{self.pool}-central-manager"


def default_paths() -> list[Path]:
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return [Path("htcpool.toml"), Path(xdg) / "htcpool" / "config.toml"]


def find_config_file(explicit: str | None = None) -> Path | None:
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"config file {explicit} not found")
        return path
    return next((p for p in default_paths() if p.is_file()), None)


def _format_error(err: ValidationError, where: str) -> str:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(top level)"
    if first["type"] == "extra_forbidden":
        return f"{where}: unknown key '{key}'"
    value = first.get("input")
    shown = f" = {value!r}" if not isinstance(value, dict) else ""
    more = f" (and {len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return f"{where}: bad value for '{key}'{shown}: {first['msg']}{more}"


def _validated(data: Mapping[str, Any], where: str) -> Config:
    try:
        return Config.model_validate(dict(data))
    except ValidationError as err:
        raise ConfigError(_format_error(err, where)) from err


def load_config(path: str | None = None, overrides: Mapping[str, Any] | None = None,
                environ: Mapping[str, str] | None = None) -> Config:
    """The effective configuration: file < environment < overrides (non-None flag values)."""
    env = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    found = find_config_file(path or env.get("HTCPOOL_CONFIG") or None)
    if found is not None:
        try:
            data = tomllib.loads(found.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"config file {found}: not valid TOML: {err}") from err
        except UnicodeDecodeError as err:
            raise ConfigError(f"config file {found}: not UTF-8 text (byte {err.start})"
                              ) from err
        except OSError as err:
            raise ConfigError(f"config file {found}: {err.strerror}") from err
        _validated(data, f"config file {found}")
    for key, var in (("pool", "HTCPOOL_POOL"), ("region", "HTCPOOL_REGION"),
                     ("profile", "HTCPOOL_PROFILE"), ("endpoint_url", "HTCPOOL_ENDPOINT_URL")):
        if env.get(var):
            data[key] = env[var]
    if env.get("HTCPOOL_TRANSPORT"):
        data["condor"] = {**data.get("condor", {}), "transport": env["HTCPOOL_TRANSPORT"]}
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key == "transport":
            data["condor"] = {**data.get("condor", {}), "transport": value}
        else:
            data[key] = value
    config = _validated(data, "settings (file, HTCPOOL_* environment or flags)")
    return config.model_copy(update={"source": str(found) if found else None})
