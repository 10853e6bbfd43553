"""One boto3 session per run and its clients: bounded retries in botocore's standard or
adaptive mode, the run's endpoint (the sandbox's, for example), timestamps kept as the ISO
strings the API sends, and the narrowed EC2 model (aws/ec2_model.py)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from orchestrator.config import Config
from orchestrator.errors import HtcpoolError

if TYPE_CHECKING:
    import boto3


def make_session(config: Config) -> boto3.Session:
    """The run's one boto3 session. Region: htcpool's settings, else AWS_REGION (which
    botocore itself ignores), else AWS_DEFAULT_REGION or the profile's."""
    import boto3
    import botocore.exceptions

    region = config.region or os.environ.get("AWS_REGION") or None
    try:
        return boto3.Session(profile_name=config.profile, region_name=region)
    except botocore.exceptions.ProfileNotFound as err:
        raise HtcpoolError(f"AWS profile '{config.profile}' not found") from err


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ClientError ("" for anything else)."""
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


class Clients:
    """The session's clients, made once each."""

    def __init__(self, config: Config, session: boto3.Session | None = None) -> None:
        self.config = config
        self.session = session if session is not None else make_session(config)
        self._clients: dict[str, Any] = {}

    @property
    def region(self) -> str:
        return str(self.session.region_name or "?")

    def get(self, service: str) -> Any:
        if service in self._clients:
            return self._clients[service]
        from botocore.config import Config as BotoConfig

        if not self._clients:
            # Keep timestamps as the ISO strings the API sends: parsing every date of a
            # 1,000-instance DescribeInstances with dateutil costs a third of a pass.
            factory = self.session._session.get_component("response_parser_factory")
            factory.set_parser_defaults(timestamp_parser=str)
        if service == "ec2":
            from orchestrator.aws.ec2_model import use_narrowed_model

            use_narrowed_model(self.session._session)
        if not self.session.region_name:
            raise HtcpoolError("no AWS region set (use --region, HTCPOOL_REGION, "
                               "AWS_REGION or the config file)")
        retries: Any = {"mode": self.config.aws.retry_mode,
                        "max_attempts": self.config.aws.max_attempts}
        aws = self.config.aws
        self._clients[service] = self.session.client(
            service, endpoint_url=self.config.endpoint_url,  # type: ignore[call-overload]
            config=BotoConfig(retries=retries, user_agent_extra="htcpool",
                              connect_timeout=aws.connect_timeout_s,
                              read_timeout=aws.read_timeout_s))
        return self._clients[service]
