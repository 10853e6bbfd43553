"""Issue 18: the autoscaler's shapes from EC2, the parsing and the cache without AWS
(orchestrator/aws/instance_types.py); tests/integration/test_shapes.py runs the calls
against moto with the sandbox's Pricing API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from orchestrator.autoscaler.planner.config import AutoscalerConfig, InstanceShape, ShapeFilter
from orchestrator.aws.instance_types import (
    ShapeCatalog,
    TypeInfo,
    UnknownInstanceType,
    describe_filter,
    lowest_spot_prices,
    make_shapes,
    on_demand_prices,
    parse_instance_type,
    price_filters,
    resolve_shapes,
    split_names,
    unknown_types,
)
from orchestrator.errors import ConfigError, HtcpoolError


def raw_type(name: str, cpus: int, mib: int, arches: list[str] | None = None,
             gpus: list[int] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "InstanceType": name, "VCpuInfo": {"DefaultVCpus": cpus, "DefaultCores": cpus // 2},
        "MemoryInfo": {"SizeInMiB": mib},
        "ProcessorInfo": {"SupportedArchitectures": arches or ["x86_64"]}}
    if gpus is not None:
        out["GpuInfo"] = {"Gpus": [{"Count": n, "Name": "A10G"} for n in gpus]}
    return out


def price_item(name: str, *usd: str) -> str:
    """A GetProducts PriceList entry (a JSON string, as the API sends it)."""
    dims = {f"SKU.TERM.{i}": {"unit": "Hrs", "pricePerUnit": {"USD": p}}
            for i, p in enumerate(usd)}
    return json.dumps({"product": {"attributes": {"instanceType": name}},
                       "terms": {"OnDemand": {"SKU.TERM": {"priceDimensions": dims}}}})


def test_names_split_into_exact_types_and_family_patterns() -> None:
    exact, patterns = split_names(["c6i.large", "c7g", "r6i.*", " c6i.large ", "", "m6?.large",
                                   "c7g"])
    assert exact == ["c6i.large"]
    assert patterns == ["c7g.*", "r6i.*", "m6?.large"]


def test_instance_type_records() -> None:
    assert parse_instance_type(raw_type("c6i.large", 2, 4096)) == \
        TypeInfo("c6i.large", 2, 4096, 0, "x86_64")
    assert parse_instance_type(raw_type("c7g.large", 2, 4096, ["arm64"])) == \
        TypeInfo("c7g.large", 2, 4096, 0, "arm64")
    # i386 and x86_64 (old types): x86_64; two GPU entries: their counts together.
    assert parse_instance_type(raw_type("g5.12xlarge", 48, 196608, ["i386", "x86_64"],
                                        [2, 2])) == \
        TypeInfo("g5.12xlarge", 48, 196608, 4, "x86_64")
    assert parse_instance_type(raw_type("mac1.metal", 12, 32768, ["x86_64_mac"])) is None


def test_price_filters_ask_for_the_linux_on_demand_price_in_the_region() -> None:
    terms = {f["Field"]: f["Value"] for f in price_filters("c6i.large", "eu-west-1")}
    assert terms == {"instanceType": "c6i.large", "regionCode": "eu-west-1",
                     "operatingSystem": "Linux", "tenancy": "Shared", "preInstalledSw": "NA",
                     "capacitystatus": "Used"}
    assert {f["Type"] for f in price_filters("c6i.large", "eu-west-1")} == {"TERM_MATCH"}


def test_on_demand_prices_from_the_price_list() -> None:
    items: list[str | dict[str, Any]] = [
        price_item("c6i.large", "0.0912000000"),
        price_item("c6i.xlarge", "0.0000000000", "0.1824000000"),
        price_item("c6i.large", "0.1000000000"), price_item("t3.micro", "n/a"),
        {"product": {"attributes": {"instanceType": "t3.nano"}},
         "terms": {"OnDemand": {"T": {"priceDimensions": {"D": {
             "pricePerUnit": {"USD": "0.0057"}}}}}}}]
    assert on_demand_prices(items) == {"c6i.large": 0.0912, "c6i.xlarge": 0.1824,
                                       "t3.nano": 0.0057}
    assert on_demand_prices([]) == {}


def test_spot_prices_are_the_lowest_of_the_zones() -> None:
    history = [{"InstanceType": "c6i.large", "AvailabilityZone": "eu-west-1b",
                "SpotPrice": "0.0330"},
               {"InstanceType": "c6i.large", "AvailabilityZone": "eu-west-1a",
                "SpotPrice": "0.0319"},
               {"InstanceType": "t3.micro", "AvailabilityZone": "eu-west-1a", "SpotPrice": "0"},
               {"InstanceType": "t3.small", "AvailabilityZone": "eu-west-1a"}]
    assert lowest_spot_prices(history) == {"c6i.large": 0.0319}


TYPES = [TypeInfo("c6i.large", 2, 4096, 0, "x86_64"), TypeInfo("c6i.xlarge", 4, 8192, 0, "x86_64"),
         TypeInfo("c7g.large", 2, 4096, 0, "arm64"), TypeInfo("g5.xlarge", 4, 16384, 1, "x86_64"),
         TypeInfo("r6i.large", 2, 16384, 0, "x86_64")]
PRICES = {"c6i.large": 0.085, "c6i.xlarge": 0.17, "c7g.large": 0.0725, "g5.xlarge": 1.006,
          "r6i.large": 0.085}


def names(shapes: tuple[InstanceShape, ...]) -> list[str]:
    return [s.name for s in shapes]


def test_shapes_filtered_and_sorted_by_price_then_name() -> None:
    everything = ShapeFilter(architectures=("x86_64", "arm64"))
    shapes = make_shapes(TYPES, PRICES, {"c6i.large": 0.03}, everything)
    assert names(shapes) == ["c7g.large", "c6i.large", "r6i.large", "c6i.xlarge", "g5.xlarge"]
    assert shapes[1] == InstanceShape(name="c6i.large", cpus=2, memory_mb=4096,
                                      price_per_hour=0.085, spot_price_per_hour=0.03)
    assert shapes[0].arch == "arm64" and shapes[4].gpus == 1
    assert names(make_shapes(TYPES, PRICES, {}, ShapeFilter())) == \
        ["c6i.large", "r6i.large", "c6i.xlarge", "g5.xlarge"]  # x86_64 only by default
    assert names(make_shapes(TYPES, PRICES, {}, ShapeFilter(max_gpus=0, min_cpus=4))) == \
        ["c6i.xlarge"]
    assert names(make_shapes(TYPES, PRICES, {}, ShapeFilter(min_memory_mb=8192,
                                                             max_memory_mb=8192))) == \
        ["c6i.xlarge"]
    assert names(make_shapes(TYPES, PRICES, {}, ShapeFilter(max_price_per_hour=0.1))) == \
        ["c6i.large", "r6i.large"]
    # A type without a price is never a shape.
    assert names(make_shapes(TYPES, {"c6i.xlarge": 0.17}, {}, ShapeFilter())) == ["c6i.xlarge"]
    assert "max_price_per_hour 0.1" in describe_filter(ShapeFilter(max_price_per_hour=0.1))


def test_the_types_an_invalid_instance_type_error_names() -> None:
    message = "The following supplied instance types do not exist: [c6i.huge, t3.giant]"
    assert unknown_types(message, ["c6i.large", "c6i.huge", "t3.giant"]) == \
        ["c6i.huge", "t3.giant"]
    assert unknown_types("something else", ["a.b", "c.d"]) == ["a.b", "c.d"]


# --- the catalog with fake clients ---------------------------------------------------------

class Pages:
    def __init__(self, pages: list[dict[str, Any]]) -> None:
        self.pages = pages

    def paginate(self, **_: Any) -> Iterator[dict[str, Any]]:
        yield from self.pages


class FakeEc2:
    def __init__(self, types: list[dict[str, Any]]) -> None:
        self.types = types
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.fail: Exception | None = None

    def get_paginator(self, op: str) -> Any:
        outer = self

        class P:
            def paginate(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
                outer.calls.append((op, kwargs))
                if outer.fail is not None:
                    raise outer.fail
                if op == "describe_spot_price_history":
                    yield {"SpotPriceHistory": [
                        {"InstanceType": t, "SpotPrice": "0.02"} for t in kwargs["InstanceTypes"]]}
                    return
                import fnmatch

                wanted = kwargs.get("InstanceTypes")
                patterns = [v for f in kwargs.get("Filters", []) for v in f["Values"]]
                found = [t for t in outer.types if (wanted and t["InstanceType"] in wanted)
                         or any(fnmatch.fnmatch(t["InstanceType"], p) for p in patterns)]
                yield {"InstanceTypes": found[:1]}
                yield {"InstanceTypes": found[1:]}
        return P()


class FakePricing:
    def __init__(self, prices: dict[str, float]) -> None:
        self.prices = prices
        self.calls = 0

    def get_paginator(self, op: str) -> Any:
        assert op == "get_products"
        outer = self

        class P:
            def paginate(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
                outer.calls += 1
                name = next(f["Value"] for f in kwargs["Filters"]
                            if f["Field"] == "instanceType")
                price = outer.prices.get(name)
                yield {"PriceList": [price_item(name, f"{price:.10f}")] if price else []}
        return P()


def catalog(prices: dict[str, float] | None = None) -> tuple[ShapeCatalog, FakeEc2, FakePricing]:
    ec2 = FakeEc2([raw_type("c6i.large", 2, 4096), raw_type("c6i.xlarge", 4, 8192),
                   raw_type("c7g.large", 2, 4096, ["arm64"]),
                   raw_type("g5.xlarge", 4, 16384, gpus=[1])])
    pricing = FakePricing(PRICES if prices is None else prices)
    return ShapeCatalog(ec2, lambda: pricing, "eu-west-1"), ec2, pricing


def config(**kw: Any) -> AutoscalerConfig:
    return AutoscalerConfig.model_validate(kw)


def test_catalog_expands_families_prices_and_caches_until_refresh() -> None:
    cat, ec2, pricing = catalog()
    cfg = config(instance_types=["c6i", "g5.xlarge"], shapes_refresh_s=3600)
    shapes = cat.shapes(cfg, now=1000.0)
    assert names(shapes) == ["c6i.large", "c6i.xlarge", "g5.xlarge"]
    assert all(s.spot_price_per_hour is None for s in shapes)
    assert pricing.calls == 3
    assert [op for op, _ in ec2.calls] == ["describe_instance_types"] * 2
    assert cat.shapes(cfg, now=4599.0) == shapes and pricing.calls == 3  # cached
    cat.shapes(cfg, now=4600.0)
    assert pricing.calls == 6  # refreshed
    with_spot = cat.shapes(cfg.model_copy(update={"spot": True}), now=4600.0)
    assert {s.spot_price_per_hour for s in with_spot} == {0.02}
    assert ec2.calls[-1][0] == "describe_spot_price_history"
    assert ec2.calls[-1][1]["ProductDescriptions"] == ["Linux/UNIX"]


def test_a_failed_refresh_keeps_the_last_shapes_and_a_first_one_raises(
        caplog: pytest.LogCaptureFixture) -> None:
    cat, ec2, _ = catalog()
    cfg = config(instance_types=["c6i.large"], shapes_refresh_s=60)
    ec2.fail = RuntimeError("endpoint unreachable")
    with pytest.raises(RuntimeError):
        cat.shapes(cfg, now=0.0)
    ec2.fail = None
    first = cat.shapes(cfg, now=0.0)
    ec2.fail = RuntimeError("endpoint unreachable")
    assert cat.shapes(cfg, now=100.0) == first
    assert "refreshing them failed (RuntimeError: endpoint unreachable)" in caplog.text
    calls = len(ec2.calls)
    assert cat.shapes(cfg, now=120.0) == first and len(ec2.calls) == calls  # no retry storm
    with pytest.raises(RuntimeError):  # another config: nothing to fall back on
        cat.shapes(config(instance_types=["c6i.xlarge"]), now=100.0)


def test_missing_prices_and_an_empty_result_are_one_clear_line() -> None:
    cat, _, _ = catalog({"c6i.xlarge": 0.17})
    with pytest.raises(UnknownInstanceType, match=r"^instance type c6i\.large has no Linux "
                                                  r"on-demand price in eu-west-1"):
        cat.shapes(config(instance_types=["c6i.large"]), now=0.0)
    # Family members without a price are left out; the rest are shapes.
    assert names(cat.shapes(config(instance_types=["c6i"]), now=0.0)) == ["c6i.xlarge"]
    cat, _, _ = catalog()
    with pytest.raises(ConfigError) as err:
        cat.shapes(config(instance_types=["c6i"], shape_filter={"min_cpus": 64}), now=0.0)
    assert str(err.value).startswith("no instance type of c6i in eu-west-1 passes "
                                     "shape_filter (cpus 64-4096,")
    assert "\n" not in str(err.value)
    with pytest.raises(UnknownInstanceType, match=r"no instance type matching m9z\.\* is offered"):
        cat.shapes(config(instance_types=["m9z"]), now=0.0)
    with pytest.raises(UnknownInstanceType, match=r"instance type c6i\.huge is not offered"):
        cat.shapes(config(instance_types=["c6i.huge"]), now=0.0)
    with pytest.raises(HtcpoolError, match="architectures x86_64,"):  # c7g: arm64 only
        cat.shapes(config(instance_types=["c7g"]), now=0.0)


def test_resolve_shapes_keeps_explicit_shapes_and_looks_up_the_others() -> None:
    cat, _, pricing = catalog()
    explicit = config(shapes=[{"name": "t3.micro", "cpus": 2, "memory_mb": 1024,
                               "price_per_hour": 0.01}])
    assert resolve_shapes(cat, explicit, now=0.0) is explicit and pricing.calls == 0
    cfg = config(instance_types=["c6i.large", "c7g.large"],
                 shape_filter={"architectures": ["x86_64", "arm64"]})
    resolved = resolve_shapes(cat, cfg, now=0.0)
    assert names(resolved.shapes) == ["c7g.large", "c6i.large"]
    assert resolved.instance_types == cfg.instance_types and resolved.policy == cfg.policy
    # The copy can be resolved again (its shapes were not set by the user).
    assert "shapes" not in resolved.model_fields_set
    assert resolve_shapes(cat, resolved, now=1.0).shapes == resolved.shapes
    with pytest.raises(ConfigError, match=r"fixed_shape c6i\.large is not one of the shapes"):
        resolve_shapes(cat, config(instance_types=["c7g"], fixed_shape="c6i.large",
                                   shape_filter={"architectures": ["arm64"]}), now=0.0)
