"""The sandbox's one HTTP front: AWS APIs (moto), the apt repository, instance metadata,
fault injection and a small control API, on 127.0.0.1 and on the bridge address.

Instance metadata identifies the caller by its source address (a host's private IP), as
the real IMDS does by the ENI a request arrives on; IMDSv2 tokens are enforced when the
instance's metadata options require them. Its role credentials are real STS sessions of the
instance profile's role (iam_principals), which the APIs then authorize (iam_enforce).
moto's own /moto-api/ (state dumps, resets) and the /_sandbox/ control API answer only
127.0.0.1, never the hosts (they reach this server through the bridge's address).
"""

from __future__ import annotations

import json
import logging
import random
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from orchestrator.sandbox import iam_enforce
from orchestrator.sandbox.emulator import TRANSITIONS, Emulator
from orchestrator.sandbox.iam_principals import Principals

log = logging.getLogger("htcpool.sandbox.http")

StartResponse = Callable[..., Any]
Environ = dict[str, Any]


def _respond(start: StartResponse, status: str, body: bytes | str,
             ctype: str = "text/plain") -> Iterable[bytes]:
    data = body.encode() if isinstance(body, str) else body
    start(status, [("Content-Type", ctype), ("Content-Length", str(len(data)))])
    return [data]


@dataclass
class FaultRule:
    """Fail matching API calls: `action` (e.g. RunInstances), optional parameter match.

    `after`: the call is carried out, then the client gets the error anyway (a reply lost
    on its way back). `delay_s`: the reply comes that much later (with an empty `code`, a
    slow call that then succeeds)."""

    action: str
    code: str
    message: str = "injected by the htcpool sandbox"
    status: int = 400
    match: dict[str, str] = field(default_factory=dict)
    remaining: int = 1  # -1: unlimited
    probability: float = 1.0
    after: bool = False
    delay_s: float = 0.0


@dataclass
class ApiLog:
    """Every API call seen, for the IAM-policy coverage test and the call-count benchmarks:
    (time, service, action, who: admin / operator:<pool> / role:<name> / unknown /
    anonymous, and why it was denied, "" when it was not)."""

    calls: list[tuple[float, str, str, str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, service: str, action: str, who: str = "", denied: str = "") -> None:
        with self.lock:
            self.calls.append((time.time(), service, action, who, denied))


class Front:
    def __init__(self, emu: Emulator, moto_app: Callable[..., Any], repo_dir: Path,
                 seed: int = 0, principals: Principals | None = None) -> None:
        self.emu = emu
        self.principals = principals
        self.moto_app = moto_app
        self.repo_dir = repo_dir.resolve()
        self.faults: list[FaultRule] = []
        self.rng = random.Random(seed)
        self.api_log = ApiLog()
        self.tokens: dict[str, tuple[str, float]] = {}  # token -> (instance id, expiry)

    # --- dispatch ----------------------------------------------------------------------
    def __call__(self, environ: Environ, start: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/apt/"):
            return self.apt(path[len("/apt/"):], start)
        if path.startswith("/latest/"):
            return self.imds(environ, path, start)
        if path.startswith("/_sandbox/"):
            return self.control(environ, path, start)
        if path.startswith("/moto-api") and environ.get("REMOTE_ADDR") != "127.0.0.1":
            return _respond(start, "403 Forbidden", "")
        return self.aws(environ, start)

    # --- AWS APIs ------------------------------------------------------------------------
    def aws(self, environ: Environ, start: StartResponse) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        import io

        environ["wsgi.input"] = io.BytesIO(body)
        service, action, params = _identify(environ, body)
        who = self._caller(environ)
        if who == "anonymous" and "X-Amz-Signature" not in environ.get("QUERY_STRING", ""):
            # AWS refuses an unsigned call before any service looks at it (moto would
            # guess a service and fail).
            self.api_log.add(service, action, who, "unsigned request")
            return _unsigned(start, environ)
        rule = self._fault_for(action, params)
        if rule is None:
            iam_enforce.take_denial()
            out = self.moto_app(environ, start)
            self.api_log.add(service, action, who, iam_enforce.take_denial())
            return out  # type: ignore[no-any-return]
        self.api_log.add(service, action, who)
        log.info("fault injected: %s -> %s%s", action, rule.code or f"delay {rule.delay_s}s",
                 " (after carrying it out)" if rule.after else "")
        if rule.after or not rule.code:
            reply: dict[str, Any] = {}

            def keep(status: str, headers: list[tuple[str, str]], *_: Any) -> Any:
                reply.update(status=status, headers=headers)
                return lambda _data: None

            body_out = b"".join(self.moto_app(environ, keep))
            time.sleep(rule.delay_s)
            if not rule.code:
                start(reply["status"], reply["headers"])
                return [body_out]
            return _aws_error(start, service, rule)
        time.sleep(rule.delay_s)
        return _aws_error(start, service, rule)

    def _caller(self, environ: Environ) -> str:
        auth = environ.get("HTTP_AUTHORIZATION", "")
        if "Credential=" not in auth:
            return "anonymous"
        key = auth.split("Credential=", 1)[1].split("/", 1)[0]
        return self.principals.label(key) if self.principals else "unknown"

    def _fault_for(self, action: str, params: dict[str, str]) -> FaultRule | None:
        for rule in self.faults:
            if rule.action not in (action, "*") or rule.remaining == 0:
                continue
            if any(not _param_matches(params, k, v) for k, v in rule.match.items()):
                continue
            if self.rng.random() >= rule.probability:
                continue
            if rule.remaining > 0:
                rule.remaining -= 1
            return rule
        return None

    # --- apt repository ------------------------------------------------------------------
    def apt(self, rel: str, start: StartResponse) -> Iterable[bytes]:
        target = (self.repo_dir / rel).resolve()
        if not str(target).startswith(str(self.repo_dir)) or not target.is_file():
            return _respond(start, "404 Not Found", "not found\n")
        return _respond(start, "200 OK", target.read_bytes(), "application/octet-stream")

    # --- instance metadata -----------------------------------------------------------------
    def imds(self, environ: Environ, path: str, start: StartResponse) -> Iterable[bytes]:
        inst = self.emu.instance_by_ip(environ.get("REMOTE_ADDR", ""))
        if inst is None:
            return _respond(start, "404 Not Found", "not an instance\n")
        method = environ.get("REQUEST_METHOD", "GET")
        if path == "/latest/api/token":
            if method != "PUT":
                return _respond(start, "405 Method Not Allowed", "")
            ttl = int(environ.get("HTTP_X_AWS_EC2_METADATA_TOKEN_TTL_SECONDS") or 0)
            if not 1 <= ttl <= 21600:
                return _respond(start, "400 Bad Request", "")
            new = secrets.token_urlsafe(32)
            self.tokens[new] = (inst.id, time.time() + ttl)
            return _respond(start, "200 OK", new)
        token: str | None = environ.get("HTTP_X_AWS_EC2_METADATA_TOKEN")
        valid = token is not None and token in self.tokens and self.tokens[token][0] == inst.id \
            and self.tokens[token][1] > time.time()
        options = inst.metadata_options
        if options.http_endpoint == "disabled":
            return _respond(start, "403 Forbidden", "")
        if (token is not None or options.http_tokens == "required") and not valid:
            return _respond(start, "401 Unauthorized", "")
        value = self._metadata(inst, path[len("/latest/"):].rstrip("/"))
        if value is None:
            return _respond(start, "404 Not Found", "")
        return _respond(start, "200 OK", value)

    def _metadata(self, inst: Any, key: str) -> str | None:
        region = self.emu.settings.region
        zone = inst._placement.zone
        profile = self.emu.ec2.iam_instance_profile_associations.get(inst.id)
        role = None
        if profile is not None and profile.iam_instance_profile.roles:
            role = profile.iam_instance_profile.roles[0].name
        tags = {t["key"]: t["value"] for t in inst.get_tags()}
        simple = {
            "meta-data/instance-id": inst.id,
            "meta-data/ami-id": inst.image_id,
            "meta-data/instance-type": inst.instance_type,
            "meta-data/local-ipv4": inst.private_ip,
            "meta-data/local-hostname": inst.private_dns_name,
            "meta-data/hostname": inst.private_dns_name,
            "meta-data/placement/availability-zone": zone,
            "meta-data/placement/region": region,
            "meta-data/mac": "02:00:00:00:00:00",
        }
        if key in simple:
            return str(simple[key])
        if key == "meta-data":
            return "\n".join(sorted({k.split("/")[1] for k in simple} | {"iam", "tags"}))
        if key == "dynamic/instance-identity/document":
            return json.dumps({
                "accountId": self.emu.ec2.account_id, "architecture": "x86_64",
                "availabilityZone": zone, "imageId": inst.image_id, "instanceId": inst.id,
                "instanceType": inst.instance_type, "privateIp": inst.private_ip,
                "region": region, "version": "2017-09-30"})
        if key.startswith("meta-data/tags/instance"):
            if inst.metadata_options.instance_metadata_tags != "enabled":
                return None
            name = key[len("meta-data/tags/instance"):].lstrip("/")
            return "\n".join(sorted(tags)) if not name else tags.get(name)
        if key == "meta-data/iam/security-credentials":
            return role
        if key.startswith("meta-data/iam/security-credentials/") and role is not None:
            if key.rsplit("/", 1)[1] != role or self.principals is None or profile is None:
                return None
            creds = self.principals.instance_credentials(
                inst.id, profile.iam_instance_profile.roles[0])
            return json.dumps(creds) if creds is not None else None
        return None

    # --- control API (localhost only) ----------------------------------------------------
    def control(self, environ: Environ, path: str, start: StartResponse) -> Iterable[bytes]:
        if environ.get("REMOTE_ADDR") != "127.0.0.1":
            return _respond(start, "403 Forbidden", "")
        method = environ.get("REQUEST_METHOD", "GET")
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = json.loads(environ["wsgi.input"].read(length) or b"{}") if length else {}
        if path == "/_sandbox/hosts":
            return _json(start, self.emu_hosts())
        if path == "/_sandbox/faults" and method == "POST":
            self.faults.append(FaultRule(**body))
            return _json(start, {"faults": len(self.faults)})
        if path == "/_sandbox/faults" and method == "DELETE":
            self.faults.clear()
            self.emu.hide_new_s = self.emu.ssm_delay_s = 0.0
            return _json(start, {"faults": 0})
        if path == "/_sandbox/behaviour" and method == "POST":
            for key in ("hide_new_s", "ssm_delay_s"):
                if key in body:
                    setattr(self.emu, key, max(0.0, float(body[key])))
            return _json(start, {"hide_new_s": self.emu.hide_new_s,
                                 "ssm_delay_s": self.emu.ssm_delay_s})
        if path == "/_sandbox/operator" and method == "POST" and self.principals:
            # An operator user for another pool (the shipped policy for that pool).
            return _json(start, self.principals.operator(str(body["pool"])))
        if path == "/_sandbox/api-log":
            with self.api_log.lock:
                return _json(start, [list(c) for c in self.api_log.calls])
        if path.startswith("/_sandbox/poweroff/") and method == "POST":
            inst = self.emu.ec2.get_instance(path.rsplit("/", 1)[1])
            self.emu.on_stop(inst, hard=True)
            return _json(start, {"instance": inst.id, "state": "stopping"})
        return _respond(start, "404 Not Found", "")

    def emu_hosts(self) -> list[dict[str, Any]]:
        out = []
        for inst in self.emu.instances():
            worker = self.emu.workers.get(inst.id)
            host = worker.host if worker else None
            out.append({
                "instance_id": inst.id, "state": inst.state, "address": inst.private_ip,
                "hostname": inst.private_dns_name, "image_id": inst.image_id,
                "tags": {t["key"]: t["value"] for t in inst.get_tags()},
                "nspawn_pid": host.proc.pid if host and host.running and host.proc else None,
                "disk": str(host.disk) if host else None,
                "transitions": TRANSITIONS.get(inst.id, []),
            })
        return out


def _json(start: StartResponse, data: Any) -> Iterable[bytes]:
    return _respond(start, "200 OK", json.dumps(data, default=str), "application/json")


def _identify(environ: Environ, body: bytes) -> tuple[str, str, dict[str, str]]:
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:  # JSON protocol (SSM): "AmazonSSM.SendCommand"
        service, _, action = target.partition(".")
        try:
            params = {k: json.dumps(v) if not isinstance(v, str) else v
                      for k, v in json.loads(body or b"{}").items()}
        except ValueError:
            params = {}
        return service, action, params
    form = {k: v[0] for k, v in parse_qs(body.decode(errors="replace")).items()}
    auth = environ.get("HTTP_AUTHORIZATION", "")
    service = auth.split("/")[3] if auth.count("/") >= 3 else "unknown"
    return service, form.get("Action", ""), form


def _unsigned(start: StartResponse, environ: Environ) -> Iterable[bytes]:
    message = "Request is missing Authentication Token"
    if environ.get("HTTP_X_AMZ_TARGET"):
        return _respond(start, "400 Bad Request", json.dumps(
            {"__type": "MissingAuthenticationTokenException", "message": message}),
            "application/x-amz-json-1.1")
    return _respond(start, "403 Forbidden",
                    "<ErrorResponse><Error><Type>Sender</Type><Code>MissingAuthenticationToken"
                    f"</Code><Message>{message}</Message></Error></ErrorResponse>", "text/xml")


def _param_matches(params: dict[str, str], key: str, value: str) -> bool:
    # EC2 query parameters may be flattened (LaunchTemplateConfigs.1.Overrides.1.InstanceType).
    return any((k == key or k.endswith("." + key)) and v == value for k, v in params.items())


def _aws_error(start: StartResponse, service: str, rule: FaultRule) -> Iterable[bytes]:
    status = f"{rule.status} Injected"
    if service == "ec2" or service == "unknown":
        body = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error>"
                f"<Code>{rule.code}</Code><Message>{rule.message}</Message></Error></Errors>"
                f"<RequestID>{secrets.token_hex(8)}</RequestID></Response>")
        return _respond(start, status, body, "text/xml")
    return _respond(start, status, json.dumps({"__type": rule.code, "message": rule.message}),
                    "application/x-amz-json-1.1")
