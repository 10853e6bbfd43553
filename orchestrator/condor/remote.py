"""Remote transports for pool views: SSM SendCommand and ssh, running `condor_* -json`."""

from __future__ import annotations

import base64
import gzip
import os
import shlex
import subprocess
from abc import abstractmethod
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from orchestrator.condor.ads import ads_from_json, read_attrs
from orchestrator.condor.commands import (
    condor_q_argv,
    condor_status_argv,
    schedd_queues_argv,
    split_schedd_output,
)
from orchestrator.condor.records import JOB_ATTRS, SLOT_ATTRS, CondorError, ScheddQueues
from orchestrator.condor.source import PoolSource, Transport

if TYPE_CHECKING:
    from orchestrator.aws.ec2 import Cloud

GZ_MARKER = "HTCPOOL-GZ64"


def _remote_script(argv: list[str]) -> str:
    """Shell for SSM: run the command to a file, then print it gzipped+base64 after a marker
    (SSM keeps only 24,000 characters of output)."""
    cmd = " ".join(shlex.quote(a) for a in argv)
    return (f'f=$(mktemp) || exit 1; {cmd} >"$f"; rc=$?; '
            f'if [ $rc -eq 0 ]; then echo {GZ_MARKER}; gzip -c "$f" | base64 -w0; fi; '
            'rm -f "$f"; exit $rc')


def query_jobs(run: Callable[[list[str]], str], constraint: str | None,
               attrs: Sequence[str], grouped: bool) -> list[dict[str, Any]]:
    """The queue of the schedd on the host the command runs on."""
    return ads_from_json(run(condor_q_argv(constraint, attrs, grouped)),
                         read_attrs(attrs, grouped))


def query_queues(run: Callable[[list[str]], str], constraint: str | None,
                 attrs: Sequence[str], grouped: bool) -> ScheddQueues:
    """Every schedd's queue, one command for all; a schedd whose part failed or cannot be
    parsed is silent, the others count."""
    ads: list[dict[str, Any]] = []
    answered: list[str] = []
    silent: dict[str, str] = {}
    for name, text, failed in split_schedd_output(run(schedd_queues_argv(constraint, attrs,
                                                                          grouped))):
        if failed is not None:
            silent[name] = failed
            continue
        try:
            ads += ads_from_json(text, read_attrs(attrs, grouped))
        except CondorError as err:
            silent[name] = str(err)
            continue
        answered.append(name)
    return ScheddQueues(ads, tuple(answered), silent)


def decode_remote_output(text: str, where: str) -> str:
    if not text.strip():
        raise CondorError(f"{where}: the command returned no output")
    head, _, body = text.partition("\n")
    if head.strip() != GZ_MARKER:
        return text
    try:
        return gzip.decompress(base64.b64decode(body.strip(), validate=True)).decode()
    except (ValueError, OSError, EOFError) as err:
        raise CondorError(f"{where}: output truncated or corrupt ({len(text)} characters; "
                          "SSM keeps 24,000): use --transport ssh") from err


class CommandSource(PoolSource):
    """A pool source that runs condor commands somewhere and reads their `-json` output."""

    @abstractmethod
    def _run(self, argv: list[str]) -> str:
        """The command's standard output; CondorError when it failed."""

    def run_tool(self, argv: list[str], timeout_s: float = 120.0) -> str:
        return self._run(argv)

    def startd_ads(self, constraint: str | None = None) -> list[dict[str, Any]]:
        return ads_from_json(self._run(condor_status_argv(constraint)), SLOT_ATTRS)

    def job_ads(self, constraint: str | None = None, attrs: Sequence[str] = JOB_ATTRS,
                all_schedds: bool = False, grouped: bool = False) -> list[dict[str, Any]]:
        if all_schedds:
            return self.queues(constraint, attrs, grouped).require_all(self.where)
        return query_jobs(self._run, constraint, attrs, grouped)

    def queues(self, constraint: str | None, attrs: Sequence[str],
               grouped: bool = False) -> ScheddQueues:
        return query_queues(self._run, constraint, attrs, grouped)


class SsmSource(CommandSource):
    transport = Transport.SSM

    def __init__(self, cloud: Cloud, instance_id: str, timeout_s: float,
                 sleep: Callable[[float], None] | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        self.cloud = cloud
        self.instance_id = instance_id
        self.timeout_s = timeout_s
        self._sleep = sleep
        self._clock = clock

    @property
    def where(self) -> str:
        return f"SSM on {self.instance_id}"

    def _run(self, argv: list[str]) -> str:
        kw: dict[str, Any] = {}
        if self._sleep is not None:
            kw["sleep"] = self._sleep
        if self._clock is not None:
            kw["clock"] = self._clock
        out = self.cloud.run_command(self.instance_id, [_remote_script(argv)], self.timeout_s,
                                     comment=f"htcpool {argv[0]}", **kw)
        return decode_remote_output(out, f"{argv[0]} via {self.where}")


class SshSource(CommandSource):
    transport = Transport.SSH

    def __init__(self, host: str, user: str = "", key_file: str = "",
                 options: Iterable[str] = (), timeout_s: float = 60.0) -> None:
        self.host = host
        self.user = user
        self.key_file = key_file
        self.options = list(options)
        self.timeout_s = timeout_s

    @property
    def where(self) -> str:
        return f"ssh {self.user + '@' if self.user else ''}{self.host}"

    def ssh_argv(self, remote: list[str]) -> list[str]:
        argv = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]
        for opt in self.options:
            argv += ["-o", opt]
        if self.user:
            argv += ["-l", self.user]
        if self.key_file:
            argv += ["-i", os.path.expanduser(self.key_file)]
        return [*argv, self.host, "--", " ".join(shlex.quote(a) for a in remote)]

    def _run(self, remote: list[str]) -> str:
        try:
            done = subprocess.run(self.ssh_argv(remote), capture_output=True, text=True,
                                  timeout=self.timeout_s, check=False)
        except FileNotFoundError as err:
            raise CondorError("ssh is not installed (use --transport ssm)") from err
        except subprocess.TimeoutExpired as err:
            raise CondorError(f"{remote[0]} via {self.where} did not finish within "
                              f"{self.timeout_s:.0f} s") from err
        if done.returncode != 0:
            lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
            reason = lines[-1] if lines else "no message"
            what = "ssh failed" if done.returncode == 255 else \
                f"{remote[0]} failed (exit {done.returncode})"
            raise CondorError(f"{what} via {self.where}: {reason}")
        return done.stdout
