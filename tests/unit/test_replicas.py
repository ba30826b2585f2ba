"""Writes a client is told about wait for PCAQ_REDIS_MIN_REPLICAS replicas (shared/records/replicas.py).

The test Redis has no replicas, so with ``PCAQ_REDIS_MIN_REPLICAS=1`` every such write must fail with
the retryable :class:`NotReplicated`; with the default of 0 nothing extra may reach Redis. The other
half, writes that replicas do confirm, runs in tests/faults/test_sentinel_failover.py.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
import redis

from pcaq.platform.redis_connect import NoGoodReplicas
from pcaq.platform.settings import load
from pcaq.records import STORE_DOWN, NotReplicated, Store, keys, member_of
from tests.support import free_port, private_redis_db, wait_until

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


@pytest.fixture
def refusing_primary(tmp_path):
    """A redis-server of its own with ``min-replicas-to-write 1`` and no replica: it refuses writes."""
    if shutil.which("redis-server") is None:
        pytest.skip("needs redis-server")
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(
        [*argv, "--min-replicas-to-write", "1", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL
    )
    try:
        client = redis.Redis(port=port, socket_connect_timeout=1)
        wait_until(lambda: _answers(client), what="redis-server")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def test_a_primary_short_of_its_min_replicas_to_write_is_down_for_writes(refusing_primary):
    """NOREPLICAS (the server's min-replicas-to-write, e.g. a primary cut off by a partition) is a
    retryable 503 like a primary that is down, not a bug (a 500) nor a thread that dies."""
    store = Store.from_settings(load({"REDIS_URL": refusing_primary}))
    assert store.get_certificate(CA, "a1") is None  # reads are still served
    with pytest.raises(STORE_DOWN) as refused:
        store.submit_certificate(CA, ACCOUNT, "a1", b"request", None)  # a script, on the held connection
    assert isinstance(refused.value, NoGoodReplicas)
    with pytest.raises(NoGoodReplicas):
        store.heartbeat("w1")  # a plain write through the client


@pytest.fixture
def replicated_primary(tmp_path):
    """A redis-server of its own with one replica of it, in step: WAIT 1 is answered."""
    if shutil.which("redis-server") is None:
        pytest.skip("needs redis-server")
    ports = free_port(), free_port()
    procs = []
    try:
        for name, port in zip(("primary", "replica"), ports, strict=True):
            folder = tmp_path / name
            folder.mkdir()
            argv = [
                "redis-server",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--dir",
                str(folder),
            ]
            if name == "replica":
                argv += ["--replicaof", "127.0.0.1", str(ports[0])]
            procs.append(subprocess.Popen([*argv, "--appendonly", "no"], stdout=subprocess.DEVNULL))
        primary = redis.Redis(port=ports[0], socket_connect_timeout=1)
        wait_until(
            lambda: _answers(primary) and primary.info("replication")["connected_slaves"] == 1,
            what="a replica",
        )
        yield f"redis://127.0.0.1:{ports[0]}/0"
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)


def test_answered_writes_succeed_once_a_replica_confirms_them(replicated_primary):
    """The other side of the failures above: with a replica in step, every write a client is told about
    goes through, and the replica holds it when the call returns."""
    store = _store(replicated_primary, PCAQ_REDIS_MIN_REPLICAS="1", PCAQ_REDIS_REPLICA_WAIT_MS="5000")
    assert store.submit_certificate(CA, ACCOUNT, "f6", b"request", "token-f6").created
    member = member_of(CA, "f6")
    assert store.claim_ready("w1", 10)
    assert store.commit("w1", [(member, True, b"der")]) == 1
    assert store.revoke(CA, "f6", 1.0e9, "SUPERSEDED", 2.0e9, 10)[0] == 1
    store.create_ca("ca-3", {"Arn": "ca-3", "CreatedAt": 1.0, "tags": []}, ACCOUNT, None)
    replica_port = int(redis.Redis.from_url(replicated_primary).info("replication")["slave0"]["port"])
    replica = redis.Redis(port=replica_port)
    assert replica.hget(keys.certificate(member), "s") == b"I"  # there already: WAIT held the answer
    assert replica.exists(keys.ca("ca-3")) == 1
