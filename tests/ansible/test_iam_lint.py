"""Issue 17: parliament (policy correctness) and cloudsplaining (privilege escalation,
resource exposure, data exfiltration) over the shipped IAM documents find nothing that
iam/lint-allowlist.yml does not justify (scripts/iam_lint.py, also run by `make lint`)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from types import ModuleType

from tests.support.ansible import REPO

SCRIPT = REPO / "scripts" / "iam_lint.py"


def _lint() -> ModuleType:
    spec = importlib.util.spec_from_file_location("iam_lint", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["iam_lint"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_every_finding_is_justified_and_no_justification_is_stale() -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT)], cwd=REPO, capture_output=True,
                          text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_analysers_do_report_an_escalation() -> None:
    """The lint is not vacuous: a policy that lets its holder attach any policy to itself
    is reported by both tools."""
    lint = _lint()
    bad = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": ["iam:AttachUserPolicy", "iam:PutRolePolicy",
                                      "sts:AssumeRole", "ssm:GetParameter"],
        "Resource": "*"}]}, indent=2)
    found = [f.finding for f in lint._parliament("bad.json", bad)
             + lint._cloudsplaining("bad.json", bad)]
    assert any(f.startswith("PRIVILEGE_ESCALATION") for f in found), found
    assert any(f.startswith("PrivilegeEscalation AttachUserPolicy") for f in found), found
    assert "DataExfiltration ssm:GetParameter" in found, found
