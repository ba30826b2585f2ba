"""Per-CA indexes of certificates, for the console: list, filter and search without scanning.

Written by the scripts that change a request (shared/records/scripts.py), in the same step:

- ``pending``: serial -> submit time (added by submit, removed by commit or give-up);
- ``issued`` and ``failed``: serial -> commit time;
- ``expiry``: serial -> Not After (epoch seconds);
- ``names``: ``"<lower-cased name>\\0<serial>"`` at score 0, one per common name and subject
  alternative name, so that a prefix search is a ZRANGEBYLEX;
- revoked serials are the CA's revoked set (``keys.revoked``), scored by revocation time.

Every page is read by position: a cursor names the last member shown, its rank is found in O(log n)
and the page read from there, so a CA with a million certificates answers as fast as one with ten.
Requests finished before these indexes existed are added by ``pcaq console-index``
(shared/ca/backfill.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import redis

from pcaq.records import keys
from pcaq.records.requests import member_of

_NAME_END = b"\xff"  # after every UTF-8 byte: "[prefix" .. "[prefix\xff" is every name starting with it

# A page of a sorted set from a cursor. KEYS: the set. ARGV: cursor member ('' for the first page),
# cursor score (where to start if that member has left the set), count, lowest score, highest
# score ('-inf'/'+inf' for none), '1' newest (highest score) first or '0' lowest first.
# Returns member, score pairs.
_PAGE = """
local key, count, reverse = KEYS[1], tonumber(ARGV[3]), ARGV[6] == '1'
local low, high = ARGV[4], ARGV[5]
local start
if ARGV[1] ~= '' then
  if reverse then start = redis.call('ZREVRANK', key, ARGV[1]) else start = redis.call('ZRANK', key, ARGV[1]) end
  if start then start = start + 1 end
end
if not start then
  -- the first page, or a cursor that has left the set: skip what sorts before the bound or its score
  local from = ARGV[2]
  if reverse then
    if from == '' then from = high end
    if from == '+inf' then start = 0 else start = redis.call('ZCOUNT', key, '(' .. from, '+inf') end
  else
    if from == '' then from = low end
    if from == '-inf' then start = 0 else start = redis.call('ZCOUNT', key, '-inf', '(' .. from) end
  end
end
local items
if reverse then
  items = redis.call('ZREVRANGE', key, start, start + count - 1, 'WITHSCORES')
else
  items = redis.call('ZRANGE', key, start, start + count - 1, 'WITHSCORES')
end
local out = {}
local lo, hi = tonumber(low), tonumber(high)
for i = 1, #items, 2 do
  local score = tonumber(items[i + 1])
  if score >= lo and score <= hi then
    out[#out + 1] = items[i]
    out[#out + 1] = items[i + 1]
  elseif (reverse and score < lo) or (not reverse and score > hi) then
    break
  end
end
return out
"""


@dataclass(frozen=True)
class CaCounts:
    """How many certificates of one CA are in each index."""

    issued: int
    pending: int
    failed: int
    revoked: int


@dataclass(frozen=True)
class CertificateRow:
    """One certificate request as a list shows it."""

    serial: str
    status: str  # PENDING, ISSUED or FAILED
    certificate_der: bytes | None
    failure: str | None
    created_at: float
    finished_at: float | None
    revoked_at: float | None
    revocation_reason: str | None


_STATUS = {b"P": "PENDING", b"I": "ISSUED", b"F": "FAILED"}


@dataclass(frozen=True)
class Finished:
    """A finished request to put into the indexes (the backfill of requests recorded before them)."""

    serial: str
    issued: bool
    finished_at: float
    not_after: float | None = None
    names: tuple[str, ...] = ()


class CertificateIndexRecords:
    """Mixin of :class:`pcaq.records.Store`."""

    r: redis.Redis

    def index_counts(self, ca_ids: Iterable[str]) -> dict[str, CaCounts]:
        """The size of each index of these CAs (four ZCARDs each, one round trip)."""
        ids = list(ca_ids)
        pipe = self.r.pipeline(transaction=False)
        for ca_id in ids:
            for kind in ("issued", "pending", "failed"):
                pipe.zcard(keys.certificate_index(ca_id, kind))
            pipe.zcard(keys.revoked(ca_id))
        sizes = pipe.execute()
        return {ca_id: CaCounts(*sizes[4 * i : 4 * i + 4]) for i, ca_id in enumerate(ids)}

    def index_page(
        self,
        ca_id: str,
        kind: str,
        count: int,
        after: tuple[str, float] | None = None,
        low: float | None = None,
        high: float | None = None,
        newest_first: bool = True,
    ) -> list[tuple[str, float]]:
        """Up to ``count`` (serial, score) pairs of one index (``kind`` of ``keys.INDEX_KINDS`` but
        names, or ``revoked``), after the cursor ``after`` (the last pair shown), within [low, high]."""
        key = keys.revoked(ca_id) if kind == "revoked" else keys.certificate_index(ca_id, kind)
        script = self.__dict__.get("_page_script")
        if script is None:
            script = self.__dict__["_page_script"] = self.r.register_script(_PAGE)
        member, score = after if after else ("", None)
        reply = script(
            keys=[key],
            args=[
                member,
                "" if score is None else repr(score),
                count,
                "-inf" if low is None else repr(low),
                "+inf" if high is None else repr(high),
                "1" if newest_first else "0",
            ],
        )
        return [(reply[i].decode(), float(reply[i + 1])) for i in range(0, len(reply), 2)]

    def names_page(
        self, ca_id: str, prefix: str, count: int, after: str | None = None
    ) -> list[tuple[str, str]]:
        """Up to ``count`` (name, serial) pairs whose lower-cased name starts with ``prefix``, in name
        order, after the pair whose index member is ``after`` (``"<name>\\0<serial>"``)."""
        start = b"(" + after.encode() if after else b"[" + prefix.lower().encode()
        found = self.r.zrangebylex(
            keys.certificate_index(ca_id, "names"),
            start,
            b"[" + prefix.lower().encode() + _NAME_END,
            0,
            count,
        )
        pairs = []
        for item in found:
            name, _, serial = item.decode().rpartition("\0")
            pairs.append((name, serial))
        return pairs

    def certificate_rows(self, ca_id: str, serials: Iterable[str]) -> list[CertificateRow | None]:
        """The records of these serials of one CA, in order (None for a serial without a record)."""
        serials = list(serials)
        pipe = self.r.pipeline(transaction=False)
        for serial in serials:
            pipe.hmget(keys.certificate(member_of(ca_id, serial)), "s", "c", "e", "t", "d", "rv", "rr")
        rows: list[CertificateRow | None] = []
        for serial, (s, c, e, t, d, rv, rr) in zip(serials, pipe.execute(), strict=True):
            if s is None:
                rows.append(None)
                continue
            rows.append(
                CertificateRow(
                    serial,
                    _STATUS.get(s, "PENDING"),
                    c,
                    e.decode() if e else None,
                    float(t or 0),
                    float(d) if d else None,
                    float(rv) if rv else None,
                    rr.decode() if rr else None,
                )
            )
        return rows

    def scan_finished(
        self, ca_id: str, cursor: int = 0, count: int = 1000
    ) -> tuple[int, list[tuple[str, bool, bytes | None, float]]]:
        """One SCAN step over a CA's request records: the next cursor (0 at the end) and the finished
        ones found, as (serial, issued, certificate DER or None, finish time)."""
        cursor, found = self.r.scan(cursor, match=keys.certificate_pattern(ca_id), count=count)
        pipe = self.r.pipeline(transaction=False)
        for key in found:
            pipe.hmget(key, "s", "c", "d", "t")
        out = []
        for key, (s, c, d, t) in zip(found, pipe.execute(), strict=True):
            if s in (b"I", b"F"):
                serial = key.decode().rpartition(":")[2]
                out.append((serial, s == b"I", c, float(d or t or 0)))
        return int(cursor), out

    def add_finished(self, ca_id: str, entries: Iterable[Finished]) -> None:
        """Put finished requests into the CA's indexes as the commit would have (idempotent). Pending
        requests are left to their commit: a backfill that listed one could list it after it ended."""
        pipe = self.r.pipeline(transaction=False)
        for entry in entries:
            if not entry.issued:
                pipe.zadd(keys.certificate_index(ca_id, "failed"), {entry.serial: entry.finished_at})
                continue
            pipe.zadd(keys.certificate_index(ca_id, "issued"), {entry.serial: entry.finished_at})
            if entry.not_after is not None:
                pipe.zadd(keys.certificate_index(ca_id, "expiry"), {entry.serial: entry.not_after})
            if entry.names:
                pipe.zadd(
                    keys.certificate_index(ca_id, "names"), {f"{n}\0{entry.serial}": 0 for n in entry.names}
                )
        pipe.execute()
