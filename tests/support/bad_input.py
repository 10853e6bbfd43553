"""Bad input for the `htcpool` CLI: hypothesis strategies, an in-process runner and the rule
every case must obey. Shared by tests/integration/test_bad_input.py (bounded) and
bench/bad_input_bench.py (more examples, figures recorded in bench/RESULTS.md).

The rule: a run ends either in a correct result (exit 0, no error line, no traceback) or in
exactly ONE line `htcpool: error: ...` on stderr with a non-zero exit status that htcpool
documents; and no case changes any instance (state and tags are compared before and after).

Cases never reach beyond 127.0.0.1: endpoints are the moto server's or malformed, instance
metadata is disabled (so botocore cannot look for credentials at 169.254.169.254), and the
pool/queue views use the SSM transport only (the moto server answers SendCommand).
Credentials are only ever set in the environment.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import string
import sys
from collections.abc import Iterator, Mapping
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from orchestrator.errors import ExitStatus

DOCUMENTED_STATUSES = {int(s) for s in ExitStatus} - {int(ExitStatus.SUCCESS)}
ERROR_PREFIX = "htcpool: error: "

# Variables that decide where credentials, region and settings come from; each case starts
# from the fixture's values for these and changes only what it means to.
ENV_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
            "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_CONFIG_FILE",
            "AWS_SHARED_CREDENTIALS_FILE", "AWS_EC2_METADATA_DISABLED",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "AWS_WEB_IDENTITY_TOKEN_FILE", "HTCPOOL_REGION", "HTCPOOL_POOL", "HTCPOOL_PROFILE",
            "HTCPOOL_ENDPOINT_URL", "HTCPOOL_CONFIG", "HTCPOOL_TRANSPORT", "HTCPOOL_DEBUG")


@dataclass
class World:
    """What the strategies may draw real values from (the seeded moto pool)."""

    endpoint: str
    pool: str
    ids: list[str]           # every seeded instance: central manager, workers, foreign
    amis: list[str]          # worker images (and the base image)
    subnet: str


@dataclass
class Case:
    kind: str                          # cli | config | env
    argv: list[str]
    env: dict[str, str | None] = field(default_factory=dict)   # None: unset
    config_bytes: bytes | None = None  # written to ./htcpool.toml, --config or HTCPOOL_CONFIG
    config_via: str = "flag"
    stdin: str = ""


@dataclass
class Outcome:
    code: int
    out: str
    err: str


# --- values -----------------------------------------------------------------------------

def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any],
           one_in: int = 3) -> st.SearchStrategy[Any]:
    """`bad` one time in `one_in`, else `good` (plain one_of would favour neither)."""
    return st.integers(0, one_in - 1).flatmap(lambda n: bad if n == 0 else good)


_HEX = "0123456789abcdef"
_PRINTABLE = string.ascii_letters + string.digits + string.punctuation + " "

garbage_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=_PRINTABLE, max_size=30),
    st.sampled_from(["", " ", "-", "--", "i-", "i-*", "i-%s", "i-../../etc", "ami-", "\n",
                     "i-0\n123", "i-\x1b[31mred", "'; rm -rf /", "$(id)", "`id`", "None",
                     "null", "0", "-1", "1e9", "☃", "i-" + "f" * 300, "\x00", "i-\x00"]),
)


def fake_instance_id() -> st.SearchStrategy[str]:
    return st.builds(lambda n, h: "i-" + h[:n], st.sampled_from([8, 17, 3, 40]),
                     st.text(alphabet=_HEX, min_size=40, max_size=40))


def instance_ids(world: World) -> st.SearchStrategy[str]:
    return mostly(st.sampled_from(world.ids),
                  st.one_of(fake_instance_id(), garbage_text,
                            st.builds(str.upper, st.sampled_from(world.ids)),
                            st.builds(lambda s: s + " ", st.sampled_from(world.ids))), 2)


def ami_ids(world: World) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(world.amis),
                     st.builds(lambda h: "ami-" + h[:17], st.text(_HEX, min_size=17,
                                                                  max_size=17)),
                     garbage_text)


pool_names = mostly(st.sampled_from(["testpool", "testpool", "otherpool", "nopool", "a" * 63,
                                     "under_score", "x"]),
                    st.one_of(st.sampled_from(["a" * 64, "-lead", ".dot", "sp ace"]),
                              garbage_text))
regions = mostly(st.sampled_from(["us-east-1", "us-east-1", "eu-west-1", "ap-southeast-2"]),
                 st.one_of(st.sampled_from(["us-east-99", "moon-1", "US-EAST-1", "us_east_1",
                                            "us-east-1 "]), garbage_text))
counts = st.one_of(st.integers(-5, 600).map(str), st.sampled_from(["1", "500", "501", "0",
                                                                   "1.5", "ten", "", "0x10",
                                                                   "99999999999999999999"]),
                   garbage_text)
instance_types = st.one_of(st.sampled_from(["t3.micro", "c6i.large", "t3.nano", "x.y",
                                            "t3.medium"]), garbage_text)
transports = st.one_of(st.just("ssm"), st.sampled_from(["auto", "local", "ssh", "SSM", ""]),
                       garbage_text)
constraints = st.one_of(st.sampled_from(['JobStatus == 1', 'State == "Unclaimed"', "true",
                                         '"unterminated', "((", "Name =?= '"]), garbage_text)


def _needs_dry_run(argv: list[str], real: set[str]) -> bool:
    return any(a in real for a in argv)


# --- command lines ----------------------------------------------------------------------

@st.composite
def global_flags(draw: Any, world: World) -> list[str]:
    out: list[str] = []
    if draw(st.booleans()):
        out += ["--pool", draw(pool_names)]
    if draw(st.integers(0, 4)) == 0:
        out += ["--region", draw(regions)]
    if draw(st.integers(0, 6)) == 0:
        out += ["--profile", draw(st.one_of(st.just("nosuchprofile"), garbage_text))]
    if draw(st.integers(0, 8)) == 0:
        # never a live host other than the moto server: a malformed URL or 127.0.0.1:1
        out += ["--endpoint-url", draw(st.one_of(
            st.sampled_from(["ftp://127.0.0.1", "127.0.0.1:4580", "http//x", "",
                             "http://127.0.0.1:1"]), garbage_text))]
    return out


@st.composite
def lifecycle_argv(draw: Any, world: World) -> list[str]:
    action = draw(st.sampled_from(["start", "stop", "reboot", "terminate"]))
    ids = draw(st.lists(instance_ids(world), min_size=draw(st.sampled_from([1, 1, 1, 0])),
                        max_size=4))
    flags = draw(st.lists(mostly(st.sampled_from(["--force", "--no-wait", "--wait", "--json",
                                                  "--dry-run", "--yes", "-y"]),
                                 st.sampled_from(["--bogus", "-x", "--force=1"]), 6),
                          max_size=3))
    tail = ids + flags
    draw(st.randoms(use_true_random=False)).shuffle(tail)
    argv = ["instances", action, *tail]
    if _needs_dry_run(argv, set(world.ids)) and "--dry-run" not in argv:
        # a real id could legitimately be acted on: the suite's point is that nothing
        # changes, so a valid request must be a dry run (or be refused)
        argv.append("--dry-run")
    return argv


@st.composite
def create_argv(draw: Any, world: World) -> list[str]:
    argv = ["instances", "create"]
    if draw(st.booleans()):
        argv += [draw(st.sampled_from(["--count", "-n"])), draw(counts)]
    ami = draw(st.one_of(st.none(), ami_ids(world)))
    if ami is not None:
        argv += ["--ami", ami]
    for _ in range(draw(st.integers(0, 2))):
        argv += ["--type", draw(instance_types)]
    for _ in range(draw(st.integers(0, 2))):
        argv += ["--subnet", draw(st.one_of(st.just(world.subnet), garbage_text,
                                            st.just("subnet-00000000")))]
    if draw(st.booleans()):
        argv += ["--client-token", draw(st.one_of(st.text(max_size=80), garbage_text))]
    argv += draw(st.lists(mostly(st.sampled_from(["--no-wait", "--json", "--dry-run"]),
                                 st.just("--bogus"), 6), max_size=2))
    # only a request that cannot be valid may go without --dry-run
    if "--dry-run" not in argv and (ami is None or ami in world.amis):
        argv.append("--dry-run")
    return argv


@st.composite
def view_argv(draw: Any, world: World) -> list[str]:
    argv = draw(st.sampled_from([["pool", "status"], ["queue"]]))
    argv = list(argv)
    if draw(st.booleans()):
        t = draw(transports)
        # local/ssh/auto would reach HTCondor or hosts outside this test: only ssm (moto)
        # or values the CLI must reject
        argv += ["--transport", "ssm" if t in ("auto", "local", "ssh") else t]
    else:
        argv += ["--transport", "ssm"]
    if draw(st.booleans()):
        argv += ["--constraint", draw(constraints)]
    argv += draw(st.lists(mostly(st.just("--json"), st.just("--bogus"), 5), max_size=1))
    return argv


@st.composite
def misc_argv(draw: Any, world: World) -> list[str]:
    base = draw(st.sampled_from([["zones"], ["images", "list"], ["image", "list"],
                                 ["scale", "--dry-run"], ["instances", "list"]]))
    extra = draw(st.lists(mostly(st.sampled_from(["--json", "--all", "--once"]),
                                 st.sampled_from(["--bogus", "extra-arg", "--state", "sleeping"]),
                                 4), max_size=2))
    argv = [*base, *extra]
    if base[0] == "scale":
        argv += ["--transport", "ssm"]
    return argv


@st.composite
def cli_cases(draw: Any, world: World) -> Case:
    cmd = draw(st.one_of(lifecycle_argv(world), create_argv(world), view_argv(world),
                         misc_argv(world)))
    return Case("cli", [*draw(global_flags(world)), *cmd])


# --- configuration files -----------------------------------------------------------------

def _toml_key(key: str) -> str:
    if key and all(c.isalnum() or c in "_-" for c in key) and key.isascii():
        return key
    return _toml_str(key)


def _toml_str(value: str) -> str:
    out = []
    for c in value:
        if c in '"\\':
            out.append("\\" + c)
        elif ord(c) < 0x20 or ord(c) == 0x7F or 0xD800 <= ord(c) <= 0xDFFF:
            out.append(f"\\u{ord(c):04x}" if ord(c) < 0xD800 else "?")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_str(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {toml_value(v)}" for k, v in value.items()) \
            + "}"
    raise TypeError(value)


def to_toml(data: Mapping[str, Any]) -> str:
    top = [f"{_toml_key(k)} = {toml_value(v)}" for k, v in data.items()
           if not isinstance(v, dict)]
    tables = [f"[{_toml_key(k)}]\n" + "\n".join(f"{_toml_key(k2)} = {toml_value(v2)}"
                                                 for k2, v2 in v.items())
              for k, v in data.items() if isinstance(v, dict)]
    return "\n".join(top) + "\n\n" + "\n\n".join(tables) + "\n"


scalars = st.one_of(st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=20), st.sampled_from(["standard", "adaptive", "eager",
                                                           "ssm", "local", "t3.micro"]))
values = st.one_of(scalars, st.lists(scalars, max_size=3),
                   st.dictionaries(st.text(max_size=8), scalars, max_size=2))

TOP_KEYS = ["pool", "region", "profile", "endpoint_url"]
SECTIONS = {
    "aws": ["retry_mode", "max_attempts", "wait_timeout_s", "wait_delay_s"],
    "condor": ["transport", "ssm_timeout_s", "ssh_host", "ssh_user", "ssh_key_file",
               "ssh_options"],
    "worker": ["instance_type", "subnets", "security_groups", "instance_profile", "key_name"],
    "provision": ["playbooks_dir", "inventory"],
    "autoscaler": ["policy", "interval_s", "idle_timeout_s", "min_workers", "max_workers",
                   "warm_pool", "shapes"],
}


@st.composite
def config_data(draw: Any, world: World) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key in draw(st.lists(st.sampled_from(TOP_KEYS), max_size=3, unique=True)):
        if key == "endpoint_url":
            data[key] = draw(st.sampled_from([world.endpoint, "127.0.0.1", "ftp://x", ""]))
        elif key == "pool":
            data[key] = draw(pool_names)
        elif key == "region":
            data[key] = draw(regions)
        else:
            data[key] = draw(values)
    for section in draw(st.lists(st.sampled_from(sorted(SECTIONS)), max_size=3, unique=True)):
        keys = draw(st.lists(st.sampled_from(SECTIONS[section]), max_size=3, unique=True))
        table = {k: draw(values) for k in keys}
        if draw(st.integers(0, 3)) == 0:
            table[draw(st.text(min_size=1, max_size=10))] = draw(values)   # unknown key
        data[section] = table
    if draw(st.integers(0, 3)) == 0:
        data[draw(st.text(min_size=1, max_size=10))] = draw(values)        # unknown key
    if draw(st.integers(0, 4)) == 0 and data:
        # a section given as a scalar, or a scalar given as a table
        key = draw(st.sampled_from(sorted(data)))
        data[key] = draw(st.one_of(scalars, st.just({"x": 1})))
    return data


not_toml = st.one_of(
    st.binary(max_size=200),
    st.sampled_from([b"\xff\xfe\x00p\x00o", b"pool = ", b"[aws", b"pool = 'a'\npool = 'b'\n",
                     b"\x00\x00\x00", b"[aws]\n[aws]\n", b"pool = \"\xe9\"\n",
                     b"a = 1\n" * 5000, b"\xef\xbb\xbfpool = \"x\"\n"]),
    st.text(max_size=200).map(lambda s: s.encode("utf-8", "surrogatepass")),
)


@st.composite
def config_cases(draw: Any, world: World) -> Case:
    if draw(st.integers(0, 2)) == 0:
        body = draw(not_toml)
    else:
        body = to_toml(draw(config_data(world))).encode("utf-8", "replace")
    via = draw(st.sampled_from(["flag", "env", "cwd", "missing"]))
    probe = draw(st.sampled_from([["zones"], ["instances", "list"], ["images", "list"]]))
    return Case("config", probe, config_bytes=body, config_via=via)


# --- environment -------------------------------------------------------------------------

@st.composite
def env_cases(draw: Any, world: World) -> Case:
    env: dict[str, str | None] = {}
    if draw(st.booleans()):   # missing region, everywhere
        env.update(HTCPOOL_REGION=None, AWS_REGION=None, AWS_DEFAULT_REGION=None)
    elif draw(st.booleans()):
        env[draw(st.sampled_from(["HTCPOOL_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"]))] = \
            draw(regions)
    creds = draw(st.sampled_from(["none", "key-only", "secret-only", "empty", "kept",
                                  "profile-missing", "htcpool-profile-missing"]))
    if creds in ("none", "key-only", "secret-only", "empty"):
        env.update(AWS_ACCESS_KEY_ID=None, AWS_SECRET_ACCESS_KEY=None)
        if creds == "key-only":
            env["AWS_ACCESS_KEY_ID"] = "testing"
        elif creds == "secret-only":
            env["AWS_SECRET_ACCESS_KEY"] = "testing"
        elif creds == "empty":
            env.update(AWS_ACCESS_KEY_ID="", AWS_SECRET_ACCESS_KEY="")
    elif creds == "profile-missing":
        env["AWS_PROFILE"] = draw(st.one_of(st.just("ghost"), garbage_text))
    elif creds == "htcpool-profile-missing":
        env["HTCPOOL_PROFILE"] = draw(st.one_of(st.just("ghost"), garbage_text))
    if draw(st.integers(0, 3)) == 0:
        env["HTCPOOL_POOL"] = draw(pool_names)
    if draw(st.integers(0, 4)) == 0:
        env["HTCPOOL_TRANSPORT"] = draw(st.one_of(st.just("ssm"), garbage_text))
    if draw(st.integers(0, 5)) == 0:
        env["HTCPOOL_ENDPOINT_URL"] = draw(st.sampled_from(["", "nope", "ftp://127.0.0.1"]))
    probe = draw(st.one_of(st.sampled_from([["zones"], ["instances", "list"], ["images", "list"],
                                            ["queue", "--transport", "ssm"],
                                            ["scale", "--dry-run", "--transport", "ssm"]]),
                           lifecycle_argv(world)))
    # environment values may not contain NUL (the OS refuses them)
    env = {k: (v.replace("\x00", "") if isinstance(v, str) else v) for k, v in env.items()}
    return Case("env", probe, env=env)


# --- running and judging ------------------------------------------------------------------

SAFE_ENV = {"AWS_EC2_METADATA_DISABLED": "true", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": None,
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": None, "AWS_WEB_IDENTITY_TOKEN_FILE": None,
            "HTCPOOL_DEBUG": None, "HTCPOOL_TRANSPORT": None, "HTCPOOL_CONFIG": None,
            "AWS_SESSION_TOKEN": None}


@contextlib.contextmanager
def patched_env(changes: Mapping[str, str | None]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in set(ENV_KEYS) | set(changes)}
    try:
        for key, value in changes.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def prepare(case: Case, workdir: Path) -> tuple[list[str], dict[str, str | None]]:
    """The argv and environment changes to run `case` with (writes its config file)."""
    argv = list(case.argv)
    env: dict[str, str | None] = {**SAFE_ENV, **case.env}
    cwd_file = workdir / "htcpool.toml"
    cwd_file.unlink(missing_ok=True)
    if case.config_bytes is not None:
        path = workdir / "case.toml"
        path.write_bytes(case.config_bytes)
        if case.config_via == "flag":
            argv = ["--config", str(path), *argv]
        elif case.config_via == "env":
            env["HTCPOOL_CONFIG"] = str(path)
        elif case.config_via == "cwd":
            cwd_file.write_bytes(case.config_bytes)
        else:
            argv = ["--config", str(workdir / "no-such-dir" / "missing.toml"), *argv]
    return argv, env


def run_in_process(argv: list[str], env: Mapping[str, str | None], stdin: str = "") -> Outcome:
    from orchestrator.cli import common, main

    common._CLOUDS.clear()   # a Cloud remembers credentials: each case starts afresh
    out, err = io.StringIO(), io.StringIO()
    code = 0
    old_stdin = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        with patched_env(env), redirect_stdout(out), redirect_stderr(err):
            # click returns (not raises) the status of click.exceptions.Exit when not in
            # standalone mode; the console script passes main()'s value to sys.exit
            returned = main(list(argv))
        code = returned if isinstance(returned, int) else 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException as exc:  # escaped main(): exactly what the suite looks for
        return Outcome(-1, out.getvalue(), err.getvalue() + f"\nESCAPED {type(exc).__name__}: "
                       f"{exc}")
    finally:
        sys.stdin = old_stdin
    return Outcome(code, out.getvalue(), err.getvalue())


def verdict(outcome: Outcome, argv: list[str] | None = None) -> str | None:
    """None if the outcome obeys the rule, else what is wrong with it."""
    # a confirmation prompt (terminate without --yes) is the question, not an error line
    err_lines = [ln for ln in outcome.err.splitlines()
                 if ln.strip() and not ln.rstrip().endswith("[y/N]:")]
    if "Traceback" in outcome.err or "ESCAPED" in outcome.err:
        return "traceback or exception escaped main()"
    errors = [ln for ln in err_lines if ln.startswith(ERROR_PREFIX)]
    if outcome.code == 0:
        if errors:
            return f"exit 0 but an error line: {errors[0]!r}"
        if argv and "--json" in argv and not ({"-h", "--help"} & set(argv)):
            try:
                json.loads(outcome.out)
            except ValueError:
                return f"--json, exit 0, but stdout is not JSON: {outcome.out[:200]!r}"
        return None
    if outcome.code not in DOCUMENTED_STATUSES:
        return f"undocumented exit status {outcome.code}"
    if len(err_lines) != 1:
        return f"{len(err_lines)} stderr lines instead of one: {err_lines[:4]!r}"
    if not errors:
        return f"non-zero exit without '{ERROR_PREFIX.strip()}': {err_lines[0]!r}"
    if len(errors[0]) <= len(ERROR_PREFIX) + 2:
        return "empty error message"
    return None


def snapshot(ec2: Any) -> dict[str, tuple[str, tuple[tuple[str, str], ...]]]:
    """Every instance of the region: state and tags."""
    out = {}
    for page in ec2.get_paginator("describe_instances").paginate():
        for res in page["Reservations"]:
            for inst in res["Instances"]:
                tags = tuple(sorted((t["Key"], t["Value"]) for t in inst.get("Tags", [])))
                out[inst["InstanceId"]] = (inst["State"]["Name"], tags)
    return out


@dataclass
class Tally:
    tried: int = 0
    failures: list[tuple[str, list[str], str]] = field(default_factory=list)
    by_kind: dict[str, int] = field(default_factory=dict)
    by_code: dict[int, int] = field(default_factory=dict)

    def record(self, case: Case, argv: list[str], outcome: Outcome, problem: str | None) -> None:
        self.tried += 1
        self.by_kind[case.kind] = self.by_kind.get(case.kind, 0) + 1
        self.by_code[outcome.code] = self.by_code.get(outcome.code, 0) + 1
        if problem:
            self.failures.append((case.kind, argv, problem))


def check_case(case: Case, world: World, ec2: Any, workdir: Path,
               tally: Tally | None = None) -> str | None:
    """Run one case in-process; the problem (rule broken or instance changed), or None."""
    before = snapshot(ec2)
    argv, env = prepare(case, workdir)
    outcome = run_in_process(argv, env, case.stdin)
    problem = verdict(outcome, argv)
    after = snapshot(ec2)
    if after != before:
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        problem = (problem + "; " if problem else "") + f"instances changed: {changed}"
    if tally is not None:
        tally.record(case, argv, outcome, problem)
    if problem:
        return f"{problem}\n  argv={argv!r}\n  env={case.env!r}\n  exit={outcome.code}\n" \
               f"  stderr={outcome.err[-600:]!r}"
    return None
