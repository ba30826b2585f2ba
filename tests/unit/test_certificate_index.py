"""The console's per-CA indexes and issuance series (shared/records/certificate_index.py, series.py),
as the submit, claim and commit scripts write them, on a real Redis."""

from __future__ import annotations

import pytest
import redis

from pcaq.platform.settings import load
from pcaq.records import Result, Store, keys, member_of
from tests.support import Clock, private_redis_db

CA = "0b5c3a1e-1111-4222-8333-444455556666"
ACCOUNT = "111122223333"
T0 = 1_700_000_000.0


@pytest.fixture
def store(redis_base_url):
    with private_redis_db(redis_base_url) as url:
        client = redis.Redis.from_url(url)
        yield Store(client, load({"REDIS_URL": url, "PCAQ_MAX_ATTEMPTS": "1"}), clock=Clock(T0))
        client.close()


def _issue(store: Store, serials: list[str], names=lambda s: (f"{s}.example.com",), not_after=None) -> None:
    """Submit, claim and commit these serials as issued, in one batch (one commit time)."""
    for serial in serials:
        assert store.submit_certificate(CA, ACCOUNT, serial, b"req", None)
    claimed = store.claim_ready("w", len(serials))
    assert len(claimed) == len(serials)
    results = [
        Result(
            m, True, b"DER", "", None, names(m.rsplit(":", 1)[1]), not_after(m) if not_after else T0 + 86400
        )
        for m, _ in claimed
    ]
    assert store.commit("w", results) == len(serials)


def test_submit_and_commit_move_a_request_from_pending_to_issued_with_its_names_and_expiry(store):
    assert store.submit_certificate(CA, ACCOUNT, "a1", b"req", None)
    assert store.index_counts([CA])[CA].pending == 1
    assert store.index_page(CA, "pending", 10) == [("a1", T0)]
    store.claim_ready("w", 10)
    store.commit(
        "w", [Result(member_of(CA, "a1"), True, b"DER", "", None, ("www.a.test", "a.test"), T0 + 99)]
    )
    counts = store.index_counts([CA])[CA]
    assert (counts.issued, counts.pending, counts.failed, counts.revoked) == (1, 0, 0, 0)
    assert store.index_page(CA, "expiry", 10, newest_first=False) == [("a1", T0 + 99)]
    assert store.names_page(CA, "A.T", 10) == [("a.test", "a1")]  # by prefix, whatever the case
    assert store.names_page(CA, "www", 10) == [("www.a.test", "a1")]
    assert store.names_page(CA, "b", 10) == []


def test_pages_from_a_cursor_cover_every_certificate_once_even_with_equal_scores(store):
    serials = [f"{i:04x}" for i in range(120)]
    _issue(store, serials[:70])  # one commit: 70 certificates with one commit time
    store.clock.advance(5)
    _issue(store, serials[70:])
    seen, after = [], None
    while True:
        page = store.index_page(CA, "issued", 25, after)
        seen += [serial for serial, _ in page]
        if len(page) < 25:
            break
        after = page[-1]
    assert sorted(seen) == serials and len(seen) == len(set(seen))
    assert set(seen[:50]) == set(serials[70:])  # newest first


def test_a_cursor_whose_member_left_the_set_resumes_from_its_score(store):
    for i, serial in enumerate(("p1", "p2", "p3")):
        store.clock.now = T0 + i
        store.submit_certificate(CA, ACCOUNT, serial, b"req", None)
    first = store.index_page(CA, "pending", 1)
    assert first == [("p3", T0 + 2)]
    store.r.zrem(keys.certificate_index(CA, "pending"), "p3")  # as if committed meanwhile
    assert [s for s, _ in store.index_page(CA, "pending", 5, first[0])] == ["p2", "p1"]


def test_expiring_within_a_window_and_name_search_page_by_cursor(store):
    serials = [f"{i:04x}" for i in range(30)]
    _issue(
        store,
        serials,
        names=lambda s: (f"host-{s}.corp.test",),
        not_after=lambda m: T0 + int(m[-4:], 16) * 86400,
    )
    soon = store.index_page(CA, "expiry", 100, low=T0, high=T0 + 10 * 86400, newest_first=False)
    assert [s for s, _ in soon] == serials[:11]  # 0 to 10 days, soonest first
    later = store.index_page(CA, "expiry", 5, soon[4], low=T0, high=T0 + 10 * 86400, newest_first=False)
    assert [s for s, _ in later] == serials[5:10]
    first = store.names_page(CA, "host-", 20)
    rest = store.names_page(CA, "host-", 20, after=f"{first[-1][0]}\0{first[-1][1]}")
    assert [s for _, s in first + rest] == serials


def test_revoked_and_failed_lists_and_the_abandoned_request(store):
    _issue(store, ["c1"])
    assert store.submit_certificate(CA, ACCOUNT, "f1", b"req", None)
    store.claim_ready("w", 10)
    store.commit("w", [Result(member_of(CA, "f1"), False, b"bad CSR", "MalformedCSR")])
    store.revoke(CA, "c1", T0 + 1, "KEY_COMPROMISE", T0 + 86400, 10, None)
    assert store.index_page(CA, "revoked", 10) == [("c1", T0 + 1)]
    assert [s for s, _ in store.index_page(CA, "failed", 10)] == ["f1"]
    # a request whose lease ran out on its last attempt is given up by the next claim: failed too
    store.submit_certificate(CA, ACCOUNT, "z1", b"req", None)
    store.claim_ready("w", 10)
    store.clock.advance(store.settings.lease_seconds + 1)
    store.claim_ready("w2", 10)
    counts = store.index_counts([CA])[CA]
    assert (counts.pending, counts.failed) == (0, 2)
    rows = store.certificate_rows(CA, ["c1", "f1", "zz"])
    assert rows[0].revoked_at == T0 + 1 and rows[1].failure == "bad CSR" and rows[2] is None


def test_the_minute_series_counts_each_commit_and_samples_the_backlog(store):
    store.clock.now = T0 + 7  # second 20 of its minute (T0 is 20 s past a minute)
    _issue(store, ["s1", "s2", "s3"])
    store.submit_certificate(CA, ACCOUNT, "f1", b"req", None)
    store.claim_ready("w", 10)
    store.commit("w", [Result(member_of(CA, "f1"), False, b"no", "MalformedCSR")])
    store.submit_certificate(CA, ACCOUNT, "q1", b"req", None)
    assert store.sample_backlog() == 1
    minute = store.series(2)[-1]
    second = int(store.clock.now) % 60
    assert minute.issued == {second: 3} and minute.failures == {"MalformedCSR": 1}
    assert minute.pending == {second: 1} and minute.latency_count == 3
    assert sum(minute.latency_buckets.values()) == 3
    assert 0 < store.r.ttl(keys.series(int(store.clock.now) // 60)) <= 3900
    assert store.series(2)[0].issued == {}  # the minute before: nothing


def _real_der(cn: str, days: int) -> bytes:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    start = datetime.datetime.fromtimestamp(T0, datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(f"alt.{cn}")]), False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def test_pcaq_console_index_lists_requests_recorded_before_the_indexes(store, capsys):
    from pcaq.cli.main import main

    for serial in ("b1", "b2", "b3"):
        assert store.submit_certificate(CA, ACCOUNT, serial, b"req", None)
    claimed = dict(store.claim_ready("w", 10))
    store.commit(
        "w",
        [
            (member_of(CA, "b1"), True, _real_der("Old.Example", 3)),
            (member_of(CA, "b2"), False, b"refused"),
        ],
    )
    assert len(claimed) == 3  # b3 stays pending: the backfill leaves it to its commit
    for kind in keys.INDEX_KINDS:  # as a pcaq from before the console left them: nothing
        store.r.delete(keys.certificate_index(CA, kind))
    redis_url = store.settings.effective_redis_url
    arn = f"arn:aws:acm-pca:us-east-1:{ACCOUNT}:certificate-authority/{CA}"
    for _ in range(2):  # a second run changes nothing
        assert main(["console-index", "--redis-url", redis_url, "--ca", arn]) == 0
        assert "2 certificate requests indexed" in capsys.readouterr().out
        counts = store.index_counts([CA])[CA]
        assert (counts.issued, counts.failed, counts.pending) == (1, 1, 0)
    assert store.names_page(CA, "alt.old", 10) == [("alt.old.example", "b1")]
    assert store.names_page(CA, "old.example", 10) == [("old.example", "b1")]
    assert store.index_page(CA, "expiry", 10) == [("b1", T0 + 3 * 86400)]
    assert main(["console-index", "--redis-url", redis_url, "--ca", "not-an-arn"]) == 2
