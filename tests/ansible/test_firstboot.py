"""The worker image's first-boot script against a local SSM (moto server on 127.0.0.1)
and a fake IMDSv2: it writes the token (0600) and the pool's settings, retries while the
parameters are missing, and never prints the token."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import boto3
import pytest

from tests.support.ansible import ROLES

SCRIPT = ROLES / "htcondor_worker" / "files" / "htcpool-worker-firstboot.py"
INSTANCE_ID = "i-0abc1234def567890"
INSTANCE_TYPE = "c6i.xlarge"


def make_token(issuer: str) -> str:
    def b64(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    header = b64({"alg": "HS256", "kid": "POOL"})
    return f"{header}.{b64({'iss': issuer, 'sub': 'condor@' + issuer})}.c2ln"


class FakeImds(BaseHTTPRequestHandler):
    tags: ClassVar[dict[str, str]] = {}
    token = "imds-session-token"

    def log_message(self, *args: object) -> None:
        return None

    def _send(self, code: int, body: str = "") -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self) -> None:
        if self.path == "/latest/api/token" and self.headers.get(
                "X-aws-ec2-metadata-token-ttl-seconds"):
            self._send(200, self.token)
        else:
            self._send(400)

    def do_GET(self) -> None:
        if self.headers.get("X-aws-ec2-metadata-token") != self.token:
            self._send(401)
            return
        values = {
            "/latest/meta-data/instance-id": INSTANCE_ID,
            "/latest/meta-data/instance-type": INSTANCE_TYPE,
            "/latest/meta-data/placement/region": "us-east-1",
            **{f"/latest/meta-data/tags/instance/{k}": v for k, v in self.tags.items()},
        }
        if self.path in values:
            self._send(200, values[self.path])
        else:
            self._send(404)


@pytest.fixture
def imds() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeImds)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


@pytest.fixture
def ssm_endpoint(moto_endpoint: str) -> str:
    return moto_endpoint


def run_script(tmp_path: Path, imds: str, endpoint: str, timeout: str = "20",
               pool: str = "htcpool") -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "HTCPOOL_DEFAULT_POOL": pool,
        "HTCPOOL_TIMEOUT": timeout,
        "HTCPOOL_REGION": "",
        "HTCPOOL_SSM_ENDPOINT_URL": "",
        "HTCPOOL_CONFIG_FILE": str(tmp_path / "config.d" / "90-htcpool-pool.conf"),
        "HTCPOOL_TOKEN_FILE": str(tmp_path / "tokens.d" / "htcpool-pool"),
    }
    return subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def put(endpoint: str, pool: str, condor_host: str, token: str) -> None:
    ssm = boto3.client("ssm", region_name="us-east-1", endpoint_url=endpoint,
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    ssm.put_parameter(Name=f"/htcpool/{pool}/condor_host", Value=condor_host, Type="String",
                      Overwrite=True)
    ssm.put_parameter(Name=f"/htcpool/{pool}/worker_token", Value=token, Type="SecureString",
                      Overwrite=True)


def test_first_boot_writes_token_and_pool_settings(tmp_path: Path, imds: str,
                                                   ssm_endpoint: str) -> None:
    token = make_token("htcpool")
    put(ssm_endpoint, "htcpool", "ip-198-18-0-4.ec2.internal", token)
    proc = run_script(tmp_path, imds, ssm_endpoint)
    assert proc.returncode == 0, proc.stderr
    token_file = tmp_path / "tokens.d" / "htcpool-pool"
    assert token_file.read_text().strip() == token
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    config = (tmp_path / "config.d" / "90-htcpool-pool.conf").read_text()
    assert "CONDOR_HOST = ip-198-18-0-4.ec2.internal\n" in config
    assert "TRUST_DOMAIN = htcpool\n" in config
    assert f'EC2InstanceId = "{INSTANCE_ID}"\n' in config
    assert 'HtcpoolPool = "htcpool"\n' in config
    assert f'EC2InstanceType = "{INSTANCE_TYPE}"\n' in config
    assert "STARTD_ATTRS = $(STARTD_ATTRS) HtcpoolPool EC2InstanceId EC2InstanceType\n" in config
    assert token not in proc.stdout + proc.stderr
    assert token.split(".")[2] not in config


def test_pool_comes_from_the_instance_tag(tmp_path: Path, imds: str, ssm_endpoint: str) -> None:
    FakeImds.tags = {"htcpool:pool": "blue"}
    try:
        put(ssm_endpoint, "blue", "cm.blue.internal", make_token("blue-domain"))
        proc = run_script(tmp_path, imds, ssm_endpoint, pool="htcpool")
    finally:
        FakeImds.tags = {}
    assert proc.returncode == 0, proc.stderr
    config = (tmp_path / "config.d" / "90-htcpool-pool.conf").read_text()
    assert "CONDOR_HOST = cm.blue.internal" in config
    assert "TRUST_DOMAIN = blue-domain" in config
    assert 'HtcpoolPool = "blue"' in config


def test_missing_parameters_fail_after_the_timeout_and_write_nothing(
        tmp_path: Path, imds: str, ssm_endpoint: str) -> None:
    proc = run_script(tmp_path, imds, ssm_endpoint, timeout="3", pool="absent")
    assert proc.returncode == 1
    assert "giving up" in proc.stderr and "/htcpool/absent/worker_token" in proc.stderr
    assert not (tmp_path / "config.d").exists() or not any((tmp_path / "config.d").iterdir())
    assert not (tmp_path / "tokens.d").exists() or not any((tmp_path / "tokens.d").iterdir())


def test_waits_for_the_parameters_to_appear(tmp_path: Path, imds: str, ssm_endpoint: str) -> None:
    timer = threading.Timer(2.0, put, args=(ssm_endpoint, "late", "cm.late", make_token("late")))
    timer.start()
    try:
        proc = run_script(tmp_path, imds, ssm_endpoint, timeout="30", pool="late")
    finally:
        timer.cancel()
    assert proc.returncode == 0, proc.stderr
    assert "retrying" in proc.stderr
