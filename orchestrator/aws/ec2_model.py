"""botocore's EC2 model, narrowed to what htcpool reads of an instance.

botocore parses every member its model names for each instance of a DescribeInstances
reply, some 60 (network interfaces, block devices, ...), though `Instance.from_api` reads
13: for a 1,000-instance pool that parse was most of an autoscaler pass's CPU. A Cloud's
session therefore loads the model from a data path (botocore's documented way to add
models, as AWS_DATA_PATH does) that holds a copy whose Instance shape has only those
members; everything else is botocore's own. The copy is written once per botocore version
and member list under the user's cache directory; if it cannot be, the full model is used.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from orchestrator.paths import user_cache_dir

log = logging.getLogger(__name__)

# What records.Ec2Instance.from_api reads; an integration test checks that records read
# through the narrowed model equal those read through the full one.
INSTANCE_MEMBERS = frozenset({
    "InstanceId", "ImageId", "InstanceType", "State", "Monitoring", "PrivateIpAddress",
    "PrivateDnsName", "PublicIpAddress", "Placement", "SubnetId", "LaunchTime", "Tags",
    "IamInstanceProfile"})


def narrowed_data_path(cache_dir: Path | None = None) -> Path | None:
    """A botocore data path whose EC2 model names only INSTANCE_MEMBERS of an instance;
    None if it cannot be written (botocore then uses its full model)."""
    import botocore
    import botocore.loaders

    loader = botocore.loaders.create_loader()  # a fresh one: its cache is thrown away
    api = loader.determine_latest_version("ec2", "service-2")
    # Keyed by the members too: a copy written for another list is never read.
    members = hashlib.sha256(",".join(sorted(INSTANCE_MEMBERS)).encode()).hexdigest()[:12]
    root = (cache_dir or user_cache_dir()) / "botocore" / f"{botocore.__version__}-{members}"
    target = root / "ec2" / api / "service-2.json"
    if target.is_file():
        return root
    try:
        model: dict[str, Any] = loader.load_service_model("ec2", "service-2", api)
        shape = model["shapes"]["Instance"]
        shape["members"] = {k: v for k, v in shape["members"].items() if k in INSTANCE_MEMBERS}
        target.parent.mkdir(parents=True, exist_ok=True)
        # Written aside and renamed: a concurrent reader sees the whole file or none.
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".service-2.")
        try:
            with os.fdopen(fd, "w") as out:
                json.dump(model, out)
            os.replace(tmp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    except (OSError, KeyError) as err:
        log.debug("full EC2 model in use: %s", err)
        return None
    return root


def use_narrowed_model(botocore_session: Any, cache_dir: Path | None = None) -> bool:
    """Make `botocore_session`'s clients created from now on load the narrowed EC2 model."""
    root = narrowed_data_path(cache_dir)
    if root is None:
        return False
    paths = botocore_session.get_component("data_loader").search_paths
    if str(root) not in paths:
        paths.insert(0, str(root))
    return True
