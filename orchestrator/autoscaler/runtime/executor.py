"""Carry out a Plan: the only part of the autoscaler with side effects.

Order: replace workers that never joined or were lost (re-checked in the collector first),
cancel the drain of idle workers the queue needs again, start warm (stopped) workers, launch
the rest in one request per instance type, drain idle workers in HTCondor (the startd
itself refuses unless wholly unclaimed at that instant), re-check them right before acting,
then terminate (or stop) only those whose fresh ads are drained and wholly unclaimed.

Every step is isolated (one failing does not abort the others) and every instance the plan
names is checked to be a tagged worker of this pool first: the central manager and
instances without the pool's tags are never touched, whatever the plan says. Before every
step, and again right before a terminate or stop, the fence checks that this autoscaler
still holds the pool's lease; once it fails, nothing more is done in the pass.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator.autoscaler.planner.capacity import root_volume_gb
from orchestrator.autoscaler.planner.config import AutoscalerConfig
from orchestrator.autoscaler.planner.model import Plan, RemovalAction
from orchestrator.autoscaler.runtime.lease import LeaseLost
from orchestrator.autoscaler.runtime.observe import Observed, TagChanges
from orchestrator.autoscaler.runtime.ports import CondorActuator, WorkerCloud
from orchestrator.aws.launch import LaunchError
from orchestrator.aws.records import Ec2Instance, LaunchRequest
from orchestrator.condor.actions import CHECK_REFUSED
from orchestrator.errors import describe_exception
from orchestrator.vocabulary import TAG_DRAINED, LaunchedBy

log = logging.getLogger("htcpool.autoscaler")
Event = Callable[..., None]


@dataclass(frozen=True)
class LaunchSpec:
    """Where and how workers are launched (resolved from tags and config once per pass)."""

    image_id: str
    subnets: Sequence[str]
    security_groups: Sequence[str]
    instance_profile: str
    key_name: str = ""
    root_device: str = ""  # the image's RootDeviceName ("" keeps the image's volume)
    root_volume_gb: int = 0  # the image's root snapshot size: volumes are at least this


@dataclass
class Outcome:
    launched: list[str] = field(default_factory=list)
    # The launched instances as RunInstances returned them (the next pass counts them even
    # if DescribeInstances does not list them yet).
    new_instances: list[Ec2Instance] = field(default_factory=list)
    started: list[str] = field(default_factory=list)
    drained: list[str] = field(default_factory=list)
    undrained: list[str] = field(default_factory=list)
    forgotten: list[str] = field(default_factory=list)  # stale startd ads removed
    removed: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # removal skipped by the re-check
    refused: list[str] = field(default_factory=list)  # drain refused: claimed at that instant
    errors: list[str] = field(default_factory=list)
    fenced: bool = False  # the lease was not safely held: the rest of the pass was skipped


def fallback_types(config: AutoscalerConfig, wanted: str) -> list[str]:
    """The wanted type, then every shape at least as large, cheapest first."""
    shape = config.shape(wanted)
    if shape is None:
        return [wanted]
    bigger = sorted((s for s in config.shapes if s.name != wanted and s.cpus >= shape.cpus
                     and s.memory_mb >= shape.memory_mb and s.gpus >= shape.gpus),
                    key=lambda s: (s.price_per_hour, s.name))
    return [wanted, *(s.name for s in bigger)]


class Executor:
    def __init__(self, cloud: WorkerCloud, condor: CondorActuator, config: AutoscalerConfig,
                 spec: Callable[[], LaunchSpec], event: Event) -> None:
        self.cloud = cloud
        self.condor = condor
        self.config = config
        self.spec = spec
        self.event = event
        self._fence: Callable[[], None] = lambda: None
        # Workers whose startd accepted this process's drain (TAG_DRAINED may not show in
        # DescribeInstances yet).
        self._drained_here: set[str] = set()

    def execute(self, plan: Plan, observed: Observed, cycle: str,
                fence: Callable[[], None] | None = None) -> Outcome:
        out = Outcome()
        self._fence = fence or (lambda: None)
        obs = observed.observation
        ours = {i.instance_id for i in obs.instances if i.is_worker_of(obs.pool)}
        self._step(out, "tags", lambda: self._apply_tags(observed.tags, ours))
        if observed.stale_ads:
            self._step(out, "forget", lambda: self._forget(observed.stale_ads, out))
        for what, ids in (("replace", [r.instance_id for r in plan.replacements]),
                          ("undrain", [u.instance_id for u in plan.undrains]),
                          ("start", [s.instance_id for s in plan.starts]),
                          ("drain", [d.instance_id for d in plan.drains]),
                          ("remove", [r.instance_id for r in plan.removals])):
            foreign = [i for i in ids if i not in ours]
            if foreign:
                out.errors.append(f"refused to {what} {', '.join(foreign)}: not a tagged worker "
                                  f"of pool {obs.pool}")
                self.event("refused", action=what, instances=foreign)
        replacements = [r for r in plan.replacements if r.instance_id in ours]
        if replacements:
            self._step(out, "replace", lambda: self._replace(replacements, out))
        undrains = [u for u in plan.undrains if u.instance_id in ours]
        if undrains:
            self._step(out, "undrain", lambda: self._undrain(undrains, observed, out))
        starts = [s for s in plan.starts if s.instance_id in ours]
        if starts:
            self._step(out, "start", lambda: self._start([s.instance_id for s in starts],
                                                         [s.reason for s in starts], out))
        wanted: dict[str, tuple[int, str, tuple[str, ...]]] = {}
        for launch in plan.launches:
            count, why, _ = wanted.get(launch.instance_type, (0, launch.reason, ()))
            wanted[launch.instance_type] = (count + launch.count, why, launch.fallbacks)
        for r in replacements:
            if r.instance_id not in out.replaced or not r.relaunch:
                continue  # kept by the re-check, its termination failed, or not needed
            count, why, alt = wanted.get(r.instance_type, (0, "", ()))
            wanted[r.instance_type] = (count + 1, why or f"replacing {r.instance_id}: "
                                       f"{r.reason}", alt)
        for itype, (count, why, alt) in sorted(wanted.items()):
            types = [itype, *alt] if alt else fallback_types(self.config, itype)
            self._step(out, "launch", lambda t=types, n=count, w=why: self._launch(  # type: ignore[misc]
                t, n, w, cycle, out))
        drains = [d for d in plan.drains if d.instance_id in ours]
        if drains:
            self._step(out, "drain", lambda: self._drain(drains, observed, out))
        removals = [r for r in plan.removals if r.instance_id in ours]
        if removals:
            self._step(out, "remove", lambda: self._remove(removals, observed, out))
        return out

    def _step(self, out: Outcome, name: str, fn: Callable[[], Any]) -> None:
        if out.fenced:
            return
        try:
            self._fence()
            fn()
        except LeaseLost as exc:
            out.fenced = True
            out.errors.append(f"{name} and the rest of the pass skipped: {exc}")
            self.event("fenced", step=name, reason=str(exc))
        except Exception as exc:
            message = f"{name} failed: {describe_exception(exc)}"
            out.errors.append(message)
            self.event("error", step=name, error=describe_exception(exc))
            log.debug("step %s failed", name, exc_info=True)

    def _apply_tags(self, changes: TagChanges, ours: set[str]) -> None:
        for tag, values in sorted(changes.set.items()):
            by_value: dict[str, list[str]] = {}
            for iid, value in values.items():
                if iid in ours:
                    by_value.setdefault(value, []).append(iid)
            for value, ids in sorted(by_value.items()):
                self.cloud.tag(sorted(ids), tag, value)
        for tag, listed in sorted(changes.clear.items()):
            clear = sorted(i for i in listed if i in ours)
            if clear:
                self.cloud.untag(clear, tag)

    def _forget(self, stale: dict[str, str], out: Outcome) -> None:
        self.condor.invalidate(sorted(stale))
        out.forgotten += sorted(stale)
        for iid, machine in sorted(stale.items()):
            self.event("forget", instance=iid, machine=machine,
                       reason="startd ad of an instance EC2 reports stopped or gone")

    def _replace(self, replacements: Sequence[Any], out: Outcome) -> None:
        # A startd that shows up now joined late (or came back): keep it, launch nothing.
        fresh = self.condor.recheck([r.instance_id for r in replacements])
        ids = []
        for r in replacements:
            if fresh.get(r.instance_id):
                out.kept.append(r.instance_id)
                self.event("keep", instance=r.instance_id, reason="in the collector at re-check")
            else:
                ids.append(r.instance_id)
        if not ids:
            return
        self._fence()
        self.cloud.terminate(ids)
        out.replaced += ids
        for r in replacements:
            if r.instance_id in ids:
                self.event("terminate", instance=r.instance_id, reason=f"replace: {r.reason}")

    def _undrain(self, undrains: Sequence[Any], observed: Observed, out: Outcome) -> None:
        before = len(out.undrained)
        self._on_machines(undrains, observed, self.condor.cancel_drain, "undrain",
                          "cancelling the drain of", out, out.undrained)
        self._anchor(out.undrained[before:], drained=False)

    def _anchor(self, ids: list[str], drained: bool) -> None:
        """Record (or clear) TAG_DRAINED on workers whose drain was accepted (cancelled)."""
        if not ids:
            return
        if drained:
            self._drained_here.update(ids)
            self.cloud.tag(sorted(ids), TAG_DRAINED, "true")
        else:
            self._drained_here.difference_update(ids)
            self.cloud.untag(sorted(ids), TAG_DRAINED)

    def _start(self, ids: list[str], reasons: list[str], out: Outcome) -> None:
        self.cloud.start(ids)
        out.started += ids
        self.event("start", instances=ids, reason=reasons[0] if reasons else "")

    def _launch(self, types: list[str], count: int, why: str, cycle: str, out: Outcome
                ) -> None:
        spec = self.spec()
        itype = types[0]
        req = LaunchRequest(count=count, image_id=spec.image_id, instance_types=types,
                            subnets=list(spec.subnets), security_groups=list(spec.security_groups),
                            instance_profile=spec.instance_profile, key_name=spec.key_name,
                            client_token=f"htcpool-{cycle}-{itype}",
                            launched_by=LaunchedBy.AUTOSCALER, spot=self.config.spot,
                            root_device=spec.root_device,
                            root_volume_gb={s.name: max(root_volume_gb(s, self.config),
                                                        spec.root_volume_gb)
                                            for s in self.config.shapes})
        try:
            launched = self.cloud.launch(req)
        except LaunchError as exc:  # some were launched before the error: they count
            out.launched += [i.id for i in exc.launched]
            out.new_instances += exc.launched
            if exc.launched:
                self.event("launch", instance_type=itype, count=len(exc.launched),
                           instances=[i.id for i in exc.launched], reason=why)
            raise
        out.launched += [i.id for i in launched]
        out.new_instances += launched
        types = sorted({i.instance_type for i in launched})
        self.event("launch", instance_type=",".join(types) or itype, count=len(launched),
                   instances=[i.id for i in launched], reason=why)

    def _drain(self, drains: Sequence[Any], observed: Observed, out: Outcome) -> None:
        before = len(out.drained)
        self._on_machines(drains, observed, self.condor.drain, "drain", "drain of", out,
                          out.drained)
        self._anchor(out.drained[before:], drained=True)

    def _on_machines(self, actions: Sequence[Any], observed: Observed,
                     op: Callable[[Sequence[str]], dict[str, str]], kind: str, failure: str,
                     out: Outcome, done: list[str]) -> None:
        """One condor_drain command (or its -cancel) for the machines of these workers, in
        one round trip; a worker without a known machine or whose command failed is an
        error, the others are recorded and logged."""
        known = {a.instance_id: m for a in actions
                 if (m := observed.machines.get(a.instance_id))}
        failed = op(sorted(known.values()))
        for a in actions:
            machine = known.get(a.instance_id)
            if machine is not None and CHECK_REFUSED in failed.get(machine, ""):
                # Claimed since the pass looked: the startd refused, nothing changed.
                out.refused.append(a.instance_id)
                self.event("keep", instance=a.instance_id, machine=machine,
                           reason="claimed when the drain reached the startd; not drained")
                continue
            if machine is None or machine in failed:
                why = failed.get(machine or "", "no machine name known")
                out.errors.append(f"{failure} {a.instance_id} failed: {why}")
                continue
            done.append(a.instance_id)
            self.event(kind, instance=a.instance_id, machine=machine, reason=a.reason)

    def _remove(self, removals: Sequence[Any], observed: Observed, out: Outcome) -> None:
        # Two phases across passes: a worker drained in this pass is removed in a later one,
        # once the collector shows it draining and a fresh query shows no claim. A drained
        # startd accepts no new match, so nothing can start on it after that query.
        draining = {s.instance_id for s in observed.observation.startds if s.draining}
        tags = {i.instance_id: i.tags for i in observed.observation.instances}
        candidates, cancel = [], []
        for r in removals:
            iid = r.instance_id
            if iid not in draining:
                out.kept.append(iid)
                self.event("keep", instance=iid,
                           reason="drain requested; removal once the drain shows")
            elif TAG_DRAINED not in tags.get(iid, {}) and iid not in self._drained_here:
                # Draining, but no drain of ours was accepted by its startd (or the ad
                # saying so is forged): start over, with a drain this autoscaler sees through.
                out.kept.append(iid)
                if iid in observed.machines:
                    cancel.append((iid, observed.machines[iid]))
                self.event("keep", instance=iid, reason=f"draining without {TAG_DRAINED}: "
                           "the drain is cancelled and requested again")
            else:
                candidates.append(r)
        fresh = self.condor.recheck([r.instance_id for r in candidates])
        go: dict[RemovalAction, list[str]] = {RemovalAction.TERMINATE: [], RemovalAction.STOP: []}
        for r in candidates:
            # Only ads at the instance's own address count (observe.py).
            slots = [s for s in fresh.get(r.instance_id, [])
                     if s.address_ip is not None
                     and s.address_ip == observed.private_ips.get(r.instance_id)]
            if not slots:
                out.kept.append(r.instance_id)
                self.event("keep", instance=r.instance_id, reason="startd not in the collector")
            elif any(s.claimed for s in slots):
                out.kept.append(r.instance_id)
                cancel.append((r.instance_id,
                               observed.machines.get(r.instance_id) or slots[0].machine))
                self.event("keep", instance=r.instance_id, reason="claimed at re-check")
            elif not all(s.draining for s in slots):
                out.kept.append(r.instance_id)
                self.event("keep", instance=r.instance_id,
                           reason="not draining at re-check (drain cancelled)")
            else:
                go[r.action].append(r.instance_id)
        if cancel:
            failed = self.condor.cancel_drain([m for _, m in cancel])
            self._anchor([i for i, m in cancel if m not in failed], drained=False)
        reasons = {r.instance_id: r.reason for r in removals}
        for action, ids in go.items():
            if not ids:
                continue
            self._fence()  # the re-check can take a while: still ours?
            if action is RemovalAction.STOP:
                self.cloud.stop(ids)
            else:
                self.cloud.terminate(ids)
            out.removed += ids
            for iid in ids:
                self.event(str(action), instance=iid, reason=reasons[iid])
            if action is RemovalAction.STOP:  # started again later, it must drain anew
                self._anchor(ids, drained=False)
            self._drained_here.difference_update(ids)
