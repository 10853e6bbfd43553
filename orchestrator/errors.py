"""Errors a user can cause, and the exit statuses the CLI maps them to."""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    SUCCESS = 0
    ERROR = 1
    USAGE = 2
    TIMEOUT = 3
    NOT_FOUND = 4
    REFUSED = 5
    CTRL_C = 130


class HtcpoolError(Exception):
    """A failure to report as one line on stderr (no traceback unless --debug)."""

    exit_status: ExitStatus = ExitStatus.ERROR


class ConfigError(HtcpoolError):
    exit_status = ExitStatus.USAGE


class NotFoundError(HtcpoolError):
    exit_status = ExitStatus.NOT_FOUND


class RefusedError(HtcpoolError):
    """The action would touch something that is not ours, or is in the wrong state."""

    exit_status = ExitStatus.REFUSED


class WaitTimeout(HtcpoolError):
    exit_status = ExitStatus.TIMEOUT


class SandboxError(HtcpoolError):
    pass


def describe_exception(exc: BaseException) -> str:
    """One line for an unexpected library error (botocore's carry a code and message)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and "Error" in response:
        err = response["Error"]
        return f"{err.get('Code', type(exc).__name__)}: {err.get('Message', '')}".strip()
    name = type(exc).__name__
    if name == "NoCredentialsError":
        return "no AWS credentials found (set AWS_PROFILE or configure credentials)"
    if name == "NoRegionError":
        return "no AWS region set (use --region, HTCPOOL_REGION or the config file)"
    if name == "EndpointConnectionError":
        return f"cannot reach the AWS endpoint: {exc}"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{name}: {text}" if text else name
