"""SSM SendCommand waiting, against a moto server. moto always answers Success at once, so
the statuses in between (and failures) are scripted with botocore `before-call` handlers on
the real client; the sleeps and the clock are injected so nothing really waits."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from orchestrator.aws.ssm import SsmCommandError, backoff_delays, run_command
from orchestrator.errors import WaitTimeout


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _response(status: int) -> AWSResponse:
    from botocore.awsrequest import HTTPHeaders

    return AWSResponse("http://moto.invalid/", status, HTTPHeaders(), None)


def script(client: Any, operation: str, answers: Iterator[dict[str, Any]]) -> list[dict[str, Any]]:
    """Answer `operation` from `answers` (an "Error" key makes it a 400); return the calls."""
    calls: list[dict[str, Any]] = []

    def handler(params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        calls.append(json.loads(params["body"]))  # the JSON request that would have been sent
        answer = next(answers)
        return _response(400 if "Error" in answer else 200), answer

    client.meta.events.register(f"before-call.ssm.{operation}", handler)
    return calls


def invocation(status: str, out: str = "", err: str = "", code: int = 0) -> dict[str, Any]:
    return {"Status": status, "StandardOutputContent": out, "StandardErrorContent": err,
            "ResponseCode": code, "StatusDetails": status}


def forever(answer: dict[str, Any]) -> Iterator[dict[str, Any]]:
    while True:
        yield answer


@pytest.fixture()
def ssm(aws: Any) -> Any:
    return boto3.client("ssm", endpoint_url=aws.endpoint, region_name="us-east-1")


def test_real_moto_round_trip(aws: Any, ssm: Any) -> None:
    assert run_command(ssm, aws.cm, ["true"], timeout_s=10) == ""


def test_polls_until_success_with_growing_delays(aws: Any, ssm: Any) -> None:
    t = FakeTime()
    not_yet = {"Error": {"Code": "InvocationDoesNotExist", "Message": ""}}
    calls = script(ssm, "GetCommandInvocation", iter([
        not_yet, invocation("Pending"), invocation("InProgress"), invocation("InProgress"),
        invocation("Success", out="payload\n")]))
    out = run_command(ssm, aws.cm, ["echo payload"], 30, sleep=t.sleep, clock=t.clock)
    assert out == "payload\n"
    assert len(calls) == 5 and all(c["InstanceId"] == aws.cm for c in calls)
    assert t.sleeps == [0.1, 0.2, 0.4, 0.8]


def test_failed_command_reports_exit_code_and_last_stderr_line(aws: Any, ssm: Any) -> None:
    t = FakeTime()
    script(ssm, "GetCommandInvocation", iter([
        invocation("InProgress"),
        invocation("Failed", err="warning: x\ncondor_status: not found\n", code=127)]))
    with pytest.raises(SsmCommandError) as err:
        run_command(ssm, aws.cm, ["condor_status"], 30, sleep=t.sleep, clock=t.clock)
    assert str(err.value) == f"SSM command on {aws.cm} failed (exit 127): condor_status: not found"


def test_deadline_cancels_and_times_out(aws: Any, ssm: Any) -> None:
    t = FakeTime()
    script(ssm, "GetCommandInvocation", forever(invocation("InProgress")))
    cancels = script(ssm, "CancelCommand", forever({}))
    with pytest.raises(WaitTimeout) as err:
        run_command(ssm, aws.cm, ["sleep 100"], 5, sleep=t.sleep, clock=t.clock)
    assert "did not finish within 5 s" in str(err.value) and "InProgress" in str(err.value)
    assert max(t.sleeps) <= 2.0 and sum(t.sleeps) == pytest.approx(5.0)
    assert len(cancels) == 1 and cancels[0]["InstanceIds"] == [aws.cm]


def test_agent_side_timeouts_are_timeouts(aws: Any, ssm: Any) -> None:
    t = FakeTime()
    script(ssm, "GetCommandInvocation", iter([invocation("DeliveryTimedOut")]))
    with pytest.raises(WaitTimeout, match="DeliveryTimedOut"):
        run_command(ssm, aws.cm, ["true"], 30, sleep=t.sleep, clock=t.clock)


def test_instance_not_managed_by_ssm(aws: Any, ssm: Any) -> None:
    script(ssm, "SendCommand", iter([{"Error": {"Code": "InvalidInstanceId", "Message": ""}}]))
    with pytest.raises(SsmCommandError, match="cannot take SSM commands"):
        run_command(ssm, aws.cm, ["true"], 30)


def test_send_command_parameters(aws: Any, ssm: Any) -> None:
    sent: list[dict[str, Any]] = []
    ssm.meta.events.register("before-call.ssm.SendCommand",
                             lambda params, **_: sent.append(json.loads(params["body"])))
    run_command(ssm, aws.cm, ["echo hi"], 12.5, comment="htcpool test")
    body = sent[0]
    assert body["DocumentName"] == "AWS-RunShellScript" and body["InstanceIds"] == [aws.cm]
    assert body["Parameters"]["executionTimeout"] == ["13"] and body["TimeoutSeconds"] == 30


def test_backoff_is_capped() -> None:
    gen = backoff_delays(0.1, 2.0, 1.0)
    assert [next(gen) for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
