"""Issue 7: property-based bad input for the CLI, its configuration and its environment.

Each case (random instance ids, garbage ids, flags, counts, AMI ids, pool names, regions;
random TOML with unknown keys, wrong types and bad values, or bytes that are not TOML; a
missing region or missing credentials) must end in a correct result or in ONE line
`htcpool: error: ...` with a documented non-zero exit status, never a traceback, and must
not change any instance of the moto server (state and tags compared around every case).

Hypothesis is derandomized (a fixed seed per test) and bounded, so the file takes well under
two minutes; bench/bad_input_bench.py runs the same strategies with more examples and
records the figures in bench/RESULTS.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.errors import ExitStatus
from tests.support.bad_input import (
    Case,
    Outcome,
    Tally,
    World,
    check_case,
    cli_cases,
    config_cases,
    env_cases,
    prepare,
    snapshot,
    verdict,
)

REPO = Path(__file__).resolve().parents[2]
HTCPOOL = REPO / ".venv" / "bin" / "htcpool"

# bench/bad_input_bench.py runs this file with more examples and collects the tallies
EXAMPLES = int(os.environ.get("HTCPOOL_BAD_INPUT_EXAMPLES", "50"))
STATS_FILE = os.environ.get("HTCPOOL_BAD_INPUT_STATS", "")

BOUNDED = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                   suppress_health_check=[HealthCheck.function_scoped_fixture,
                                          HealthCheck.too_slow, HealthCheck.data_too_large])


def world_of(aws: Any) -> World:
    return World(endpoint=aws.endpoint, pool="testpool",
                 ids=[aws.cm, *aws.workers, aws.other_pool, aws.untagged],
                 amis=[*aws.images.values(), aws.base_ami], subnet=aws.subnet)


def _run_property(aws: Any, tmp_path: Path, strategy: Any, name: str) -> None:
    world = world_of(aws)
    start = snapshot(aws.ec2)
    tally = Tally()

    @BOUNDED
    @given(st.data())
    def prop(data: Any) -> None:
        case = data.draw(strategy(world))
        problem = check_case(case, world, aws.ec2, tmp_path, tally)
        if not STATS_FILE:  # the bench counts every failure instead of stopping at one
            assert problem is None, problem

    prop()
    if STATS_FILE:
        with open(STATS_FILE, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"property": name, "tried": tally.tried,
                                 "failures": [[k, a, p] for k, a, p in tally.failures],
                                 "by_code": tally.by_code}) + "\n")
    assert not tally.failures, tally.failures[:3]
    assert snapshot(aws.ec2) == start


def test_cli_arguments(aws: Any, tmp_path: Path) -> None:
    """instances start/stop/reboot/terminate/create, images list, zones, pool status, queue,
    scale --dry-run, with random ids, flags, counts, AMIs, pools and regions."""
    _run_property(aws, tmp_path, cli_cases, "cli")


def test_config_files(aws: Any, tmp_path: Path) -> None:
    """Random TOML (unknown keys, wrong types, bad values) and bytes that are not TOML, found
    through --config, HTCPOOL_CONFIG, ./htcpool.toml or a missing path."""
    _run_property(aws, tmp_path, config_cases, "config")


def test_environment(aws: Any, tmp_path: Path) -> None:
    """Missing or bad region, missing or half credentials, missing profiles."""
    _run_property(aws, tmp_path, env_cases, "env")


# --- specific cases found by (or written alongside) the properties ------------------------

def _one(aws: Any, tmp_path: Path, case: Case) -> None:
    problem = check_case(case, world_of(aws), aws.ec2, tmp_path)
    assert problem is None, problem


@pytest.mark.parametrize("argv", [
    ["instances", "start", "i-0\n123"],                    # a newline inside an id
    ["instances", "stop", "i-\x1b[31mred"],                # a terminal escape inside an id
    ["instances", "start", "--bogus", "i-123"],            # click usage errors are one line too
    ["instances", "create", "--count", "0"],
    ["nosuchcommand"],
    ["instances", "reboot"],                                # missing argument
    ["--region", "moon-1\n", "zones"],
    ["--pool", "bad pool", "zones"],
])
def test_known_bad_arguments(aws: Any, tmp_path: Path, argv: list[str]) -> None:
    _one(aws, tmp_path, Case("cli", argv))


@pytest.mark.parametrize("body", [b"\xff\xfe\x00p", b"pool = \"\xe9\"\n", b"pool = ", b"[aws"])
def test_config_not_utf8_or_not_toml(aws: Any, tmp_path: Path, body: bytes) -> None:
    _one(aws, tmp_path, Case("config", ["zones"], config_bytes=body))


def test_no_region_anywhere(aws: Any, tmp_path: Path) -> None:
    case = Case("env", ["zones"], env={"HTCPOOL_REGION": None, "AWS_REGION": None,
                                       "AWS_DEFAULT_REGION": None})
    from tests.support.bad_input import run_in_process

    argv, env = prepare(case, tmp_path)
    outcome = run_in_process(argv, env)
    assert verdict(outcome) is None, outcome
    assert outcome.code == ExitStatus.ERROR and "region" in outcome.err


def test_no_credentials_anywhere(aws: Any, tmp_path: Path) -> None:
    from tests.support.bad_input import run_in_process

    case = Case("env", ["instances", "list"],
                env={"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None})
    argv, env = prepare(case, tmp_path)
    outcome = run_in_process(argv, env)
    assert verdict(outcome) is None, outcome
    assert "credentials" in outcome.err


# --- the real entry point behaves the same -------------------------------------------------

SUBPROCESS_CASES = [
    Case("cli", ["instances", "start", "i-0\n123"]),
    Case("cli", ["instances", "stop", "--bogus", "i-123"]),
    Case("cli", ["--pool", "bad pool", "zones"]),
    Case("cli", ["instances", "create", "--ami", "ami-00000000000000000", "--no-wait"]),
    Case("config", ["zones"], config_bytes=b"[aws]\nretry_mode = \"eager\"\n"),
    Case("config", ["images", "list"], config_bytes=b"\x00\xff garbage"),
    Case("env", ["zones"], env={"HTCPOOL_REGION": None, "AWS_REGION": None,
                                "AWS_DEFAULT_REGION": None}),
    Case("env", ["instances", "list"], env={"AWS_ACCESS_KEY_ID": None,
                                            "AWS_SECRET_ACCESS_KEY": None}),
]


@pytest.mark.parametrize("index", range(len(SUBPROCESS_CASES)))
def test_entry_point_matches_in_process(aws: Any, tmp_path: Path, index: int) -> None:
    """`htcpool` as a process gives the same exit status and error line as main() in-process
    (credentials reach it through the environment only)."""
    from tests.support.bad_input import run_in_process

    case = SUBPROCESS_CASES[index]
    before = snapshot(aws.ec2)
    argv, changes = prepare(case, tmp_path)
    inproc = run_in_process(argv, changes)
    env = dict(os.environ)
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    exe = [str(HTCPOOL)] if HTCPOOL.exists() else [sys.executable, "-m", "orchestrator.cli"]
    done = subprocess.run([*exe, *argv], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120, stdin=subprocess.DEVNULL, check=False)
    real = Outcome(done.returncode, done.stdout, done.stderr)
    assert verdict(real) is None, real
    assert real.code == inproc.code != 0
    assert real.err.strip() == inproc.err.strip()
    assert snapshot(aws.ec2) == before


# --- the fixes these properties led to, pinned -----------------------------------------------

def _run(tmp_path: Path, case: Case) -> Outcome:
    from tests.support.bad_input import run_in_process

    argv, env = prepare(case, tmp_path)
    outcome = run_in_process(argv, env, case.stdin)
    assert verdict(outcome, argv) is None, outcome
    return outcome


def test_control_characters_in_an_id_are_escaped(aws: Any, tmp_path: Path) -> None:
    out = _run(tmp_path, Case("cli", ["instances", "start", "i-0\n1\x1b[31m"]))
    assert out.code == ExitStatus.NOT_FOUND and "is not an instance id" in out.err
    assert "i-0\\n1\\x1b[31m" in out.err and "\x1b" not in out.err


def test_usage_errors_are_one_line_with_a_hint(aws: Any, tmp_path: Path) -> None:
    out = _run(tmp_path, Case("cli", ["instances", "stop", "--bogus", "i-1"]))
    assert out.code == ExitStatus.USAGE
    assert out.err.startswith("htcpool: error: No such option") and \
        "(try 'htcpool instances stop --help')" in out.err


def test_terminate_without_an_answer_is_refused_after_checking_ids(aws: Any,
                                                                  tmp_path: Path) -> None:
    out = _run(tmp_path, Case("cli", ["instances", "terminate", "i-00000000000000000"]))
    assert out.code == ExitStatus.NOT_FOUND and "Terminate" not in out.err  # no question
    out = _run(tmp_path, Case("cli", ["instances", "terminate", aws.workers[0]]))
    assert out.code == ExitStatus.REFUSED and "not confirmed" in out.err
    assert aws.state(aws.workers[0]) == "running"


def test_config_that_is_not_utf8_is_a_config_error(aws: Any, tmp_path: Path) -> None:
    out = _run(tmp_path, Case("config", ["zones"], config_bytes=b"pool = \"\xe9\"\n"))
    assert out.code == ExitStatus.USAGE and "not UTF-8" in out.err


def test_a_skipped_scale_pass_is_an_error(aws: Any, tmp_path: Path) -> None:
    # moto's SSM answers SendCommand with no output, so the pool cannot be observed
    for argv in (["scale", "--dry-run", "--transport", "ssm"],
                 ["scale", "--dry-run", "--json", "--transport", "ssm"]):
        out = _run(tmp_path, Case("cli", argv))
        assert out.code == ExitStatus.ERROR
        assert out.err.startswith("htcpool: error: pass skipped: ")
