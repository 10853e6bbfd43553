#!/usr/bin/env python3
"""parliament and cloudsplaining over the shipped IAM documents (iam/*.json).

Each document is analysed with its placeholders filled in as playbooks/aws_resources.yml
fills them; every finding must be justified in iam/lint-allowlist.yml (with its reason),
and every justification must still match a finding (none go stale).

- parliament (policy correctness, with its community auditors): findings as
  `ISSUE [Sid] actions`;
- cloudsplaining (privilege escalation, resource exposure, data exfiltration, credentials
  exposure, service wildcards): run so that it trusts neither conditions nor resource ARNs
  (it reports what an action could do anywhere; the scoping is the justification), plus
  its default run for infrastructure changes on unscoped, unconditioned resources.

    python scripts/iam_lint.py          report; exit 1 on an unjustified or stale entry
    python scripts/iam_lint.py --json   the findings as JSON (tests/ansible/test_iam_lint.py)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
IAM = REPO / "iam"
ALLOWLIST = IAM / "lint-allowlist.yml"
PLACEHOLDERS = {"${Pool}": "htcpool", "${Region}": "us-east-1", "${AccountId}": "123456789012",
                "${OperatorArn}": "arn:aws:iam::123456789012:user/htcpool-htcpool-operator"}
# Resource policies: analysed as the permissions they give on the one resource they are
# attached to (their "*" means that resource; a trust policy names none).
ATTACHED_TO = {
    "pool-key-policy.json": "arn:aws:kms:us-east-1:123456789012:key/"
                            "00000000-0000-0000-0000-000000000000",
    "instance-trust-policy.json": "arn:aws:iam::123456789012:role/htcpool-htcpool-instance",
}
STRICT_CATEGORIES = ("PrivilegeEscalation", "ResourceExposure", "DataExfiltration",
                     "CredentialsExposure", "ServiceWildcard")
ACTION = re.compile(r"\b[a-z0-9-]+:[A-Za-z0-9*]+\b")


@dataclass(frozen=True)
class Finding:
    file: str
    tool: str
    finding: str


def render(path: Path) -> str:
    text = path.read_text()
    for placeholder, value in PLACEHOLDERS.items():
        text = text.replace(placeholder, value)
    if path.name in ATTACHED_TO:
        document = json.loads(text)
        for statement in document["Statement"]:
            statement["Resource"] = ATTACHED_TO[path.name]
        text = json.dumps(document, indent=2) + "\n"
    return text


def _sid_at(text: str, line: int) -> str:
    """The Sid of the statement a 1-based line belongs to (documents are json.dump'ed with
    an indent of 2: each statement opens with a line `    {`)."""
    lines = text.splitlines()
    starts = [n for n, content in enumerate(lines, 1) if content == "    {" and n <= line]
    if not starts:
        return ""
    for content in lines[starts[-1]:]:
        m = re.match(r'\s*"Sid": "([^"]+)"', content)
        if m:
            return m.group(1)
        if content == "    {":
            break
    return ""


def _parliament(name: str, text: str) -> list[Finding]:
    from parliament import analyze_policy_string

    out = []
    for f in analyze_policy_string(text, include_community_auditors=True).findings:
        where = f.location if isinstance(f.location, dict) else {}
        mentioned = json.dumps(f.detail) + json.dumps(where.get("actions", ""))
        actions = sorted({a.lower() for a in ACTION.findall(mentioned)
                          if not a.lower().startswith(("arn:", "http"))})
        sid = _sid_at(text, int(where["line"])) if "line" in where else ""
        escalation = where.get("type") or (f.detail.get("type") if isinstance(f.detail, dict)
                                           else "")
        parts = [f.issue, f"[{sid}]" if sid else "", escalation or "", " ".join(actions)]
        out.append(Finding(name, "parliament", " ".join(p for p in parts if p)))
    return out


def _cloudsplaining(name: str, text: str) -> list[Finding]:
    from cloudsplaining.command.scan_policy_file import scan_policy

    out = []
    document = json.loads(text)
    strict = scan_policy(document, flag_conditional_statements=True,
                         flag_resource_arn_statements=True)
    default = scan_policy(document)
    for category in STRICT_CATEGORIES:
        for item in strict.get(category, {}).get("findings", []):
            label = item["type"] if isinstance(item, dict) else item
            out.append(Finding(name, "cloudsplaining", f"{category} {label}"))
    for item in default.get("InfrastructureModification", {}).get("findings", []):
        out.append(Finding(name, "cloudsplaining", f"InfrastructureModification {item}"))
    return out


def findings() -> list[Finding]:
    out: list[Finding] = []
    for path in sorted(IAM.glob("*.json")):
        text = render(path)
        out += _parliament(path.name, text) + _cloudsplaining(path.name, text)
    return out


def allowlist() -> list[dict[str, str]]:
    """One entry per accepted finding: file, tool, finding, reason."""
    groups: list[dict[str, Any]] = yaml.safe_load(ALLOWLIST.read_text()) or []
    return [{"file": g["file"], "tool": g["tool"], "finding": " ".join(str(f).split()),
             "reason": str(g.get("reason") or "").strip()}
            for g in groups for f in g["findings"]]


def check() -> tuple[list[Finding], list[dict[str, str]]]:
    """(findings not justified, justifications that match no finding or give no reason)."""
    entries = allowlist()
    found = findings()
    keys = {(e["file"], e["tool"], e["finding"]) for e in entries if e["reason"]}
    unjustified = [f for f in found if (f.file, f.tool, f.finding) not in keys]
    present = {(f.file, f.tool, f.finding) for f in found}
    stale = [e for e in entries
             if (e["file"], e["tool"], e["finding"]) not in present or not e["reason"]]
    return unjustified, stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="iam_lint")
    parser.add_argument("--json", action="store_true", help="print the findings as JSON")
    args = parser.parse_args(argv)
    if args.json:
        print(json.dumps([asdict(f) for f in findings()], indent=2))
        return 0
    unjustified, stale = check()
    for f in unjustified:
        print(f"{f.file}: {f.tool}: {f.finding}  (not justified in {ALLOWLIST.name})")
    for e in stale:
        print(f"{ALLOWLIST.name}: stale or without a reason: {e}")
    if unjustified or stale:
        return 1
    print(f"iam_lint: {len(findings())} findings, each justified in {ALLOWLIST.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
