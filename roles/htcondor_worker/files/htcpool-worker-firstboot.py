#!/usr/bin/python3
"""htcpool worker first boot: join the pool named by this instance's tags.

Reads the instance id and type, region and `htcpool:pool` tag from IMDSv2, the
pool's CONDOR_HOST and worker token from SSM Parameter Store
(/htcpool/<pool>/condor_host, /htcpool/<pool>/worker_token), then writes the
token into the tokens directory and the pool settings (with the startd attributes
HtcpoolPool, EC2InstanceId and EC2InstanceType) into a config.d file.
condor.service requires this unit, so condor starts only once both are in place.

With --refresh (a daily timer), it fetches the token again and replaces the file if the
central manager re-issued it (the token has a lifetime): the daemons read the new one at
their next authentication, no restart needed.

Settings come from the environment (systemd EnvironmentFile):
  HTCPOOL_DEFAULT_POOL      pool when the instance has no htcpool:pool tag
  HTCPOOL_REGION            SSM region (default: the instance's region)
  HTCPOOL_SSM_ENDPOINT_URL  SSM endpoint (default: AWS_ENDPOINT_URL or AWS)
  HTCPOOL_TIMEOUT           seconds to keep retrying (default 300)
  HTCPOOL_CONFIG_FILE       config file to write
  HTCPOOL_TOKEN_FILE        token file to write
  AWS_EC2_METADATA_SERVICE_ENDPOINT  IMDS endpoint (default http://169.254.169.254)
The token is never printed or logged.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request

IMDS_DEFAULT = "http://169.254.169.254"


def log(message: str) -> None:
    print(f"htcpool-worker-firstboot: {message}", file=sys.stderr, flush=True)


class Imds:
    """Minimal IMDSv2 client (token, then GETs)."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._token: str | None = None

    def _token_header(self) -> dict[str, str]:
        if self._token is None:
            request = urllib.request.Request(
                f"{self.endpoint}/latest/api/token",
                method="PUT",
                headers={"X-aws-ec2-metadata-token-ttl-seconds": "21600"},
            )
            with urllib.request.urlopen(request, timeout=5) as response:
                self._token = response.read().decode()
        return {"X-aws-ec2-metadata-token": self._token}

    def get(self, path: str) -> str | None:
        request = urllib.request.Request(
            f"{self.endpoint}/latest/{path}", headers=self._token_header()
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.read().decode().strip()
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise


def token_issuer(token: str) -> str | None:
    """The `iss` claim of a JWT (the pool's trust domain), without verifying it."""
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("the worker token is not a JWT")
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    claims = json.loads(base64.urlsafe_b64decode(payload))
    issuer = claims.get("iss")
    return str(issuer) if issuer else None


def write_atomic(path: str, content: str, mode: int) -> None:
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".htcpool-")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def pool_config(condor_host: str, pool: str, instance_id: str, issuer: str | None,
                instance_type: str | None = None) -> str:
    lines = [
        "# Written by htcpool-worker-firstboot from IMDS and SSM Parameter Store.",
        f"CONDOR_HOST = {condor_host}",
    ]
    if issuer:
        lines.append(f"TRUST_DOMAIN = {issuer}")
    attrs = ["HtcpoolPool", "EC2InstanceId"]
    lines += [f'HtcpoolPool = "{pool}"', f'EC2InstanceId = "{instance_id}"']
    if instance_type:
        attrs.append("EC2InstanceType")
        lines.append(f'EC2InstanceType = "{instance_type}"')
    lines += ["STARTD_ATTRS = $(STARTD_ATTRS) " + " ".join(attrs), ""]
    return "\n".join(lines)


def refresh(env: dict[str, str], token_file: str) -> int:
    """Replace the token file if the published token changed; 0 if done or unchanged."""
    try:
        _config, token = fetch_once(env)
    except Exception as error:  # noqa: BLE001 - the next run of the timer tries again
        log(f"token refresh failed: {type(error).__name__}: {error}")
        return 1
    try:
        with open(token_file) as handle:
            current = handle.read()
    except OSError:
        current = ""
    if current == token:
        log("token unchanged")
        return 0
    write_atomic(token_file, token, 0o600)
    log(f"token renewed in {token_file}")
    return 0


def fetch_once(env: dict[str, str]) -> tuple[str, str]:
    import boto3  # imported here so --help works without boto3

    imds = Imds(env.get("AWS_EC2_METADATA_SERVICE_ENDPOINT") or IMDS_DEFAULT)
    instance_id = imds.get("meta-data/instance-id")
    if not instance_id:
        raise RuntimeError("IMDS returned no instance id")
    instance_type = imds.get("meta-data/instance-type")
    region = env.get("HTCPOOL_REGION") or imds.get("meta-data/placement/region")
    pool = imds.get("meta-data/tags/instance/htcpool:pool") or env.get(
        "HTCPOOL_DEFAULT_POOL", "htcpool"
    )
    endpoint = env.get("HTCPOOL_SSM_ENDPOINT_URL") or env.get("AWS_ENDPOINT_URL") or None
    ssm = boto3.client("ssm", region_name=region, endpoint_url=endpoint)
    prefix = f"/htcpool/{pool}"
    names = [f"{prefix}/condor_host", f"{prefix}/worker_token"]
    answer = ssm.get_parameters(Names=names, WithDecryption=True)
    values = {p["Name"]: p["Value"] for p in answer.get("Parameters", [])}
    missing = [name for name in names if not values.get(name)]
    if missing:
        raise RuntimeError(f"SSM parameters missing: {', '.join(missing)}")
    condor_host = values[names[0]].strip()
    token = values[names[1]].strip()
    issuer = token_issuer(token)
    return pool_config(condor_host, pool, instance_id, issuer, instance_type), token + "\n"


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0
    env = dict(os.environ)
    config_file = env.get("HTCPOOL_CONFIG_FILE", "/etc/condor/config.d/90-htcpool-pool.conf")
    token_file = env.get("HTCPOOL_TOKEN_FILE", "/etc/condor/tokens.d/htcpool-pool")
    if len(sys.argv) > 1 and sys.argv[1] == "--refresh":
        return refresh(env, token_file)
    deadline = time.monotonic() + float(env.get("HTCPOOL_TIMEOUT", "300"))
    delay = 1.0
    while True:
        try:
            config, token = fetch_once(env)
            break
        except Exception as error:  # noqa: BLE001 - retry anything until the deadline
            if time.monotonic() + delay > deadline:
                log(f"giving up: {type(error).__name__}: {error}")
                return 1
            log(f"not ready ({type(error).__name__}: {error}); retrying in {delay:.0f} s")
            time.sleep(delay)
            delay = min(delay * 2, 15.0)
    # Token first: the config file is the unit's "done" marker.
    write_atomic(token_file, token, 0o600)
    write_atomic(config_file, config, 0o644)
    log(f"joined pool settings written to {config_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
