"""Run one shell command on one instance through SSM and wait for it properly.

SendCommand, then GetCommandInvocation polled with exponential backoff (no fixed sleep)
until a terminal status or the deadline; on the deadline the command is cancelled (best
effort) and a WaitTimeout raised. A command that fails gives one line with its exit code and
the last line it wrote to stderr.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from orchestrator.aws.session import error_code
from orchestrator.errors import HtcpoolError, WaitTimeout

TERMINAL = frozenset({"Success", "Failed", "Cancelled", "TimedOut", "DeliveryTimedOut",
                      "ExecutionTimedOut", "Undeliverable", "Terminated", "InvalidPlatform",
                      "AccessDenied"})


class SsmCommandError(HtcpoolError):
    pass


def backoff_delays(first: float = 0.1, factor: float = 2.0, cap: float = 2.0) -> Any:
    """0.1, 0.2, 0.4, ... capped at `cap` seconds."""
    delay = first
    while True:
        yield delay
        delay = min(delay * factor, cap)


def run_command(ssm: Any, instance_id: str, commands: Sequence[str], timeout_s: float,
                comment: str = "htcpool", sleep: Callable[[float], None] = time.sleep,
                clock: Callable[[], float] = time.monotonic,
                first_delay: float = 0.1, max_delay: float = 2.0) -> str:
    """Run `commands` (AWS-RunShellScript) on `instance_id`; return its standard output."""
    import botocore.exceptions

    deadline = clock() + timeout_s
    try:
        sent = ssm.send_command(
            InstanceIds=[instance_id], DocumentName="AWS-RunShellScript",
            Comment=comment[:100], TimeoutSeconds=max(30, math.ceil(timeout_s)),
            Parameters={"commands": list(commands),
                        "executionTimeout": [str(max(1, math.ceil(timeout_s)))]})
    except botocore.exceptions.ClientError as err:
        if error_code(err) in ("InvalidInstanceId", "InvalidInstanceInformationFilterValue"):
            raise SsmCommandError(
                f"{instance_id} cannot take SSM commands (agent not running, no instance "
                "profile, or not in this region); try --transport ssh") from err
        raise
    command_id = sent["Command"]["CommandId"]
    status = "Pending"
    invocation: dict[str, Any] = {}
    for delay in backoff_delays(first_delay, cap=max_delay):
        try:
            invocation = ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
            status = invocation.get("Status", "Pending")
        except botocore.exceptions.ClientError as err:
            if error_code(err) != "InvocationDoesNotExist":  # not yet visible: keep polling
                raise
        if status in TERMINAL:
            break
        remaining = deadline - clock()
        if remaining <= 0:
            _cancel(ssm, command_id, instance_id)
            raise WaitTimeout(f"SSM command on {instance_id} did not finish within "
                              f"{timeout_s:.0f} s (last status: {status})")
        sleep(min(delay, remaining))
    if status != "Success":
        code = invocation.get("ResponseCode", -1)
        lines = [ln for ln in str(invocation.get("StandardErrorContent", "")).splitlines()
                 if ln.strip()]
        reason = lines[-1] if lines else invocation.get("StatusDetails", status)
        if status in ("TimedOut", "ExecutionTimedOut", "DeliveryTimedOut"):
            raise WaitTimeout(f"SSM command on {instance_id} timed out ({status})")
        raise SsmCommandError(f"SSM command on {instance_id} {status.lower()} "
                              f"(exit {code}): {reason}")
    return str(invocation.get("StandardOutputContent", ""))


def _cancel(ssm: Any, command_id: str, instance_id: str) -> None:
    # best effort: the command's own executionTimeout also ends it
    with contextlib.suppress(Exception):
        ssm.cancel_command(CommandId=command_id, InstanceIds=[instance_id])
