"""The AWS partition of a region (``aws``, ``aws-cn``, ``aws-us-gov``, ``aws-iso``...), from botocore's data.

AWS writes the partition of the region a resource lives in at the head of its ARN. pcaq takes the
answer from the partition data botocore ships (``partitions.json``, the file the SDKs' endpoint
rules read), so a new partition or region arrives with a botocore upgrade, not with a pcaq change.
"""

from __future__ import annotations

import re
from functools import cache, lru_cache
from typing import Any

DEFAULT_PARTITION = "aws"


@cache
def _partitions() -> tuple[tuple[str, frozenset[str], re.Pattern[str]], ...]:
    """``(id, regions listed, regionRegex)`` of every partition, in botocore's order (read once)."""
    from botocore.loaders import create_loader  # loaded on first use: only the API process needs it

    data: dict[str, Any] = create_loader().load_data("partitions")
    return tuple(
        (p["id"], frozenset(p.get("regions", ())), re.compile(p["regionRegex"])) for p in data["partitions"]
    )


# Regions come from the callers' SigV4 scopes (any [a-z0-9-]{1,32}): the cache is bounded.
@lru_cache(maxsize=1024)
def partition_of(region: str) -> str:
    """The partition of ``region``: the partition that lists it, else the one whose region pattern it
    matches, else ``aws`` (what the SDKs assume for a region they do not know)."""
    partitions = _partitions()
    for pid, regions, _ in partitions:
        if region in regions:
            return pid
    for pid, _, pattern in partitions:
        if pattern.match(region):
            return pid
    return DEFAULT_PARTITION
