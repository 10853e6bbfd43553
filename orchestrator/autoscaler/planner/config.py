"""The autoscaler's typed settings: every duration and limit in one place, unit-suffixed.

Unknown keys are an error (a typo in a config file must not silently keep a default), and
every number must be finite and within a range a pool can live with: a value such as
1e300 or inf would validate as a "positive float" yet stop the loop for good.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Upper bounds: well past any real pool, small enough that sums and sleeps stay exact.
DAY_S = 86400.0
WEEK_S = 7 * DAY_S
MAX_INSTANCES = 100_000


Arch = Literal["x86_64", "arm64"]


class InstanceShape(BaseModel):
    """An instance type the autoscaler may launch, with what it offers and costs.

    `cpus`, `memory_mb` and `gpus` are the type's nominal resources (EC2's
    DescribeInstanceTypes); what a worker of the type advertises is less (the kernel keeps
    some memory) and is learned from joined workers (planner/capacity.py). `disk_gb` is the
    root volume a worker is launched with (0: the pool's root_volume_gb)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str = Field(min_length=1, max_length=64)
    cpus: int = Field(gt=0, le=4096)
    memory_mb: int = Field(gt=0, le=64 * 1024 * 1024)
    gpus: int = Field(default=0, ge=0, le=64)
    price_per_hour: float = Field(gt=0, le=10_000)
    arch: Arch = "x86_64"
    disk_gb: int = Field(default=0, ge=0, le=65_536)
    # The current spot price in the pool's region (DescribeSpotPriceHistory), when known:
    # spot launches rank shapes by it.
    spot_price_per_hour: float | None = Field(default=None, gt=0, le=10_000)
    # What jobs may use of its disk, in MB, as the planner sizes it (planner/capacity.py
    # sets it from the workers' TotalDisk, else the root volume less the image); 0 when
    # disk is not planned.
    disk_mb: int = Field(default=0, ge=0, le=2**40)

    def price(self, spot: bool) -> float:
        """What an hour of it costs in the market the pool launches in."""
        return self.spot_price_per_hour if spot and self.spot_price_per_hour else \
            self.price_per_hour


class ShapeFilter(BaseModel):
    """Which of the named instance types (and families) EC2 offers are shapes."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    min_cpus: int = Field(default=1, ge=1, le=4096)
    max_cpus: int = Field(default=4096, ge=1, le=4096)
    min_memory_mb: int = Field(default=0, ge=0, le=64 * 1024 * 1024)
    max_memory_mb: int = Field(default=64 * 1024 * 1024, ge=1, le=64 * 1024 * 1024)
    # Types with GPUs are left out unless this allows them.
    max_gpus: int = Field(default=64, ge=0, le=64)
    architectures: tuple[Arch, ...] = ("x86_64",)
    max_price_per_hour: float = Field(default=100.0, gt=0, le=10_000)


# On-demand us-east-1 Linux prices (2024): compute-optimised for CPU jobs, memory-optimised
# for jobs that ask for more than 2 GB a core, one GPU type.
DEFAULT_SHAPES: tuple[InstanceShape, ...] = (
    InstanceShape(name="c6i.large", cpus=2, memory_mb=4096, price_per_hour=0.085),
    InstanceShape(name="c6i.xlarge", cpus=4, memory_mb=8192, price_per_hour=0.17),
    InstanceShape(name="c6i.2xlarge", cpus=8, memory_mb=16384, price_per_hour=0.34),
    InstanceShape(name="c6i.4xlarge", cpus=16, memory_mb=32768, price_per_hour=0.68),
    InstanceShape(name="c6i.8xlarge", cpus=32, memory_mb=65536, price_per_hour=1.36),
    InstanceShape(name="c6i.12xlarge", cpus=48, memory_mb=98304, price_per_hour=2.04),
    InstanceShape(name="c6i.16xlarge", cpus=64, memory_mb=131072, price_per_hour=2.72),
    InstanceShape(name="c6i.24xlarge", cpus=96, memory_mb=196608, price_per_hour=4.08),
    InstanceShape(name="c6i.32xlarge", cpus=128, memory_mb=262144, price_per_hour=5.44),
    InstanceShape(name="r6i.large", cpus=2, memory_mb=16384, price_per_hour=0.126),
    InstanceShape(name="r6i.4xlarge", cpus=16, memory_mb=131072, price_per_hour=1.008),
    InstanceShape(name="r6i.32xlarge", cpus=128, memory_mb=1048576, price_per_hour=8.064),
    InstanceShape(name="g5.xlarge", cpus=4, memory_mb=16384, gpus=1, price_per_hour=1.006),
)


class AutoscalerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    # Strategy by name (strategies.STRATEGIES): "binpack" (ours), "naive", "parallelcluster".
    policy: str = "binpack"
    # Scale in a worker only after it has been wholly unclaimed this long. About two boot
    # times: shorter thrashes on bursty queues, longer pays for idle machines.
    idle_timeout_s: float = Field(default=150.0, ge=0, le=WEEK_S)
    # While the queue asks for spare cores, a worker unclaimed this long whose cores are
    # beyond the queue's need and the spare is removed sooner: after a burst, every idle
    # machine past the forecast waits out idle_timeout_s for nothing. 0 turns it off.
    surplus_idle_s: float = Field(default=40.0, ge=0, le=WEEK_S)
    # A running instance whose startd has not joined by then is replaced: terminated, and
    # launched again if the queue or min_workers needs its capacity.
    join_timeout_s: float = Field(default=600.0, gt=0, le=DAY_S)
    # A worker that joined once and has been missing from the collector this long, with no
    # job of the schedd's on it, is replaced. Longer than the collector's CLASSAD_LIFETIME
    # (900 s), so a collector restart (startds re-advertise within UPDATE_INTERVAL) never
    # qualifies; until then its capacity counts as booting.
    lost_timeout_s: float = Field(default=1200.0, gt=0, le=WEEK_S)
    # One reconcile pass every interval: about as often as the negotiator matches jobs (the
    # master role's NEGOTIATOR_CYCLE_DELAY is 20 s), so a pass sees what the last cycle did.
    interval_s: float = Field(default=20.0, ge=0.1, le=3600)
    # Launch only for jobs idle at least this long: free capacity often drains a burst of
    # short jobs before a new machine would have booted. 0 launches at once.
    launch_delay_s: float = Field(default=0.0, ge=0, le=DAY_S)
    # Keep this many cores free beyond what the queue needs, plus a fraction of the busy
    # cores, so a new job usually starts at the next negotiation instead of after a boot.
    spare_cores: int = Field(default=0, ge=0, le=1_000_000)
    spare_fraction: float = Field(default=0.0, ge=0, le=10)
    # Forecast spare (forecast.py), beyond the two above: the cores jobs submitted over the
    # last arrival_window_s asked for, scaled to arrival_lead_s (about a boot plus a
    # negotiation), or room for spare_largest_jobs more jobs the size of the largest idle or
    # running one, whichever is more, at most spare_max_cores. Read from the queue, so it is
    # zero once the queue is empty. arrival_window_s 0 / spare_largest_jobs 0 turn them off.
    arrival_window_s: float = Field(default=120.0, ge=0, le=DAY_S)
    arrival_lead_s: float = Field(default=20.0, ge=0, le=DAY_S)
    spare_largest_jobs: int = Field(default=1, ge=0, le=10_000)
    spare_max_cores: int = Field(default=32, ge=0, le=1_000_000)
    min_workers: int = Field(default=0, ge=0, le=MAX_INSTANCES)
    max_workers: int = Field(default=100, ge=0, le=MAX_INSTANCES)
    max_launch_per_cycle: int = Field(default=100, gt=0, le=MAX_INSTANCES)
    # Stop idle workers instead of terminating them, and start stopped ones first.
    warm_pool: bool = False
    # Launch workers as spot instances, on-demand where spot has no capacity. An
    # interrupted worker's jobs go back to the queue (HTCondor reruns them) and are
    # launched for again; stopped spot instances cannot be restarted, so no warm pool.
    spot: bool = False
    # The instance types (or families: "c6i", "r6i.*") the autoscaler may launch, and the
    # filter over them: their resources come from EC2's DescribeInstanceTypes and their
    # prices from the Pricing API (spot prices from DescribeSpotPriceHistory with spot on),
    # for the pool's region, refreshed every shapes_refresh_s. `shapes`, when set
    # explicitly, is used as it is instead (offline use, the simulator, the tests).
    instance_types: tuple[str, ...] = tuple(s.name for s in DEFAULT_SHAPES)
    shape_filter: ShapeFilter = ShapeFilter()
    shapes_refresh_s: float = Field(default=DAY_S, ge=60, le=WEEK_S)
    shapes: tuple[InstanceShape, ...] = DEFAULT_SHAPES
    # Before a worker of a type has joined, plan with its nominal memory less this reserve
    # (the kernel and firmware keep some: a 4 GiB instance offers about 3.8 GiB); once
    # one has, with what its startd advertises.
    memory_reserve_mb: int = Field(default=160, ge=0, le=1024 * 1024)
    memory_reserve_fraction: float = Field(default=0.04, ge=0, lt=1)
    # Root volume of a worker (GiB) for shapes without disk_gb, and how much of it the
    # image's own files take before the first of a type has joined.
    root_volume_gb: int = Field(default=30, ge=1, le=65_536)
    disk_reserve_gb: int = Field(default=4, ge=0, le=65_536)
    # The worker image installs a GPU driver and enables HTCondor's GPU discovery
    # (htcondor_worker_gpu_enabled). Without it a GPU type's workers advertise no GPU, so
    # GPU shapes offer none and GPU jobs are reported unschedulable, not launched for.
    gpu_workers: bool = False
    # What the worker image advertises beyond its resources, for matching jobs'
    # Requirements before a worker of a shape exists: its custom startd attributes
    # ({name: ClassAd expression}, as htcondor_worker_startd_attrs) and its START.
    machine_attrs: tuple[tuple[str, str], ...] = ()
    start: str = Field(default="TRUE", min_length=1, max_length=4096)
    # The one instance type the naive and parallelcluster policies launch (None: the
    # cheapest shape that fits the largest idle job). Ignored by "binpack".
    fixed_shape: str | None = None

    @field_validator("policy")
    @classmethod
    def _known_policy(cls, value: str) -> str:
        from orchestrator.autoscaler.planner.strategies import STRATEGIES  # it imports us

        if value not in STRATEGIES:
            raise ValueError(f"unknown policy (choose from {', '.join(sorted(STRATEGIES))})")
        return value

    @field_validator("machine_attrs", mode="before")
    @classmethod
    def _attrs_as_pairs(cls, value: object) -> object:
        """A TOML table ({name: expression}) kept as sorted pairs, so the config hashes."""
        if isinstance(value, dict):
            return tuple(sorted((str(k), str(v)) for k, v in value.items()))
        return value

    @field_validator("machine_attrs")
    @classmethod
    def _attr_names(cls, value: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
        for name, _ in value:  # ClassAd attribute names: ASCII identifiers
            if not (name.isascii() and name.isidentifier() and len(name) <= 100):
                raise ValueError(f"{name!r} is not a ClassAd attribute name")
        return value

    @model_validator(mode="after")
    def _check(self) -> AutoscalerConfig:
        if self.min_workers > self.max_workers:
            raise ValueError(f"min_workers ({self.min_workers}) > max_workers "
                             f"({self.max_workers})")
        if not self.shapes:
            raise ValueError("shapes must list at least one instance shape")
        names = [s.name for s in self.shapes]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate shape names in {names}")
        if self.spot and self.warm_pool:
            raise ValueError("spot and warm_pool exclude each other (a one-time spot "
                             "instance is terminated, not stopped)")
        if self.fixed_shape is not None and self.fixed_shape not in names:
            raise ValueError(f"fixed_shape {self.fixed_shape!r} is not one of {names}")
        return self

    def shape(self, name: str) -> InstanceShape | None:
        for s in self.shapes:
            if s.name == name:
                return s
        return None
