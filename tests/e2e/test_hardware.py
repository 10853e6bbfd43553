"""A sandbox worker advertises what an EC2 instance of its type would: the type's vCPUs, its
memory less what the kernel keeps, no GPU without a driver, and its instance type (the
first-boot unit reads it from instance metadata). Expected values come from the sandbox's
DescribeInstanceTypes; advertised ones from the collector (condor_status -json)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from orchestrator.sandbox import hardware
from orchestrator.sim.hardware import advertised_memory_mb
from tests.support.pool import PoolHandle, pool_report
from tests.support.sandbox import wait_for

pytestmark = [pytest.mark.sandbox]

# Neither is the pool's t3.medium (2 vCPUs, 4 GiB): 4 vCPUs and 8 GiB, and a GPU type.
TYPES = ("c6i.xlarge", "g4dn.xlarge")
ATTRS = "EC2InstanceId,EC2InstanceType,TotalCpus,TotalMemory,TotalGPUs,GPUs"


def _launch(pool: PoolHandle, instance_type: str) -> str:
    """A worker of the pool's baked image, as the autoscaler launches one."""
    name = pool.pool.config.pool
    (iid,) = pool.sandbox.run(
        1, image_id=pool.pool.worker_image, InstanceType=instance_type,
        IamInstanceProfile={"Name": pool.pool.config.worker_instance_profile},
        MetadataOptions={"HttpTokens": "required", "InstanceMetadataTags": "enabled"},
        TagSpecifications=[{"ResourceType": "instance", "Tags": [
            {"Key": "htcpool:pool", "Value": name}, {"Key": "htcpool:role", "Value": "worker"},
            {"Key": "htcpool:launched-by", "Value": "playbook"}]}])
    return iid


def _ads(pool: PoolHandle, ids: list[str]) -> dict[str, dict[str, Any]]:
    constraint = " || ".join(f'EC2InstanceId == "{i}"' for i in ids)
    out = pool.sandbox.exec(pool.cm, f"condor_status -startd -json -attributes {ATTRS} "
                                     f"-constraint '{constraint}'", check=False).stdout.strip()
    return {ad["EC2InstanceId"]: ad for ad in json.loads(out or "[]")}


def test_workers_advertise_their_instance_type(sandbox_pool: PoolHandle,
                                               instances: list[str]) -> None:
    pool = sandbox_pool
    ids = {}
    for itype in TYPES:
        ids[itype] = _launch(pool, itype)
        instances.append(ids[itype])  # terminated after the test, pass or fail

    def all_ads() -> dict[str, dict[str, Any]] | None:
        found = _ads(pool, list(ids.values()))
        return found if len(found) == len(ids) else None

    ads = wait_for(all_ads, timeout=300, interval=2, what="both workers' ads in the collector",
                   report=lambda: pool_report(pool, pool.sandbox.settings.log_file))
    described = {t["InstanceType"]: t for t in pool.sandbox.client("ec2").describe_instance_types(
        InstanceTypes=list(TYPES))["InstanceTypes"]}
    for itype, iid in ids.items():
        ad, info = ads[iid], described[itype]
        nominal = info["MemoryInfo"]["SizeInMiB"]
        expected = {"EC2InstanceType": itype, "TotalCpus": info["VCpuInfo"]["DefaultVCpus"],
                    "TotalMemory": advertised_memory_mb(nominal)}
        assert {k: ad.get(k) for k in expected} == expected, ad
        assert expected["TotalCpus"] == 4 and expected["TotalMemory"] < nominal
        assert not ad.get("TotalGPUs") and not ad.get("GPUs"), ad  # no driver, no GPU
    assert described["g4dn.xlarge"]["GpuInfo"]["Gpus"], "the type does have a GPU"
    # The "hardware" comes from the sandbox's file alone: no role sets NUM_CPUS or MEMORY.
    for knob in ("NUM_CPUS", "MEMORY"):
        where = pool.sandbox.exec(ids["c6i.xlarge"], f"condor_config_val -v {knob}").stdout
        assert f"/etc/condor/config.d/{hardware.CONFIG_FILE.name}" in where, where
    # Each instance gets its own; the image carries none.
    image_layer = pool.sandbox.settings.images_dir / pool.pool.worker_image / "layer"
    assert image_layer.is_dir() and not (image_layer / hardware.CONFIG_FILE).exists()
