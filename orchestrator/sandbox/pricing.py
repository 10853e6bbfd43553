"""Instance types and prices as EC2 and the Pricing API give them, where moto falls short.

`install()` (the sandbox server, and the tests' moto servers) adds to moto:
- the Pricing API (AWSPriceListService: GetProducts, DescribeServices), which moto lacks,
  answering from the sandbox's own price list (sandbox/prices.py): EC2 products in the
  Price List format, each instance type with its Linux/shared/no-software/"Used" price
  and the variants a careless filter would also match (Windows, dedicated tenancy, SQL
  Server, capacity reservations), filtered by TERM_MATCH, EQUALS, CONTAINS, ANY_OF and
  NONE_OF, paginated;
- DescribeSpotPriceHistory with the sandbox's spot prices (prices.spot: a fixed fraction
  of on-demand per zone) where moto answers 0.00001 for everything; types the sandbox has
  no price for have no history;
- DescribeInstanceTypes limited to the types moto's offerings data has in the region (moto
  lists every type everywhere); an unknown or unoffered one is EC2's InvalidInstanceType.
The pricing service is authorized like any other (iam_enforce: `pricing:<Action>` on "*").
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from types import SimpleNamespace
from typing import Any

from moto.core.base_backend import BaseBackend
from moto.core.exceptions import JsonRESTError
from moto.core.responses import ActionResult, BaseResponse

from orchestrator.sandbox import prices

PAGE_MAX = 100
PUBLICATION = "2024-06-01T00:00:00Z"
EC2_ATTRIBUTES = ("capacitystatus", "instanceFamily", "instanceType", "location",
                  "locationType", "memory", "operatingSystem", "preInstalledSw",
                  "processorArchitecture", "regionCode", "tenancy", "usagetype", "vcpu")
# (operatingSystem, tenancy, preInstalledSw, capacitystatus, price factor): the first is the
# price a shape is made of; the others exist so that a lookup missing a filter goes wrong.
VARIANTS = (("Linux", "Shared", "NA", "Used", 1.0),
            ("Linux", "Shared", "NA", "UnusedCapacityReservation", 1.0),
            ("Linux", "Dedicated", "NA", "Used", 1.1),
            ("Windows", "Shared", "NA", "Used", 1.6),
            ("Linux", "Shared", "SQL Std", "Used", 2.5))
_installed = False


@functools.cache
def _products() -> tuple[dict[str, Any], ...]:
    """Every product of the sandbox's price list, in a fixed order (made once)."""
    return tuple(_make_products())


def _make_products() -> Iterator[dict[str, Any]]:
    from moto.ec2.models.instance_types import INSTANCE_TYPES

    for region, table in sorted(prices.ON_DEMAND.items()):
        for name, price in sorted(table.items()):
            info = INSTANCE_TYPES.get(name, {})
            arches = info.get("ProcessorInfo", {}).get("SupportedArchitectures", [])
            for system, tenancy, software, capacity, factor in VARIANTS:
                sku = hashlib.sha256(f"{region}/{name}/{system}/{tenancy}/{software}/"
                                     f"{capacity}".encode()).hexdigest()[:16].upper()
                attributes = {
                    "servicecode": "AmazonEC2", "servicename": "Amazon Elastic Compute Cloud",
                    "instanceType": name, "instanceFamily": "General purpose",
                    "regionCode": region, "location": prices.LOCATIONS.get(region, region),
                    "locationType": "AWS Region", "operatingSystem": system,
                    "tenancy": tenancy, "preInstalledSw": software, "capacitystatus": capacity,
                    "licenseModel": "No License required", "operation": "RunInstances",
                    "usagetype": f"BoxUsage:{name}",
                    "vcpu": str(info.get("VCpuInfo", {}).get("DefaultVCpus", "")),
                    "memory": f"{info.get('MemoryInfo', {}).get('SizeInMiB', 0) / 1024:g} GiB",
                    "processorArchitecture": "64-bit" if arches else "",
                }
                term, rate = f"{sku}.JRTCKXETXF", f"{sku}.JRTCKXETXF.6YS6EN2CT7"
                yield {
                    "product": {"productFamily": "Compute Instance", "sku": sku,
                                "attributes": attributes},
                    "serviceCode": "AmazonEC2", "version": PUBLICATION[:10].replace("-", ""),
                    "publicationDate": PUBLICATION,
                    "terms": {"OnDemand": {term: {
                        "offerTermCode": "JRTCKXETXF", "sku": sku, "effectiveDate": PUBLICATION,
                        "termAttributes": {},
                        "priceDimensions": {rate: {
                            "rateCode": rate, "unit": "Hrs", "beginRange": "0",
                            "endRange": "Inf", "appliesTo": [],
                            "description": f"${price * factor:.4f} per {system} {name} Instance "
                                           "Hour (the htcpool sandbox's own price)",
                            "pricePerUnit": {"USD": f"{price * factor:.10f}"}}}}}},
                }


def matches(product: Mapping[str, Any], filters: list[Mapping[str, str]]) -> bool:
    """A product against GetProducts filters (all of them must match)."""
    attributes = product["product"]["attributes"]
    for f in filters:
        kind, field, value = str(f.get("Type", "")), str(f.get("Field", "")), str(f.get("Value"))
        if field.lower() == "servicecode":
            actual: str | None = product["serviceCode"]
        else:
            actual = next((v for k, v in attributes.items() if k.lower() == field.lower()), None)
        if kind == "NONE_OF":
            if actual is not None and actual.lower() in _listed(value):
                return False
            continue
        if actual is None:
            return False
        if kind in ("TERM_MATCH", "EQUALS"):
            ok = actual.lower() == value.lower()
        elif kind == "CONTAINS":
            ok = value.lower() in actual.lower()
        elif kind == "ANY_OF":
            ok = actual.lower() in _listed(value)
        else:
            raise JsonRESTError("InvalidParameterException", f"unknown filter type {kind!r}")
        if not ok:
            return False
    return True


def _listed(value: str) -> set[str]:
    return {v.strip().lower() for v in value.split(",")}


class PricingResponse(BaseResponse):
    """AWSPriceListService, JSON protocol (X-Amz-Target)."""

    iam_service = "pricing"  # iam_enforce: the service this response authorizes for

    def __init__(self) -> None:
        super().__init__(service_name="pricing")

    def _params(self) -> dict[str, Any]:
        try:
            loaded = json.loads(self.body or "{}")
        except ValueError as exc:
            raise JsonRESTError("InvalidParameterException", "malformed request") from exc
        return loaded if isinstance(loaded, dict) else {}

    def get_products(self) -> ActionResult:
        params = self._params()
        code = str(params.get("ServiceCode") or "")
        filters = list(params.get("Filters") or [])
        limit = int(params.get("MaxResults") or PAGE_MAX)
        if not 1 <= limit <= PAGE_MAX:
            raise JsonRESTError("InvalidParameterException",
                                f"MaxResults must be between 1 and {PAGE_MAX}")
        token = str(params.get("NextToken") or "0")
        if not re.fullmatch(r"\d{1,9}", token):
            raise JsonRESTError("InvalidNextTokenException", "The NextToken is invalid")
        found = [p for p in _products() if p["serviceCode"] == code and matches(p, filters)]
        start = int(token)
        page = found[start:start + limit]
        reply: dict[str, Any] = {"FormatVersion": "aws_v1",
                                 "PriceList": [json.dumps(p) for p in page]}
        if start + limit < len(found):
            reply["NextToken"] = str(start + limit)
        return ActionResult(reply)

    def describe_services(self) -> ActionResult:
        code = self._params().get("ServiceCode")
        services = [{"ServiceCode": "AmazonEC2", "AttributeNames": list(EC2_ATTRIBUTES)}]
        return ActionResult({"FormatVersion": "aws_v1", "Services": [
            s for s in services if code in (None, "", s["ServiceCode"])]})


class PricingBackend(BaseBackend):
    """Nothing to keep: the price list is fixed. Only routes requests to PricingResponse."""

    @property
    def _url_module(self) -> Any:
        return SimpleNamespace(url_bases=[r"https?://(api\.)?pricing\.(.+)\.amazonaws\.com"],
                               url_paths={"{0}/$": PricingResponse.dispatch})


def _spot_history(self: Any) -> ActionResult:
    """EC2Response.describe_spot_price_history with the sandbox's prices."""
    wanted = self._get_param("InstanceTypes", [])
    products = self._get_param("ProductDescriptions", [])
    offers = self.ec2_backend.describe_spot_price_history(
        wanted, self._filters_from_querystring())
    region = self.ec2_backend.region_name
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    history = []
    for description in products or ["Linux/UNIX"]:
        if description not in ("Linux/UNIX", "Linux/UNIX (Amazon VPC)"):
            continue
        for offer in offers:
            price = prices.spot(region, offer["InstanceType"], offer["Location"])
            if price is not None:
                history.append({"InstanceType": offer["InstanceType"],
                                "ProductDescription": description, "SpotPrice": f"{price:.6f}",
                                "AvailabilityZone": offer["Location"], "Timestamp": now})
    return ActionResult({"SpotPriceHistory": history})


def install() -> None:
    """Once per process, before the server answers (idempotent)."""
    global _installed
    if _installed:
        return
    _installed = True
    import moto.backend_index as backend_index
    import moto.backends as backends
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.ec2.exceptions import InvalidInstanceTypeError
    from moto.ec2.models.instance_types import INSTANCE_TYPE_OFFERINGS, InstanceTypeBackend
    from moto.ec2.responses.spot_instances import SpotInstances

    backend = PricingBackend("us-east-1", DEFAULT_ACCOUNT_ID)
    backend_index.backend_url_patterns.append(
        ("pricing", re.compile(r"https?://(api\.)?pricing\.(.+)\.amazonaws\.com")))
    orig_get_backend = backends.get_backend

    def get_backend(name: Any) -> Any:
        return {"global": backend} if name == "pricing" else orig_get_backend(name)

    backends.get_backend = get_backend

    orig_types = InstanceTypeBackend.describe_instance_types
    offered: dict[str, frozenset[str]] = {}

    def describe_instance_types(self: Any, instance_types: list[str] | None = None,
                                filters: Any = None) -> Any:
        region = self.region_name
        if region not in offered:
            offered[region] = frozenset(o["InstanceType"] for o in
                                        INSTANCE_TYPE_OFFERINGS["region"].get(region, []))
        unknown = [t for t in instance_types or [] if t not in offered[region]]
        if unknown:
            raise InvalidInstanceTypeError(unknown, error_type="InvalidInstanceType")
        return [t for t in orig_types(self, instance_types, filters)
                if t["InstanceType"] in offered[region]]

    InstanceTypeBackend.describe_instance_types = describe_instance_types  # type: ignore[method-assign]
    SpotInstances.describe_spot_price_history = _spot_history  # type: ignore[method-assign]
