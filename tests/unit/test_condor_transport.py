"""Transport selection and error mapping of the pool views, without reading any pool: these
tests never look at HTCondor output (that is tested on the sandbox, tests/e2e)."""

from __future__ import annotations

import base64
import gzip
import shlex
import subprocess
from typing import Any

import pytest

from orchestrator.condor.ads import ads_from_json
from orchestrator.condor.commands import (
    SCHEDD_TIMEOUT_S,
    condor_q_argv,
    condor_status_argv,
    schedd_queues_argv,
)
from orchestrator.condor.factory import choose_transport, pool_source_for, runs_central_manager
from orchestrator.condor.records import JobStatus
from orchestrator.condor.remote import (
    GZ_MARKER,
    SshSource,
    SsmSource,
    _remote_script,
    decode_remote_output,
)
from orchestrator.condor.source import LocalSource, Transport
from orchestrator.config import Config
from orchestrator.errors import HtcpoolError


@pytest.mark.parametrize(("requested", "on_cm", "ssh_host", "expected"), [
    ("auto", True, "", Transport.LOCAL),
    ("auto", True, "cm.example", Transport.LOCAL),
    ("auto", False, "", Transport.SSM),
    ("auto", False, "cm.example", Transport.SSH),
    ("ssm", True, "", Transport.SSM),
    ("ssh", False, "", Transport.SSH),
    ("local", False, "", Transport.LOCAL),
])
def test_choose_transport(requested: str, on_cm: bool, ssh_host: str,
                          expected: Transport) -> None:
    assert choose_transport(requested, on_cm, ssh_host) is expected


def test_unknown_transport() -> None:
    with pytest.raises(HtcpoolError, match="unknown transport 'pigeon'"):
        choose_transport("pigeon", False, "")


@pytest.mark.parametrize(("daemons", "expected"), [
    ("MASTER, COLLECTOR, NEGOTIATOR, SCHEDD", True),
    ("master collector negotiator schedd startd", True),
    ("MASTER, STARTD", False),
    ("MASTER, COLLECTOR, NEGOTIATOR", False),
    ("", False),
])
def test_runs_central_manager(daemons: str, expected: bool) -> None:
    assert runs_central_manager(daemons) is expected


def test_command_lines_ask_for_json_and_a_projection() -> None:
    status = condor_status_argv()
    assert status[:2] == ["condor_status", "-json"] and "EC2InstanceId" in status[3]
    q = condor_q_argv('Owner == "alice"')
    assert q[:3] == ["condor_q", "-allusers", "-json"]
    assert q[-2:] == ["-constraint", 'Owner == "alice"'] and "RequestMemory" in q[4]


def test_a_grouped_query_projects_job_status_for_its_constraint() -> None:
    q = condor_q_argv("JobStatus == 1", ("RequestCpus",), grouped=True)
    assert q == ["condor_q", "-allusers", "-json", "-group-by", "-attributes",
                 "RequestCpus,JobStatus", "-constraint", "JobStatus == 1"]
    script = schedd_queues_argv("JobStatus == 1", ("RequestCpus",), grouped=True)[2]
    assert script.count("-group-by") == 2  # the local schedd, and each one listed
    # each schedd on its own, under a time limit: one that hangs does not hang the others
    assert script.count(f"timeout {SCHEDD_TIMEOUT_S} condor_q") == 2


def test_remote_script_round_trips_through_a_real_shell() -> None:
    tricky = 'Owner == "o\'brien" && $HOME'
    out = subprocess.run(["/bin/sh", "-c", _remote_script(["printf", "%s", tricky])],
                         capture_output=True, text=True, check=True).stdout
    assert out.startswith(GZ_MARKER + "\n")
    assert decode_remote_output(out, "test") == tricky


def test_remote_script_keeps_the_exit_status() -> None:
    done = subprocess.run(["/bin/sh", "-c", _remote_script(["sh", "-c", "echo no >&2; exit 3"])],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 3 and done.stdout == "" and "no" in done.stderr


def test_decode_errors() -> None:
    with pytest.raises(HtcpoolError, match="returned no output"):
        decode_remote_output("  \n", "here")
    body = base64.b64encode(gzip.compress(b"x" * 1000)).decode()
    with pytest.raises(HtcpoolError, match=r"truncated or corrupt.*--transport ssh"):
        decode_remote_output(f"{GZ_MARKER}\n{body[: len(body) // 2]}", "here")
    assert decode_remote_output("plain text", "here") == "plain text"


def test_ads_from_json_edges() -> None:
    assert ads_from_json("", ["A"]) == []
    with pytest.raises(HtcpoolError, match="unexpected output"):
        ads_from_json("Error: couldn't contact the collector", ["A"])


def test_local_source_unreachable_collector_is_one_error() -> None:
    source = LocalSource(collector="127.0.0.1:9")
    with pytest.raises(HtcpoolError, match="cannot query the collector"):
        source.slots()


def test_ssh_source_failure_is_one_error() -> None:
    source = SshSource("127.0.0.1", options=["Port=9", "StrictHostKeyChecking=no",
                                             "UserKnownHostsFile=/dev/null"], timeout_s=20)
    with pytest.raises(HtcpoolError) as err:
        source.slots()
    assert str(err.value).startswith("ssh failed via ssh 127.0.0.1:")


def test_ssh_argv() -> None:
    source = SshSource("10.0.0.5", user="admin", key_file="~/k", options=["ProxyJump=bastion"])
    argv = source.ssh_argv(condor_q_argv('Owner == "a b"'))
    assert argv[:5] == ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]
    assert argv[5:7] == ["-o", "ProxyJump=bastion"] and argv[7:9] == ["-l", "admin"]
    assert argv[9] == "-i" and argv[10].endswith("/k") and argv[11:13] == ["10.0.0.5", "--"]
    assert shlex.split(argv[13]) == condor_q_argv('Owner == "a b"')


def _no_cloud() -> Any:
    raise AssertionError("the cloud should not be needed")


def test_open_source_without_cloud_when_possible() -> None:
    config = Config.model_validate({"condor": {"transport": "ssh", "ssh_host": "cm.example"}})
    source = pool_source_for(config, _no_cloud)
    assert isinstance(source, SshSource) and source.host == "cm.example"
    assert isinstance(pool_source_for(Config(), _no_cloud, "local"), LocalSource)


class _FakeInstance:
    id = "i-0abc"
    private_ip = "198.18.0.4"
    public_ip = None


class _CloudWithCentralManager:
    def central_manager(self) -> _FakeInstance:
        return _FakeInstance()


def test_open_source_finds_the_central_manager_by_tag() -> None:
    ssm = pool_source_for(Config(), lambda: _CloudWithCentralManager(), "ssm")  # type: ignore[arg-type,return-value]
    assert isinstance(ssm, SsmSource) and ssm.instance_id == "i-0abc"
    ssh = pool_source_for(Config(), lambda: _CloudWithCentralManager(), "ssh")  # type: ignore[arg-type,return-value]
    assert isinstance(ssh, SshSource) and ssh.host == "198.18.0.4"


def test_job_status_values_match_htcondor() -> None:
    import htcondor2

    assert int(htcondor2.JobStatus.IDLE) == JobStatus.IDLE
    assert int(htcondor2.JobStatus.HELD) == JobStatus.HELD
    assert int(htcondor2.JobStatus.RUNNING) == JobStatus.RUNNING


def test_run_tool_locally_maps_failures() -> None:
    source = LocalSource()
    assert source.run_tool(["sh", "-c", "echo ok"]) == "ok\n"
    with pytest.raises(HtcpoolError, match=r"sh -c failed \(exit 4\): bad"):
        source.run_tool(["sh", "-c", "echo bad >&2; exit 4"])
    with pytest.raises(HtcpoolError, match="no-such-tool"):
        source.run_tool(["no-such-tool"])
