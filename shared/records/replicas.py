"""Writes a client is told about, held back until ``PCAQ_REDIS_MIN_REPLICAS`` replicas have them.

Redis replicates asynchronously: a primary that dies a moment after answering takes its last writes
with it, and the replica promoted in its place never saw them. For the writes an answer depends on
(a request accepted by IssueCertificate, a signed certificate's commit, a revocation, a change of a CA)
pcaq sends Redis's ``WAIT`` on the same connection, right behind the write, and only reports success
once enough replicas acknowledged it. Fewer in time raises :class:`NotReplicated`, which the API
answers as a retryable 503: the write may survive or not, and nobody was told it did.

``WAIT`` counts the writes of its own connection only, and a write that found nothing to change (a
repeated idempotency token, a commit whose lease was lost) makes none; the answer still depends on
state some earlier connection wrote. So every confirmation first makes one small write of its own
(``INCR`` of :data:`pcaq.records.keys.REPLICATION_MARK`): the replication stream is in order, so a
replica that has it has everything the primary held when the answer was read.

With ``PCAQ_REDIS_MIN_REPLICAS=0`` (the default) none of this runs: no extra command, no round trip.
"""

from __future__ import annotations

from typing import Any

import redis
from redis.client import Pipeline

from pcaq.records import keys


class NotReplicated(redis.RedisError):
    """A write reached the primary, but fewer replicas than required confirmed it in time (or the
    connection broke before they did): it may survive a failover or not, so it is not reported done."""


class ReplicaWait:
    """How many replicas must confirm a write, and how long to wait for them."""

    def __init__(self, replicas: int, timeout_ms: int):
        self.replicas = replicas
        self.timeout_ms = timeout_ms

    def commands(self) -> list[tuple]:
        """The commands sent right behind a write, on its connection (see the module's docstring)."""
        return [("INCR", keys.REPLICATION_MARK), ("WAIT", self.replicas, self.timeout_ms)]

    def check(self, acknowledged: Any) -> None:
        """Raise :class:`NotReplicated` unless ``acknowledged`` (WAIT's reply) is enough."""
        if int(acknowledged) < self.replicas:
            raise NotReplicated(
                f"only {int(acknowledged)} of the {self.replicas} replicas required "
                f"(PCAQ_REDIS_MIN_REPLICAS) confirmed the write within {self.timeout_ms} ms; retry"
            )

    def confirm(self, connection: Any) -> None:
        """Send the confirmation on ``connection`` (after a write made on it) and check its reply."""
        try:
            connection.send_packed_command(connection.pack_commands(self.commands()))
            connection.read_response()  # the INCR
            acknowledged = connection.read_response()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            # The write was made, or not; either way it is not known to be on the replicas.
            connection.disconnect()
            raise NotReplicated(
                f"the connection broke before the replicas confirmed the write: {exc}"
            ) from exc
        self.check(acknowledged)


class WaitingPipeline(Pipeline):
    """A redis-py pipeline (or WATCH/MULTI transaction) that confirms its writes with
    :class:`ReplicaWait` on its own connection before it hands the connection back."""

    def __init__(self, client: redis.Redis, transaction: bool, wait: ReplicaWait):
        super().__init__(client.connection_pool, client.response_callbacks, transaction, None)
        self._replica_wait = wait

    def _execute_transaction(self, connection: Any, commands: Any, raise_on_error: bool) -> list:
        result = super()._execute_transaction(connection, commands, raise_on_error)
        self._replica_wait.confirm(connection)
        return result

    def _execute_pipeline(self, connection: Any, commands: Any, raise_on_error: bool) -> list:
        result = super()._execute_pipeline(connection, commands, raise_on_error)
        self._replica_wait.confirm(connection)
        return result


def replica_wait(min_replicas: int, timeout_ms: int) -> ReplicaWait | None:
    """The confirmation to use, or None when no replica is required (nothing extra is sent)."""
    return ReplicaWait(min_replicas, timeout_ms) if min_replicas > 0 else None
