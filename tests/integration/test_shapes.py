"""Issue 18: the autoscaler's shapes from EC2 against moto with the sandbox's extensions
(orchestrator/sandbox/pricing.py): DescribeInstanceTypes per region, the Pricing API's
GetProducts from the sandbox's price list, its spot prices; `htcpool shapes`; and the IAM
grants for the three calls, enforced as in the sandbox server (a moto server of its own,
in a subprocess, with orchestrator/sandbox/iam_enforce.py installed)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from orchestrator.autoscaler.planner.config import AutoscalerConfig
from orchestrator.aws.ec2 import Cloud
from orchestrator.aws.instance_types import resolve_shapes
from orchestrator.config import Config
from orchestrator.errors import ConfigError, NotFoundError
from orchestrator.sandbox import prices
from tests.support.cli import isolate_aws_env

REGION = "eu-west-1"


@pytest.fixture()
def env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> str:
    """The tests' moto server with the sandbox's pricing, and an environment for the CLI."""
    from orchestrator.sandbox import pricing

    pricing.install()
    isolate_aws_env(monkeypatch, tmp_path, moto_endpoint, REGION)
    return moto_endpoint


def cloud(endpoint: str, region: str = REGION, session: Any = None) -> Cloud:
    return Cloud(Config(pool="testpool", region=region, endpoint_url=endpoint), session)


def autoscaler(**kw: Any) -> AutoscalerConfig:
    return AutoscalerConfig.model_validate(kw)


def test_shapes_from_describe_instance_types_and_get_products(env: str) -> None:
    c = cloud(env)
    cfg = autoscaler(instance_types=["c6i.large", "r6i.large", "g5.xlarge", "c7g.large"],
                     shape_filter={"architectures": ["x86_64", "arm64"]})
    shapes = resolve_shapes(c.shape_catalog(), cfg, now=0.0).shapes
    by_name = {s.name: s for s in shapes}
    assert [s.name for s in shapes] == ["c7g.large", "c6i.large", "r6i.large", "g5.xlarge"]
    expected = {"name": "c6i.large", "cpus": 2, "memory_mb": 4096, "gpus": 0, "arch": "x86_64",
                "price_per_hour": prices.ON_DEMAND[REGION]["c6i.large"],
                "spot_price_per_hour": None}
    assert {k: v for k, v in by_name["c6i.large"].model_dump().items() if k in expected} == \
        expected
    assert by_name["c7g.large"].arch == "arm64"
    assert by_name["g5.xlarge"].gpus == 1 and by_name["r6i.large"].memory_mb == 16384
    # The region's prices, not us-east-1's (the sandbox's Windows, dedicated and SQL Server
    # variants would be dearer: the filters picked the Linux, shared, "Used" one).
    us = resolve_shapes(cloud(env, "us-east-1").shape_catalog(), cfg, now=0.0).shapes
    assert {s.name: s.price_per_hour for s in us} == {
        n: prices.ON_DEMAND["us-east-1"][n] for n in by_name}


def test_families_expand_and_the_filter_applies(env: str) -> None:
    c = cloud(env)
    shapes = resolve_shapes(c.shape_catalog(), autoscaler(
        instance_types=["c6i", "r6i.*", "t3.micro"],
        shape_filter={"min_cpus": 2, "max_cpus": 8, "min_memory_mb": 4096,
                      "max_price_per_hour": 0.4}), now=0.0).shapes
    assert [s.name for s in shapes] == ["c6i.large", "r6i.large", "c6i.xlarge", "r6i.xlarge",
                                        "c6i.2xlarge"]
    assert [s.price_per_hour for s in shapes] == sorted(s.price_per_hour for s in shapes)
    arm = resolve_shapes(c.shape_catalog(), autoscaler(
        instance_types=["c7g"], shape_filter={"architectures": ["arm64"], "max_cpus": 4}),
        now=0.0).shapes
    assert [s.name for s in arm] == ["c7g.medium", "c7g.large", "c7g.xlarge"]
    with pytest.raises(ConfigError, match=r"^no instance type of g5 in eu-west-1 passes "
                                          r"shape_filter \(.*max_gpus 0"):
        resolve_shapes(c.shape_catalog(), autoscaler(instance_types=["g5"],
                                                     shape_filter={"max_gpus": 0}), now=0.0)


def test_spot_prices_are_read_when_spot_is_on(env: str) -> None:
    c = cloud(env)
    off = resolve_shapes(c.shape_catalog(), autoscaler(instance_types=["t3.micro"]), now=0.0)
    assert off.shapes[0].spot_price_per_hour is None
    on = resolve_shapes(c.shape_catalog(), autoscaler(instance_types=["t3.micro", "c6i.large"],
                                                      spot=True), now=0.0)
    for shape in on.shapes:  # the cheapest zone's: eu-west-1a's, 35% of on-demand
        spot = shape.spot_price_per_hour
        assert spot is not None and spot == prices.spot(REGION, shape.name, f"{REGION}a")
        assert spot < shape.price_per_hour
        assert shape.price(spot=True) == shape.spot_price_per_hour


def test_unknown_and_unpriced_types_are_one_clear_error(env: str) -> None:
    c = cloud(env)
    with pytest.raises(NotFoundError, match=r"^instance type c6i\.huge is not offered in "
                                            r"eu-west-1$"):
        resolve_shapes(c.shape_catalog(), autoscaler(instance_types=["c6i.large", "c6i.huge"]),
                       now=0.0)
    with pytest.raises(NotFoundError, match=r"^no instance type matching zz9\.\* is offered"):
        resolve_shapes(c.shape_catalog(), autoscaler(instance_types=["zz9"]), now=0.0)
    # m5.large exists, but the sandbox has no price for it.
    with pytest.raises(NotFoundError, match=r"^instance type m5\.large has no Linux on-demand "
                                            r"price in eu-west-1"):
        resolve_shapes(c.shape_catalog(), autoscaler(instance_types=["m5.large"]), now=0.0)


def test_the_shapes_command(env: str, cli: Any, tmp_path: Any) -> None:
    (tmp_path / "htcpool.toml").write_text(
        '[autoscaler]\ninstance_types = ["c6i.large", "t3a"]\nspot = true\n'
        '[autoscaler.shape_filter]\nmin_cpus = 2\nmax_price_per_hour = 0.1\n')
    r = cli("shapes")
    assert r.code == 0, r.err
    assert "EC2 in eu-west-1" in r.out and "t3a.small" in r.out and "c6i.large" in r.out
    assert "t3a.xlarge" not in r.out  # over max_price_per_hour
    records = json.loads(cli("shapes", "--json").out)
    assert [s["name"] for s in records] == ["t3a.nano", "t3a.micro", "t3a.small", "t3a.medium",
                                            "t3a.large", "c6i.large"]
    assert all(s["spot_price_per_hour"] for s in records)
    assert all(s["spot_price_per_hour"] is None
               for s in json.loads(cli("shapes", "--json", "--no-spot").out))


def test_the_shapes_command_fails_in_one_line(env: str, cli: Any, tmp_path: Any) -> None:
    (tmp_path / "htcpool.toml").write_text('[autoscaler]\ninstance_types = ["c6i.huge"]\n')
    r = cli("shapes")
    assert r.code == 4 and r.out == ""
    assert r.err == "htcpool: error: instance type c6i.huge is not offered in eu-west-1\n"
    (tmp_path / "htcpool.toml").write_text(
        '[autoscaler]\ninstance_types = ["c6i"]\n[autoscaler.shape_filter]\nmin_cpus = 512\n')
    r = cli("shapes")
    assert r.code == 2 and len(r.err.splitlines()) == 1
    assert r.err.startswith("htcpool: error: no instance type of c6i in eu-west-1 passes "
                            "shape_filter (cpus 512-4096,")


def test_explicit_shapes_are_shown_without_aws(env: str, cli: Any, tmp_path: Any) -> None:
    (tmp_path / "htcpool.toml").write_text(
        'endpoint_url = "http://127.0.0.1:9"\n'  # nothing listens: no call may be made
        '[[autoscaler.shapes]]\nname = "x1.custom"\ncpus = 3\nmemory_mb = 5000\n'
        'price_per_hour = 0.5\n')
    r = cli("--endpoint-url", "http://127.0.0.1:9", "shapes", "--json")
    assert r.code == 0, r.err
    assert [s["name"] for s in json.loads(r.out)] == ["x1.custom"]


# --- IAM: the sandbox's enforcement of the shipped policies ------------------------------------

SERVER = r"""
import json, sys
from moto.server import ThreadedMotoServer
from orchestrator.sandbox import iam_enforce, moto_fixes, pricing
from orchestrator.sandbox.iam_principals import Principals, render
pool, region, account = sys.argv[1:4]
moto_fixes.apply()
pricing.install()
iam_enforce.install()
principals = Principals(account=account, region=region)
out = {"operator": principals.operator(pool)}
boundary = f"arn:aws:iam::{account}:policy/htcpool-{pool}-role-boundary"
trust = render("instance-trust-policy.json", pool, region, account)
for role_name, documents in (
        ("central-manager", ["instance-ssm-agent-policy.json",
                             "central-manager-autoscaler-policy.json"]),
        ("instance", ["instance-ssm-agent-policy.json", "instance-policy.json"])):
    role = principals.iam.create_role(f"htcpool-{pool}-{role_name}", trust, "/", boundary, "",
                                      [], None)
    for name in documents:
        principals.iam.put_role_policy(role.name, name, render(name, pool, region, account))
    creds = principals.instance_credentials(f"i-{role_name}", role)
    out[role_name] = {"aws_access_key_id": creds["AccessKeyId"],
                      "aws_secret_access_key": creds["SecretAccessKey"],
                      "aws_session_token": creds["Token"]}
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
out["endpoint"] = "http://%s:%d" % server.get_host_and_port()
print(json.dumps(out), flush=True)
sys.stdin.read()  # until the test ends
"""


@pytest.fixture(scope="module")
def enforcing() -> Iterator[dict[str, Any]]:
    """A moto server enforcing IAM as the sandbox's does, with the pool's principals."""
    proc = subprocess.Popen([sys.executable, "-c", SERVER, "htcpool", REGION, "123456789012"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, "the IAM-enforcing moto server did not start"
        yield json.loads(line)
    finally:
        proc.kill()  # nothing to keep: its state lives in its memory only
        proc.wait()


def _session(keys: dict[str, str]) -> boto3.Session:
    return boto3.Session(region_name=REGION, aws_access_key_id=keys["aws_access_key_id"],
                         aws_secret_access_key=keys["aws_secret_access_key"],
                         aws_session_token=keys.get("aws_session_token"))


@pytest.mark.parametrize("who", ["central-manager", "operator"])
def test_the_autoscaler_and_the_operator_may_read_types_and_prices(
        enforcing: dict[str, Any], who: str) -> None:
    c = cloud(enforcing["endpoint"], session=_session(enforcing[who]))
    shapes = resolve_shapes(c.shape_catalog(), autoscaler(
        instance_types=["c6i.large", "t3.micro"], spot=True), now=0.0).shapes
    assert [s.name for s in shapes] == ["t3.micro", "c6i.large"]
    assert all(s.spot_price_per_hour for s in shapes)


def test_a_principal_without_the_grants_is_denied(enforcing: dict[str, Any]) -> None:
    """The workers' role (no such grant): every one of the three calls is refused."""
    import botocore.exceptions

    session = _session(enforcing["instance"])
    endpoint = enforcing["endpoint"]
    ec2 = session.client("ec2", endpoint_url=endpoint)
    pricing = session.client("pricing", region_name="us-east-1", endpoint_url=endpoint)
    calls: list[tuple[Callable[[], Any], str, str]] = [
        (lambda: ec2.describe_instance_types(InstanceTypes=["c6i.large"]),
         "UnauthorizedOperation", "ec2:DescribeInstanceTypes"),
        (lambda: ec2.describe_spot_price_history(InstanceTypes=["c6i.large"]),
         "UnauthorizedOperation", "ec2:DescribeSpotPriceHistory"),
        (lambda: pricing.get_products(ServiceCode="AmazonEC2"),
         "AccessDeniedException", "pricing:GetProducts")]
    for call, code, action in calls:
        with pytest.raises(botocore.exceptions.ClientError) as err:
            call()
        assert err.value.response["Error"]["Code"] == code
        assert action in err.value.response["Error"]["Message"]
    c = cloud(endpoint, session=session)
    with pytest.raises(botocore.exceptions.ClientError, match="UnauthorizedOperation"):
        resolve_shapes(c.shape_catalog(), autoscaler(instance_types=["c6i.large"]), now=0.0)
