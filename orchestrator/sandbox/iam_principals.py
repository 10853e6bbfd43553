"""Who calls the sandbox's AWS APIs, each with credentials of its own:

- admin: an IAM user with every right, for the sandbox itself and the test harness's own
  set-up (a "foreign" instance, say); its keys are only in the state file;
- operator: an IAM user per pool, `htcpool-<pool>-operator`, with iam/operator-policy.json
  and iam/operator-roles-and-key-policy.json attached as customer managed policies
  (placeholders substituted as playbooks/aws_resources.yml does): the htcpool CLI,
  ansible-playbook, molecule and `make demo` run as it, as a real user would; like the
  administrator who set it up, the sandbox also creates the pool's role boundary
  (iam/role-boundary-policy.json) the operator cannot change;
- instances: their instance profile's role, as STS sessions the instance metadata service
  hands out (expiring, replaced before they expire, as EC2 does); no profile, no
  credentials.
"""

from __future__ import annotations

import datetime
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
IAM_DIR = REPO_ROOT / "iam"
ADMIN_USER = "htcpool-sandbox-admin"
OPERATOR_POLICIES = {"operator-policy.json": "", "operator-roles-and-key-policy.json": "-roles"}
ADMIN_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Sid": "SandboxAdministrator", "Effect": "Allow", "Action": "*", "Resource": "*"}]}
# EC2's instance credentials: valid for hours, a new set well before the old one expires.
SESSION_S = 6 * 3600
ROTATE_AFTER_S = 3600
# The key policy AWS gives its managed key for SSM (alias/aws/ssm): every principal of the
# account may use it, through SSM only.
AWS_SSM_KEY_POLICY_STATEMENTS = [
    {"Sid": "Allow access through SSM for all principals in the account that are authorized "
            "to use SSM", "Effect": "Allow", "Principal": {"AWS": "*"},
     "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*",
                "kms:CreateGrant", "kms:DescribeKey"], "Resource": "*",
     "Condition": {"StringEquals": {"kms:ViaService": "ssm.{region}.amazonaws.com",
                                    "kms:CallerAccount": "{account}"}}},
    {"Sid": "Allow direct access to key metadata to the account", "Effect": "Allow",
     "Principal": {"AWS": "arn:aws:iam::{account}:root"},
     "Action": ["kms:Describe*", "kms:Get*", "kms:List*", "kms:RevokeGrant"],
     "Resource": "*"}]


def render(name: str, pool: str, region: str, account: str) -> str:
    """An iam/ document with its placeholders filled in (as aws_resources.yml does)."""
    text = (IAM_DIR / name).read_text()
    return text.replace("${Pool}", pool).replace("${Region}", region) \
        .replace("${AccountId}", account)


def operator_user(pool: str) -> str:
    return f"htcpool-{pool}-operator"


def _trusts_ec2(role: Any) -> bool:
    try:
        trust = json.loads(role.assume_role_policy_document)
    except (TypeError, ValueError):
        return False
    for stmt in trust.get("Statement", []):
        services = (stmt.get("Principal") or {}).get("Service", []) \
            if isinstance(stmt.get("Principal"), dict) else []
        actions = stmt.get("Action", [])
        services = services if isinstance(services, list) else [services]
        actions = actions if isinstance(actions, list) else [actions]
        if stmt.get("Effect") == "Allow" and "ec2.amazonaws.com" in services \
                and "sts:AssumeRole" in actions:
            return True
    return False


@dataclass
class Principals:
    """The sandbox's IAM users and the instances' role sessions (one per server)."""

    account: str
    region: str
    labels: dict[str, str] = field(default_factory=dict)    # access key id -> who
    operators: dict[str, dict[str, str]] = field(default_factory=dict)  # pool -> keys
    sessions: dict[str, tuple[str, Any, float]] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def iam(self) -> Any:
        from moto.iam.models import iam_backends

        return iam_backends[self.account]["aws"]

    def _user(self, name: str, label: str, inline: str | None = None,
              managed: dict[str, str] | None = None) -> dict[str, str]:
        """An IAM user with an inline policy and customer managed policies (name ->
        document) attached, and a new access key."""
        iam = self.iam
        try:
            iam.get_user(name)
        except Exception:
            iam.create_user(region_name=self.region, user_name=name, path="/", tags=[])
        if inline is not None:
            iam.put_user_policy(name, name, inline)
        for policy, document in (managed or {}).items():
            arn = self.managed_policy(policy, document)
            iam.attach_user_policy(arn, name)
        key = iam.create_access_key(name)
        self.labels[key.access_key_id] = label
        return {"aws_access_key_id": key.access_key_id,
                "aws_secret_access_key": key.secret_access_key}

    def managed_policy(self, name: str, document: str) -> str:
        """A customer managed policy, made once."""
        arn = f"arn:aws:iam::{self.account}:policy/{name}"
        try:
            self.iam.get_policy(arn)
        except Exception:
            self.iam.create_policy(description=f"htcpool ({name})", path="/",
                                   policy_document=document, policy_name=name, tags=[])
        return arn

    def admin(self) -> dict[str, str]:
        with self.lock:
            return self._user(ADMIN_USER, "admin", inline=json.dumps(ADMIN_POLICY))

    def operator(self, pool: str) -> dict[str, str]:
        """The pool's operator user with the shipped policy (its keys made once)."""
        with self.lock:
            if pool not in self.operators:
                # Customer managed policies, as an administrator would attach them (an inline
                # user policy is limited to 2,048 characters on AWS).
                self.managed_policy(f"htcpool-{pool}-role-boundary", render(
                    "role-boundary-policy.json", pool, self.region, self.account))
                user = operator_user(pool)
                managed = {f"{user}{suffix}": render(name, pool, self.region, self.account)
                           for name, suffix in OPERATOR_POLICIES.items()}
                self.operators[pool] = self._user(user, f"operator:{pool}", managed=managed)
            return dict(self.operators[pool])

    def aws_managed_ssm_key(self) -> None:
        """alias/aws/ssm with AWS's key policy (moto would make a customer key for it)."""
        from moto.kms.models import kms_backends

        kms: Any = kms_backends[self.account][self.region]
        key = kms.keys[kms.get_key_id_from_alias("alias/aws/ssm")]
        text = json.dumps({"Version": "2012-10-17", "Statement": AWS_SSM_KEY_POLICY_STATEMENTS})
        key.policy = text.replace("{region}", self.region).replace("{account}", self.account)
        key.key_manager = "AWS"

    # --- instance role sessions ---------------------------------------------------------
    def instance_credentials(self, instance_id: str, role: Any) -> dict[str, str] | None:
        """What IMDS serves for the instance's role: an STS session of that role, renewed
        an hour after it was made (it stays valid for SESSION_S)."""
        if not _trusts_ec2(role):
            return None
        from moto.sts.models import sts_backends

        now = datetime.datetime.now(datetime.UTC)
        with self.lock:
            cached = self.sessions.get(instance_id)
            if cached is None or cached[0] != role.arn \
                    or now.timestamp() - cached[2] > ROTATE_AFTER_S:
                sts: Any = sts_backends[self.account]["aws"]
                session = sts.assume_role(
                    region_name=self.region, role_session_name=instance_id,
                    role_arn=role.arn, policy=None, duration=SESSION_S, external_id=None)
                cached = (role.arn, session, now.timestamp())
                self.sessions[instance_id] = cached
        session = cached[1]
        expiry = session.expiration if session.expiration.tzinfo else \
            session.expiration.replace(tzinfo=datetime.UTC)
        made = datetime.datetime.fromtimestamp(cached[2], datetime.UTC)
        return {"Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": session.access_key_id,
                "SecretAccessKey": session.secret_access_key, "Token": session.session_token,
                "Expiration": expiry.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "LastUpdated": made.strftime("%Y-%m-%dT%H:%M:%SZ")}

    def label(self, access_key_id: str) -> str:
        """Who an access key belongs to, for the API log: admin, operator:<pool>,
        role:<role name>, or unknown."""
        if access_key_id in self.labels:
            return self.labels[access_key_id]
        from moto.sts.models import sts_backends

        for session in reversed(sts_backends[self.account]["aws"].assumed_roles):
            if session.access_key_id == access_key_id:
                return f"role:{session.role_arn.rsplit('/', 1)[1]}"
        return "unknown"
