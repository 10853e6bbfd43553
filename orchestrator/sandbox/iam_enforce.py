"""IAM enforcement in the sandbox server: every AWS call is authenticated and authorized the
way AWS would, against the caller's real policies, before moto carries it out.

`install()` replaces moto's per-request hook (BaseResponse._authenticate_and_authorize_
normal_action, which every non-S3 service calls before its handler) in the sandbox server
process only. Per request:
1. authentication with moto's own IAMRequest: the SigV4 signature, an IAM user's access key
   or an STS session (token checked, and its expiry, which moto does not check);
2. the authorizations AWS would evaluate (iam_ec2, iam_services);
3. the caller's identity policies (and permissions boundary) with iam_policy's evaluator,
   plus the resource's policy where AWS reads one (KMS key policies, role trust policies).
Anything the sandbox does not model is denied (fail closed). Denials look like AWS's:
EC2 `UnauthorizedOperation` (HTTP 403, EC2's XML), JSON services `AccessDeniedException`,
IAM/STS `AccessDenied` (HTTP 403, query XML).
"""

from __future__ import annotations

import datetime
import json
import logging
import secrets
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlparse
from xml.sax.saxutils import escape

from werkzeug.exceptions import HTTPException

from orchestrator.sandbox import iam_services
from orchestrator.sandbox.iam_ec2 import Ec2Contexts
from orchestrator.sandbox.iam_policy import (
    Caller,
    Decision,
    Document,
    RequestContext,
    combine_with_resource_policy,
    evaluate,
    evaluate_resource_policy,
)
from orchestrator.sandbox.iam_services import Check, KeyNotFound

log = logging.getLogger("htcpool.sandbox.iam")

JSON_SERVICES = frozenset({"ssm", "dynamodb", "kms", "pricing"})
NO_PERMISSION_NEEDED = frozenset({"sts:GetCallerIdentity"})
_local = threading.local()
_installed = False


class AwsError(HTTPException):
    """An error response in the service's own wire format (moto passes HTTPExceptions
    raised by the authorization hook straight to the client)."""

    def __init__(self, service: str, code: str, message: str, status: int | None = None
                 ) -> None:
        super().__init__()
        request_id = secrets.token_hex(16)
        if service in JSON_SERVICES:
            self.code = status or 400
            self.description = json.dumps({"__type": code, "message": message})
        elif service == "ec2":
            self.code = status or 403
            self.description = (
                '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>'
                f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message></Error>"
                f"</Errors><RequestID>{request_id}</RequestID></Response>")
        else:
            self.code = status or 403
            self.description = (
                "<ErrorResponse><Error><Type>Sender</Type>"
                f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message></Error>"
                f"<RequestId>{request_id}</RequestId></ErrorResponse>")
        self.error_code = code


def denied(service: str, caller: str, ctx: RequestContext | None, why: str) -> AwsError:
    what = f"{ctx.action} on resource: {ctx.resource or '(not modelled)'}" if ctx else "this call"
    detail = f"User: {caller} is not authorized to perform: {what} because {why}"
    if service == "ec2":
        return AwsError(service, "UnauthorizedOperation",
                        f"You are not authorized to perform this operation. {detail}")
    if service in JSON_SERVICES:
        return AwsError(service, "AccessDeniedException", detail)
    return AwsError(service, "AccessDenied", detail)


def take_denial() -> str:
    """The reason the last call on this thread was denied ("" if it was not)."""
    reason: str = getattr(_local, "denied", "")
    _local.denied = ""
    return reason


def _service_of(resp: Any) -> str:
    """moto.<service>.responses, or what a response of the sandbox's own names
    (sandbox/pricing.py)."""
    return str(getattr(resp, "iam_service", "") or type(resp).__module__.split(".")[1])


# --- principals ----------------------------------------------------------------------------

def _documents(policies: Iterable[Any]) -> list[Document]:
    """moto's collect_policies: inline documents (str or dict records) and managed policies."""
    from moto.iam.models import Policy

    out: list[Document] = []
    for p in policies:
        if isinstance(p, Policy):
            doc: Any = next(v.document for v in p.versions if v.is_default)
        elif isinstance(p, dict):
            doc = p.get("policy_document", p)
        else:
            doc = p
        out.append(json.loads(doc) if isinstance(doc, str) else doc)
    return out


def _boundary(iam: Any, arn: str | None) -> list[Document] | None:
    if not arn:
        return None
    return _documents([iam.get_policy(arn)])


def _session_expired(key: Any, account: str) -> bool:
    from moto.sts.models import sts_backends

    for role in sts_backends[account]["aws"].assumed_roles:
        if role.access_key_id == key._access_key_id:
            expiry = role.expiration
            if expiry.tzinfo is None:
                expiry = expiry.replace(tzinfo=datetime.UTC)
            return bool(expiry <= datetime.datetime.now(datetime.UTC))
    return True


def _authentication_error(service: str, moto_code: str) -> AwsError:
    """An unknown key or a wrong signature, as each service reports it."""
    bad_signature = moto_code == "SignatureDoesNotMatch"
    if service == "ec2":
        return AwsError(service, "AuthFailure",
                        "AWS was not able to validate the provided access credentials", 401)
    if service in JSON_SERVICES:
        code = "InvalidSignatureException" if bad_signature else "UnrecognizedClientException"
        return AwsError(service, code, "The security token included in the request is invalid.")
    return AwsError(service, "SignatureDoesNotMatch" if bad_signature else
                    "InvalidClientTokenId",
                    "The security token included in the request is invalid.", 403)


def _authenticate(resp: Any, service: str) -> tuple[Caller, list[Document],
                                                   list[Document] | None]:
    from moto.iam.access_control import AssumedRoleAccessKey, IAMRequest
    from moto.iam.models import iam_backends

    if "Authorization" not in resp.headers:
        raise AwsError(service, "MissingAuthenticationToken",
                       "Request is missing Authentication Token", 403)
    uri = urlparse(resp.uri)
    path = resp.raw_path + (f"?{uri.query}" if uri.query else "")
    try:
        request = IAMRequest(account_id=resp.current_account, method=resp.method, path=path,
                             data=resp.data, body=resp.raw_body, headers=resp.headers,
                             action=resp._get_action())
        request.check_signature()
    except HTTPException as exc:  # moto's errors are IAM's; each service words its own
        raise _authentication_error(service, getattr(exc, "error_type", "")) from exc
    key = request._access_key
    account = str(resp.current_account)
    iam = iam_backends[account]["aws"]
    if isinstance(key, AssumedRoleAccessKey):
        if _session_expired(key, account):
            code = {"ec2": "RequestExpired"}.get(service, "ExpiredTokenException"
                                                  if service in JSON_SERVICES else "ExpiredToken")
            raise AwsError(service, code, "The security token included in the request is "
                                          "expired", 400 if service == "ec2" else 403)
        try:
            role = iam.get_role(key._owner_role_name)
        except Exception as exc:
            raise AwsError(service, "InvalidClientTokenId",
                           "The security token included in the request is invalid", 403) from exc
        caller = Caller(arn=key.arn, principal_arn=role.arn, account=account)
        return caller, _documents(key.collect_policies()), _boundary(
            iam, getattr(role, "permissions_boundary_arn", None))
    user = iam.get_user(key._owner_user_name)
    caller = Caller(arn=key.arn, principal_arn=key.arn, account=account)
    return caller, _documents(key.collect_policies()), _boundary(
        iam, getattr(user, "permissions_boundary_arn", None))


# --- checks --------------------------------------------------------------------------------

def _checks(resp: Any, service: str, action: str) -> list[Check]:
    from moto.iam.models import iam_backends

    region, account = str(resp.region), str(resp.current_account)
    iam = iam_backends[account]["aws"]
    if service == "ec2":
        from moto.ec2.models import ec2_backends

        contexts = Ec2Contexts(ec2_backends[account][region], iam, region, account)
        return [Check(c) for c in contexts.contexts(action, resp.querystring)]
    if service == "pricing":
        return iam_services.pricing_checks(action)
    if service in JSON_SERVICES:
        body = resp.body if isinstance(resp.body, dict) else json.loads(resp.body or "{}")
        if service == "ssm":
            from moto.ec2.models import ec2_backends

            contexts = Ec2Contexts(ec2_backends[account][region], iam, region, account)
            return iam_services.ssm_checks(action, body, region, account,
                                           contexts.instance_for_ssm)
        if service == "kms":
            from moto.kms.models import kms_backends

            return iam_services.kms_checks(action, body, kms_backends[account][region],
                                           region, account)
        return iam_services.dynamodb_checks(action, body, region, account)
    if service == "iam":
        return iam_services.iam_checks(action, resp.querystring, iam, account)
    if service == "sts":
        return iam_services.sts_checks(action, resp.querystring, iam)
    return [Check(RequestContext.make(f"{service}:{action}", None))]


def _secure_string_checks(resp: Any, action: str) -> list[Check]:
    """SSM's KMS calls on the caller's behalf for SecureString parameters."""
    from moto.kms.models import kms_backends
    from moto.ssm.models import ssm_backends

    region, account = str(resp.region), str(resp.current_account)
    body = json.loads(resp.body or "{}")
    kms = kms_backends[account][region]
    ssm = ssm_backends[account][region]
    out: list[Check] = []
    if action == "PutParameter" and body.get("Type") == "SecureString":
        name = str(body.get("Name") or "")
        key_id = str(body.get("KeyId") or "alias/aws/ssm")
        try:
            key = iam_services.find_key(kms, key_id)
        except KeyNotFound as exc:
            raise AwsError("ssm", "InvalidKeyId", f"Invalid KeyId {key_id}") from exc
        arn = iam_services.parameter_arn(name, region, account)
        out.append(iam_services.kms_via_ssm("Encrypt", key, arn, region, account))
    elif action in ("GetParameter", "GetParameters", "GetParametersByPath") \
            and body.get("WithDecryption"):
        if action == "GetParametersByPath":
            path = str(body.get("Path") or "/")
            found = [ssm._parameters[n][-1] for n in ssm._parameters.get_keys_beginning_with(
                path, bool(body.get("Recursive")))]
        else:
            found = []
            for name in body.get("Names") or [body.get("Name")]:
                try:  # a missing parameter is SSM's own answer, after authorization
                    param = ssm.get_parameter(str(name).split(":")[0])
                except Exception:
                    continue
                if param is not None:
                    found.append(param)
        for param in found:
            if param.parameter_type != "SecureString":
                continue
            try:
                key = iam_services.find_key(kms, param.keyid or "alias/aws/ssm")
            except KeyNotFound:
                out.append(Check(RequestContext.make("kms:Decrypt", None)))
                continue
            arn = iam_services.parameter_arn(param.name, region, account)
            out.append(iam_services.kms_via_ssm("Decrypt", key, arn, region, account))
    return out


def decide(check: Check, caller: Caller, documents: list[Document],
           boundary: list[Document] | None, region: str) -> Decision:
    ctx = check.ctx.with_keys(caller.global_keys(region))
    identity = evaluate(documents, ctx)
    if boundary is not None and identity.allowed:
        limit = evaluate(boundary, ctx)
        if not limit.allowed:
            identity = Decision(False, f"the permissions boundary: {limit.reason}",
                                limit.denied_explicitly)
    if check.resource_policy is None:
        return identity
    match, resource = evaluate_resource_policy(check.resource_policy, ctx, caller)
    return combine_with_resource_policy(identity, match, resource)


def authorize(resp: Any) -> None:
    service = _service_of(resp)
    action = str(resp._get_action())
    caller, documents, boundary = _authenticate(resp, service)
    if f"{service}:{action}" in NO_PERMISSION_NEEDED:
        return
    checks = _checks(resp, service, action)
    if service == "ssm":
        checks += _secure_string_checks(resp, action)
    for check in checks:
        decision = decide(check, caller, documents, boundary, str(resp.region))
        if not decision.allowed:
            _local.denied = f"{check.ctx.action}: {decision.reason}"
            log.info("denied %s:%s to %s: %s on %s: %s", service, action, caller.arn,
                     check.ctx.action, check.ctx.resource, decision.reason)
            raise denied(service, caller.arn, check.ctx, decision.reason)


def install() -> None:
    """Enforce IAM in this process (the sandbox server's): once, before it serves."""
    global _installed
    if _installed:
        return
    _installed = True
    from moto.core.responses import BaseResponse

    def hook(self: Any, resource: str = "*") -> None:
        try:
            authorize(self)
        except HTTPException:
            if not getattr(_local, "denied", ""):
                _local.denied = "authentication failed"
            raise
        except Exception as exc:  # a model gap must deny, never let the call through
            log.exception("authorization failed on %s", type(self).__name__)
            _local.denied = f"sandbox error: {exc}"
            raise AwsError(_service_of(self), "AccessDenied" if _service_of(self) not in
                           JSON_SERVICES else "AccessDeniedException",
                           f"the sandbox could not authorize this call: {exc}") from exc

    BaseResponse._authenticate_and_authorize_normal_action = hook  # type: ignore[method-assign]
