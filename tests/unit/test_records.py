"""The record store against a real Redis (pcaq.records; invariants 1, 2 and 5 of docs/architecture.md).

Runs in database 13 of the test Redis, flushed before each test. Time is a fake clock patched into
``pcaq.records`` (the Lua scripts take ``now`` from Python), so lease expiry needs no sleeping.
"""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from pcaq import records
from pcaq.errors import NotFound
from pcaq.platform import settings
from pcaq.records import Store, Submission, member_of
from tests.support import Clock, wait_until

SETTINGS = settings.load(
    {"PCAQ_IDEMPOTENCY_TTL": "300", "PCAQ_LEASE_SECONDS": "30", "PCAQ_MAX_ATTEMPTS": "3"}
)
ACCOUNT = "111122223333"
CA = "0b5c3a1e-1111-4222-8333-444455556666"
OTHER_CA = "0b5c3a1e-9999-4222-8333-444455556666"
T0 = 1_700_000_000.0


@pytest.fixture
def client(redis_base_url):
    c = redis.Redis.from_url(f"{redis_base_url}/13")
    c.flushdb()
    yield c
    c.close()


@pytest.fixture
def clock():
    return Clock(T0)


@pytest.fixture
def store(client, clock):
    return Store(client, SETTINGS, clock=clock)


def submit(store, serial="a1", token=None, ca=CA, request=b"request-body"):
    return store.submit_certificate(ca, ACCOUNT, serial, request, token)


def outbox_score(client, member):
    return client.zscore(records.keys.PENDING_CERTS, member)


def fields(client, member) -> dict:
    return {k.decode(): v for k, v in client.hgetall(records.keys.certificate(member)).items()}


# -- submit --------------------------------------------------------------------------------------


def test_submit_creates_pending_record_and_outbox_entry(store, client, clock):
    assert submit(store, "a1", "tok") == Submission("a1", created=True, kicked=True)
    rec = store.get_certificate(CA, "a1")
    assert rec.status == "PENDING" and rec.certificate_der is None and rec.failure is None
    assert rec.created_at == pytest.approx(T0)
    assert outbox_score(client, member_of(CA, "a1")) == pytest.approx(T0)
    assert store.pending_count() == 1
    assert store.claim_ready("w1", 10) == [(member_of(CA, "a1"), b"request-body")]


def test_same_token_gives_same_serial_and_no_second_record(store):
    assert submit(store, "a1", "tok").created
    again = submit(store, "b2", "tok", request=b"another body")
    assert again == Submission("a1", created=False)
    assert store.get_certificate(CA, "b2") is None
    assert store.pending_count() == 1


def test_same_token_on_another_ca_is_a_new_request(store):
    submit(store, "a1", "tok")
    assert submit(store, "b2", "tok", ca=OTHER_CA) == Submission("b2", created=True)
    assert store.pending_count() == 2


def test_serial_collision_returns_none_and_does_not_burn_the_token(store):
    submit(store, "a1", None)
    assert submit(store, "a1", "fresh", request=b"other") is None
    assert store.claim_ready("w1", 10)[0][1] == b"request-body"  # first body intact
    assert submit(store, "c3", "fresh") == Submission("c3", created=True)


def test_submits_without_token_are_all_new(store):
    assert submit(store, "a1").created and submit(store, "a2").created
    assert store.pending_count() == 2


def test_idempotency_key_expires_after_the_ttl_and_hides_the_token(store, client):
    submit(store, "a1", "my-secret-token")
    idem = [k.decode() for k in client.scan_iter("*idem*")]
    assert len(idem) == 1
    assert "my-secret-token" not in idem[0]
    assert SETTINGS.idempotency_ttl - 5 <= client.ttl(idem[0]) <= SETTINGS.idempotency_ttl
    client.delete(idem[0])  # what the TTL does when it runs out
    assert submit(store, "b2", "my-secret-token") == Submission("b2", created=True)


def test_concurrent_submits_with_one_token_create_one_request(store):
    barrier = threading.Barrier(16)

    def one(i: int) -> Submission:
        barrier.wait(10)
        return submit(store, format(0x1000 + i, "x"), "shared-token")

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(16)))
    assert sum(r.created for r in results) == 1
    assert len({r.serial_hex for r in results}) == 1
    assert store.pending_count() == 1


# -- claim and commit -----------------------------------------------------------------------------


def test_claim_leases_to_one_owner_while_the_lease_lives(store, client, clock):
    submit(store, "a1")
    m = member_of(CA, "a1")
    assert store.claim_ready("w1", 10) == [(m, b"request-body")]
    assert outbox_score(client, m) == pytest.approx(T0 + SETTINGS.lease_seconds)
    clock.advance(SETTINGS.lease_seconds - 1)
    assert store.claim_ready("w2", 10) == []
    assert fields(client, m)["o"] == b"w1"


def test_expired_lease_moves_to_a_new_owner_and_the_stale_owner_cannot_commit(store, clock):
    submit(store, "a1")
    m = member_of(CA, "a1")
    store.claim_ready("w1", 10)
    clock.advance(SETTINGS.lease_seconds + 1)
    assert store.claim_ready("w2", 10) == [(m, b"request-body")]
    assert store.commit("w1", [(m, True, b"der-from-w1")]) == 0
    assert store.get_certificate(CA, "a1").status == "PENDING"
    assert store.commit("w2", [(m, True, b"der-from-w2")]) == 1
    assert store.commit("w1", [(m, True, b"der-from-w1")]) == 0
    assert store.get_certificate(CA, "a1").certificate_der == b"der-from-w2"


def test_commit_of_an_issued_record_is_refused_even_for_its_owner(store):
    submit(store, "a1")
    m = member_of(CA, "a1")
    store.claim_ready("w1", 10)
    assert store.commit("w1", [(m, True, b"first")]) == 1
    assert store.commit("w1", [(m, True, b"second")]) == 0  # a redelivered job
    assert store.commit("w1", [(m, False, b"late failure")]) == 0
    rec = store.get_certificate(CA, "a1")
    assert (rec.status, rec.certificate_der, rec.failure) == ("ISSUED", b"first", None)
    assert store.claim_ready("w2", 10) == []  # nothing left to sign


def test_commit_writes_the_result_and_clears_request_lease_and_outbox(store, client, clock):
    submit(store, "a1")
    m = member_of(CA, "a1")
    store.claim_ready("w1", 10)
    clock.advance(2)
    assert store.commit("w1", [(m, True, b"\x30\x82der")]) == 1
    f = fields(client, m)
    assert f["s"] == b"I" and f["c"] == b"\x30\x82der"
    assert not {"r", "o", "l"} & set(f)
    assert float(f["d"]) == pytest.approx(T0 + 2)
    assert outbox_score(client, m) is None
    assert store.pending_count() == 0


def test_failed_result_keeps_the_reason(store):
    submit(store, "a1")
    m = member_of(CA, "a1")
    store.claim_ready("w1", 10)
    assert store.commit("w1", [(m, False, b"The CSR signature does not verify.")]) == 1
    rec = store.get_certificate(CA, "a1")
    assert (rec.status, rec.certificate_der) == ("FAILED", None)
    assert rec.failure == "The CSR signature does not verify."


def test_one_commit_writes_a_batch(store):
    for serial in ("a1", "a2", "a3"):
        submit(store, serial)
    members = [member_of(CA, s) for s in ("a1", "a2", "a3")]
    assert len(store.claim_ready("w1", 10)) == 3
    results = [(members[0], True, b"c1"), (members[1], False, b"bad"), (members[2], True, b"c3")]
    assert store.commit("w1", results) == 3
    statuses = [store.get_certificate(CA, s).status for s in ("a1", "a2", "a3")]
    assert statuses == ["ISSUED", "FAILED", "ISSUED"]
    assert store.get_certificate(CA, "a3").certificate_der == b"c3"


def test_claims_past_max_attempts_fail_the_request(store, client, clock):
    submit(store, "a1")
    m = member_of(CA, "a1")
    for i in range(SETTINGS.max_attempts):
        assert store.claim_ready(f"w{i}", 10) == [(m, b"request-body")]
        clock.advance(SETTINGS.lease_seconds + 1)
    assert store.claim_ready("last", 10) == []
    rec = store.get_certificate(CA, "a1")
    assert rec.status == "FAILED" and "abandoned" in rec.failure
    assert outbox_score(client, m) is None
    assert "r" not in fields(client, m)
    assert store.commit(f"w{SETTINGS.max_attempts - 1}", [(m, True, b"too late")]) == 0


def test_stale_ready_counts_only_requests_waiting_since_before_the_cutoff(store, clock):
    submit(store, "old")
    clock.advance(100)
    submit(store, "new")
    assert store.stale_ready_count(older_than=T0 + 50) == 1
    assert store.stale_ready_count(older_than=T0 + 150) == 2


def test_a_live_lease_is_not_stale_but_an_expired_one_is(store, clock):
    submit(store, "a1")
    m = member_of(CA, "a1")
    store.claim_ready("w1", 10)
    assert store.stale_ready_count(older_than=clock.now + 1) == 0
    clock.advance(SETTINGS.lease_seconds + 61)
    assert store.stale_ready_count(older_than=clock.now - 60) == 1
    assert store.claim_ready("w2", 10) == [(m, b"request-body")]  # the expired lease is ready again


def test_claim_ready_takes_ready_requests_oldest_first_and_disjointly(store, clock):
    for serial in ("a", "b", "c"):
        submit(store, serial)
        clock.advance(1)
    first = store.claim_ready("w1", 2)
    second = store.claim_ready("w2", 2)
    assert [m for m, _ in first] == [member_of(CA, "a"), member_of(CA, "b")]
    assert [m for m, _ in second] == [member_of(CA, "c")]
    assert store.claim_ready("w3", 2) == [] and store.ready_count() == 0


def test_a_batch_larger_than_lua_unpacks_at_once_is_claimed_and_committed_whole(store, client, clock):
    # The outbox moves of a batch are one ZADD / ZREM in slices: 5,000 members in one call would be
    # past Lua's limit on unpacked arguments, and the whole script would fail.
    pipe = client.pipeline(transaction=False)
    members = [member_of(CA, format(i, "x")) for i in range(5000)]
    for i, member in enumerate(members):
        pipe.hset(records.keys.certificate(member), mapping={"s": "P", "r": b"req", "t": T0, "a": 0})
        pipe.zadd(records.keys.PENDING_CERTS, {member: T0 - 5000 + i})  # all ready, oldest first
    pipe.execute()
    claimed = store.claim_ready("w1", 5000)
    assert len(claimed) == 5000 and store.ready_count() == 0
    lease_end = T0 + SETTINGS.lease_seconds
    assert {s for _, s in client.zrange(records.keys.PENDING_CERTS, 0, -1, withscores=True)} == {lease_end}
    assert store.commit("w1", [(m, True, b"der") for m, _ in claimed]) == 5000
    assert store.pending_count() == 0 and fields(client, members[-1])["s"] == b"I"


def test_finished_records_are_never_stale(store, clock):
    submit(store, "a1")
    m = member_of(CA, "a1")
    store.claim_ready("w1", 10)
    store.commit("w1", [(m, True, b"c")])
    clock.advance(10_000)
    assert store.stale_ready_count(older_than=clock.now) == 0


def test_drain_kick_is_taken_by_the_first_submit_only_until_cleared(store):
    assert store.submit_certificate(CA, ACCOUNT, "k1", b"r", None).kicked
    assert not store.submit_certificate(CA, ACCOUNT, "k2", b"r", None).kicked
    store.clear_drain_kick()
    assert store.submit_certificate(CA, ACCOUNT, "k3", b"r", None).kicked


def test_a_drain_taking_work_keeps_submits_from_asking_for_another(store, client):
    assert submit(store, "k1").kicked
    assert [m for m, _ in store.claim_ready("w1", 10)] == [member_of(CA, "k1")]  # marks it draining
    client.delete(records.keys.DRAIN_KICK)  # the kick window is over ...
    assert not submit(store, "k2").kicked  # ... but a drain is taking work: it will see k2
    assert store.claim_ready("w1", 10) and store.claim_ready("w1", 10) == []  # an empty claim ...
    assert not submit(store, "k3").kicked  # ... does not end the mark: the drain's stop does
    store.clear_drain_kick()  # what a drain that found nothing does before its last look
    assert submit(store, "k4").kicked


def test_the_draining_mark_lapses_when_its_drain_stops_claiming(store, client, monkeypatch):
    submit(store, "k1")
    store.claim_ready("w1", 10)
    ttl = client.pttl(records.keys.DRAINING)
    assert 0 < ttl <= records.requests.DRAINING_MS  # a drain that died is not waited for long
    monkeypatch.setattr(records.requests, "DRAINING_MS", 50)  # the same lapse, sooner
    submit(store, "k2")
    store.claim_ready("w1", 10)  # the dying drain's last claim
    client.delete(records.keys.DRAIN_KICK)  # (the kick window is over)
    wait_until(lambda: not client.exists(records.keys.DRAINING), timeout=5, what="the mark to lapse")
    assert submit(store, "k3").kicked


def test_a_full_claim_asks_for_one_helper_drain_until_that_one_starts(store):
    for i in range(12):
        submit(store, f"h{i}")
    assert store.claim_ready("w1", 2, "t1").helper == "t1"  # full: more may be ready, ask for help
    assert store.claim_ready("w1", 2, "t2").helper is None  # t1 has not started yet
    store.helper_started("t2")  # not the one asked for: the mark stays
    assert store.claim_ready("w1", 2, "t3").helper is None
    store.helper_started("t1")
    assert store.claim_ready("w1", 2).helper is None  # no token: never asks
    assert store.claim_ready("w1", 2, "t4").helper == "t4"
    store.helper_started("t4")
    last = store.claim_ready("w1", 5, "t5")
    assert len(last) == 2 and last.helper is None  # not full: no helper for it
    assert store.claim_ready("w1", 5, "t6").helper is None  # nor for an empty claim


def test_get_certificate_status_names(store):
    assert store.get_certificate(CA, "nothing") is None
    for serial in ("i", "f"):
        submit(store, serial)
    assert len(store.claim_ready("w1", 10)) == 2
    store.commit("w1", [(member_of(CA, "i"), True, b"c"), (member_of(CA, "f"), False, b"why")])
    submit(store, "p")
    assert [store.get_certificate(CA, s).status for s in ("p", "i", "f")] == ["PENDING", "ISSUED", "FAILED"]


def test_issued_record_memory_is_small(store, client):
    submit(store, "a1", "tok", request=b"q" * 900)  # a CSR plus the encoded request parameters
    m = member_of(CA, "a1")
    store.claim_ready("w1", 10)
    store.commit("w1", [(m, True, bytes(range(256)) * 2 + b"x" * 88)])  # a 600-byte DER
    used = client.memory_usage(records.keys.certificate(m))
    print(f"MEMORY USAGE of an issued record with a 600-byte DER: {used} bytes")
    assert used < 2500


# -- certificate authorities ----------------------------------------------------------------------


def new_ca(store, created_at=T0, token=None, account=ACCOUNT, ca_id=None):
    ca_id = ca_id or str(uuid.uuid4())
    return store.create_ca(ca_id, {"Arn": ca_id, "CreatedAt": created_at, "tags": []}, account, token)


def test_create_and_get_ca(store):
    ca_id, created = new_ca(store)
    assert created and store.get_ca(ca_id)["Arn"] == ca_id
    assert store.get_ca(str(uuid.uuid4())) is None
    assert store.stale_pending_cas(older_than=T0 + 1) == [ca_id]
    store.ca_key_generated(ca_id)
    assert store.stale_pending_cas(older_than=T0 + 1) == []


def test_create_ca_idempotency(store, client):
    first, created = new_ca(store, token="t")
    again, created_again = new_ca(store, token="t")
    assert (again, created, created_again) == (first, True, False)
    assert store.list_ca_ids(ACCOUNT, 0, 10) == ([first], 1)
    other, other_created = new_ca(store, token="t", account="999988887777")
    assert other != first and other_created
    idem = [k for k in client.scan_iter("*idem*")]
    assert all(0 < client.ttl(k) <= SETTINGS.idempotency_ttl for k in idem) and len(idem) == 2


def test_create_ca_retried_after_a_failed_write_answers_with_a_stored_ca(store, monkeypatch):
    """Invariant 1: a retry (same token) after a write that failed must not name a CA that does not exist."""
    real_execute = redis.client.Pipeline.execute
    failures = iter([redis.ConnectionError("connection lost")])

    def flaky_execute(self, *args, **kwargs):
        err = next(failures, None)
        if err:
            raise err
        return real_execute(self, *args, **kwargs)

    monkeypatch.setattr(redis.client.Pipeline, "execute", flaky_execute)
    with pytest.raises(redis.ConnectionError):
        new_ca(store, token="t")
    ca_id, _ = new_ca(store, token="t")
    assert store.get_ca(ca_id) is not None


def test_concurrent_create_ca_with_one_token(store):
    barrier = threading.Barrier(8)

    def one(_: int):
        barrier.wait(10)
        ca_id, created = new_ca(store, token="same")
        return ca_id, created, store.get_ca(ca_id) is not None

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(8)))
    assert len({r[0] for r in results}) == 1
    assert sum(r[1] for r in results) == 1
    assert all(r[2] for r in results)


def test_update_ca_applies_the_change_or_nothing(store):
    ca_id, _ = new_ca(store)
    out = store.update_ca(ca_id, lambda d: {**d, "Status": "ACTIVE"})
    assert out["Status"] == store.get_ca(ca_id)["Status"] == "ACTIVE"

    def refuse(doc):
        doc["Status"] = "HALF-WRITTEN"
        raise ValueError("refused")

    with pytest.raises(ValueError):
        store.update_ca(ca_id, refuse)
    assert store.get_ca(ca_id)["Status"] == "ACTIVE"


def test_concurrent_update_ca_loses_no_update(store):
    ca_id, _ = new_ca(store)
    barrier = threading.Barrier(8)
    first_try = threading.local()

    def append(tag: str):
        def change(doc):
            if not getattr(first_try, "done", False):
                first_try.done = True
                barrier.wait(10)  # all eight have read the same document before anyone writes
            doc["tags"].append(tag)
            return doc

        store.update_ca(ca_id, change)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(append, [f"t{i}" for i in range(8)]))
    assert sorted(store.get_ca(ca_id)["tags"]) == sorted(f"t{i}" for i in range(8))


def test_update_of_a_missing_ca_is_not_found(store):
    with pytest.raises(NotFound):
        store.update_ca(str(uuid.uuid4()), lambda d: d)


def test_list_ca_ids_pages_oldest_first_per_account(store):
    ids = [new_ca(store, created_at=T0 + i)[0] for i in range(5)]
    new_ca(store, account="999988887777")
    pages = [store.list_ca_ids(ACCOUNT, start, 2) for start in (0, 2, 4, 6)]
    assert [p[0] for p in pages] == [ids[0:2], ids[2:4], ids[4:5], []]
    assert {p[1] for p in pages} == {5}
    assert [d["Arn"] for d in store.get_cas([ids[1], "missing", ids[3]])] == [ids[1], ids[3]]
    assert store.get_cas([]) == []


def test_remove_ca_removes_document_key_and_index(store):
    ca_id, _ = new_ca(store)
    store.put_ca_key(ca_id, b"sealed")
    store.remove_ca(ca_id, ACCOUNT)
    assert store.get_ca(ca_id) is None and store.get_ca_key(ca_id) is None
    assert store.list_ca_ids(ACCOUNT, 0, 10) == ([], 0)
    assert store.stale_pending_cas(older_than=T0 + 1) == []


# -- fleet coordination ---------------------------------------------------------------------------


def test_heartbeat_and_alive_workers(store, clock):
    store.heartbeat("old")
    clock.advance(20)
    store.heartbeat("young")
    clock.advance(20)
    assert store.alive_workers(within=30) == ["young"]
    assert sorted(store.alive_workers(within=60)) == ["old", "young"]


def test_sweep_lock_is_exclusive_and_expires(store, client):
    assert store.try_sweep_lock("a", 30)
    assert not store.try_sweep_lock("b", 30)
    assert 0 < client.ttl(records.keys.SWEEP_LOCK) <= 30
    client.delete(records.keys.SWEEP_LOCK)  # what the expiry does
    assert store.try_sweep_lock("b", 30)


def test_key_generation_lock_is_per_ca_and_kek_check_is_set_once(store):
    assert store.try_key_generation_lock("ca1", "w1") and store.try_key_generation_lock("ca2", "w2")
    assert not store.try_key_generation_lock("ca1", "w2")
    assert store.kek_check() is None
    assert store.init_kek_check(b"one") and not store.init_kek_check(b"two")
    assert store.kek_check() == b"one"


# -- claims and commits sent ahead (Sent) --------------------------------------------------------


def _in_use(client) -> int:
    return len(client.connection_pool._in_use_connections)


def test_a_sent_claim_and_commit_do_what_the_calls_do_and_hand_their_connections_back(store, client, clock):
    for serial in ("a", "b", "c"):
        submit(store, serial)
        clock.advance(1)
    sent = store.send_claim_ready("w1", 2)
    assert store.claim_ready("w2", 2) == [(member_of(CA, "c"), b"request-body")]  # the sent claim ran first
    claimed = sent.result()
    assert [m for m, _ in claimed] == [member_of(CA, "a"), member_of(CA, "b")] and claimed.abandoned == []
    commit = store.send_commit("w1", [(m, True, b"der") for m, _ in claimed])
    assert commit.result() == 2
    assert [store.get_certificate(CA, s).status for s in ("a", "b", "c")] == ["ISSUED", "ISSUED", "PENDING"]
    assert store.send_commit("w1", []).result() == 0  # nothing to send
    assert _in_use(client) == 0


def test_a_sent_script_the_server_does_not_have_runs_the_ordinary_way(store, client):
    submit(store, "a1")
    client.script_flush()  # as after a restart of Redis: NOSCRIPT
    assert store.send_claim_ready("w1", 5).result() == [(member_of(CA, "a1"), b"request-body")]
    client.script_flush()
    assert store.send_commit("w1", [(member_of(CA, "a1"), True, b"der")]).result() == 1
    assert store.get_certificate(CA, "a1").certificate_der == b"der"
    assert _in_use(client) == 0


def test_a_commit_whose_reply_is_lost_is_run_again_and_takes_once(store, client, monkeypatch):
    submit(store, "a1")
    m = member_of(CA, "a1")
    store.claim_ready("w1", 10)
    sent = store.send_commit("w1", [(m, True, b"der")])

    connection, lost = sent._connection, []
    read = connection.read_response

    def read_once_lost(*args, **kwargs):
        if not lost:
            lost.append(True)
            raise redis.ConnectionError("connection lost")
        return read(*args, **kwargs)

    monkeypatch.setattr(connection, "read_response", read_once_lost)
    assert sent.result() == 0  # the first run wrote it; the run again finds no lease of w1's left
    assert lost
    rec = store.get_certificate(CA, "a1")
    assert (rec.status, rec.certificate_der) == ("ISSUED", b"der")
    assert _in_use(client) == 0


def test_a_sent_call_without_a_connection_runs_when_its_result_is_asked(store, client, monkeypatch):
    submit(store, "a1")

    def refused(*args, **kwargs):
        raise redis.ConnectionError("refused")

    with monkeypatch.context() as patch:
        patch.setattr(client.connection_pool, "get_connection", refused)
        sent = store.send_claim_ready("w1", 5)
    assert client.zscore(records.keys.PENDING_CERTS, member_of(CA, "a1")) == pytest.approx(T0)  # not run yet
    assert sent.result() == [(member_of(CA, "a1"), b"request-body")]


def test_a_closed_sent_claim_hands_its_connection_back_and_its_batch_stays_leased(store, client, clock):
    submit(store, "a1")
    sent = store.send_claim_ready("w1", 5)
    sent.close()
    assert _in_use(client) == 0
    assert store.claim_ready("w2", 5) == []  # leased to w1 until its lease ends
    clock.advance(SETTINGS.lease_seconds + 1)
    assert store.claim_ready("w2", 5) == [(member_of(CA, "a1"), b"request-body")]


def test_a_sent_reply_is_read_once(store):
    sent = store.send_claim_ready("w1", 5)
    assert sent.result() == []
    with pytest.raises(RuntimeError, match="already read"):
        sent.result()
    closed = store.send_claim_ready("w1", 5)
    closed.close()
    with pytest.raises(RuntimeError):
        closed.result()
