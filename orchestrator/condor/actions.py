"""The HTCondor side of the autoscaler's executor: drain workers, cancel drains, re-check
claims, remove stale startd ads (runtime/ports.py: CondorActuator).

Runs on the same transport as the pool views (condor/source.py: `PoolSource`): the
bindings' command-line tools locally on the central manager, or the same commands over
SSM / ssh. condor_drain is issued from the central manager, whose administrator identity
the workers trust (IDTOKENS).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterable, Sequence

from orchestrator.condor.records import Slot
from orchestrator.condor.source import PoolSource
from orchestrator.vocabulary import INSTANCE_ID

# Every drain the autoscaler starts carries this reason (the startd's DrainReason), so a
# drain it finds on a claimed worker is known to be its own to cancel; an administrator's
# drain is left alone.
DRAIN_REASON_PREFIX = "htcpool autoscaler"
DRAIN_REASON = f"{DRAIN_REASON_PREFIX}: idle past idle_timeout_s"
# The startd drains only if this holds for every slot at that instant: no claim, not even
# one the negotiator made since the autoscaler looked. Otherwise the drain is refused and
# nothing changes (a job matched in between is never evicted by a drain).
DRAIN_CHECK = 'State == "Unclaimed"'
CHECK_REFUSED = "Draining check expression is false"


class CondorActions:
    def __init__(self, source: PoolSource) -> None:
        self.source = source

    def _run(self, argv: list[str]) -> str:
        return self.source.run_tool(argv)

    def drain(self, machines: Sequence[str]) -> dict[str, str]:
        """Graceful drain of machines the startd itself finds wholly unclaimed (DRAIN_CHECK).
        Returns the failures by machine (a refused check says CHECK_REFUSED)."""
        return self._each(machines, lambda m: ["condor_drain", "-graceful", "-check",
                                               DRAIN_CHECK, "-reason", DRAIN_REASON, m])

    def cancel_drain(self, machines: Sequence[str]) -> dict[str, str]:
        return self._each(machines, lambda m: ["condor_drain", "-cancel", m])

    def invalidate(self, instance_ids: Sequence[str]) -> None:
        """Remove these instances' startd ads from the collector (INVALIDATE_STARTD_ADS with
        one query ad each, sent together)."""
        # The ids come from the ads themselves: only well-formed ones go into the query.
        ids = sorted(i for i in instance_ids if INSTANCE_ID.fullmatch(i))
        if not ids:
            return
        ads = "\n\n".join(f'MyType = "Query"\nTargetType = "Machine"\n'
                           f'Requirements = EC2InstanceId == "{i}"' for i in ids)
        self._run(["sh", "-c", f"printf '%s\\n' {shlex.quote(ads)} | "
                   "condor_advertise -multiple INVALIDATE_STARTD_ADS -"])

    def _each(self, machines: Sequence[str], argv: Callable[[str], list[str]]
              ) -> dict[str, str]:
        if not machines:
            return {}
        # One remote round trip for all machines; each command's failure is reported alone,
        # with the last line it wrote (after a tab: a machine name holds none).
        script = "; ".join(
            f"if ! o=$({shlex.join(argv(m))} 2>&1); then printf 'FAILED %s\\t%s\\n' "
            f"{shlex.quote(m)} \"$(printf '%s\\n' \"$o\" | grep . | tail -n 1)\"; fi"
            for m in machines)
        out = self._run(["sh", "-c", script])
        failed: dict[str, str] = {}
        for line in out.splitlines():
            if line.startswith("FAILED "):
                machine, _, reason = line[len("FAILED "):].partition("\t")
                failed[machine] = reason.strip() or "condor_drain failed"
        return failed

    def recheck(self, instance_ids: Iterable[str]) -> dict[str, list[Slot]]:
        """Fresh startd ads of these workers, by instance id (the re-check before removal)."""
        ids = sorted(set(instance_ids))
        if not ids:
            return {}
        constraint = " || ".join(f'EC2InstanceId == "{i}"' for i in ids)
        out: dict[str, list[Slot]] = {i: [] for i in ids}
        for slot in self.source.slots(constraint):
            if slot.ec2_instance_id in out:
                out[slot.ec2_instance_id].append(slot)
        return out
