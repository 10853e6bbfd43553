"""Which transport reaches the pool from here, and the PoolSource for a configuration."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.condor.remote import SshSource, SsmSource
from orchestrator.condor.source import LocalSource, PoolSource, Transport
from orchestrator.config import Config
from orchestrator.errors import HtcpoolError

if TYPE_CHECKING:
    from orchestrator.aws.ec2 import Cloud


def local_condor_config() -> Path | None:
    env = os.environ.get("CONDOR_CONFIG")
    if env:
        return Path(env) if Path(env).is_file() else None
    for candidate in ("/etc/condor/condor_config", "/usr/local/etc/condor_config"):
        if Path(candidate).is_file():
            return Path(candidate)
    return None


def runs_central_manager(daemon_list: str | None = None) -> bool:
    """True if this host's HTCondor configuration runs a collector and a schedd."""
    if daemon_list is None:
        if local_condor_config() is None:
            return False
        try:
            import htcondor2

            daemon_list = str(htcondor2.param.get("DAEMON_LIST", ""))
        except Exception:
            return False
    names = {d.strip().upper() for d in daemon_list.replace(",", " ").split()}
    return {"COLLECTOR", "SCHEDD"} <= names


def choose_transport(requested: str, on_central_manager: bool, ssh_host: str) -> Transport:
    """auto: the bindings on the central manager; else ssh if a host is configured; else SSM."""
    if requested != "auto":
        try:
            return Transport(requested)
        except ValueError:
            raise HtcpoolError(f"unknown transport '{requested}' "
                               "(choose auto, local, ssm or ssh)") from None
    if on_central_manager:
        return Transport.LOCAL
    return Transport.SSH if ssh_host else Transport.SSM


def pool_source_for(config: Config, cloud_factory: Callable[[], Cloud],
                transport: str | None = None) -> PoolSource:
    """The PoolSource for this configuration (the central manager is found by tag)."""
    cc = config.condor
    requested = transport or cc.transport
    on_cm = requested == "auto" and runs_central_manager()
    chosen = choose_transport(requested, on_cm, cc.ssh_host)
    if chosen is Transport.LOCAL:
        return LocalSource()
    if chosen is Transport.SSH and cc.ssh_host:
        return SshSource(cc.ssh_host, cc.ssh_user, cc.ssh_key_file, cc.ssh_options,
                         cc.ssm_timeout_s)
    cloud = cloud_factory()
    cm = cloud.central_manager()
    if chosen is Transport.SSM:
        return SsmSource(cloud, cm.id, cc.ssm_timeout_s)
    host = cm.private_ip or cm.public_ip
    if not host:
        raise HtcpoolError(f"central manager {cm.id} has no IP address to ssh to")
    return SshSource(host, cc.ssh_user, cc.ssh_key_file, cc.ssh_options, cc.ssm_timeout_s)
