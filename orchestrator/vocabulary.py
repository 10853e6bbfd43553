"""The pool's vocabulary: tag names, roles, instance states, the instance-id pattern.

One definition for every part of htcpool (AWS adapter, HTCondor adapter, planner, runtime,
simulator, CLI); CONVENTIONS.md is its prose. Pure data: no boto3, no htcondor.
"""

from __future__ import annotations

import re
from enum import StrEnum

# --- tags (CONVENTIONS.md) ---------------------------------------------------------------
TAG_POOL = "htcpool:pool"
TAG_ROLE = "htcpool:role"
TAG_VERSION = "htcpool:version"
TAG_LAUNCHED_BY = "htcpool:launched-by"
TAG_NAME = "Name"
# Since when a worker has been wholly unclaimed (kept across autoscaler restarts: a
# partitionable slot's own EnteredCurrentState does not change as dynamic slots come and go).
TAG_IDLE_SINCE = "htcpool:idle-since"
# Set the first time a worker's startd is seen in the collector: a worker that joined once
# and is missing now (collector restarted, startd down) is not one that "never joined".
TAG_JOINED = "htcpool:joined"
# When a joined, running worker was first found missing from the collector (cleared when
# its startd is seen again): how long it has been gone survives a restart of the autoscaler.
TAG_MISSING_SINCE = "htcpool:missing-since"
# Set once the worker's own startd (at the instance's private address) accepted the
# autoscaler's drain; removal requires it, so a forged "drained" ad cannot get a busy
# worker removed. Cleared when the drain is cancelled or the worker is seen not draining.
TAG_DRAINED = "htcpool:drained"


class Role(StrEnum):
    """Values of the htcpool:role tag (instances, and worker images)."""

    CENTRAL_MANAGER = "central-manager"
    WORKER = "worker"
    BUILDER = "builder"
    WORKER_IMAGE = "worker-image"


class LaunchedBy(StrEnum):
    """Values of the htcpool:launched-by tag."""

    AUTOSCALER = "autoscaler"
    CLI = "cli"
    PLAYBOOK = "playbook"


class InstanceState(StrEnum):
    """EC2 instance states."""

    PENDING = "pending"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    SHUTTING_DOWN = "shutting-down"
    TERMINATED = "terminated"


# Instances that exist (cost money or disk): what the pool lists and acts on.
LIVE_STATES = (InstanceState.PENDING, InstanceState.RUNNING, InstanceState.STOPPING,
               InstanceState.STOPPED)

# What EC2 instance ids look like (8 or 17 hex digits today; wider, as EC2 documents, for the
# CLI's checks of user input). Anything else never reaches an API call or a ClassAd query.
INSTANCE_ID = re.compile(r"i-[0-9a-f]{8,17}")
INSTANCE_ID_LOOSE = re.compile(r"i-[0-9A-Za-z]{1,64}")


def parameter_prefix(pool: str) -> str:
    """Where the pool's SSM parameters live (CONVENTIONS.md)."""
    return f"/htcpool/{pool}"
