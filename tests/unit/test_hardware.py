"""What an instance's kernel leaves of its nominal memory (orchestrator/sim/hardware.py), and
the sandbox's "hardware" file built from it and the instance-type data EC2 serves."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.sim.hardware import advertised_memory_mb, kernel_reserve_mb


@pytest.mark.parametrize(("nominal", "reserve", "advertised"), [
    (1024, 164, 860),     # t3.micro: a little under 0.9 GiB
    (4096, 272, 3824),    # t3.medium, c6i.large: about 3.7 GiB
    (8192, 415, 7777),    # t3.large, c6i.xlarge: about 7.6 GiB
    (16384, 702, 15682),  # g4dn.xlarge, m6i.xlarge
])
def test_reserve_of_common_sizes(nominal: int, reserve: int, advertised: int) -> None:
    assert kernel_reserve_mb(nominal) == reserve
    assert advertised_memory_mb(nominal) == advertised


@given(st.integers(min_value=256, max_value=24 * 1024 * 1024))
def test_reserve_is_128_mb_and_3_5_percent_rounded_up(nominal: int) -> None:
    reserve = kernel_reserve_mb(nominal)
    exact = 128 + Fraction(35, 1000) * nominal
    assert exact <= reserve < exact + 1
    assert advertised_memory_mb(nominal) == nominal - reserve
    assert advertised_memory_mb(nominal + 1) >= advertised_memory_mb(nominal)


@pytest.mark.parametrize("nominal", [0, -4096, 128, 132])
def test_no_memory_left_is_an_error(nominal: int) -> None:
    with pytest.raises(ValueError, match="MB"):
        advertised_memory_mb(nominal)


def test_sandbox_hardware_follows_the_instance_type_data() -> None:
    from moto.ec2.models import ec2_backends

    from orchestrator.sandbox import hardware
    from tests.support.ansible import condor_config

    backend = ec2_backends["123456789012"]["us-east-1"]  # what DescribeInstanceTypes reads
    knobs = condor_config(hardware.for_instance(backend, "c6i.xlarge"))
    assert knobs == {"NUM_CPUS": "4", "MEMORY": "7777"}
    gpu = hardware.for_instance(backend, "g4dn.xlarge")
    assert condor_config(gpu) == {"NUM_CPUS": "4", "MEMORY": "15682"}  # and no GPU
    assert "1 GPU(s) are not advertised" in gpu
    assert hardware.for_instance(backend, "x9.nonexistent") == ""
