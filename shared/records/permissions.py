"""Records of a CA's permissions (one hash per CA) and resource policy (one string per CA)."""

from __future__ import annotations

import json

import redis

from pcaq.records import keys


def _field(principal: str, source_account: str) -> str:
    return f"{principal} {source_account}"  # a principal holds no space (it is a service name)


class PermissionRecords:
    """Mixin of :class:`pcaq.records.Store`."""

    r: redis.Redis

    def add_permission(self, ca_id: str, principal: str, source_account: str, doc: dict) -> bool:
        """Store a permission; False if the principal already holds one from that account."""
        return bool(
            self.r.hsetnx(keys.permissions(ca_id), _field(principal, source_account), json.dumps(doc))
        )

    def remove_permission(self, ca_id: str, principal: str, source_account: str) -> bool:
        """Delete a permission; False if there was none."""
        return bool(self.r.hdel(keys.permissions(ca_id), _field(principal, source_account)))

    def list_permissions(self, ca_id: str) -> list[dict]:
        """Every permission of the CA, oldest first."""
        docs = [json.loads(raw) for raw in self.r.hvals(keys.permissions(ca_id))]
        return sorted(docs, key=lambda d: (d.get("CreatedAt", 0), d.get("Principal", "")))

    def put_policy(self, ca_id: str, policy: str) -> None:
        """Attach (or replace) the CA's resource policy."""
        self.r.set(keys.policy(ca_id), policy.encode("utf-8"))

    def get_policy(self, ca_id: str) -> str | None:
        """The CA's resource policy, or None."""
        raw = self.r.get(keys.policy(ca_id))
        return raw.decode("utf-8") if raw is not None else None

    def delete_policy(self, ca_id: str) -> None:
        """Remove the CA's resource policy (no error when there is none)."""
        self.r.delete(keys.policy(ca_id))
