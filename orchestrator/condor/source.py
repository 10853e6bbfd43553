"""Pool and queue views: one interface (`PoolSource`), three transports.

- `LocalSource` (here): on the central manager, the official `htcondor` Python bindings.
- `SsmSource` (remote.py): elsewhere, SSM SendCommand of `condor_status -json` /
  `condor_q -json` on the central manager (found by tag), polling GetCommandInvocation.
- `SshSource` (remote.py): the same commands over ssh.
factory.py picks one for a configuration.

Every transport yields ads evaluated to plain values (ads.py) and turned into typed records
(`Slot`, `Job`: records.py). Summaries for the CLI live in views.py.

The autoscaler calls `source.slots()` (startd ads, with `ec2_instance_id`) and
`source.jobs(..., AUTOSCALER_JOB_ATTRS, all_schedds=True, grouped=True)` (idle and running
jobs of every schedd, grouped by the schedd, each record with its `count`).
"""

from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any

from orchestrator.condor.ads import group_projection, plain, read_attrs
from orchestrator.condor.commands import SCHEDD_TIMEOUT_S
from orchestrator.condor.records import (
    JOB_ATTRS,
    SLOT_ATTRS,
    CondorError,
    Job,
    JobStatus,
    ScheddQueues,
    Slot,
)


class Transport(StrEnum):
    LOCAL = "local"
    SSM = "ssm"
    SSH = "ssh"



class PoolSource(ABC):
    """Where pool and queue ads come from. Subclasses implement the two raw queries."""

    transport: Transport

    @abstractmethod
    def startd_ads(self, constraint: str | None = None) -> list[dict[str, Any]]:
        """Evaluated startd ads (projection SLOT_ATTRS)."""

    @abstractmethod
    def job_ads(self, constraint: str | None = None, attrs: Sequence[str] = JOB_ATTRS,
                all_schedds: bool = False, grouped: bool = False) -> list[dict[str, Any]]:
        """Evaluated job ads of all owners (projection `attrs`), of the central manager's
        schedd, or of every schedd of the pool. `grouped`: one ad per distinct value of
        the projection, with JobCount, as the schedd aggregates them (10,000 idle jobs of a
        few kinds are a few ads to send and read)."""

    @abstractmethod
    def queues(self, constraint: str | None, attrs: Sequence[str],
               grouped: bool = False) -> ScheddQueues:
        """Evaluated job ads of every schedd the pool's collector lists, with those that
        did not answer named apart (they do not fail the others)."""

    @property
    @abstractmethod
    def where(self) -> str:
        """A short description of the endpoint, for messages."""

    def slots(self, constraint: str | None = None) -> list[Slot]:
        return [Slot.from_ad(ad) for ad in self.startd_ads(constraint)]

    def jobs(self, constraint: str | None = None, attrs: Sequence[str] = JOB_ATTRS,
             all_schedds: bool = False, grouped: bool = False) -> list[Job]:
        return [Job.from_ad(ad) for ad in self.job_ads(constraint, attrs, all_schedds, grouped)]

    def idle_jobs(self) -> list[Job]:
        return self.jobs(f"JobStatus == {int(JobStatus.IDLE)}")

    def run_tool(self, argv: list[str], timeout_s: float = 120.0) -> str:
        """Run an HTCondor command-line tool where this source runs its queries (here for
        the local bindings; on the central manager for SSM/ssh); return its stdout."""
        import shlex
        import subprocess

        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise CondorError(f"{argv[0]}: {err}") from err
        if done.returncode != 0:
            raise CondorError(f"{shlex.join(argv[:2])} failed (exit {done.returncode}): "
                              f"{done.stderr.strip()[-300:]}")
        return done.stdout


def _bindings() -> Any:
    """The htcondor2 module, set up to authenticate the way the command-line tools do."""
    import htcondor2

    # Run by root, the tools read the pool token in SEC_TOKEN_SYSTEM_DIRECTORY; the bindings
    # read only SEC_TOKEN_DIRECTORY (~/.condor/tokens.d), and without a token root on the
    # central manager signs with the pool key itself, as condor@password, which the pool's
    # ALLOW_* lists do not name (the collector answers DENIED).
    if os.geteuid() == 0 and not os.environ.get("_CONDOR_SEC_TOKEN_DIRECTORY"):
        system = htcondor2.param.get("SEC_TOKEN_SYSTEM_DIRECTORY")
        if system and Path(system).is_dir():
            htcondor2.param["SEC_TOKEN_DIRECTORY"] = system
    return htcondor2


class LocalSource(PoolSource):
    transport = Transport.LOCAL

    def __init__(self, collector: str | None = None, schedd: str | None = None) -> None:
        self.collector_host = collector
        self.schedd_name = schedd

    @property
    def where(self) -> str:
        return f"local bindings ({self.collector_host or 'this host'})"

    def startd_ads(self, constraint: str | None = None) -> list[dict[str, Any]]:
        htcondor2 = _bindings()

        try:
            coll = htcondor2.Collector(self.collector_host) if self.collector_host \
                else htcondor2.Collector()
            ads = coll.query(htcondor2.AdTypes.Startd, constraint or "true", list(SLOT_ATTRS))
        except Exception as err:  # htcondor raises HTCondorException/IOError variants
            raise CondorError(f"cannot query the collector: {err}") from err
        return [plain(ad, SLOT_ATTRS) for ad in ads]

    def _collector(self) -> Any:
        htcondor2 = _bindings()
        return htcondor2.Collector(self.collector_host) if self.collector_host \
            else htcondor2.Collector()

    def job_ads(self, constraint: str | None = None, attrs: Sequence[str] = JOB_ATTRS,
                all_schedds: bool = False, grouped: bool = False) -> list[dict[str, Any]]:
        if all_schedds and not (self.collector_host or self.schedd_name):
            return self.queues(constraint, attrs, grouped).require_all(self.where)
        htcondor2 = _bindings()
        try:
            if self.collector_host or self.schedd_name:
                found = self._collector().query(
                    htcondor2.AdTypes.Schedd,
                    f'Name == "{self.schedd_name}"' if self.schedd_name else "true")
                if not found:
                    raise CondorError(f"no schedd found at {self.where}")
                schedd = htcondor2.Schedd(found[0])
            else:
                schedd = htcondor2.Schedd()
            ads = _query(schedd, constraint, attrs, grouped)
        except CondorError:
            raise
        except Exception as err:
            raise CondorError(f"cannot query the schedd: {err}") from err
        return [plain(ad, read_attrs(attrs, grouped)) for ad in ads]

    def queues(self, constraint: str | None, attrs: Sequence[str],
               grouped: bool = False) -> ScheddQueues:
        """Each schedd the collector lists (the local one while it lists none), queried
        side by side; one that fails or takes over SCHEDD_TIMEOUT_S is silent."""
        from concurrent.futures import ThreadPoolExecutor
        from concurrent.futures import TimeoutError as FutureTimeout

        htcondor2 = _bindings()
        try:
            listed = self._collector().query(htcondor2.AdTypes.Schedd)
        except Exception as err:
            raise CondorError(f"cannot query the collector: {err}") from err
        named = [(str(ad.get("Name", "?")), ad) for ad in listed] or [("-", None)]
        ads: list[dict[str, Any]] = []
        answered: list[str] = []
        silent: dict[str, str] = {}
        pool = ThreadPoolExecutor(max_workers=len(named), thread_name_prefix="schedd")
        try:
            futures = {name: pool.submit(
                _query, htcondor2.Schedd(ad) if ad is not None else htcondor2.Schedd(),
                constraint, attrs, grouped) for name, ad in named}
            deadline = time.monotonic() + SCHEDD_TIMEOUT_S
            for name, future in futures.items():
                try:
                    got = future.result(timeout=max(0.0, deadline - time.monotonic()))
                except FutureTimeout:
                    silent[name] = f"did not answer within {SCHEDD_TIMEOUT_S} s"
                except Exception as err:
                    silent[name] = f"cannot query it: {err}"
                else:
                    ads += [plain(ad, read_attrs(attrs, grouped)) for ad in got]
                    answered.append(name)
        finally:
            pool.shutdown(wait=False)  # a schedd that hangs must not hang the pass
        return ScheddQueues(ads, tuple(answered), silent)


def _query(schedd: Any, constraint: str | None, attrs: Sequence[str], grouped: bool
           ) -> list[Any]:
    htcondor2 = _bindings()
    projection = group_projection(attrs) if grouped else list(attrs)
    opts = htcondor2.QueryOpt.GroupBy if grouped else htcondor2.QueryOpt.Default
    return list(schedd.query(constraint or "true", projection, opts=opts))
