"""RunInstances with fallbacks: instance types, then subnets, spot then on-demand.

Each call's ClientToken derives from the request's, so a retried request (by botocore, or
by calling again with the same token) launches nothing twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from orchestrator.aws.records import CAPACITY_ERRORS, SPOT_ERRORS, Ec2Instance, LaunchRequest
from orchestrator.aws.session import error_code
from orchestrator.errors import HtcpoolError, NotFoundError
from orchestrator.vocabulary import TAG_LAUNCHED_BY, TAG_NAME, TAG_POOL, TAG_ROLE, Role


def run_instances(ec2: Any, pool: str, req: LaunchRequest, dry_run: bool = False
                  ) -> list[Ec2Instance]:
    """Launch `req.count` instances: one RunInstances per (type, subnet) tried in order
    until the count is met; capacity errors move on to the next subnet, then type. With
    `req.spot`, every pair is tried as spot first, then again on-demand."""
    import botocore.exceptions

    if req.count < 1:
        return []
    if not req.instance_types or not req.subnets:
        raise HtcpoolError("launch needs at least one instance type and one subnet")
    launched: list[Ec2Instance] = []
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
                    _name(ec2, pool, new, req.role)
                    launched.extend(new)
                    if not new:
                        break
    if len(launched) < req.count:
        raise HtcpoolError(f"launched {len(launched)} of {req.count} instances; "
                           f"no capacity: {'; '.join(errors) or 'unknown'}")
    return launched


def run_params(req: LaunchRequest, itype: str, subnet: str, need: int,
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


def _name(ec2: Any, pool: str, instances: Sequence[Ec2Instance], role: Role) -> None:
    for inst in instances:
        if not inst.name:
            ec2.create_tags(Resources=[inst.id], Tags=[
                {"Key": TAG_NAME, "Value": f"{pool}-{role}-{inst.id[2:10]}"}])
