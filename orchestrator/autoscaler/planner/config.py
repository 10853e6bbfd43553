"""The autoscaler's typed settings: every duration and limit in one place, unit-suffixed.

Unknown keys are an error (a typo in a config file must not silently keep a default), and
every number must be finite and within a range a pool can live with: a value such as
1e300 or inf would validate as a "positive float" yet stop the loop for good.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Upper bounds: well past any real pool, small enough that sums and sleeps stay exact.
DAY_S = 86400.0
WEEK_S = 7 * DAY_S
MAX_INSTANCES = 100_000


class InstanceShape(BaseModel):
    """An instance type the autoscaler may launch, with what it offers and costs."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str = Field(min_length=1, max_length=64)
    cpus: int = Field(gt=0, le=4096)
    memory_mb: int = Field(gt=0, le=64 * 1024 * 1024)
    gpus: int = Field(default=0, ge=0, le=64)
    price_per_hour: float = Field(gt=0, le=10_000)


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
    shapes: tuple[InstanceShape, ...] = DEFAULT_SHAPES
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
