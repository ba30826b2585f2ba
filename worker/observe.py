"""What a worker reports about each signing batch: a log line per failure and per abandoned request
(with the API request id), one summary line per batch at DEBUG, and what the commit needs to count
the batch for ``GET /metrics`` (failure reasons, unexpected errors; the commit script counts them)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from pcaq.errors import PcaqError
from pcaq.records import split_member
from pcaq.records.pending import PendingRequest

log = logging.getLogger("pcaq.worker")


def abandoned(requests: list[tuple[str, str]]) -> None:
    """Log the requests a claim gave up after their last attempt: ``(member, API request id)``."""
    for member, request_id in requests:
        ca_id, serial_hex = split_member(member)
        log.warning(
            "certificate request %s (request %s) abandoned: its leases ended without a result too often",
            member,
            request_id,
            extra={"request_id": request_id, "ca_id": ca_id, "serial": serial_hex, "reason": "Abandoned"},
        )


@dataclass
class BatchReport:
    """Collects what happened to each request of one batch while it is signed."""

    request_ids: dict[str, str] = field(default_factory=dict)  # member -> API request id
    reasons: dict[str, str] = field(default_factory=dict)  # member -> failure reason class
    errors: int = 0
    started: float = field(default_factory=time.perf_counter)
    token_down: bool = False  # the PKCS#11 token failed: the rest of the batch was left leased

    def request(self, member: str, request: PendingRequest) -> None:
        """Note the API request id carried by a decoded request."""
        self.request_ids[member] = request.request_id

    def request_id(self, member: str) -> str:
        """The API request id of a request of this batch ('-' when unknown)."""
        return self.request_ids.get(member, "-")

    def reason(self, member: str) -> str:
        """The failure reason class of a request of this batch ('' when it did not fail)."""
        return self.reasons.get(member, "")

    def failed(self, member: str, exc: PcaqError) -> None:
        """A request that will be committed FAILED (a refusal of its content, not a fault of ours)."""
        reason = type(exc).__name__
        self.reasons[member] = reason
        ca_id, serial_hex = split_member(member)
        log.info(
            "certificate request %s (request %s) failed: %s",
            member,
            self.request_id(member),
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
            self.request_id(member),
            extra=self._fields(member, ca_id, serial_hex),
        )

    def _fields(self, member: str, ca_id: str, serial_hex: str, **more: str) -> dict:
        return {"request_id": self.request_id(member), "ca_id": ca_id, "serial": serial_hex, **more}

    def finish(self, results: int, took: int) -> None:
        """Log the batch's summary (its metrics were counted by the commit itself)."""
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "batch: %d signed, %d committed, %d failed, %d errors in %.1f ms",
                results,
                took,
                len(self.reasons),
                self.errors,
                (time.perf_counter() - self.started) * 1000,
                extra={"request_ids": sorted(set(self.request_ids.values()))},
            )
