"""Writes a client is told about wait for PCAQ_REDIS_MIN_REPLICAS replicas (shared/records/replicas.py).

The test Redis has no replicas, so with ``PCAQ_REDIS_MIN_REPLICAS=1`` every such write must fail with
the retryable :class:`NotReplicated`; with the default of 0 nothing extra may reach Redis. The other
half, writes that replicas do confirm, runs in tests/faults/test_sentinel_failover.py.
"""

from __future__ import annotations

import pytest
import redis

from pcaq.platform.settings import load
from pcaq.records import STORE_DOWN, NotReplicated, Store, keys, member_of
from tests.support import private_redis_db

CA = "0b5c3a1e-1111-4222-8333-444455556666"
ACCOUNT = "111122223333"


def _store(url: str, **env: str) -> Store:
    return Store(redis.Redis.from_url(url), load({"PCAQ_LEASE_SECONDS": "30", **env}))


@pytest.fixture
def url(redis_base_url):
    with private_redis_db(redis_base_url) as private:
        yield private


def _leased(store: Store) -> str:
    """A request submitted and claimed by ``w1`` under the default settings (no replicas asked for)."""
    assert store.submit_certificate(CA, ACCOUNT, "a1", b"request", None) is not None
    assert store.claim_ready("w1", 10)
    return member_of(CA, "a1")


def test_by_default_no_confirmation_is_sent(url):
    store = _store(url)
    member = _leased(store)
    assert store.commit("w1", [(member, True, b"der")]) == 1
    store.create_ca("ca-2", {"Arn": "ca-2", "CreatedAt": 1.0, "tags": []}, ACCOUNT, None)
    assert store.r.exists(keys.REPLICATION_MARK) == 0  # no INCR, so no WAIT behind it either


def test_every_answered_write_fails_retryably_without_its_replicas(url):
    plain = _store(url)
    member = _leased(plain)
    store = _store(url, PCAQ_REDIS_MIN_REPLICAS="1", PCAQ_REDIS_REPLICA_WAIT_MS="20")
    assert NotReplicated in STORE_DOWN  # the API answers it 503 ServiceUnavailable, which SDKs retry

    with pytest.raises(NotReplicated, match="PCAQ_REDIS_MIN_REPLICAS"):
        store.submit_certificate(CA, ACCOUNT, "b2", b"request", "token")
    with pytest.raises(NotReplicated):
        store.send_commit("w1", [(member, True, b"der")]).result()
    with pytest.raises(NotReplicated):
        store.commit("w1", [(member, True, b"der")])
    with pytest.raises(NotReplicated):
        store.create_ca("ca-2", {"Arn": "ca-2", "CreatedAt": 1.0, "tags": []}, ACCOUNT, None)
    with pytest.raises(NotReplicated):
        store.update_ca("ca-2", lambda doc: {**doc, "Status": "DISABLED"})
    with pytest.raises(NotReplicated):
        store.revoke(CA, "a1", 1.0e9, "SUPERSEDED", 2.0e9, 10)
    # A read needs no replica, and the held connection is still in step after the failures.
    assert store.get_certificate(CA, "a1").status == "ISSUED"
    assert store.r.exists(keys.REPLICATION_MARK) == 1


def test_a_repeated_token_is_confirmed_too(url):
    """A repeat that writes nothing still answers with state an earlier write made: it is confirmed
    (the mark is written behind it), not answered at once."""
    plain = _store(url)
    assert plain.submit_certificate(CA, ACCOUNT, "c3", b"request", "same").created
    store = _store(url, PCAQ_REDIS_MIN_REPLICAS="1", PCAQ_REDIS_REPLICA_WAIT_MS="20")
    with pytest.raises(NotReplicated):
        store.submit_certificate(CA, ACCOUNT, "d4", b"request", "same")


def test_the_script_cache_flushed_under_a_waiting_submit(url):
    store = _store(url, PCAQ_REDIS_MIN_REPLICAS="1", PCAQ_REDIS_REPLICA_WAIT_MS="20")
    store.r.script_flush()
    with pytest.raises(NotReplicated):  # loaded again, run, and still waits for its replica
        store.submit_certificate(CA, ACCOUNT, "e5", b"request", None)
    assert store.held.command("HGET", keys.certificate(member_of(CA, "e5")), "s") == b"P"
