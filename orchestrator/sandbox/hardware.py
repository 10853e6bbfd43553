"""A sandbox host's "hardware": what HTCondor on it detects, as on an instance of its type.

Every sandbox host runs on this machine and would see its cores and memory. An EC2
instance sees its type's vCPUs and its memory less what the kernel keeps
(orchestrator/sim/hardware.py). The sandbox writes that into each host's root as HTCondor
configuration, in place of detection: NUM_CPUS and MEMORY, in a file read before any of
the roles' files (HTCondor reads /etc/condor/condor_config, then the LOCAL_CONFIG_DIR
directories /usr/share/condor/config.d and /etc/condor/config.d, each file by name, then
LOCAL_CONFIG_FILE, the last definition winning). So it overrides nothing, as hardware
would not, and an operator's own NUM_CPUS or MEMORY in a role's file still would. The
file is written at every boot and never baked into an image (emulator.py).

GPU types show no GPU: the sandbox has no driver, and HTCondor advertises GPUs only when
its GPU discovery finds some.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestrator.sim.hardware import advertised_memory_mb, kernel_reserve_mb

# Inside a host's root. "05-" sorts after the package's 00-htcondor-9.0.config and
# before the roles' 10-, 20- and 90- files.
CONFIG_FILE = Path("etc/condor/config.d/05-sandbox-hardware.conf")


def condor_config(instance_type: str, info: Mapping[str, Any]) -> str:
    """The file for an instance of `instance_type`, from its DescribeInstanceTypes entry."""
    vcpus = int(info["VCpuInfo"]["DefaultVCpus"])
    nominal = int(info["MemoryInfo"]["SizeInMiB"])
    lines = [
        "# Written by the htcpool sandbox at boot: the hardware of this host's instance type,",
        f"# {instance_type}: {vcpus} vCPUs and {nominal} MiB, of which the kernel keeps "
        f"{kernel_reserve_mb(nominal)}.",
    ]
    gpus = sum(int(g.get("Count", 0)) for g in (info.get("GpuInfo") or {}).get("Gpus", []))
    if gpus:
        lines.append(f"# Its {gpus} GPU(s) are not advertised: no driver in the sandbox.")
    lines += [f"NUM_CPUS = {vcpus}", f"MEMORY = {advertised_memory_mb(nominal)}", ""]
    return "\n".join(lines)


def for_instance(ec2_backend: Any, instance_type: str) -> str:
    """The file for an instance of `instance_type`, from the data DescribeInstanceTypes
    serves; empty (HTCondor detects this machine's resources) for a type it does not know."""
    from moto.ec2.exceptions import InvalidInstanceTypeError

    try:
        (info,) = ec2_backend.describe_instance_types([instance_type])
    except (InvalidInstanceTypeError, ValueError):
        return ""
    return condor_config(instance_type, info)


def write(root: Path, text: str) -> None:
    """Put the file into a host's (mounted) root; no file if `text` is empty."""
    path = root / CONFIG_FILE
    if not text:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o644)
