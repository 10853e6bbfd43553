"""EC2 for the pool: instances, images, zones and regions, launch, waiters.

One `Cloud` per run holds one boto3 session and its clients (bounded retries in botocore's
standard or adaptive mode). Lists use paginators, waits use EC2 waiters. Everything a user
can get wrong becomes an `HtcpoolError` naming the offending id.

The autoscaler's executor calls: `pool_instances()`, `launch()`, `terminate()`, `stop()`,
`start()`, `central_manager()`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from orchestrator.cloud_records import (
    CAPACITY_ERRORS,
    LIVE_STATES,
    SPOT_ERRORS,
    TAG_LAUNCHED_BY,
    TAG_POOL,
    TAG_ROLE,
    TAG_VERSION,
    Image,
    Instance,
    LaunchRequest,
    Role,
    State,
)
from orchestrator.config import Config
from orchestrator.errors import HtcpoolError, NotFoundError, RefusedError, WaitTimeout

__all__ = ["CAPACITY_ERRORS", "LIVE_STATES", "TAG_LAUNCHED_BY", "TAG_POOL", "TAG_ROLE",
           "TAG_VERSION", "Cloud", "Image", "Instance", "LaunchRequest", "Role", "State",
           "make_session"]

if TYPE_CHECKING:
    import boto3

def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


_INSTANCE_ID = re.compile(r"i-[0-9A-Za-z]{1,64}")


def _chunks(items: Sequence[str], size: int = 200) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield list(items[i:i + size])


def make_session(config: Config) -> boto3.Session:
    """The run's one boto3 session. Region: htcpool's settings, else AWS_REGION (which
    botocore itself ignores), else AWS_DEFAULT_REGION or the profile's."""
    import os

    import boto3
    import botocore.exceptions

    region = config.region or os.environ.get("AWS_REGION") or None
    try:
        return boto3.Session(profile_name=config.profile, region_name=region)
    except botocore.exceptions.ProfileNotFound as err:
        raise HtcpoolError(f"AWS profile '{config.profile}' not found") from err


class Cloud:
    """The pool's view of EC2 (and the SSM client that condor.py uses)."""

    def __init__(self, config: Config, session: boto3.Session | None = None) -> None:
        self.config = config
        self.pool = config.pool
        self.session = session if session is not None else make_session(config)
        self._clients: dict[str, Any] = {}

    def client(self, service: str) -> Any:
        if service not in self._clients:
            from botocore.config import Config as BotoConfig

            if not self._clients:
                # Keep timestamps as the ISO strings the API sends: parsing every date of a
                # 1,000-instance DescribeInstances with dateutil costs a third of a pass.
                factory = self.session._session.get_component("response_parser_factory")
                factory.set_parser_defaults(timestamp_parser=str)
            if service == "ec2":
                from orchestrator.ec2_model import use_narrowed_model

                use_narrowed_model(self.session._session)

            if not self.session.region_name:
                raise HtcpoolError("no AWS region set (use --region, HTCPOOL_REGION, "
                                   "AWS_REGION or the config file)")
            retries: Any = {"mode": self.config.aws.retry_mode,
                       "max_attempts": self.config.aws.max_attempts}
            self._clients[service] = self.session.client(
                service, endpoint_url=self.config.endpoint_url,  # type: ignore[call-overload]
                config=BotoConfig(retries=retries, user_agent_extra="htcpool"))
        return self._clients[service]

    @property
    def ec2(self) -> Any:
        return self.client("ec2")

    def _paginate(self, service: str, op: str, key: str, **kwargs: Any) -> Iterator[Any]:
        for page in self.client(service).get_paginator(op).paginate(**kwargs):
            yield from page.get(key, [])

    # -- instances ---------------------------------------------------------------------

    def _instances(self, **kwargs: Any) -> list[Instance]:
        found = [Instance.from_api(raw)
                 for res in self._paginate("ec2", "describe_instances", "Reservations", **kwargs)
                 for raw in res.get("Instances", [])]
        return sorted(found, key=lambda i: (i.role or "", i.name, i.id))

    def pool_instances(self, states: Iterable[str] | None = None,
                       roles: Iterable[str] | None = None, pool: str | None = None,
                       all_pools: bool = False) -> list[Instance]:
        """Instances tagged with the pool (or every instance if `all_pools`)."""
        filters = [] if all_pools else [{"Name": f"tag:{TAG_POOL}", "Values": [pool or self.pool]}]
        wanted = [str(s) for s in (states or [])]
        if wanted:
            filters.append({"Name": "instance-state-name", "Values": wanted})
        if roles:
            filters.append({"Name": f"tag:{TAG_ROLE}", "Values": [str(r) for r in roles]})
        return self._instances(Filters=filters) if filters else self._instances()

    def describe(self, ids: Sequence[str]) -> list[Instance]:
        """The named instances, in the order given; an unknown id is a NotFoundError."""
        import botocore.exceptions

        for iid in ids:  # garbage (spaces, control characters, wildcards) never reaches EC2
            if not _INSTANCE_ID.fullmatch(iid):
                raise NotFoundError(f"'{iid}' is not an instance id (expected i-...)")
        found: dict[str, Instance] = {}
        for chunk in _chunks(list(dict.fromkeys(ids))):
            try:
                found.update((i.id, i) for i in self._instances(InstanceIds=chunk))
            except botocore.exceptions.ClientError as err:
                if _code(err).startswith("InvalidInstanceID"):
                    raise NotFoundError(f"unknown instance: {err.response['Error']['Message']}"
                                        ) from err
                raise
        missing = [i for i in ids if i not in found]
        if missing:
            raise NotFoundError(f"unknown instance id {missing[0]}")
        return [found[i] for i in ids]

    def central_manager(self) -> Instance:
        found = self.pool_instances(states=[State.RUNNING, State.PENDING],
                                    roles=[Role.CENTRAL_MANAGER])
        if not found:
            raise NotFoundError(
                f"central manager not found (no running instance tagged {TAG_ROLE}="
                f"{Role.CENTRAL_MANAGER} and {TAG_POOL}={self.pool} in {self.region})")
        return found[0]

    @property
    def region(self) -> str:
        return str(self.session.region_name or "?")

    def check_ours(self, instances: Iterable[Instance], force: bool = False) -> None:
        """Refuse instances outside this pool unless `force`."""
        if force:
            return
        for inst in instances:
            if inst.pool != self.pool:
                where = f"pool '{inst.pool}'" if inst.pool else f"no {TAG_POOL} tag"
                raise RefusedError(f"{inst.id} is not in pool '{self.pool}' ({where}); "
                                   "use --force to act on it anyway")

    # -- lifecycle ---------------------------------------------------------------------

    _ALLOWED: ClassVar[dict[str, tuple[set[State], set[State]]]] = {
        "start": ({State.STOPPED}, {State.RUNNING, State.PENDING}),
        "stop": ({State.RUNNING, State.PENDING}, {State.STOPPED, State.STOPPING}),
        "reboot": ({State.RUNNING}, set()),
        "terminate": ({State.RUNNING, State.PENDING, State.STOPPED, State.STOPPING},
                      {State.TERMINATED, State.SHUTTING_DOWN}),
    }
    _WAITERS: ClassVar[dict[str, tuple[str, State]]] = {
        "start": ("instance_running", State.RUNNING),
        "stop": ("instance_stopped", State.STOPPED),
        "reboot": ("instance_status_ok", State.RUNNING),
        "terminate": ("instance_terminated", State.TERMINATED)}

    def plan_action(self, action: str, instances: Sequence[Instance]) -> list[Instance]:
        """Instances the action applies to; already-there ones are skipped, wrong states refused."""
        allowed, done = self._ALLOWED[action]
        todo = []
        for inst in instances:
            if inst.state in done:
                continue
            if inst.state not in allowed:
                raise RefusedError(f"cannot {action} {inst.id}: it is {inst.state}")
            todo.append(inst)
        return todo

    def act(self, action: str, ids: Sequence[str], *, force: bool = False, dry_run: bool = False,
            protect_central_manager: bool = True) -> list[Instance]:
        """start/stop/reboot/terminate: checks pool and state, then one batched call per 200."""
        import botocore.exceptions

        instances = self.describe(ids)
        self.check_ours(instances, force)
        if protect_central_manager and action in ("stop", "terminate") and not force:
            for inst in instances:
                if inst.role == Role.CENTRAL_MANAGER:
                    raise RefusedError(f"{inst.id} is the pool's central manager; "
                                       f"use --force to {action} it")
        todo = self.plan_action(action, instances)
        method = {"start": "start_instances", "stop": "stop_instances",
                  "reboot": "reboot_instances", "terminate": "terminate_instances"}[action]
        for chunk in _chunks([i.id for i in todo]):
            try:
                getattr(self.ec2, method)(InstanceIds=chunk, DryRun=dry_run)
            except botocore.exceptions.ClientError as err:
                if dry_run and _code(err) == "DryRunOperation":
                    continue
                if _code(err) == "IncorrectInstanceState":
                    raise RefusedError(f"cannot {action}: {err.response['Error']['Message']}"
                                       ) from err
                raise
        return todo

    def start(self, ids: Sequence[str], **kw: Any) -> list[Instance]:
        return self.act("start", ids, **kw)

    def stop(self, ids: Sequence[str], **kw: Any) -> list[Instance]:
        return self.act("stop", ids, **kw)

    def reboot(self, ids: Sequence[str], **kw: Any) -> list[Instance]:
        return self.act("reboot", ids, **kw)

    def terminate(self, ids: Sequence[str], **kw: Any) -> list[Instance]:
        return self.act("terminate", ids, **kw)

    def wait(self, action: str, ids: Sequence[str],
             progress: Callable[[int, int, str], None] | None = None,
             timeout_s: float | None = None) -> None:
        """Wait with an EC2 waiter until every instance reached the action's state."""
        import botocore.exceptions

        name, target = self._WAITERS[action]
        waiter = self.ec2.get_waiter(name)
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

    def launch(self, req: LaunchRequest, dry_run: bool = False) -> list[Instance]:
        """Launch `req.count` instances: one RunInstances per (type, subnet) tried in order
        until the count is met; capacity errors move on to the next subnet, then type. With
        `req.spot`, every pair is tried as spot first, then again on-demand. Each call's
        ClientToken derives from `req.client_token`, so a retried request (by botocore or
        by calling again with the same token) launches nothing twice."""
        import botocore.exceptions

        if req.count < 1:
            return []
        if not req.instance_types or not req.subnets:
            raise HtcpoolError("launch needs at least one instance type and one subnet")
        launched: list[Instance] = []
        errors: list[str] = []
        tags = [{"Key": TAG_POOL, "Value": self.pool}, {"Key": TAG_ROLE, "Value": str(req.role)},
                {"Key": TAG_LAUNCHED_BY, "Value": req.launched_by}]
        for spot in ([True, False] if req.spot else [False]):
            give_up = CAPACITY_ERRORS | SPOT_ERRORS if spot else CAPACITY_ERRORS
            market = "spot " if spot else ""
            for t_index, itype in enumerate(req.instance_types):
                for s_index, subnet in enumerate(req.subnets):
                    for attempt in range(req.count):  # again while a pair gives some
                        need = req.count - len(launched)
                        if need <= 0:
                            return launched
                        token = f"{req.client_token}-{'s' if spot else ''}{t_index}-{s_index}-" \
                                f"{attempt}"
                        params = self._run_params(req, itype, subnet, need, tags, dry_run,
                                                  token, spot)
                        try:
                            reply = self.ec2.run_instances(**params)
                        except botocore.exceptions.ClientError as err:
                            code = _code(err)
                            if dry_run and code == "DryRunOperation":
                                return []
                            if code in give_up:
                                errors.append(f"{market}{itype} in {subnet}: {code}")
                                break
                            if code.startswith("InvalidAMIID"):
                                raise NotFoundError(f"unknown AMI {req.image_id}") from err
                            raise
                        new = [Instance.from_api(raw) for raw in reply["Instances"]]
                        self._name(new, req.role)
                        launched.extend(new)
                        if not new:
                            break
        if len(launched) < req.count:
            raise HtcpoolError(f"launched {len(launched)} of {req.count} instances; "
                               f"no capacity: {'; '.join(errors) or 'unknown'}")
        return launched

    @staticmethod
    def _run_params(req: LaunchRequest, itype: str, subnet: str, need: int,
                    tags: list[dict[str, str]], dry_run: bool, token: str,
                    spot: bool = False) -> dict[str, Any]:
        params: dict[str, Any] = {
            "ImageId": req.image_id, "InstanceType": itype, "MinCount": 1, "MaxCount": need,
            "SubnetId": subnet, "ClientToken": token[:64],
            "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled",
                                "HttpPutResponseHopLimit": 2},
            "IamInstanceProfile": {"Name": req.instance_profile},
            "TagSpecifications": [{"ResourceType": "instance", "Tags": tags},
                                  {"ResourceType": "volume", "Tags": tags[:2]}],
            "DryRun": dry_run}
        if spot:
            # One-time, terminated on interruption: HTCondor puts its jobs back in the queue
            # and the autoscaler launches again; a spot price above on-demand is never paid.
            params["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": {
                "SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"}}
        if req.security_groups:
            params["SecurityGroupIds"] = list(req.security_groups)
        if req.key_name:
            params["KeyName"] = req.key_name
        return params

    def _name(self, instances: Sequence[Instance], role: Role) -> None:
        for inst in instances:
            if not inst.name:
                self.ec2.create_tags(Resources=[inst.id], Tags=[
                    {"Key": "Name", "Value": f"{self.pool}-{role}-{inst.id[2:10]}"}])

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
            {"Name": f"tag:{TAG_ROLE}", "Values": [Role.WORKER_IMAGE.value]}])
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
            found = self.ec2.describe_images(ImageIds=[image_id])["Images"]
        except botocore.exceptions.ClientError as err:
            if _code(err).startswith("InvalidAMIID"):
                raise NotFoundError(f"unknown AMI {image_id}") from err
            raise
        if not found:
            raise NotFoundError(f"unknown AMI {image_id}")
        return Image.from_api(found[0])

    def zones(self) -> list[dict[str, str]]:
        reply = self.ec2.describe_availability_zones()
        return [{"name": z["ZoneName"], "id": z.get("ZoneId", ""), "state": z.get("State", ""),
                 "region": z.get("RegionName", "")} for z in reply["AvailabilityZones"]]

    def regions(self) -> list[dict[str, str]]:
        reply = self.ec2.describe_regions()
        return sorted(({"name": r["RegionName"], "endpoint": r.get("Endpoint", ""),
                        "opt_in": r.get("OptInStatus", "")} for r in reply["Regions"]),
                      key=lambda r: r["name"])
