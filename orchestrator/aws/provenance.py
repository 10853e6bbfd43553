"""Which instances the pool launched, judged by what tagging cannot change.

Anyone allowed to tag can add `htcpool:pool` and `htcpool:role=worker` to any instance, so
the tags alone only say which instances *claim* to be the pool's. A worker the pool
launched also runs one of the pool's worker images (`htcpool:role=worker-image` images of
this account) with the pool's worker instance profile; a central manager has the central
manager's profile. Neither an instance's image nor its profile can be changed by tagging,
and htcpool's policies allow no profile association. The autoscaler leaves out what fails
this check, and the CLI refuses it without --force.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from orchestrator.aws.records import Ec2Instance
from orchestrator.vocabulary import Role

# Images are listed again after this long: a newly baked image is trusted within minutes.
IMAGES_TTL_S = 300.0


def provenance_problem(inst: Ec2Instance, pool: str, images: frozenset[str],
                       worker_profile: str, central_manager_profile: str) -> str | None:
    """Why this pool-tagged instance is not one the pool launched; None if it is."""
    if inst.pool != pool:
        return f"not tagged with pool '{pool}'"
    if inst.role == Role.CENTRAL_MANAGER:
        wanted = central_manager_profile
    elif inst.role in (Role.WORKER, Role.BUILDER):
        wanted = worker_profile
    else:
        return f"its role tag is {inst.role!r}"
    if inst.instance_profile != wanted:
        return (f"its instance profile is {inst.instance_profile or 'none'}, "
                f"not the pool's {wanted}")
    if inst.role == Role.WORKER and inst.image_id not in images:
        return f"its image {inst.image_id or '?'} is not one of the pool's worker images"
    return None


class PoolImages:
    """The pool's worker image ids, listed at most every IMAGES_TTL_S."""

    def __init__(self, list_ids: Callable[[], Iterable[str]],
                 clock: Callable[[], float]) -> None:
        self._list = list_ids
        self._clock = clock
        self._ids: frozenset[str] | None = None
        self._at = 0.0

    def ids(self, refresh_for: Iterable[str] = ()) -> frozenset[str]:
        """The ids; listed again first when stale, or when an image in `refresh_for` is
        not among them (an image baked since the last listing)."""
        now = self._clock()
        unknown = self._ids is not None and any(i not in self._ids for i in refresh_for)
        if (self._ids is None or now - self._at > IMAGES_TTL_S
                or (unknown and now - self._at > 10.0)):
            self._ids = frozenset(self._list())
            self._at = now
        return self._ids
