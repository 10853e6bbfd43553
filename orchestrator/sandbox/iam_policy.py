"""The sandbox's IAM policy evaluator: identity policies, permissions boundaries and
resource policies (KMS key policies, role trust policies) against one request context.

Pure (no moto, no I/O), so the unit tests drive it with hand-made contexts. It follows AWS's
evaluation logic (an explicit Deny wins, then an Allow is needed; `*`/`?` wildcards;
case-insensitive actions and condition key names; `...IfExists`; `ForAllValues` /
`ForAnyValue`) and fails closed wherever it does not model something: a condition key the
request context does not model, an operator it does not know, a policy variable, or an
unknown resource. Such a statement is never an Allow, and always a Deny when its effect is
Deny (it might have matched on AWS).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from functools import lru_cache
from typing import Any

Document = Mapping[str, Any]

# Keys every request context models (present when they apply, absent otherwise).
GLOBAL_KEYS = frozenset({"aws:principalarn", "aws:principalaccount", "aws:requestedregion",
                         "aws:username", "aws:principaltype"})


@dataclass(frozen=True)
class RequestContext:
    """One authorization AWS would evaluate for a request: an action on a resource with
    the condition keys that request has. `resource` None: the sandbox does not know which
    resource AWS would name (then only unconditional `"Resource": "*"` Allows apply)."""

    action: str
    resource: str | None
    keys: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    modelled: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()

    @staticmethod
    def make(action: str, resource: str | None,
             keys: Mapping[str, Sequence[str]] | None = None,
             modelled: Iterable[str] = (), prefixes: Iterable[str] = ()) -> RequestContext:
        lowered = {k.lower(): tuple(v) for k, v in (keys or {}).items()}
        return RequestContext(action=action, resource=resource, keys=lowered,
                              modelled=frozenset(k.lower() for k in modelled) | GLOBAL_KEYS,
                              prefixes=tuple(p.lower() for p in prefixes))

    def with_keys(self, keys: Mapping[str, Sequence[str]]) -> RequestContext:
        """The same context with more keys (the caller's global keys, say)."""
        merged = dict(self.keys)
        merged.update({k.lower(): tuple(v) for k, v in keys.items()})
        return RequestContext(self.action, self.resource, merged,
                              self.modelled | frozenset(k.lower() for k in keys), self.prefixes)

    def models(self, key: str) -> bool:
        k = key.lower()
        return k in self.modelled or any(k.startswith(p) for p in self.prefixes)

    def values(self, key: str) -> tuple[str, ...] | None:
        return self.keys.get(key.lower())


@dataclass(frozen=True)
class Caller:
    """Who makes the request: `arn` as AWS reports it (a user, or an assumed-role
    session), `principal_arn` as aws:PrincipalArn gives it (the user, or the role)."""

    arn: str
    principal_arn: str
    account: str

    @property
    def root(self) -> str:
        return f"arn:aws:iam::{self.account}:root"

    def global_keys(self, region: str) -> dict[str, list[str]]:
        keys = {"aws:PrincipalArn": [self.principal_arn], "aws:PrincipalAccount": [self.account],
                "aws:RequestedRegion": [region],
                "aws:PrincipalType": ["AssumedRole" if ":assumed-role/" in self.arn else "User"]}
        if ":user/" in self.principal_arn:
            keys["aws:username"] = [self.principal_arn.rsplit("/", 1)[1]]
        return keys


class Unmodelled(Exception):
    """Something the sandbox does not evaluate: the statement fails closed."""


class PrincipalMatch(Enum):
    NONE = "none"
    DIRECT = "direct"      # the caller, its role or "*": the resource policy alone grants
    ACCOUNT = "account"    # the account root: the resource policy defers to IAM policies


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    denied_explicitly: bool = False


# --- matching ------------------------------------------------------------------------------

@lru_cache(maxsize=4096)
def _pattern(glob: str, ignore_case: bool) -> re.Pattern[str]:
    rx = "^" + re.escape(glob).replace(r"\*", ".*").replace(r"\?", ".") + "$"
    return re.compile(rx, re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def glob_match(glob: str, value: str, ignore_case: bool = False) -> bool:
    return _pattern(glob, ignore_case).match(value) is not None


def as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _resource_matches(patterns: list[Any], resource: str | None) -> bool:
    for pattern in patterns:
        text = str(pattern)
        if "${" in text:
            raise Unmodelled(f"policy variable in resource {text}")
        if resource is None:
            if text == "*":
                return True
            continue
        if glob_match(text, resource):
            return True
    if resource is None:
        # The resource is unknown: a statement naming resources might cover it.
        raise Unmodelled("the sandbox does not model this action's resource")
    return False


# --- conditions ----------------------------------------------------------------------------

def _string_equals(p: str, v: str) -> bool:
    return p == v


OPERATORS: dict[str, tuple[Any, bool]] = {
    "StringEquals": (_string_equals, False),
    "StringNotEquals": (_string_equals, True),
    "StringEqualsIgnoreCase": (lambda p, v: p.lower() == v.lower(), False),
    "StringNotEqualsIgnoreCase": (lambda p, v: p.lower() == v.lower(), True),
    "StringLike": (lambda p, v: glob_match(p, v), False),
    "StringNotLike": (lambda p, v: glob_match(p, v), True),
    "ArnEquals": (_string_equals, False),
    "ArnNotEquals": (_string_equals, True),
    "ArnLike": (lambda p, v: glob_match(p, v), False),
    "ArnNotLike": (lambda p, v: glob_match(p, v), True),
    "Bool": (lambda p, v: p.lower() == v.lower(), False),
}


def condition_holds(ctx: RequestContext, operator: str, key: str, wanted: Any) -> bool:
    """One key of one condition operator; raises Unmodelled to fail closed."""
    if not ctx.models(key):
        raise Unmodelled(f"condition key {key} is not modelled for {ctx.action}")
    qualifier, _, base = operator.rpartition(":")
    if_exists = base.endswith("IfExists")
    if if_exists:
        base = base[: -len("IfExists")]
    values = ctx.values(key)
    patterns = [str(p) for p in as_list(wanted)]
    if any("${" in p for p in patterns):
        raise Unmodelled(f"policy variable in condition {operator} {key}")
    if base == "Null" and not qualifier:
        absent = not values
        return absent == (patterns[0].lower() == "true")
    if base not in OPERATORS or qualifier not in ("", "ForAllValues", "ForAnyValue"):
        raise Unmodelled(f"condition operator {operator}")
    match, negated = OPERATORS[base]

    def one(value: str) -> bool:
        hit = any(match(p, value) for p in patterns)
        return not hit if negated else hit

    if qualifier == "ForAllValues":
        return all(one(v) for v in values or ())
    if qualifier == "ForAnyValue":
        return any(one(v) for v in values or ())
    if values is None:
        # AWS: an absent key matches nothing, so a negated operator holds.
        return if_exists or negated
    if len(values) != 1:
        raise Unmodelled(f"{operator} on the multivalued key {key}")
    return one(values[0])


def _conditions_hold(stmt: Mapping[str, Any], ctx: RequestContext) -> bool:
    for operator, block in (stmt.get("Condition") or {}).items():
        for key, wanted in block.items():
            if not condition_holds(ctx, operator, key, wanted):
                return False
    return True


# --- statements ----------------------------------------------------------------------------

def _action_matches(stmt: Mapping[str, Any], action: str) -> bool:
    if "Action" in stmt:
        return any(glob_match(str(a), action, ignore_case=True) for a in as_list(stmt["Action"]))
    if "NotAction" in stmt:
        return not any(glob_match(str(a), action, ignore_case=True)
                       for a in as_list(stmt["NotAction"]))
    raise Unmodelled("statement without Action or NotAction")


def _resource_applies(stmt: Mapping[str, Any], resource: str | None) -> bool:
    if "Resource" in stmt:
        return _resource_matches(as_list(stmt["Resource"]), resource)
    if "NotResource" in stmt:
        if resource is None:
            raise Unmodelled("NotResource with a resource the sandbox does not model")
        return not _resource_matches(as_list(stmt["NotResource"]), resource)
    raise Unmodelled("statement without Resource or NotResource")


def statement_applies(stmt: Mapping[str, Any], ctx: RequestContext) -> bool:
    """Action, resource and conditions of one statement (its Principal is checked apart)."""
    return _action_matches(stmt, ctx.action) and _resource_applies(stmt, ctx.resource) \
        and _conditions_hold(stmt, ctx)


def principal_match(stmt: Mapping[str, Any], caller: Caller) -> PrincipalMatch:
    """How a resource policy statement's Principal names the caller."""
    if "NotPrincipal" in stmt:
        raise Unmodelled("NotPrincipal")
    principal = stmt.get("Principal")
    if principal is None:
        raise Unmodelled("resource policy statement without Principal")
    if principal == "*":
        return PrincipalMatch.DIRECT
    if not isinstance(principal, Mapping):
        raise Unmodelled(f"Principal {principal!r}")
    best = PrincipalMatch.NONE
    for kind, names in principal.items():
        if kind != "AWS":
            continue  # Service, Federated, CanonicalUser: never an IAM user or role session
        for name in as_list(names):
            if name in ("*", caller.principal_arn, caller.arn):
                return PrincipalMatch.DIRECT
            if name in (caller.root, caller.account):
                best = PrincipalMatch.ACCOUNT
    return best


def _statements(doc: Document) -> list[Mapping[str, Any]]:
    return [s for s in as_list(doc.get("Statement", [])) if isinstance(s, Mapping)]


def _sid(stmt: Mapping[str, Any]) -> str:
    return str(stmt.get("Sid") or "(no Sid)")


# --- evaluation ----------------------------------------------------------------------------

def evaluate(documents: Iterable[Document], ctx: RequestContext) -> Decision:
    """Identity policies (or a permissions boundary): explicit Deny, then any Allow."""
    allowed = ""
    skipped = ""
    for doc in documents:
        for stmt in _statements(doc):
            effect = stmt.get("Effect")
            if "Principal" in stmt or "NotPrincipal" in stmt:
                if effect == "Deny":
                    return Decision(False, f"Deny {_sid(stmt)}: Principal in an identity "
                                           "policy (fail closed)", True)
                continue
            try:
                applies = statement_applies(stmt, ctx)
            except Unmodelled as why:
                if effect == "Deny":
                    return Decision(False, f"Deny {_sid(stmt)} might apply: {why} "
                                           "(fail closed)", True)
                skipped = skipped or f"; Allow {_sid(stmt)} not applied: {why} (fail closed)"
                continue
            if applies and effect == "Deny":
                return Decision(False, f"explicit Deny in {_sid(stmt)}", True)
            if applies and effect == "Allow":
                allowed = allowed or _sid(stmt)
    if allowed:
        return Decision(True, f"allowed by {allowed}")
    return Decision(False, f"no statement allows it (implicit deny){skipped}")


def evaluate_resource_policy(document: Document, ctx: RequestContext, caller: Caller
                             ) -> tuple[PrincipalMatch, Decision]:
    """A resource policy (KMS key policy, role trust policy) for one caller: the strongest
    way an applicable Allow names the caller, or an explicit Deny."""
    best = PrincipalMatch.NONE
    granted = ""
    for stmt in _statements(document):
        effect = stmt.get("Effect")
        try:
            who = principal_match(stmt, caller)
            applies = who is not PrincipalMatch.NONE and statement_applies(stmt, ctx)
        except Unmodelled as why:
            if effect == "Deny":
                return PrincipalMatch.NONE, Decision(
                    False, f"resource policy Deny {_sid(stmt)} might apply: {why}", True)
            continue
        if not applies:
            continue
        if effect == "Deny":
            return PrincipalMatch.NONE, Decision(
                False, f"explicit Deny in resource policy {_sid(stmt)}", True)
        if effect == "Allow" and (best is PrincipalMatch.NONE or who is PrincipalMatch.DIRECT):
            best, granted = who, _sid(stmt)
    if best is PrincipalMatch.NONE:
        return best, Decision(False, "the resource policy does not allow this principal")
    return best, Decision(True, f"resource policy {granted} ({best.value})")


def combine_with_resource_policy(identity: Decision, match: PrincipalMatch,
                                 resource: Decision) -> Decision:
    """Same-account access with a resource policy (KMS's rule): the resource policy must
    allow; naming the caller directly suffices, naming the account defers to the caller's
    IAM policies; an explicit Deny in either wins."""
    if identity.denied_explicitly:
        return identity
    if not resource.allowed:
        return Decision(False, resource.reason, resource.denied_explicitly)
    if match is PrincipalMatch.DIRECT:
        return Decision(True, resource.reason)
    if identity.allowed:
        return Decision(True, f"{identity.reason}; {resource.reason}")
    return Decision(False, f"{identity.reason}; the resource policy defers to IAM policies")


def parse(document: str | Document) -> Document:
    if isinstance(document, str):
        loaded: Document = json.loads(document)
        return loaded
    return document
