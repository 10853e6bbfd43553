"""What an instance's operating system sees of its nominal memory.

EC2 sells memory in GiB (DescribeInstanceTypes' MemoryInfo.SizeInMiB), but a startd
advertises what the kernel reports (MemTotal): the nominal size less what the firmware
keeps (reserved e820 ranges), the kernel's image and its page tables, the page structures
(64 bytes for every 4 KiB page, about 1.6 %) and a crash-kernel reservation. Commonly
reported MemTotal figures on Linux EC2 instances fit a fixed part plus a proportional one:
a 4 GiB c6i.large or t3.medium shows about 3.7-3.8 GiB, an 8 GiB type about 7.6 GiB, a
1 GiB t3.micro a little under 0.9 GiB. The model here, 128 MB plus 3.5 % of the nominal
size rounded up, gives 3824 MB, 7777 MB and 860 MB for those: close to, and if anything
slightly below, what such instances show, so a job that fits here fits there.

Pure arithmetic: the sandbox uses it to make its hosts advertise what an instance of their
type would, and the simulator to size workers the same way.
"""

from __future__ import annotations

KERNEL_RESERVE_FIXED_MB = 128
# Per mille of the nominal size (35 = 3.5 %), kept an integer so the rounding is exact.
KERNEL_RESERVE_PER_MILLE = 35


def kernel_reserve_mb(nominal_mb: int) -> int:
    """MB of an instance's nominal memory its kernel and firmware keep (never advertised)."""
    if nominal_mb <= 0:
        raise ValueError(f"nominal memory must be positive, not {nominal_mb} MB")
    proportional = -(-nominal_mb * KERNEL_RESERVE_PER_MILLE // 1000)  # ceiling division
    return KERNEL_RESERVE_FIXED_MB + proportional


def advertised_memory_mb(nominal_mb: int) -> int:
    """MB a startd on an instance with `nominal_mb` of memory advertises (TotalMemory)."""
    left = nominal_mb - kernel_reserve_mb(nominal_mb)
    if left <= 0:
        raise ValueError(f"{nominal_mb} MB is less than the kernel keeps "
                         f"({kernel_reserve_mb(nominal_mb)} MB)")
    return left
