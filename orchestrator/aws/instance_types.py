"""The autoscaler's shapes from EC2: the instance types (and families) it may launch, with
what they offer and cost in the pool's region.

- resources: DescribeInstanceTypes (vCPUs, memory in MiB, GPUs, x86_64 or arm64; a type
  with neither architecture is skipped), exact names by InstanceTypes, families ("c6i",
  "c6i.*", any name with a wildcard) by the `instance-type` filter;
- on-demand prices: the Pricing API's GetProducts (Linux, shared tenancy, no pre-installed
  software, capacity status Used, in the pool's region), one lookup per type;
- spot prices (with `spot` on): DescribeSpotPriceHistory from now, the lowest of the zones.
Then the config's shape filter, sorted by on-demand price and name. `ShapeCatalog` keeps
the result for `shapes_refresh_s`; a failed refresh keeps the shapes it had (a warning),
with none it raises. Every miss is an `HtcpoolError` of one line, never a silent default.

The parsing functions are pure (tests/unit/test_instance_types.py); only `ShapeCatalog`
and `pricing_client` call AWS.
"""

from __future__ import annotations

import datetime
import fnmatch
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from orchestrator.autoscaler.planner.config import AutoscalerConfig, InstanceShape, ShapeFilter
from orchestrator.errors import ConfigError, NotFoundError, describe_exception

if TYPE_CHECKING:
    import boto3

    from orchestrator.config import Config

log = logging.getLogger(__name__)

# The Price List API answers in us-east-1 (also eu-central-1 and ap-south-1) for every region.
PRICING_REGION = "us-east-1"
# After a failed refresh, the previous shapes are kept this long before the next attempt.
RETRY_S = 300.0
ARCHITECTURES: tuple[Literal["x86_64", "arm64"], ...] = ("x86_64", "arm64")


class UnknownInstanceType(NotFoundError):
    """A named instance type EC2 does not offer in the region, or has no price for."""


@dataclass(frozen=True, slots=True)
class TypeInfo:
    """What DescribeInstanceTypes says of one type."""

    name: str
    cpus: int
    memory_mb: int
    gpus: int
    arch: Literal["x86_64", "arm64"]


# --- parsing (pure) ------------------------------------------------------------------------

def split_names(names: Iterable[str]) -> tuple[list[str], list[str]]:
    """(exact instance types, `instance-type` filter patterns): a family ("c6i") becomes
    "c6i.*"; a name with a wildcard is a pattern as it is. Order kept, duplicates dropped."""
    exact: list[str] = []
    patterns: list[str] = []
    for raw in names:
        name = raw.strip()
        if not name:
            continue
        if "*" in name or "?" in name:
            target, value = patterns, name
        elif "." not in name:
            target, value = patterns, f"{name}.*"
        else:
            target, value = exact, name
        if value not in target:
            target.append(value)
    return exact, patterns


def parse_instance_type(raw: Mapping[str, Any]) -> TypeInfo | None:
    """One DescribeInstanceTypes record; None if it supports neither x86_64 nor arm64."""
    supported = raw.get("ProcessorInfo", {}).get("SupportedArchitectures", [])
    arch = next((a for a in ARCHITECTURES if a in supported), None)
    if arch is None:
        return None
    gpus = sum(int(g.get("Count", 0)) for g in raw.get("GpuInfo", {}).get("Gpus", []))
    return TypeInfo(name=str(raw["InstanceType"]),
                    cpus=int(raw["VCpuInfo"]["DefaultVCpus"]),
                    memory_mb=int(raw["MemoryInfo"]["SizeInMiB"]), gpus=gpus, arch=arch)


def price_filters(instance_type: str, region: str) -> list[dict[str, str]]:
    """GetProducts filters for a type's on-demand Linux price in a region."""
    terms = {"instanceType": instance_type, "regionCode": region, "operatingSystem": "Linux",
             "tenancy": "Shared", "preInstalledSw": "NA", "capacitystatus": "Used"}
    return [{"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in terms.items()]


def on_demand_prices(price_list: Iterable[str | Mapping[str, Any]]) -> dict[str, float]:
    """instance type -> its lowest non-zero on-demand USD price per hour, from GetProducts'
    PriceList (JSON strings: terms.OnDemand.*.priceDimensions.*.pricePerUnit.USD)."""
    out: dict[str, float] = {}
    for item in price_list:
        doc = json.loads(item) if isinstance(item, str) else item
        name = doc.get("product", {}).get("attributes", {}).get("instanceType")
        for term in doc.get("terms", {}).get("OnDemand", {}).values():
            for dimension in term.get("priceDimensions", {}).values():
                try:
                    usd = float(dimension.get("pricePerUnit", {}).get("USD", "nan"))
                except ValueError:
                    continue
                if name and usd > 0 and usd < out.get(name, float("inf")):
                    out[name] = usd
    return out


def lowest_spot_prices(history: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """instance type -> the lowest spot price of any zone, from DescribeSpotPriceHistory."""
    out: dict[str, float] = {}
    for entry in history:
        try:
            price = float(entry["SpotPrice"])
        except (KeyError, ValueError):
            continue
        name = str(entry.get("InstanceType", ""))
        if name and price > 0 and price < out.get(name, float("inf")):
            out[name] = price
    return out


def fits(info: TypeInfo, flt: ShapeFilter) -> bool:
    """The filter's resource and architecture bounds (the price cap is applied later)."""
    return (flt.min_cpus <= info.cpus <= flt.max_cpus
            and flt.min_memory_mb <= info.memory_mb <= flt.max_memory_mb
            and info.gpus <= flt.max_gpus and info.arch in flt.architectures)


def describe_filter(flt: ShapeFilter) -> str:
    return (f"cpus {flt.min_cpus}-{flt.max_cpus}, memory_mb {flt.min_memory_mb}-"
            f"{flt.max_memory_mb}, max_gpus {flt.max_gpus}, architectures "
            f"{'/'.join(flt.architectures)}, max_price_per_hour {flt.max_price_per_hour:g}")


def make_shapes(types: Iterable[TypeInfo], on_demand: Mapping[str, float],
                spot: Mapping[str, float], flt: ShapeFilter) -> tuple[InstanceShape, ...]:
    """Shapes of the priced types that pass the filter, by on-demand price, then name."""
    shapes = [InstanceShape(name=t.name, cpus=t.cpus, memory_mb=t.memory_mb, gpus=t.gpus,
                            arch=t.arch, price_per_hour=on_demand[t.name],
                            spot_price_per_hour=spot.get(t.name))
              for t in types if t.name in on_demand and fits(t, flt)
              and on_demand[t.name] <= flt.max_price_per_hour]
    return tuple(sorted(shapes, key=lambda s: (s.price_per_hour, s.name)))


def unknown_types(message: str, asked: Sequence[str]) -> list[str]:
    """The names an InvalidInstanceType error lists ("... do not exist: [a, b]"), else all
    those asked for."""
    listed = re.search(r"\[([^\]]*)\]", message)
    named = [n.strip() for n in listed.group(1).split(",")] if listed else []
    return [n for n in asked if n in named] or list(asked)


# --- the calls -----------------------------------------------------------------------------

def pricing_client(session: boto3.Session, config: Config) -> Any:
    """A Pricing API client with the run's endpoint, retries and timeouts (aws/session.py).
    Its region is us-east-1, where the API answers for every region, unless an endpoint is
    configured (the sandbox), which then answers for the session's region."""
    from botocore.config import Config as BotoConfig

    aws = config.aws
    region = (session.region_name or PRICING_REGION) if config.endpoint_url else PRICING_REGION
    return session.client(
        "pricing", region_name=region, endpoint_url=config.endpoint_url,
        config=BotoConfig(retries={"mode": aws.retry_mode, "max_attempts": aws.max_attempts},
                          user_agent_extra="htcpool", connect_timeout=aws.connect_timeout_s,
                          read_timeout=aws.read_timeout_s))


@dataclass
class _Cached:
    key: tuple[Any, ...]
    shapes: tuple[InstanceShape, ...]
    expires: float


class ShapeCatalog:
    """A region's shapes for a config's instance_types, shape_filter and spot, cached."""

    def __init__(self, ec2: Any, pricing: Callable[[], Any], region: str) -> None:
        self._ec2 = ec2
        self._pricing_factory = pricing
        self._pricing: Any = None
        self.region = region
        self._cached: _Cached | None = None

    def shapes(self, cfg: AutoscalerConfig, now: float) -> tuple[InstanceShape, ...]:
        """The shapes for `cfg`, looked up again once `shapes_refresh_s` have passed."""
        key = (cfg.instance_types, cfg.shape_filter, cfg.spot)
        cached = self._cached
        if cached is not None and cached.key == key and now < cached.expires:
            return cached.shapes
        try:
            found = self.discover(cfg)
        except Exception as exc:
            if cached is None or cached.key != key:
                raise
            log.warning("keeping the %d shapes of the last lookup: refreshing them failed (%s)",
                        len(cached.shapes), describe_exception(exc))
            cached.expires = now + min(RETRY_S, cfg.shapes_refresh_s)
            return cached.shapes
        self._cached = _Cached(key, found, now + cfg.shapes_refresh_s)
        log.info("%d shapes from EC2 in %s: %s", len(found), self.region,
                 ", ".join(s.name for s in found))
        return found

    def discover(self, cfg: AutoscalerConfig) -> tuple[InstanceShape, ...]:
        """Ask EC2 and the Pricing API now (no cache)."""
        exact, patterns = split_names(cfg.instance_types)
        if not exact and not patterns:
            raise ConfigError("instance_types names no instance type")
        infos = [*self._types_named(exact), *self._types_matching(patterns)]
        types = {i.name: i for i in infos}
        wanted = [t for t in types.values() if fits(t, cfg.shape_filter)]
        on_demand: dict[str, float] = {}
        for info in wanted:
            price = self._on_demand(info.name)
            if price is not None:
                on_demand[info.name] = price
            elif info.name in exact:
                raise UnknownInstanceType(f"instance type {info.name} has no Linux on-demand "
                                          f"price in {self.region} (Pricing API)")
            else:
                log.warning("instance type %s has no Linux on-demand price in %s: left out",
                            info.name, self.region)
        if wanted and not on_demand:
            raise UnknownInstanceType(f"no instance type of {', '.join(cfg.instance_types)} "
                                      f"has a Linux on-demand price in {self.region}")
        spot = self._spot(sorted(on_demand)) if cfg.spot and on_demand else {}
        shapes = make_shapes(wanted, on_demand, spot, cfg.shape_filter)
        if not shapes:
            raise ConfigError(f"no instance type of {', '.join(cfg.instance_types)} in "
                              f"{self.region} passes shape_filter ("
                              f"{describe_filter(cfg.shape_filter)})")
        return shapes

    def _types_named(self, names: Sequence[str]) -> list[TypeInfo]:
        import botocore.exceptions

        from orchestrator.aws.session import error_code

        raw: list[Mapping[str, Any]] = []
        for i in range(0, len(names), 100):
            chunk = list(names[i:i + 100])
            try:
                raw += self._paginate("describe_instance_types", "InstanceTypes",
                                      InstanceTypes=chunk)
            except botocore.exceptions.ClientError as err:
                if error_code(err) not in ("InvalidInstanceType", "InvalidParameterValue"):
                    raise
                bad = unknown_types(str(err.response["Error"].get("Message", "")), chunk)
                raise UnknownInstanceType(f"instance type {', '.join(bad)} is not offered "
                                          f"in {self.region}") from err
        missing = [n for n in names if n not in {r["InstanceType"] for r in raw}]
        if missing:
            raise UnknownInstanceType(f"instance type {', '.join(missing)} is not offered "
                                      f"in {self.region}")
        return self._parsed(raw)

    def _types_matching(self, patterns: Sequence[str]) -> list[TypeInfo]:
        if not patterns:
            return []
        raw = self._paginate("describe_instance_types", "InstanceTypes",
                             Filters=[{"Name": "instance-type", "Values": list(patterns)}])
        for pattern in patterns:
            if not any(fnmatch.fnmatchcase(r["InstanceType"], pattern) for r in raw):
                raise UnknownInstanceType(f"no instance type matching {pattern} is offered "
                                          f"in {self.region}")
        return self._parsed(raw)

    def _parsed(self, raw: Iterable[Mapping[str, Any]]) -> list[TypeInfo]:
        out = []
        for record in raw:
            info = parse_instance_type(record)
            if info is None:
                log.info("instance type %s is neither x86_64 nor arm64: left out",
                         record.get("InstanceType"))
            else:
                out.append(info)
        return out

    def _on_demand(self, name: str) -> float | None:
        if self._pricing is None:
            self._pricing = self._pricing_factory()
        pages = self._pricing.get_paginator("get_products").paginate(
            ServiceCode="AmazonEC2", FormatVersion="aws_v1",
            Filters=price_filters(name, self.region))
        return on_demand_prices(item for page in pages
                                for item in page.get("PriceList", [])).get(name)

    def _spot(self, names: Sequence[str]) -> dict[str, float]:
        now = datetime.datetime.now(datetime.UTC)
        history = self._paginate("describe_spot_price_history", "SpotPriceHistory",
                                 InstanceTypes=list(names), ProductDescriptions=["Linux/UNIX"],
                                 StartTime=now)
        return lowest_spot_prices(history)

    def _paginate(self, op: str, key: str, **kwargs: Any) -> list[Mapping[str, Any]]:
        return [item for page in self._ec2.get_paginator(op).paginate(**kwargs)
                for item in page.get(key, [])]


def resolve_shapes(catalog: ShapeCatalog, cfg: AutoscalerConfig, now: float
                   ) -> AutoscalerConfig:
    """`cfg` with its shapes from EC2 (catalog), unless the config set `shapes` itself.

    The copy still counts `shapes` as not set, so passing it again looks the shapes up again
    once they are due; `fixed_shape` must name one of them."""
    if "shapes" in cfg.model_fields_set:
        return cfg
    shapes = catalog.shapes(cfg, now)
    names = [s.name for s in shapes]
    if cfg.fixed_shape is not None and cfg.fixed_shape not in names:
        raise ConfigError(f"fixed_shape {cfg.fixed_shape} is not one of the shapes from EC2 "
                          f"in {catalog.region} ({', '.join(names)})")
    resolved = cfg.model_copy(update={"shapes": shapes})
    resolved.__pydantic_fields_set__.discard("shapes")
    return resolved
