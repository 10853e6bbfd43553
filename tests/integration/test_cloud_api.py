"""orchestrator.aws.ec2 as the autoscaler's executor uses it, against moto. Conditions moto
cannot produce (capacity errors, instances that never reach a state) are injected with
botocore `before-call` handlers on the real client."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders

from orchestrator.aws.ec2 import Cloud
from orchestrator.aws.records import LaunchRequest
from orchestrator.config import Config
from orchestrator.errors import HtcpoolError, NotFoundError, RefusedError, WaitTimeout
from orchestrator.vocabulary import InstanceState, LaunchedBy, Role


@pytest.fixture()
def cloud(aws: Any) -> Cloud:
    return Cloud(Config(pool="testpool", region="us-east-1", endpoint_url=aws.endpoint,
                        aws={"wait_delay_s": 0.05, "wait_timeout_s": 0.5}))  # type: ignore[arg-type]


def _query(params: dict[str, Any]) -> dict[str, list[str]]:
    """The EC2 query-protocol request, as lists of values per key."""
    body = params["body"]
    if isinstance(body, dict):
        return {k: [str(v)] for k, v in body.items()}
    return parse_qs(body if isinstance(body, str) else body.decode())


def _error(code: str) -> tuple[AWSResponse, dict[str, Any]]:
    return (AWSResponse("http://moto.invalid/", 400, HTTPHeaders(), None),
            {"Error": {"Code": code, "Message": code}})


def request(aws: Any, cloud: Cloud, count: int, types: list[str], token: str = "tok"
            ) -> LaunchRequest:
    return LaunchRequest(count=count, image_id=aws.images["20260301-000000"],
                         instance_types=types, subnets=[aws.subnet], security_groups=[aws.sg],
                         instance_profile="htcpool-testpool-instance", client_token=token,
                         launched_by=LaunchedBy.AUTOSCALER)


def test_pool_instances_filters(aws: Any, cloud: Cloud) -> None:
    assert {i.id for i in cloud.pool_instances()} == {aws.cm, *aws.workers}
    workers = cloud.pool_instances(roles=[Role.WORKER], states=[InstanceState.RUNNING])
    assert {i.id for i in workers} == set(aws.workers)
    assert cloud.central_manager().id == aws.cm


def test_launch_tags_and_falls_back_on_capacity(aws: Any, cloud: Cloud) -> None:
    seen: list[dict[str, list[str]]] = []

    def no_large(params: dict[str, Any], **_: Any) -> Any:
        query = _query(params)
        seen.append(query)
        return _error("InsufficientInstanceCapacity") \
            if query["InstanceType"] == ["c5.large"] else None

    cloud.hooks().register("before-call.ec2.RunInstances", no_large)
    launched = cloud.launch(request(aws, cloud, 2, ["c5.large", "m5.large"]))
    assert len(launched) == 2 and {i.instance_type for i in launched} == {"m5.large"}
    assert seen[0]["InstanceType"] == ["c5.large"]
    assert all(q["MetadataOptions.HttpTokens"] == ["required"] for q in seen)
    assert all(q["MetadataOptions.HttpPutResponseHopLimit"] == ["1"] for q in seen)
    assert all(q["MetadataOptions.InstanceMetadataTags"] == ["enabled"] for q in seen)
    for inst in cloud.describe([i.id for i in launched]):
        assert inst.pool == "testpool" and inst.role == "worker"
        assert inst.tags["htcpool:launched-by"] == "autoscaler"


def test_launch_reports_no_capacity_anywhere(aws: Any, cloud: Cloud) -> None:
    cloud.hooks().register("before-call.ec2.RunInstances",
                                   lambda **_: _error("InsufficientInstanceCapacity"))
    with pytest.raises(HtcpoolError, match=r"launched 0 of 3.*c5\.large in subnet-"):
        cloud.launch(request(aws, cloud, 3, ["c5.large"]))


def test_launch_client_tokens_are_deterministic(aws: Any, cloud: Cloud) -> None:
    # moto does not honour ClientToken, so check what EC2 would see: the same tokens again.
    tokens: list[list[str]] = []
    cloud.hooks().register(
        "before-call.ec2.RunInstances",
        lambda params, **_: tokens.append(_query(params)["ClientToken"]))
    cloud.launch(request(aws, cloud, 2, ["t3.small"], token="same"))
    first = list(tokens)
    tokens.clear()
    cloud.launch(request(aws, cloud, 2, ["t3.small"], token="same"))
    assert tokens == first and all(t[0].startswith("same-0-0-") for t in first)


def test_launch_dry_run_and_unknown_ami(aws: Any, cloud: Cloud) -> None:
    assert cloud.launch(request(aws, cloud, 2, ["t3.small"]), dry_run=True) == []
    assert len(cloud.pool_instances()) == 3
    with pytest.raises(NotFoundError, match="unknown AMI ami-12345678"):
        cloud.image("ami-12345678")  # moto's RunInstances accepts any AMI id; EC2's would not


def test_wait_times_out_with_the_current_state(aws: Any, cloud: Cloud) -> None:
    w = aws.workers[0]
    stuck = {"Reservations": [{"Instances": [{"InstanceId": w, "State": {"Name": "stopping"},
                                              "Tags": []}]}]}
    cloud.hooks().register(
        "before-call.ec2.DescribeInstances",
        lambda **_: (AWSResponse("http://moto.invalid/", 200, HTTPHeaders(), None), stuck))
    expected = rf"{w} did not become stopped within 0\.5 s \(it is stopping\)"
    with pytest.raises(WaitTimeout, match=expected):
        cloud.wait("stop", [w])


def test_wait_fails_fast_on_a_failure_state(aws: Any, cloud: Cloud) -> None:
    w = aws.workers[0]
    aws.ec2.terminate_instances(InstanceIds=[w])
    with pytest.raises(HtcpoolError, match=f"{w} will not become running: it is terminated"):
        cloud.wait("start", [w])


def test_executor_safety(aws: Any, cloud: Cloud) -> None:
    with pytest.raises(RefusedError):
        cloud.terminate([aws.cm])
    with pytest.raises(RefusedError):
        cloud.terminate([aws.other_pool])
    assert [i.id for i in cloud.stop(aws.workers)] == aws.workers
    assert cloud.stop(aws.workers) == []  # already stopping/stopped: nothing to do


def test_spot_first_then_on_demand_where_spot_has_no_capacity(aws: Any, cloud: Cloud) -> None:
    seen: list[dict[str, list[str]]] = []

    def no_spot_for_c5(params: dict[str, Any], **_: Any) -> Any:
        query = _query(params)
        seen.append(query)
        spot = query.get("InstanceMarketOptions.MarketType") == ["spot"]
        return _error("InsufficientInstanceCapacity") \
            if spot and query["InstanceType"] == ["c5.large"] else None

    cloud.hooks().register("before-call.ec2.RunInstances", no_spot_for_c5)
    req = request(aws, cloud, 2, ["c5.large", "m5.large"])
    launched = cloud.launch(LaunchRequest(**{**req.__dict__, "spot": True}))
    # Spot of every type before any on-demand: m5.large spot had room.
    calls = [(q["InstanceType"][0], q.get("InstanceMarketOptions.MarketType", ["-"])[0])
             for q in seen]
    assert calls[0] == ("c5.large", "spot") and set(calls[1:]) == {("m5.large", "spot")}
    assert seen[0]["InstanceMarketOptions.SpotOptions.InstanceInterruptionBehavior"] == \
        ["terminate"]
    assert len(launched) == 2 and {i.instance_type for i in launched} == {"m5.large"}


def test_spot_falls_back_to_on_demand_with_its_own_client_tokens(aws: Any,
                                                                 cloud: Cloud) -> None:
    seen: list[dict[str, list[str]]] = []

    def no_spot(params: dict[str, Any], **_: Any) -> Any:
        query = _query(params)
        seen.append(query)
        return _error("MaxSpotInstanceCountExceeded") \
            if query.get("InstanceMarketOptions.MarketType") == ["spot"] else None

    cloud.hooks().register("before-call.ec2.RunInstances", no_spot)
    req = request(aws, cloud, 1, ["c5.large"], token="tok")
    (inst,) = cloud.launch(LaunchRequest(**{**req.__dict__, "spot": True}))
    assert [q["ClientToken"][0] for q in seen] == ["tok-s0-0-0", "tok-0-0-0"]
    assert "InstanceMarketOptions.MarketType" not in seen[-1]
    assert inst.instance_type == "c5.large"
    # No capacity either way: the error names both attempts.
    cloud.hooks().register("before-call.ec2.RunInstances",
                                   lambda **_: _error("InsufficientInstanceCapacity"))
    with pytest.raises(HtcpoolError, match=r"launched 0 of 1 .*spot c5\.large in subnet-\S+: "
                       r"MaxSpotInstanceCountExceeded; c5\.large in subnet-\S+: Insufficient"):
        cloud.launch(LaunchRequest(**{**req.__dict__, "spot": True, "client_token": "t2"}))


def test_instances_read_through_the_narrowed_model_equal_the_full_ones(aws: Any,
                                                                        cloud: Cloud) -> None:
    """A Cloud parses EC2 replies with a model whose Ec2Instance shape names only what
    Ec2Instance.from_api reads; its records must equal those read with botocore's full model."""
    import boto3

    from orchestrator.aws.ec2_model import INSTANCE_MEMBERS
    from orchestrator.aws.records import Ec2Instance

    narrowed = cloud.pool_instances(all_pools=True)
    model = cloud.client("ec2").meta.service_model
    assert set(model.shape_for("Instance").members) == INSTANCE_MEMBERS
    session = boto3.Session(region_name="us-east-1")
    session._session.get_component("response_parser_factory").set_parser_defaults(
        timestamp_parser=str)  # as Cloud reads timestamps
    full = session.client("ec2", endpoint_url=aws.endpoint)
    assert set(full.meta.service_model.shape_for("Instance").members) > INSTANCE_MEMBERS
    raw = [Ec2Instance.from_api(i) for r in full.describe_instances()["Reservations"]
           for i in r["Instances"]]
    assert len(narrowed) >= 3
    assert sorted(narrowed, key=lambda i: i.id) == sorted(raw, key=lambda i: i.id)


def test_the_full_model_is_used_when_the_narrowed_one_cannot_be_written(tmp_path: Any) -> None:
    import boto3

    from orchestrator.aws.ec2_model import narrowed_data_path, use_narrowed_model

    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    assert narrowed_data_path(blocker) is None
    session = boto3.Session(region_name="us-east-1")
    assert not use_narrowed_model(session._session, blocker)
    assert len(session.client("ec2").meta.service_model.shape_for("Instance").members) > 12
    assert narrowed_data_path(tmp_path / "cache") == narrowed_data_path(tmp_path / "cache")
