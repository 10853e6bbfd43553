"""RunInstances with fallbacks: instance types, then subnets, spot then on-demand.

Each call's ClientToken derives from the request's, so a retried request (by botocore, or
by calling again with the same token) launches nothing twice. The pool's tags go in the
request itself; only the Name tag (it holds the instance id) is set afterwards, retried
while EC2 does not know the new id yet (eventual consistency), and never fails a launch.
Whatever happens, the caller learns every instance that was launched: a failure after
some launches raises LaunchError carrying them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from orchestrator.aws.records import CAPACITY_ERRORS, SPOT_ERRORS, Ec2Instance, LaunchRequest
from orchestrator.aws.session import error_code
from orchestrator.errors import HtcpoolError, NotFoundError, describe_exception
from orchestrator.vocabulary import TAG_LAUNCHED_BY, TAG_NAME, TAG_POOL, TAG_ROLE, Role

log = logging.getLogger("htcpool.aws")
# Seconds between tries to name a just-launched instance EC2 does not list yet.
NAME_RETRY_DELAYS_S = (0.5, 1.0, 2.0, 4.0, 8.0)


class LaunchError(HtcpoolError):
    """A launch that failed part-way: `launched` holds what was launched before."""

    def __init__(self, message: str, launched: Sequence[Ec2Instance]) -> None:
        super().__init__(message)
        self.launched = list(launched)


def run_instances(ec2: Any, pool: str, req: LaunchRequest, dry_run: bool = False
                  ) -> list[Ec2Instance]:
    """Launch `req.count` instances: one RunInstances per (type, subnet) tried in order
    until the count is met; capacity errors move on to the next subnet, then type. With
    `req.spot`, every pair is tried as spot first, then again on-demand."""
    if req.count < 1:
        return []
    if not req.instance_types or not req.subnets:
        raise HtcpoolError("launch needs at least one instance type and one subnet")
    launched: list[Ec2Instance] = []
    try:
        return _launch(ec2, pool, req, dry_run, launched)
    except LaunchError:
        raise
    except Exception as exc:
        if not launched:
            raise
        raise LaunchError(f"launched {len(launched)} of {req.count} instances, then: "
                          f"{describe_exception(exc)}", launched) from exc


def _launch(ec2: Any, pool: str, req: LaunchRequest, dry_run: bool,
            launched: list[Ec2Instance]) -> list[Ec2Instance]:
    import botocore.exceptions

    errors: list[str] = []
    tags = [{"Key": TAG_POOL, "Value": pool}, {"Key": TAG_ROLE, "Value": str(req.role)},
            {"Key": TAG_LAUNCHED_BY, "Value": str(req.launched_by)}]
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
                    params = run_params(req, itype, subnet, need, tags, dry_run, token, spot)
                    try:
                        reply = ec2.run_instances(**params)
                    except botocore.exceptions.ClientError as err:
                        code = error_code(err)
                        if dry_run and code == "DryRunOperation":
                            return []
                        if code in give_up:
                            errors.append(f"{market}{itype} in {subnet}: {code}")
                            break
                        if code.startswith("InvalidAMIID"):
                            raise NotFoundError(f"unknown AMI {req.image_id}") from err
                        raise
                    new = [Ec2Instance.from_api(raw) for raw in reply["Instances"]]
                    launched.extend(new)
                    _name(ec2, pool, new, req.role)
                    if not new:
                        break
    if len(launched) < req.count:
        raise LaunchError(f"launched {len(launched)} of {req.count} instances; "
                          f"no capacity: {'; '.join(errors) or 'unknown'}", launched)
    return launched


def run_params(req: LaunchRequest, itype: str, subnet: str, need: int,
               tags: list[dict[str, str]], dry_run: bool, token: str,
               spot: bool = False) -> dict[str, Any]:
    params: dict[str, Any] = {
        "ImageId": req.image_id, "InstanceType": itype, "MinCount": 1, "MaxCount": need,
        "SubnetId": subnet, "ClientToken": token[:64],
        # IMDSv2 only, one hop (a container on the worker cannot get a token), and the
        # instance's tags readable (the first-boot unit reads its pool from them).
        "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled",
                            "HttpPutResponseHopLimit": 1, "InstanceMetadataTags": "enabled"},
        "IamInstanceProfile": {"Name": req.instance_profile},
        "TagSpecifications": [{"ResourceType": "instance", "Tags": tags},
                              {"ResourceType": "volume", "Tags": tags[:2]}],
        "DryRun": dry_run}
    if spot:
        # One-time, terminated on interruption: HTCondor puts its jobs back in the queue
        # and the autoscaler launches again; a spot price above on-demand is never paid.
        params["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": {
            "SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"}}
    size = req.root_volume_gb.get(itype)
    if size and req.root_device:
        # Jobs' RequestDisk is planned on this volume; it goes with the instance.
        params["BlockDeviceMappings"] = [{"DeviceName": req.root_device, "Ebs": {
            "VolumeSize": size, "VolumeType": "gp3", "DeleteOnTermination": True}}]
    if req.security_groups:
        params["SecurityGroupIds"] = list(req.security_groups)
    if req.key_name:
        params["KeyName"] = req.key_name
    return params


def _name(ec2: Any, pool: str, instances: Sequence[Ec2Instance], role: Role,
          sleep: Callable[[float], None] = time.sleep) -> None:
    """Name new instances <pool>-<role>-<short id>; a name that cannot be set is logged,
    not raised (the pool's tags, set at launch, are what matters)."""
    import botocore.exceptions

    for inst in instances:
        if inst.name:
            continue
        tags = [{"Key": TAG_NAME, "Value": f"{pool}-{role}-{inst.id[2:10]}"}]
        for delay in (*NAME_RETRY_DELAYS_S, None):
            try:
                ec2.create_tags(Resources=[inst.id], Tags=tags)
                break
            except botocore.exceptions.ClientError as err:
                if delay is None or not error_code(err).startswith("InvalidInstanceID"):
                    log.warning("could not name %s: %s", inst.id, error_code(err) or err)
                    break
                sleep(delay)
