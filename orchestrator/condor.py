"""Pool and queue views: one interface (`PoolSource`), three transports.

- `LocalSource`: on the central manager, the official `htcondor` Python bindings.
- `SsmSource`: elsewhere, SSM SendCommand of `condor_status -json` / `condor_q -json` on the
  central manager (found by tag), polling GetCommandInvocation with backoff.
- `SshSource`: the same commands over ssh.

Every transport yields ClassAds that are evaluated by the `classad2` library (so expressions
such as the default RequestMemory become numbers) and turned into typed records (`Slot`,
`Job`). Summaries for the CLI live in `orchestrator.condor_views`.

The autoscaler calls `source.slots()` (startd ads, with `ec2_instance_id`) and
`source.jobs(..., AUTOSCALER_JOB_ATTRS, all_schedds=True, grouped=True)` (idle and running
jobs of every schedd, grouped by the schedd, each record with its `count`).
"""

from __future__ import annotations

import json
import os
import shlex
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.config import Config
from orchestrator.errors import HtcpoolError

if TYPE_CHECKING:
    from orchestrator.cloud import Cloud

SLOT_ATTRS = ("Name", "Machine", "State", "Activity", "LoadAvg", "Memory", "Cpus", "Gpus",
              "Disk", "SlotType", "EC2InstanceId", "HtcpoolPool", "EnteredCurrentState",
              "EnteredCurrentActivity", "OpSys", "Arch")
# ImageSize and MemoryUsage are what the submit default of RequestMemory refers to: a
# projection without them leaves that expression undefined.
JOB_ATTRS = ("ClusterId", "ProcId", "Owner", "JobStatus", "JobBatchName", "RequestCpus",
             "RequestMemory", "RequestGpus", "RequestDisk", "QDate", "EnteredCurrentStatus",
             "RemoteHost", "HoldReason", "ImageSize", "MemoryUsage")
# What the autoscaler reads of the queue, every pass, in a grouped query (`condor_q
# -group-by`, QueryOpt.GroupBy): one ad per distinct value of these, with its JobCount, so
# the idle jobs of one cluster and request are one ad and each running job one (RemoteHost).
# No ProcId: it would make every group one job. The schedd adds the attributes an
# expression among them refers to (ImageSize for the default RequestMemory), and applies a
# constraint to the groups, so one may name only these.
AUTOSCALER_JOB_ATTRS = ("ClusterId", "JobStatus", "RequestCpus", "RequestMemory",
                        "RequestGpus", "QDate", "RemoteHost")


class Transport(StrEnum):
    LOCAL = "local"
    SSM = "ssm"
    SSH = "ssh"


class JobStatus(IntEnum):
    IDLE = 1
    RUNNING = 2
    REMOVED = 3
    COMPLETED = 4
    HELD = 5
    TRANSFERRING_OUTPUT = 6
    SUSPENDED = 7
    UNKNOWN = 0


_STATUSES: dict[int, JobStatus] = {int(s): s for s in JobStatus}


class CondorError(HtcpoolError):
    """The pool could not be queried (daemon down, command failed, bad output)."""


def _num(value: Any, default: float = 0.0) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else default


def _int(value: Any, default: int = 0) -> int:
    """int(_num(value, default)); a plain int (the usual value) is taken as it is."""
    return value if value.__class__ is int else int(_num(value, default))


@dataclass(frozen=True)
class Slot:
    name: str
    machine: str
    state: str
    activity: str
    load_avg: float
    memory_mb: int
    cpus: int
    gpus: int
    slot_type: str
    ec2_instance_id: str | None
    pool: str | None
    entered_current_state: int | None

    @classmethod
    def from_ad(cls, ad: dict[str, Any]) -> Slot:
        ecs = ad.get("EnteredCurrentState")
        return cls(name=str(ad.get("Name", "")), machine=str(ad.get("Machine", "")),
                   state=str(ad.get("State", "")), activity=str(ad.get("Activity", "")),
                   load_avg=_num(ad.get("LoadAvg")), memory_mb=_int(ad.get("Memory")),
                   cpus=_int(ad.get("Cpus")), gpus=_int(ad.get("Gpus")),
                   slot_type=str(ad.get("SlotType") or ""),
                   ec2_instance_id=ad.get("EC2InstanceId") or None,
                   pool=ad.get("HtcpoolPool") or None,
                   entered_current_state=int(ecs) if isinstance(ecs, int | float) else None)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Job:
    cluster: int
    proc: int
    owner: str
    status: JobStatus
    batch_name: str
    request_cpus: int
    request_memory_mb: int
    request_gpus: int
    qdate: int | None
    remote_host: str | None
    hold_reason: str | None
    # The jobs this record stands for: 1, or a group's JobCount from a grouped query.
    count: int = 1

    @property
    def id(self) -> str:
        return f"{self.cluster}.{self.proc}"

    @property
    def batch(self) -> str:
        """condor_q's batch: JobBatchName, else the cluster ("ID: 12")."""
        return self.batch_name or f"ID: {self.cluster}"

    @classmethod
    def from_ad(cls, ad: dict[str, Any]) -> Job:
        get = ad.get
        status = _STATUSES.get(_int(get("JobStatus")), JobStatus.UNKNOWN)
        qdate = get("QDate")
        return cls(cluster=_int(get("ClusterId")), proc=_int(get("ProcId")),
                   owner=str(get("Owner", "")), status=status,
                   batch_name=str(get("JobBatchName") or ""),
                   request_cpus=_int(get("RequestCpus"), 1),
                   request_memory_mb=_int(get("RequestMemory")),
                   request_gpus=_int(get("RequestGpus")),
                   qdate=int(qdate) if isinstance(qdate, (int, float)) else None,
                   remote_host=get("RemoteHost") or None,
                   hold_reason=get("HoldReason") or None, count=_int(get("JobCount"), 1))

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["status"] = self.status.name.lower()
        out["id"] = self.id
        return out


def _plain(ad: Any, attrs: Iterable[str]) -> dict[str, Any]:
    """Evaluate a classad2.ClassAd's attributes to plain Python values (None if undefined).
    A literal is its own value (the ad's item: one lookup); only an expression (an ExprTree
    item) is evaluated, in the context of the ad."""
    import classad2

    present = {name.lower() for name in ad}  # attribute names ignore case
    out: dict[str, Any] = {}
    for key in attrs:
        if key.lower() not in present:
            continue
        value = ad[key]
        if isinstance(value, classad2.ExprTree):
            value = ad.eval(key)
        out[key] = None if isinstance(value, classad2.Value) else value
    return out


_EXPR_START, _EXPR_END = "/Expr(", ")/"


def _literal(value: Any) -> bool:
    """True if classad2 would evaluate this JSON value to itself (null: UNDEFINED, None).
    HTCondor writes an expression as the string "\\/Expr(...)\\/", "/Expr(...)/" once decoded."""
    if value is None or value.__class__ in (int, float, bool):
        return True
    return value.__class__ is str and not (value.startswith(_EXPR_START)
                                           and value.endswith(_EXPR_END))


def _literal_values(item: Any, names: list[tuple[str, str]]) -> dict[str, Any] | None:
    """The wanted attributes of one JSON ad if each is a literal (names matched without
    regard to case, as in ClassAds); None if any needs classad2 to evaluate it."""
    if not isinstance(item, dict):
        return None
    out: dict[str, Any] = {}
    for name, _key in names:  # the usual case: the names as asked for, and nothing else
        if name in item:
            value = item[name]
            if value.__class__ is not int and not _literal(value):
                return None
            out[name] = value
    if len(out) == len(item):
        return out
    folded = {str(k).lower(): v for k, v in item.items()}
    out = {}
    for name, key in names:
        if key in folded:
            value = folded[key]
            if not _literal(value):
                return None
            out[name] = value
    return out


def _classad_from_json(item: Any) -> Any:
    """One decoded JSON ad parsed by classad2, written back as HTCondor wrote it: UTF-8 (the
    parser misreads \\u escapes) and each expression as "\\/Expr(...)\\/", the only form it
    takes for one; json.dumps writes "/" plainly, so every "/" is escaped again, which leaves
    every string as it was."""
    import classad2

    text = json.dumps(item, ensure_ascii=False).replace("/", "\\/")
    return classad2.parseOne(text, classad2.ParserType.JSON)


def _json_lists(text: str) -> list[Any]:
    """The items of one JSON list, or of several printed one after another (one per
    schedd when the queues of several are read in one command)."""
    decoder = json.JSONDecoder()
    items: list[Any] = []
    pos = 0
    while pos < len(text):
        raw, pos = decoder.raw_decode(text, pos)
        if not isinstance(raw, list):
            raise ValueError("not a list of ads")
        items += raw
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return items


def ads_from_json(text: str, attrs: Iterable[str]) -> list[dict[str, Any]]:
    """Parse `condor_* -json` output (a JSON list of ads, or nothing) and evaluate it.

    An ad whose wanted attributes are all literals (numbers, strings, booleans, null) is
    read straight from json.loads; one with an expression among them (or a list or a nested
    ad) is parsed and evaluated by classad2, in the context of the whole ad."""
    text = text.strip()
    if not text:
        return []
    if not text.startswith("["):
        raise CondorError(f"unexpected output instead of JSON ads: {text.splitlines()[0][:120]}")
    names = list(attrs)
    folded = [(name, name.lower()) for name in names]
    parsed: list[dict[str, Any] | None] = []
    ads: dict[int, Any] = {}
    try:
        # The bindings' JSON stream parser (25.x) stops after the first ad of a list, so the
        # list is split with json and only the ads that need it are parsed by classad2.
        raw = _json_lists(text)
        for n, item in enumerate(raw):
            values = _literal_values(item, folded)
            if values is None:
                ads[n] = _classad_from_json(item)
            parsed.append(values)
    except Exception as err:
        raise CondorError(f"cannot parse the ads returned: {err}") from err
    return [values if values is not None else _plain(ads[n], names)
            for n, values in enumerate(parsed)]


def read_attrs(attrs: Sequence[str], grouped: bool) -> list[str]:
    """The attributes to read back from a job query's ads: for a grouped query, its
    projection and each group's JobCount."""
    return [*group_projection(attrs), "JobCount"] if grouped else list(attrs)


def condor_status_argv(constraint: str | None = None) -> list[str]:
    argv = ["condor_status", "-json", "-attributes", ",".join(SLOT_ATTRS)]
    return [*argv, "-constraint", constraint] if constraint else argv


def group_projection(attrs: Sequence[str]) -> list[str]:
    """The projection of a grouped job query: the schedd applies the constraint to the
    groups, which carry only projected attributes, so JobStatus is always one of them."""
    return [*attrs, "JobStatus"] if "JobStatus" not in attrs else list(attrs)


def condor_q_argv(constraint: str | None = None, attrs: Sequence[str] = JOB_ATTRS,
                  grouped: bool = False) -> list[str]:
    argv = ["condor_q", "-allusers", "-json"]
    if grouped:
        argv += ["-group-by", "-attributes", ",".join(group_projection(attrs))]
    else:
        argv += ["-attributes", ",".join(attrs)]
    return [*argv, "-constraint", constraint] if constraint else argv


def all_schedds_argv(constraint: str | None, attrs: Sequence[str],
                     grouped: bool = False) -> list[str]:
    """Every schedd the collector lists, each once; the local one alone while a restarted
    collector has heard from none yet. Any schedd that does not answer fails the command,
    as a pass that cannot read the whole queue acts on nothing."""
    tool, *args = condor_q_argv(constraint, attrs, grouped)
    query = shlex.join(args)
    script = ('names=$(condor_status -schedd -af Name) || exit $?; '
              f'if [ -z "$names" ]; then exec {tool} {query}; fi; '
              f'for s in $names; do {tool} -name "$s" {query} || exit $?; done')
    return ["sh", "-c", script]


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
        return [_plain(ad, SLOT_ATTRS) for ad in ads]

    def job_ads(self, constraint: str | None = None, attrs: Sequence[str] = JOB_ATTRS,
                all_schedds: bool = False, grouped: bool = False) -> list[dict[str, Any]]:
        htcondor2 = _bindings()
        projection = group_projection(attrs) if grouped else list(attrs)
        opts = htcondor2.QueryOpt.GroupBy if grouped else htcondor2.QueryOpt.Default

        try:
            coll = htcondor2.Collector(self.collector_host) if self.collector_host \
                else htcondor2.Collector()
            if self.collector_host or self.schedd_name:
                found = coll.query(htcondor2.AdTypes.Schedd,
                                   f'Name == "{self.schedd_name}"' if self.schedd_name
                                   else "true")
                if not found:
                    raise CondorError(f"no schedd found at {self.where}")
                schedds = [htcondor2.Schedd(found[0])]
            elif all_schedds:
                # As all_schedds_argv: each schedd the collector lists, or the local one.
                listed = coll.query(htcondor2.AdTypes.Schedd)
                schedds = [htcondor2.Schedd(ad) for ad in listed] or [htcondor2.Schedd()]
            else:
                schedds = [htcondor2.Schedd()]
            ads = [ad for schedd in schedds
                   for ad in schedd.query(constraint or "true", projection, opts=opts)]
        except CondorError:
            raise
        except Exception as err:
            raise CondorError(f"cannot query the schedd: {err}") from err
        return [_plain(ad, read_attrs(attrs, grouped)) for ad in ads]


def local_condor_config() -> Path | None:
    env = os.environ.get("CONDOR_CONFIG")
    if env:
        return Path(env) if Path(env).is_file() else None
    for candidate in ("/etc/condor/condor_config", "/usr/local/etc/condor_config"):
        if Path(candidate).is_file():
            return Path(candidate)
    return None


def runs_central_manager(daemon_list: str | None = None) -> bool:
    """True if this host's HTCondor configuration runs a collector and a schedd."""
    if daemon_list is None:
        if local_condor_config() is None:
            return False
        try:
            import htcondor2

            daemon_list = str(htcondor2.param.get("DAEMON_LIST", ""))
        except Exception:
            return False
    names = {d.strip().upper() for d in daemon_list.replace(",", " ").split()}
    return {"COLLECTOR", "SCHEDD"} <= names


def choose_transport(requested: str, on_central_manager: bool, ssh_host: str) -> Transport:
    """auto: the bindings on the central manager; else ssh if a host is configured; else SSM."""
    if requested != "auto":
        try:
            return Transport(requested)
        except ValueError:
            raise HtcpoolError(f"unknown transport '{requested}' "
                               "(choose auto, local, ssm or ssh)") from None
    if on_central_manager:
        return Transport.LOCAL
    return Transport.SSH if ssh_host else Transport.SSM


def open_source(config: Config, cloud_factory: Callable[[], Cloud],
                transport: str | None = None) -> PoolSource:
    """The PoolSource for this configuration (the central manager is found by tag)."""
    from orchestrator.condor_remote import SshSource, SsmSource

    cc = config.condor
    requested = transport or cc.transport
    on_cm = requested == "auto" and runs_central_manager()
    chosen = choose_transport(requested, on_cm, cc.ssh_host)
    if chosen is Transport.LOCAL:
        return LocalSource()
    if chosen is Transport.SSH and cc.ssh_host:
        return SshSource(cc.ssh_host, cc.ssh_user, cc.ssh_key_file, cc.ssh_options,
                         cc.ssm_timeout_s)
    cloud = cloud_factory()
    cm = cloud.central_manager()
    if chosen is Transport.SSM:
        return SsmSource(cloud, cm.id, cc.ssm_timeout_s)
    host = cm.private_ip or cm.public_ip
    if not host:
        raise HtcpoolError(f"central manager {cm.id} has no IP address to ssh to")
    return SshSource(host, cc.ssh_user, cc.ssh_key_file, cc.ssh_options, cc.ssm_timeout_s)
