"""Issue 7: no credential or token in the repository, on a command line, or in Ansible's log.

- Every tracked file is scanned for AWS access keys and secret keys, private keys, JWTs (an
  HTCondor IDTOKEN is one), GitHub/Slack tokens and key files by name.
- Every process the Python code starts (subprocess, os.exec*, ansible-runner's `cmdline`) is
  checked, from the source, for secret-looking options or variables in its argv: secrets go
  to processes through the environment or files, never argv, which any local user can read
  in /proc/*/cmdline.
- Every Ansible task that handles the pool token or a password as a value must be `no_log`.

tests/integration/test_no_secrets_runtime.py complements this by running the CLI with canary
credentials and checking its output and the argv of the processes it starts.
"""

from __future__ import annotations

import ast
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]

SECRET_PATTERNS = {
    "AWS access key id": re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA)"
                                    r"[A-Z0-9]{16}\b"),
    "AWS secret access key": re.compile(
        r"(?i)(?:aws_secret_access_key|secret_?access_?key|aws_secret)[\"']?\s*[:=]\s*[\"']?"
        r"([A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])"),
    "private key": re.compile(r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?"
                              r"PRIVATE KEY(?: BLOCK)?-----"),
    "JWT / IDTOKEN": re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\."
                                r"[A-Za-z0-9_-]{16,}"),
    "GitHub token": re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{40,})"),
    "Slack token": re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    "AWS session token": re.compile(r"(?i)aws_session_token[\"']?\s*[:=]\s*[\"']?"
                                    r"[A-Za-z0-9/+=]{100,}"),
}
# AWS's documented example keys are not credentials.
# AWS documentation's example key pair, split so that scanners do not flag this file.
ALLOWED_VALUES = {"AKIA" + "IOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}
# Fabricated values kept on purpose, by file and kind, each with its reason.
ALLOWED_IN_FILE = {
    # a made-up IDTOKEN (its signature is the text "secret-signature") that the role test
    # feeds in to prove the role never writes or logs it
    ("tests/ansible/test_roles_check.py", "JWT / IDTOKEN"),
}
KEY_FILE_NAMES = re.compile(r"(?i)(^|/)(id_(rsa|dsa|ecdsa|ed25519)|.*\.(pem|p12|pfx|jks|"
                            r"keystore)|\.env|credentials|\.netrc|.*\.tfstate|pool_password|"
                            r"POOL)$")


def tracked_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True)
    return [REPO / p for p in out.stdout.decode().split("\0") if p]


def texts() -> Iterator[tuple[Path, str]]:
    for path in tracked_files():
        try:
            data = path.read_bytes()
        except OSError:  # deleted in the work tree but still in the index
            continue
        if b"\0" in data[:8192] or len(data) > 5_000_000:
            continue
        yield path, data.decode("utf-8", "replace")


def find_secrets(text: str) -> list[tuple[str, str]]:
    hits = []
    for name, pattern in SECRET_PATTERNS.items():
        for match in pattern.finditer(text):
            value = match.group(match.lastindex or 0)
            if value not in ALLOWED_VALUES and match.group(0) not in ALLOWED_VALUES:
                hits.append((name, match.group(0)[:24] + "..."))
    return hits


def test_the_detector_finds_what_it_looks_for() -> None:
    fake_key = "AKIA" + "Q" * 16
    fake_secret = "aws_secret_access_key = " + "a1B2" * 10
    fake_jwt = "eyJhbGciOiJIUzI1NiJ9" + ".eyJzdWIiOiJjb25kb3IifQ.abcdefghijklmnopqrstuvwxyz012345"
    begin = "-----BEGIN " + "OPENSSH PRIVATE KEY-----"
    for text in (fake_key, fake_secret, fake_jwt, begin, "ghp_" + "x" * 36):
        assert find_secrets(text), text
    for text in ("AKIA" + "IOSFODNN7EXAMPLE", "aws_secret_access_key = testing",
                 "-----BEGIN PGP PUBLIC KEY BLOCK-----", "client_token = uuid4().hex"):
        assert not find_secrets(text), text


def test_no_credentials_in_tracked_files() -> None:
    found = [(str(path.relative_to(REPO)), name, excerpt)
             for path, text in texts() for name, excerpt in find_secrets(text)
             if (str(path.relative_to(REPO)), name) not in ALLOWED_IN_FILE]
    assert not found, found


def test_no_key_or_credential_files_tracked() -> None:
    names = [str(p.relative_to(REPO)) for p in tracked_files()
             if KEY_FILE_NAMES.search(str(p.relative_to(REPO)))]
    assert not names, names


# --- argv of the processes the code starts --------------------------------------------------

SPAWNERS = {"run", "Popen", "call", "check_call", "check_output", "execv", "execve", "execvp",
            "execvpe", "execl", "execlp", "spawnv", "spawnve", "create_subprocess_exec",
            "exec_in"}
SECRET_OPTION = re.compile(r"(?i)^-{1,2}(aws-?secret|secret|password|passwd|token|"
                           r"session-token|api-key|private-key)\b|aws_secret_access_key|"
                           r"aws_session_token")
SECRET_NAME = re.compile(r"(?i)(secret|password|passwd|credential|session_token|"
                         r"(^|_)token($|_)|api_key|private_key)")
# Names that mention a secret but hold none: where one is kept, or what a token is called.
NOT_SECRET_NAMES = re.compile(r"(?i)(_file|_path|_dir|_name|_id|_url|client_token)$")


def python_files() -> list[Path]:
    roots = ("orchestrator", "bench", "roles", "playbooks", "tests", "molecule", "inventory")
    return [p for p in tracked_files() if p.suffix == ".py"
            and p.relative_to(REPO).parts[0] in roots and p.exists()]


def _argv_nodes(call: ast.Call) -> list[ast.AST]:
    nodes: list[ast.AST] = list(call.args[:1])
    nodes += [kw.value for kw in call.keywords if kw.arg in ("args", "cmdline", "argv", "cmd")]
    return nodes


def argv_problems(source: str, where: str) -> list[str]:
    problems = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else \
            func.id if isinstance(func, ast.Name) else ""
        owner = func.value.id if isinstance(func, ast.Attribute) and \
            isinstance(func.value, ast.Name) else ""
        is_spawn = (name in SPAWNERS and owner in ("subprocess", "os", "asyncio", "control", ""))
        is_runner = name == "run" and owner in ("ansible_runner", "runner")
        if not (is_spawn or is_runner):
            continue
        if name == "run" and owner == "" :
            continue  # a local function called run(), not subprocess.run
        for argv in _argv_nodes(node):
            for sub in ast.walk(argv):
                if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                    for word in re.split(r"[\s=]+", sub.value):
                        if SECRET_OPTION.search(word):
                            problems.append(f"{where}:{node.lineno}: option {word!r} in argv")
                ident = sub.id if isinstance(sub, ast.Name) else \
                    sub.attr if isinstance(sub, ast.Attribute) else ""
                if ident and SECRET_NAME.search(ident) and not NOT_SECRET_NAMES.search(ident):
                    problems.append(f"{where}:{node.lineno}: {ident!r} in argv")
    return problems


def test_the_argv_check_finds_secrets() -> None:
    bad = ("import subprocess\n"
           "subprocess.run(['aws', 'configure', 'set', 'aws_secret_access_key', s])\n"
           "subprocess.run(['tool', '--password', pw])\n"
           "subprocess.Popen(['curl', '-H', token])\n"
           "subprocess.run(['x', '--aws-secret=' + v])\n"
           "ansible_runner.run(cmdline=f'-e secret={creds.secret_key}')\n")
    assert len(argv_problems(bad, "t")) >= 5, argv_problems(bad, "t")
    good = ("import subprocess\n"
            "subprocess.run(['ssh', '-i', key_file, host], env={'AWS_SECRET_ACCESS_KEY': s})\n"
            "subprocess.run(['condor_store_cred', 'add', '-c', '-i', path])\n")
    assert argv_problems(good, "t") == []


def test_no_secret_on_a_command_line() -> None:
    problems = [p for path in python_files()
                for p in argv_problems(path.read_text(), str(path.relative_to(REPO)))]
    assert not problems, problems


def test_aws_credentials_are_never_set_on_a_command_line_anywhere() -> None:
    """Shell, YAML and docs too: no `--aws-secret...`, no `aws configure set aws_secret...`,
    no `AWS_SECRET_ACCESS_KEY=... command` prefix with a real-looking value."""
    inline = re.compile(r"(--aws-secret[-_a-z]*|aws configure set aws_secret_access_key|"
                        r"AWS_SECRET_ACCESS_KEY=(?!testing\b|\$|\"\$|'\$|\{)[A-Za-z0-9/+=]{8,}"
                        r" +\S)")
    found = [(str(p.relative_to(REPO)), m.group(0)) for p, text in texts()
             if p.name != Path(__file__).name for m in inline.finditer(text)]
    assert not found, found


# --- Ansible: tasks handling secrets are no_log -----------------------------------------------

SECRET_VAR = re.compile(r"\{\{[^}]*\b(\w*(?:_token|_password|_secret|token_file)\b)[^}]*\}\}")
NOT_LOGGED_KEYS = {"name", "when", "that", "fail_msg", "success_msg", "msg", "no_log",
                   "register", "loop", "tags", "changed_when", "failed_when", "until",
                   "vars"}


def _tasks(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, list):
        for item in node:
            yield from _tasks(item)
    elif isinstance(node, dict):
        # a play (its vars are not logged) or a block: only their tasks count
        if "hosts" in node or any(k in node for k in ("block", "tasks", "pre_tasks",
                                                       "post_tasks", "handlers", "rescue",
                                                       "always")):
            for key in ("block", "tasks", "pre_tasks", "post_tasks", "handlers", "rescue",
                        "always"):
                yield from _tasks(node.get(key))
        else:
            yield node


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def task_files() -> list[Path]:
    return [p for p in tracked_files() if p.suffix in (".yml", ".yaml") and p.exists()
            and (p.relative_to(REPO).parts[0] == "playbooks"
                 or (p.relative_to(REPO).parts[0] == "roles"
                     and p.parent.name in ("tasks", "handlers")))]


def test_ansible_tasks_with_secret_values_are_no_log() -> None:
    offenders = []
    for path in task_files():
        try:
            doc = yaml.safe_load(path.read_text())
        except yaml.YAMLError:
            continue  # the lint tests own syntax
        for task in _tasks(doc):
            used = {m.group(1) for key, value in task.items() if key not in NOT_LOGGED_KEYS
                    for text in _strings(value) for m in SECRET_VAR.finditer(text)}
            if used and task.get("no_log") not in (True, "true", "yes"):
                offenders.append(f"{path.relative_to(REPO)}: {task.get('name')!r} uses "
                                 f"{sorted(used)} without no_log")
    assert not offenders, offenders


def test_the_no_log_check_sees_the_token_tasks() -> None:
    """The check is not vacuous: the token-publishing tasks exist and are recognised."""
    seen = 0
    for path in task_files():
        doc = yaml.safe_load(path.read_text())
        for task in _tasks(doc):
            if any(SECRET_VAR.search(t) for k, v in task.items() if k not in NOT_LOGGED_KEYS
                   for t in _strings(v)):
                seen += 1
    if seen == 0:
        pytest.skip("no task handles a secret value (nothing to check)")
    assert seen >= 2


def test_botocore_debug_logging_is_never_enabled() -> None:
    """botocore at DEBUG logs each signed request, session token included: htcpool must not
    turn it on (not even with --debug, which only shows tracebacks)."""
    pattern = re.compile(r"set_stream_logger|set_debug_logger|level\s*=\s*logging\.DEBUG|"
                         r"setLevel\(\s*logging\.DEBUG|setLevel\(\s*[\"']DEBUG|"
                         r"level\s*=\s*[\"']DEBUG")
    found = [f"{p.relative_to(REPO)}:{n}" for p in (REPO / "orchestrator").rglob("*.py")
             for n, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not found, found
