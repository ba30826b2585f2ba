"""Records of the operator's key blocklist: a set of SPKI SHA-256 fingerprints and a version counter
that moves with every change (workers re-read the set only when it moved)."""

from __future__ import annotations

from collections.abc import Iterable

import redis

from pcaq.records import keys


class BlocklistRecords:
    """Mixin of :class:`pcaq.records.Store`."""

    r: redis.Redis

    def blocklist_add(self, fingerprints: Iterable[str]) -> int:
        """Add fingerprints; returns how many were new."""
        return self._blocklist_change("sadd", fingerprints)

    def blocklist_remove(self, fingerprints: Iterable[str]) -> int:
        """Remove fingerprints; returns how many were there."""
        return self._blocklist_change("srem", fingerprints)

    def _blocklist_change(self, command: str, fingerprints: Iterable[str]) -> int:
        items = sorted(set(fingerprints))
        if not items:
            return 0
        pipe = self.r.pipeline()
        getattr(pipe, command)(keys.KEY_BLOCKLIST, *items)
        pipe.incr(keys.KEY_BLOCKLIST_VERSION)  # workers reload the list when the version moves
        changed, _ = pipe.execute()
        return int(changed)

    def blocklist_members(self) -> set[str]:
        """Every fingerprint on the list."""
        return {m.decode() for m in self.r.smembers(keys.KEY_BLOCKLIST)}

    def blocklist_version(self) -> int:
        """A number that changes whenever the list changes (0 when it never had an entry)."""
        return int(self.r.get(keys.KEY_BLOCKLIST_VERSION) or 0)
