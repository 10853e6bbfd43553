"""The sandbox's own price list: on-demand Linux prices in USD per hour, shared tenancy, no
pre-installed software, for the instance types the sandbox prices, in two regions.

These are the sandbox's numbers, not AWS's: close to the public prices of 2024 so that
plans look like real ones, but never to be read as a quote. The sandbox serves them through
its Pricing API (sandbox/pricing.py: GetProducts) and derives its spot prices from them
(SPOT_FRACTION of on-demand, a point more per zone after the first), so that the same
inputs always give the same shapes. Types not listed here have no price in the sandbox.
"""

from __future__ import annotations

SPOT_FRACTION = 0.35
SPOT_STEP_PER_ZONE = 0.01

ON_DEMAND: dict[str, dict[str, float]] = {
    "us-east-1": {
        "t3.nano": 0.0052, "t3.micro": 0.0104, "t3.small": 0.0208, "t3.medium": 0.0416,
        "t3.large": 0.0832, "t3.xlarge": 0.1664, "t3.2xlarge": 0.3328,
        "t3a.nano": 0.0047, "t3a.micro": 0.0094, "t3a.small": 0.0188, "t3a.medium": 0.0376,
        "t3a.large": 0.0752, "t3a.xlarge": 0.1504, "t3a.2xlarge": 0.3008,
        "c6i.large": 0.085, "c6i.xlarge": 0.17, "c6i.2xlarge": 0.34, "c6i.4xlarge": 0.68,
        "c6i.8xlarge": 1.36, "c6i.12xlarge": 2.04, "c6i.16xlarge": 2.72,
        "c6i.24xlarge": 4.08, "c6i.32xlarge": 5.44, "c6i.metal": 5.44,
        "c7g.medium": 0.0363, "c7g.large": 0.0725, "c7g.xlarge": 0.145, "c7g.2xlarge": 0.29,
        "c7g.4xlarge": 0.58, "c7g.8xlarge": 1.16, "c7g.12xlarge": 1.74, "c7g.16xlarge": 2.32,
        "c7g.metal": 2.32,
        "m6i.large": 0.096, "m6i.xlarge": 0.192, "m6i.2xlarge": 0.384, "m6i.4xlarge": 0.768,
        "m6i.8xlarge": 1.536, "m6i.12xlarge": 2.304, "m6i.16xlarge": 3.072,
        "m6i.24xlarge": 4.608, "m6i.32xlarge": 6.144, "m6i.metal": 6.144,
        "r6i.large": 0.126, "r6i.xlarge": 0.252, "r6i.2xlarge": 0.504, "r6i.4xlarge": 1.008,
        "r6i.8xlarge": 2.016, "r6i.12xlarge": 3.024, "r6i.16xlarge": 4.032,
        "r6i.24xlarge": 6.048, "r6i.32xlarge": 8.064, "r6i.metal": 8.064,
        "g5.xlarge": 1.006, "g5.2xlarge": 1.212, "g5.4xlarge": 1.624, "g5.8xlarge": 2.448,
        "g5.12xlarge": 5.672, "g5.16xlarge": 4.096, "g5.24xlarge": 8.144,
        "g5.48xlarge": 16.288,
    },
    "eu-west-1": {
        "t3.nano": 0.0057, "t3.micro": 0.0114, "t3.small": 0.0228, "t3.medium": 0.0456,
        "t3.large": 0.0912, "t3.xlarge": 0.1824, "t3.2xlarge": 0.3647,
        "t3a.nano": 0.0051, "t3a.micro": 0.0102, "t3a.small": 0.0204, "t3a.medium": 0.0408,
        "t3a.large": 0.0816, "t3a.xlarge": 0.1632, "t3a.2xlarge": 0.3264,
        "c6i.large": 0.0912, "c6i.xlarge": 0.1824, "c6i.2xlarge": 0.3648,
        "c6i.4xlarge": 0.7296, "c6i.8xlarge": 1.459, "c6i.12xlarge": 2.189,
        "c6i.16xlarge": 2.919, "c6i.24xlarge": 4.378, "c6i.32xlarge": 5.837,
        "c6i.metal": 5.837,
        "c7g.medium": 0.0388, "c7g.large": 0.0776, "c7g.xlarge": 0.1552,
        "c7g.2xlarge": 0.3103, "c7g.4xlarge": 0.6206, "c7g.8xlarge": 1.241,
        "c7g.12xlarge": 1.862, "c7g.16xlarge": 2.482, "c7g.metal": 2.482,
        "m6i.large": 0.107, "m6i.xlarge": 0.2141, "m6i.2xlarge": 0.4282,
        "m6i.4xlarge": 0.8563, "m6i.8xlarge": 1.713, "m6i.12xlarge": 2.569,
        "m6i.16xlarge": 3.425, "m6i.24xlarge": 5.138, "m6i.32xlarge": 6.851,
        "m6i.metal": 6.851,
        "r6i.large": 0.141, "r6i.xlarge": 0.282, "r6i.2xlarge": 0.564, "r6i.4xlarge": 1.128,
        "r6i.8xlarge": 2.256, "r6i.12xlarge": 3.384, "r6i.16xlarge": 4.512,
        "r6i.24xlarge": 6.768, "r6i.32xlarge": 9.024, "r6i.metal": 9.024,
        "g5.xlarge": 1.123, "g5.2xlarge": 1.353, "g5.4xlarge": 1.812, "g5.8xlarge": 2.732,
        "g5.12xlarge": 6.33, "g5.16xlarge": 4.571, "g5.24xlarge": 9.089,
        "g5.48xlarge": 18.177,
    },
}

# The Pricing API's `location` attribute for the regions above.
LOCATIONS = {"us-east-1": "US East (N. Virginia)", "eu-west-1": "EU (Ireland)"}


def on_demand(region: str, instance_type: str) -> float | None:
    return ON_DEMAND.get(region, {}).get(instance_type)


def spot(region: str, instance_type: str, zone: str) -> float | None:
    """The sandbox's current spot price in a zone: a fixed fraction of on-demand, one step
    more per zone letter after "a" (so the lowest is always zone a's)."""
    price = on_demand(region, instance_type)
    if price is None:
        return None
    step = max(0, ord(zone[-1:] or "a") - ord("a"))
    return round(price * (SPOT_FRACTION + SPOT_STEP_PER_ZONE * step), 6)
