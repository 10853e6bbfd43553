"""The autoscaler's Prometheus metrics (`htcpool autoscale --metrics-port`)."""

from __future__ import annotations


class AutoscalerMetrics:
    """Prometheus metrics (a private registry, so tests and the CLI can make several)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.registry = CollectorRegistry()

        def g(name: str, doc: str) -> Gauge:
            return Gauge(f"htcpool_{name}", doc, registry=self.registry)

        def c(name: str, doc: str) -> Counter:
            return Counter(f"htcpool_{name}", doc, registry=self.registry)
        self.desired = g("desired_workers", "Workers the last plan wants")
        self.current = g("current_workers", "Workers joined or booting")
        self.booting = g("booting_workers", "Workers launched but not yet in the pool")
        self.draining = g("draining_workers", "Workers draining before removal")
        self.idle_jobs = g("idle_jobs", "Idle jobs in the queue")
        self.running_jobs = g("running_jobs", "Running jobs")
        self.unschedulable_jobs = g("unschedulable_jobs",
                                    "Idle jobs no shape can run (never launched for)")
        self.silent_schedds = g("silent_schedds", "Schedds whose queue could not be read")
        self.lease_held = g("lease_held", "1 while this autoscaler holds the pool's lease")
        self.last_pass = g("last_pass_timestamp_seconds", "When the last pass completed")
        self.launches = c("launches", "Instances launched")
        self.terminations = c("terminations", "Instances terminated or stopped")
        self.errors = c("errors", "Failed steps and skipped passes")
        self.passes = c("passes", "Reconcile passes")

    def serve(self, port: int, addr: str = "127.0.0.1") -> None:
        from prometheus_client import start_http_server

        start_http_server(port, addr=addr, registry=self.registry)
