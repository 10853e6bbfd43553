"""The attacks on the pool, tried on the sandbox (real daemons, real HTTP, IAM enforced).

    .venv/bin/python -m bench.security_attacks        # as root; about 15 min cold

Runs the attack tests (tests/e2e/test_security.py, tests/e2e/test_iam_enforcement.py) on
a test sandbox of their own and writes the "security" section of bench/RESULTS.md: each
attack, who tries it on what, what must happen, and what happened (the test's outcome).
The IAM analysers' findings (scripts/iam_lint.py) are counted beside them.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from bench.results import git_revision, machine, update_section

REPO = Path(__file__).resolve().parent.parent
SECTION, TITLE = "security", "Security: attacks tried on the sandbox"
FILES = ("tests/e2e/test_security.py", "tests/e2e/test_iam_enforcement.py")

# test name -> (attacker, target, attack, what must happen)
ATTACKS: dict[str, tuple[str, str, str, str]] = {
    "test_a_job_gets_no_credentials_no_token_parameter_and_no_token_file": (
        "a job (ordinary submitter)", "its worker",
        "IMDSv2 token and IMDSv1 credentials from 169.254.169.254; the token parameter "
        "with any credentials it finds; the token files on disk",
        "every step refused; the pool keeps running jobs"),
    "test_the_worker_token_cannot_drain_or_vacate_another_machine": (
        "root on worker A (the workers' token)", "worker B, the collector",
        "condor_drain, condor_vacate, condor_off on B; condor_reconfig of the collector",
        "each refused; B stays undrained and unclaimed"),
    "test_a_forged_idle_ad_for_a_busy_worker_gets_it_neither_drained_nor_removed": (
        "root on worker A (the workers' token)", "busy worker B",
        "advertises B as drained and idle, from A's address, every 5 s",
        "the autoscaler ignores the ad (address mismatch); B's job runs once, to the end"),
    "test_an_instance_tagged_into_the_pool_is_never_terminated": (
        "anyone who may tag", "an instance the pool did not launch",
        "adds the pool's worker tags",
        "the autoscaler reports it (foreign_instance) and never stops or terminates it"),
    "test_the_operator_cannot_tag_a_foreign_instance_into_the_pool": (
        "the operator (shipped policy)", "an instance the pool did not launch",
        "CreateTags with the pool's tags; TerminateInstances (htcpool --force)",
        "both denied by IAM"),
    "test_the_operator_cannot_attach_a_policy_to_a_pool_role_nor_pass_another_role": (
        "the operator (shipped policy)", "the pool's roles",
        "AttachRolePolicy, DeleteRolePermissionsBoundary; RunInstances with another "
        "role's profile", "all denied by IAM"),
    "test_worker_credentials_read_only_their_pools_parameters_with_their_pools_key": (
        "a worker's instance credentials", "another pool's parameters",
        "GetParameter(s) on another pool's names", "denied by IAM"),
    "test_only_the_workers_role_and_the_operator_decrypt_the_token": (
        "the central manager's instance credentials", "the workers' token parameter",
        "GetParameters with decryption", "denied (KMS key policy and IAM)"),
    "test_the_operators_cli_acts_on_the_pools_instances_and_no_others": (
        "the operator through htcpool", "the pool's workers and a foreign instance",
        "launch, reboot, terminate", "the pool's own instances only"),
}


def run_tests(junit: Path) -> float:
    env = dict(os.environ)
    env.setdefault("HTCPOOL_TEST_SANDBOX_INDEX", "2")
    env.setdefault("HTCPOOL_TEST_SANDBOX_DIR", str(Path(tempfile.gettempdir())
                                                   / "htcpool-bench-security"))
    env["PATH"] = f"{REPO / '.venv' / 'bin'}:{env.get('PATH', '')}"
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                    f"--junitxml={junit}", *FILES], cwd=REPO, env=env, check=False)
    return time.monotonic() - started


def outcomes(junit: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = case.get("name", "")
        if case.find("failure") is not None or case.find("error") is not None:
            out[name] = "**FAILED**"
        elif case.find("skipped") is not None:
            out[name] = "skipped"
        else:
            out[name] = "as required (passed)"
    return out


def lint_findings() -> str:
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "iam_lint.py")], cwd=REPO,
                          capture_output=True, text=True, check=False)
    return (done.stdout + done.stderr).strip().splitlines()[-1] if done.returncode == 0 \
        else f"FAILED: {(done.stdout + done.stderr).strip()[-300:]}"


def render(results: dict[str, str], seconds: float, lint: str) -> str:
    lines = ["Command: `.venv/bin/python -m bench.security_attacks` (as root; runs "
             f"{' and '.join(f'`{f}`' for f in FILES)} on a sandbox of its own). "
             f"Machine: {machine()}. Revision: {git_revision()}. "
             f"Wall time {seconds / 60:.1f} min including the pool build.", "",
             "| attacker | target | attack | must | outcome |", "|---|---|---|---|---|"]
    for test, (who, target, attack, must) in ATTACKS.items():
        lines.append(f"| {who} | {target} | {attack} | {must} | "
                     f"{results.get(test, 'not run')} |")
    unlisted = sorted(set(results) - set(ATTACKS))
    if unlisted:
        lines += ["", "Other tests of these files: " + ", ".join(
            f"`{t}` {results[t]}" for t in unlisted)]
    lines += ["", f"IAM analysers (parliament, cloudsplaining; `scripts/iam_lint.py`): {lint}.",
              "", "**Reading.** Each row is one test on real daemons and real HTTP, with IAM "
              "enforced by the sandbox for the caller's own credentials; the row says what "
              "the test requires, the last column whether it held at this revision. Not "
              "covered: the collector still accepts a startd ad from any holder of the "
              "workers' token for any name (one identity for all workers); the autoscaler, "
              "not the collector, refuses to act on an ad from the wrong address."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--no-record", action="store_true", help="do not write bench/RESULTS.md")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        seconds = run_tests(junit)
        if not junit.exists():
            print("security_attacks: pytest wrote no results", file=sys.stderr)
            return 1
        results = outcomes(junit)
    body = render(results, seconds, lint_findings())
    print(body)
    if not args.no_record:
        update_section(SECTION, TITLE, body)
    return 0 if all(v != "**FAILED**" for v in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
