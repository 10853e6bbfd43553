"""EC2 for the pool: instances, images, zones and regions, launch, lifecycle, waiters, tags.

One `Cloud` per run holds the run's clients (aws/session.py). Lists use paginators, waits
use EC2 waiters. Everything a user can get wrong becomes an `HtcpoolError` naming the
offending id.

The autoscaler's runtime reads `pool_instances()` and acts through `launch()`,
`terminate()`, `stop()`, `start()`, `tag()` and `untag()` (runtime/ports.py: WorkerCloud).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from orchestrator.aws.instance_types import ShapeCatalog, pricing_client
from orchestrator.aws.launch import run_instances
from orchestrator.aws.lease_store import DynamoLeaseStore
from orchestrator.aws.provenance import PoolImages, provenance_problem
from orchestrator.aws.records import Ec2Instance, Image, LaunchRequest
from orchestrator.aws.session import Clients, error_code
from orchestrator.aws.ssm import run_command
from orchestrator.clock import wall
from orchestrator.config import Config
from orchestrator.errors import HtcpoolError, NotFoundError, RefusedError, WaitTimeout
from orchestrator.vocabulary import INSTANCE_ID_LOOSE, TAG_POOL, TAG_ROLE, InstanceState, Role

if TYPE_CHECKING:
    import boto3

S = InstanceState


class Lifecycle(StrEnum):
    """What `htcpool instances ...` and the autoscaler do to an instance."""

    START = "start"
    STOP = "stop"
    REBOOT = "reboot"
    TERMINATE = "terminate"


# action: (states it applies to, states that mean it is done already)
_ALLOWED: dict[Lifecycle, tuple[set[InstanceState], set[InstanceState]]] = {
    Lifecycle.START: ({S.STOPPED}, {S.RUNNING, S.PENDING}),
    Lifecycle.STOP: ({S.RUNNING, S.PENDING}, {S.STOPPED, S.STOPPING}),
    Lifecycle.REBOOT: ({S.RUNNING}, set()),
    Lifecycle.TERMINATE: ({S.RUNNING, S.PENDING, S.STOPPED, S.STOPPING},
                          {S.TERMINATED, S.SHUTTING_DOWN}),
}
# action: (the EC2 waiter that waits for it, the state it waits for)
_WAITERS: dict[Lifecycle, tuple[str, InstanceState]] = {
    Lifecycle.START: ("instance_running", S.RUNNING),
    Lifecycle.STOP: ("instance_stopped", S.STOPPED),
    Lifecycle.REBOOT: ("instance_status_ok", S.RUNNING),
    Lifecycle.TERMINATE: ("instance_terminated", S.TERMINATED),
}


def _chunks(items: Sequence[str], size: int = 200) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield list(items[i:i + size])


class Cloud:
    """The pool's view of EC2, and the SSM commands the condor transport runs."""

    def __init__(self, config: Config, session: boto3.Session | None = None) -> None:
        self.config = config
        self.pool = config.pool
        self._clients = Clients(config, session)
        # (EC2's time, this host's time) when the last DescribeInstances reply came: the
        # autoscaler times launches and its tags by EC2's clock, not this host's.
        self.server_time: tuple[float, float] | None = None
        self._images = PoolImages(lambda: [i.id for i in self.worker_images()], wall)

    @property
    def session(self) -> boto3.Session:
        return self._clients.session

    def client(self, service: str) -> Any:
        """A boto3 client of the run's session (for htcpool's AWS adapters)."""
        return self._clients.get(service)

    def warm_up(self) -> None:
        """Create the EC2 client now (its model is loaded once, before any pass)."""
        self._clients.get("ec2")

    @property
    def _ec2(self) -> Any:
        return self._clients.get("ec2")

    def hooks(self, service: str = "ec2") -> Any:
        """The client's botocore event system: where benchmarks count calls and tests
        inject faults (`hooks().register("before-call.ec2.RunInstances", fn)`)."""
        return self._clients.get(service).meta.events

    def _paginate(self, service: str, op: str, key: str, **kwargs: Any) -> Iterator[Any]:
        for page in self.client(service).get_paginator(op).paginate(**kwargs):
            yield from page.get(key, [])

    # -- instances ---------------------------------------------------------------------

    def _instances(self, **kwargs: Any) -> list[Ec2Instance]:
        found = []
        pages = self._ec2.get_paginator("describe_instances").paginate(**kwargs)
        for n, page in enumerate(pages):
            if n == 0:
                self._note_server_time(page)
            found += [Ec2Instance.from_api(raw) for res in page.get("Reservations", [])
                      for raw in res.get("Instances", [])]
        return sorted(found, key=lambda i: (i.role or "", i.name, i.id))

    def _note_server_time(self, page: dict[str, Any]) -> None:
        import email.utils

        date = page.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
        try:
            # The header has whole seconds: the reply left somewhere in that second.
            sent = email.utils.parsedate_to_datetime(date).timestamp() + 0.5
        except (TypeError, ValueError):
            return
        self.server_time = (sent, wall())

    def pool_instances(self, states: Iterable[str] | None = None,
                       roles: Iterable[str] | None = None, pool: str | None = None,
                       all_pools: bool = False) -> list[Ec2Instance]:
        """Instances tagged with the pool (or every instance if `all_pools`)."""
        filters = [] if all_pools else [{"Name": f"tag:{TAG_POOL}", "Values": [pool or self.pool]}]
        wanted = [str(s) for s in (states or [])]
        if wanted:
            filters.append({"Name": "instance-state-name", "Values": wanted})
        if roles:
            filters.append({"Name": f"tag:{TAG_ROLE}", "Values": [str(r) for r in roles]})
        return self._instances(Filters=filters) if filters else self._instances()

    def describe(self, ids: Sequence[str]) -> list[Ec2Instance]:
        """The named instances, in the order given; an unknown id is a NotFoundError."""
        import botocore.exceptions

        for iid in ids:  # garbage (spaces, control characters, wildcards) never reaches EC2
            if not INSTANCE_ID_LOOSE.fullmatch(iid):
                raise NotFoundError(f"'{iid}' is not an instance id (expected i-...)")
        found: dict[str, Ec2Instance] = {}
        for chunk in _chunks(list(dict.fromkeys(ids))):
            try:
                found.update((i.id, i) for i in self._instances(InstanceIds=chunk))
            except botocore.exceptions.ClientError as err:
                if error_code(err).startswith("InvalidInstanceID"):
                    raise NotFoundError(f"unknown instance: {err.response['Error']['Message']}"
                                        ) from err
                raise
        missing = [i for i in ids if i not in found]
        if missing:
            raise NotFoundError(f"unknown instance id {missing[0]}")
        return [found[i] for i in ids]

    def central_manager(self) -> Ec2Instance:
        found = self.pool_instances(states=[S.RUNNING, S.PENDING],
                                    roles=[Role.CENTRAL_MANAGER])
        if not found:
            raise NotFoundError(
                f"central manager not found (no running instance tagged {TAG_ROLE}="
                f"{Role.CENTRAL_MANAGER} and {TAG_POOL}={self.pool} in {self.region})")
        return found[0]

    @property
    def region(self) -> str:
        return self._clients.region

    def provenance(self, inst: Ec2Instance) -> str | None:
        """Why a pool-tagged instance is not one the pool launched (aws/provenance.py);
        None if it is."""
        images = self._images.ids([inst.image_id] if inst.role == Role.WORKER else [])
        return provenance_problem(inst, self.pool, images, self.config.worker_instance_profile,
                                  self.config.central_manager_instance_profile)

    def check_ours(self, instances: Iterable[Ec2Instance], force: bool = False) -> None:
        """Refuse instances outside this pool, or tagged into it but not launched by it,
        unless `force`."""
        if force:
            return
        for inst in instances:
            if inst.pool != self.pool:
                where = f"pool '{inst.pool}'" if inst.pool else f"no {TAG_POOL} tag"
                raise RefusedError(f"{inst.id} is not in pool '{self.pool}' ({where}); "
                                   "use --force to act on it anyway")
            # A terminated instance has no profile left, and no action applies to it.
            gone = inst.state in (S.TERMINATED, S.SHUTTING_DOWN)
            problem = None if gone else self.provenance(inst)
            if problem:
                raise RefusedError(f"{inst.id} is tagged into pool '{self.pool}' but was not "
                                   f"launched by it ({problem}); use --force to act on it "
                                   "anyway")

    # -- lifecycle ---------------------------------------------------------------------

    @staticmethod
    def plan_action(action: Lifecycle, instances: Sequence[Ec2Instance]) -> list[Ec2Instance]:
        """Instances the action applies to; already-there ones are skipped, wrong states refused."""
        allowed, done = _ALLOWED[action]
        todo = []
        for inst in instances:
            if inst.state in done:
                continue
            if inst.state not in allowed:
                raise RefusedError(f"cannot {action} {inst.id}: it is {inst.state}")
            todo.append(inst)
        return todo

    def act(self, action: Lifecycle, ids: Sequence[str], *, force: bool = False,
            dry_run: bool = False, protect_central_manager: bool = True) -> list[Ec2Instance]:
        """start/stop/reboot/terminate: checks pool and state, then one batched call per 200."""
        import botocore.exceptions

        action = Lifecycle(action)
        instances = self.describe(ids)
        self.check_ours(instances, force)
        if protect_central_manager and action in (Lifecycle.STOP, Lifecycle.TERMINATE) \
                and not force:
            for inst in instances:
                if inst.role == Role.CENTRAL_MANAGER:
                    raise RefusedError(f"{inst.id} is the pool's central manager; "
                                       f"use --force to {action} it")
        todo = self.plan_action(action, instances)
        ec2 = self._ec2
        call: Callable[..., Any] = {
            Lifecycle.START: ec2.start_instances, Lifecycle.STOP: ec2.stop_instances,
            Lifecycle.REBOOT: ec2.reboot_instances,
            Lifecycle.TERMINATE: ec2.terminate_instances}[action]
        for chunk in _chunks([i.id for i in todo]):
            try:
                call(InstanceIds=chunk, DryRun=dry_run)
            except botocore.exceptions.ClientError as err:
                if dry_run and error_code(err) == "DryRunOperation":
                    continue
                if error_code(err) == "IncorrectInstanceState":
                    raise RefusedError(f"cannot {action}: {err.response['Error']['Message']}"
                                       ) from err
                raise
        return todo

    def start(self, ids: Sequence[str], **kw: Any) -> list[Ec2Instance]:
        return self.act(Lifecycle.START, ids, **kw)

    def stop(self, ids: Sequence[str], **kw: Any) -> list[Ec2Instance]:
        return self.act(Lifecycle.STOP, ids, **kw)

    def reboot(self, ids: Sequence[str], **kw: Any) -> list[Ec2Instance]:
        return self.act(Lifecycle.REBOOT, ids, **kw)

    def terminate(self, ids: Sequence[str], **kw: Any) -> list[Ec2Instance]:
        return self.act(Lifecycle.TERMINATE, ids, **kw)

    def tag(self, ids: Sequence[str], key: str, value: str) -> None:
        """One CreateTags per 1,000 instances (its limit): the autoscaler's bookkeeping."""
        for chunk in _chunks(sorted(ids), 1000):
            self._ec2.create_tags(Resources=chunk, Tags=[{"Key": key, "Value": value}])

    def untag(self, ids: Sequence[str], key: str) -> None:
        for chunk in _chunks(sorted(ids), 1000):
            self._ec2.delete_tags(Resources=chunk, Tags=[{"Key": key}])

    def wait(self, action: Lifecycle, ids: Sequence[str],
             progress: Callable[[int, int, str], None] | None = None,
             timeout_s: float | None = None) -> None:
        """Wait with an EC2 waiter until every instance reached the action's state."""
        import botocore.exceptions

        name, target = _WAITERS[Lifecycle(action)]
        waiter = self._ec2.get_waiter(name)
        delay = self.config.aws.wait_delay_s
        attempts = max(1, int((timeout_s or self.config.aws.wait_timeout_s) / delay))
        for n, iid in enumerate(ids):
            if progress:
                progress(n, len(ids), iid)
            try:
                waiter.wait(InstanceIds=[iid],
                            WaiterConfig={"Delay": delay, "MaxAttempts": attempts})
            except botocore.exceptions.WaiterError as err:
                now = self.describe([iid])[0].state
                if "Max attempts exceeded" in str(err):
                    raise WaitTimeout(f"{iid} did not become {target} within "
                                      f"{delay * attempts:g} s (it is {now})") from err
                raise HtcpoolError(f"{iid} will not become {target}: it is {now}") from err
        if progress:
            progress(len(ids), len(ids), "")

    # -- launch ------------------------------------------------------------------------

    def launch(self, req: LaunchRequest, dry_run: bool = False) -> list[Ec2Instance]:
        """Launch `req.count` instances with fallbacks (aws/launch.py)."""
        return run_instances(self._ec2, self.pool, req, dry_run)

    def shape_catalog(self) -> ShapeCatalog:
        """The region's instance types and prices as the autoscaler's shapes
        (aws/instance_types.py: `resolve_shapes`); one per Cloud, so its cache outlives a
        pass. The pricing client is made on its first lookup."""
        catalog: ShapeCatalog | None = getattr(self, "_shape_catalog", None)
        if catalog is None:
            catalog = ShapeCatalog(self._ec2, lambda: pricing_client(self.session, self.config),
                                   self.region)
            self._shape_catalog = catalog
        return catalog

    def lease_store(self) -> DynamoLeaseStore:
        """Where the pool's autoscaler lease is kept."""
        return DynamoLeaseStore(self.client("dynamodb"), self.pool)

    def run_command(self, instance_id: str, commands: Sequence[str], timeout_s: float,
                    comment: str = "htcpool", **kw: Any) -> str:
        """Run a shell script on an instance through SSM; its standard output."""
        return run_command(self.client("ssm"), instance_id, commands, timeout_s, comment, **kw)

    # -- discovery for `instances create` ----------------------------------------------

    def worker_subnets(self) -> list[str]:
        if self.config.worker.subnets:
            return list(self.config.worker.subnets)
        tagged = [s["SubnetId"] for s in self._paginate(
            "ec2", "describe_subnets", "Subnets",
            Filters=[{"Name": f"tag:{TAG_POOL}", "Values": [self.pool]}])]
        if tagged:
            return sorted(tagged)
        cm = self.central_manager()
        if cm.subnet_id:
            return [cm.subnet_id]
        raise NotFoundError(f"no subnets tagged {TAG_POOL}={self.pool}; set [worker] subnets")

    def default_subnets(self) -> list[str]:
        """The default VPC's subnets, one per zone, in zone order."""
        found = self._paginate("ec2", "describe_subnets", "Subnets",
                               Filters=[{"Name": "default-for-az", "Values": ["true"]}])
        return [s["SubnetId"] for s in sorted(found, key=lambda s: s["AvailabilityZone"])]

    def worker_security_groups(self) -> list[str]:
        if self.config.worker.security_groups:
            return list(self.config.worker.security_groups)
        groups = list(self._paginate("ec2", "describe_security_groups", "SecurityGroups",
                                     Filters=[{"Name": f"tag:{TAG_POOL}", "Values": [self.pool]}]))
        workers = [g for g in groups if any(t["Key"] == TAG_ROLE and t["Value"] == Role.WORKER
                                            for t in g.get("Tags", []))]
        chosen = workers or groups
        if not chosen:
            raise NotFoundError(f"no security group tagged {TAG_POOL}={self.pool}; "
                                "set [worker] security_groups")
        return sorted(g["GroupId"] for g in chosen)

    # -- images, zones, regions ----------------------------------------------------------

    def worker_images(self) -> list[Image]:
        """The pool's worker images, newest first (by version tag, then creation date)."""
        raw = self._paginate("ec2", "describe_images", "Images", Owners=["self"], Filters=[
            {"Name": f"tag:{TAG_POOL}", "Values": [self.pool]},
            {"Name": f"tag:{TAG_ROLE}", "Values": [str(Role.WORKER_IMAGE)]}])
        images = [Image.from_api(r) for r in raw]
        return sorted(images, key=lambda i: (i.version or "", i.created), reverse=True)

    def newest_worker_image(self) -> Image:
        images = [i for i in self.worker_images() if i.state in ("available", "")]
        if not images:
            raise NotFoundError(f"pool '{self.pool}' has no worker image "
                                "(run `htcpool images bake`, or pass --ami)")
        return images[0]

    def image(self, image_id: str) -> Image:
        import botocore.exceptions

        try:
            found = self._ec2.describe_images(ImageIds=[image_id])["Images"]
        except botocore.exceptions.ClientError as err:
            if error_code(err).startswith("InvalidAMIID"):
                raise NotFoundError(f"unknown AMI {image_id}") from err
            raise
        if not found:
            raise NotFoundError(f"unknown AMI {image_id}")
        return Image.from_api(found[0])

    def zones(self) -> list[dict[str, str]]:
        reply = self._ec2.describe_availability_zones()
        return [{"name": z["ZoneName"], "id": z.get("ZoneId", ""), "state": z.get("State", ""),
                 "region": z.get("RegionName", "")} for z in reply["AvailabilityZones"]]

    def regions(self) -> list[dict[str, str]]:
        reply = self._ec2.describe_regions()
        return sorted(({"name": r["RegionName"], "endpoint": r.get("Endpoint", ""),
                        "opt_in": r.get("OptInStatus", "")} for r in reply["Regions"]),
                      key=lambda r: r["name"])
