"""What a worker reports about each signing batch: a log line per failure (with the API request id),
one summary line per batch at DEBUG, and the batch's outcomes and latencies for ``GET /metrics`` in
one Redis round trip (``Store.observe_batch``)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from shared.errors import PcaqError
from shared.records import Store, split_member

log = logging.getLogger("pcaq.worker")


@dataclass
class BatchReport:
    """Collects what happened to each request of one batch while it is signed."""

    request_ids: dict[str, str] = field(default_factory=dict)  # member -> API request id
    reasons: dict[str, str] = field(default_factory=dict)  # member -> failure reason class
    errors: int = 0
    started: float = field(default_factory=time.perf_counter)

    def request(self, member: str, doc: dict) -> None:
        """Note the API request id carried by a decoded request document."""
        self.request_ids[member] = doc.get("rid") or "-"

    def failed(self, member: str, exc: PcaqError) -> None:
        """A request that will be committed FAILED (a refusal of its content, not a fault of ours)."""
        reason = type(exc).__name__
        self.reasons[member] = reason
        ca_id, serial_hex = split_member(member)
        log.info(
            "certificate request %s (request %s) failed: %s",
            member,
            self.request_ids.get(member, "-"),
            exc.message,
            extra=self._fields(member, ca_id, serial_hex, reason=reason),
        )

    def unexpected(self, member: str) -> None:
        """A fault while signing: the request stays leased and is tried again after its lease."""
        self.errors += 1
        ca_id, serial_hex = split_member(member)
        log.exception(
            "signing %s (request %s) failed unexpectedly; it will be retried",
            member,
            self.request_ids.get(member, "-"),
            extra=self._fields(member, ca_id, serial_hex),
        )

    def _fields(self, member: str, ca_id: str, serial_hex: str, **more: str) -> dict:
        return {"request_id": self.request_ids.get(member, "-"), "ca_id": ca_id, "serial": serial_hex, **more}

    def finish(self, store: Store, results: list[tuple[str, bool, bytes]], took: int) -> None:
        """Record the batch's metrics and log its summary; never raises (the results are committed)."""
        try:
            if took == len(results):
                ours = [m for m, _, _ in results]
            else:  # another worker's commit won some (a redelivery race): count only what ours wrote
                ours = store.written_by(results) if took else []
            store.observe_batch(((m, self.reasons.get(m, "")) for m in ours), self.errors)
        except Exception:  # noqa: BLE001 - a lost metric must not fail a committed batch
            log.warning("could not record the metrics of a batch of %d", len(results), exc_info=True)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "batch: %d signed, %d committed, %d failed, %d errors in %.1f ms",
                len(results),
                took,
                len(self.reasons),
                self.errors,
                (time.perf_counter() - self.started) * 1000,
                extra={"request_ids": sorted(set(self.request_ids.values()))},
            )
