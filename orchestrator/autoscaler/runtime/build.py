"""What `htcpool autoscale`, `htcpool scale`, the demo and the benchmarks share: an
Autoscaler wired to the real adapters (EC2, and HTCondor over the configured transport),
the launch spec it resolves, the pool's lease, and the start-up step of a long run."""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

from orchestrator.autoscaler.runtime.executor import LaunchSpec
from orchestrator.autoscaler.runtime.lease import Lease
from orchestrator.autoscaler.runtime.loop import Autoscaler
from orchestrator.autoscaler.runtime.metrics import AutoscalerMetrics
from orchestrator.aws.capacity_store import DynamoCapacityStore
from orchestrator.aws.ec2 import Cloud
from orchestrator.aws.instance_types import resolve_shapes
from orchestrator.condor.factory import pool_source_for
from orchestrator.condor.source import PoolSource
from orchestrator.config import Config


def launch_spec_source(cloud: Cloud, config: Config) -> Callable[[], LaunchSpec]:
    """Where workers are launched, resolved from tags and settings when a pass first
    launches, then kept for the run."""
    cache: list[LaunchSpec] = []

    def spec() -> LaunchSpec:
        if not cache:
            image = cloud.newest_worker_image()
            cache.append(LaunchSpec(
                image_id=image.id, root_device=image.root_device,
                root_volume_gb=image.root_volume_gb,
                subnets=cloud.worker_subnets(),
                security_groups=cloud.worker_security_groups(),
                instance_profile=config.worker_instance_profile,
                key_name=config.worker.key_name))
        return cache[0]
    return spec


def build_autoscaler(config: Config, *, cloud: Cloud | None = None,
                     source: PoolSource | None = None, transport: str | None = None,
                     emit: Callable[[dict[str, Any]], None] | None = None,
                     metrics: AutoscalerMetrics | None = None) -> Autoscaler:
    """The autoscaler for this configuration; `cloud` and `source` default to new ones."""
    cloud = cloud if cloud is not None else Cloud(config)
    catalog = cloud.shape_catalog()
    chosen = cloud
    if source is None:
        source = pool_source_for(config, lambda: chosen, transport)
    return Autoscaler(cloud, source, config.autoscaler, launch_spec_source(cloud, config),
                      metrics=metrics, emit=emit,
                      capacity_store=DynamoCapacityStore(cloud.client("dynamodb"), cloud.pool),
                      shapes=lambda cfg, now: resolve_shapes(catalog, cfg, now))


def pool_lease(autoscaler: Autoscaler) -> Lease:
    """The pool's lease, lasting three passes (at least a minute) past its last renewal."""
    return Lease(autoscaler.cloud.lease_store(),
                 ttl_s=max(60.0, 3 * autoscaler.config.interval_s),
                 log=lambda message: autoscaler.event("lease", reason=message))


def prepare_for_passes(autoscaler: Autoscaler) -> None:
    """Before the loop's first pass: create the EC2 client, then move every object alive so
    far (the EC2 client's service model alone is some 50,000) out of the garbage collector's
    generations (gc.freeze), so the full collections a pass triggers no longer walk them."""
    autoscaler.cloud.warm_up()
    gc.collect()
    gc.freeze()
