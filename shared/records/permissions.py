"""Records of a CA's permissions (one hash per CA) and resource policy (one string per CA)."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping

import redis

from pcaq.records import keys, scripts


def _field(principal: str, source_account: str) -> str:
    return f"{principal} {source_account}"  # a principal holds no space (it is a service name)


class PermissionRecords:
    """Mixin of :class:`pcaq.records.Store`. Each change takes the fields of its audit entry, appended
    in the same step (``audit``; none when None)."""

    r: redis.Redis

    @functools.cached_property
    def _permission(self):
        return self.r.register_script(scripts.PERMISSION)

    def _change_permission(
        self, mode: str, ca_id: str, field: str, doc: str, audit: Mapping[str, str] | None
    ) -> bool:
        changed = self._permission(
            keys=[keys.permissions(ca_id), keys.audit_stream(ca_id) if audit else ""],
            args=[
                mode,
                field,
                doc,
                self.settings.audit_stream_maxlen,
                *(item for pair in (audit or {}).items() for item in pair),
            ],
        )
        return bool(changed)

    def add_permission(
        self,
        ca_id: str,
        principal: str,
        source_account: str,
        doc: dict,
        audit: Mapping[str, str] | None = None,
    ) -> bool:
        """Store a permission; False if the principal already holds one from that account."""
        return self._change_permission(
            "add", ca_id, _field(principal, source_account), json.dumps(doc), audit
        )

    def remove_permission(
        self, ca_id: str, principal: str, source_account: str, audit: Mapping[str, str] | None = None
    ) -> bool:
        """Delete a permission; False if there was none."""
        return self._change_permission("remove", ca_id, _field(principal, source_account), "", audit)

    def list_permissions(self, ca_id: str) -> list[dict]:
        """Every permission of the CA, oldest first."""
        docs = [json.loads(raw) for raw in self.r.hvals(keys.permissions(ca_id))]
        return sorted(docs, key=lambda d: (d.get("CreatedAt", 0), d.get("Principal", "")))

    def put_policy(self, ca_id: str, policy: str, audit: Mapping[str, str] | None = None) -> None:
        """Attach (or replace) the CA's resource policy."""
        pipe = self.r.pipeline()
        pipe.set(keys.policy(ca_id), policy.encode("utf-8"))
        self._append_audit(pipe, ca_id, audit)
        pipe.execute()

    def get_policy(self, ca_id: str) -> str | None:
        """The CA's resource policy, or None."""
        raw = self.r.get(keys.policy(ca_id))
        return raw.decode("utf-8") if raw is not None else None

    def delete_policy(self, ca_id: str, audit: Mapping[str, str] | None = None) -> None:
        """Remove the CA's resource policy (no error when there is none)."""
        pipe = self.r.pipeline()
        pipe.delete(keys.policy(ca_id))
        self._append_audit(pipe, ca_id, audit)
        pipe.execute()
