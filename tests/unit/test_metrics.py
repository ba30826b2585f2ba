"""What GET /metrics reports (api/metrics.py) and the records behind it (shared/records/metrics.py)."""

from __future__ import annotations

import json

import pytest
import redis

from pcaq.api.app import create_app
from pcaq.platform.settings import load
from pcaq.records import Result, Store, keys, member_of
from pcaq.records.metrics import LATENCY_BUCKETS
from tests.support import Clock, private_redis_db

CA = "0b5c3a1e-1111-4222-8333-444455556666"


@pytest.fixture
def store(redis_base_url):
    with private_redis_db(redis_base_url) as url:
        client = redis.Redis.from_url(url)
        yield Store(client, load({"REDIS_URL": url}), clock=Clock(1_700_000_000.0))
        client.close()


def _finished(store: Store, serial: str, created: float, seconds: float, ok: bool = True) -> str:
    """A request submitted at ``created`` and committed ``seconds`` later; its member."""
    store.clock.now = created
    assert store.submit_certificate(CA, "111122223333", serial, b"req", None)
    member = member_of(CA, serial)
    assert store.claim_ready("w", 10) == [(member, b"req")]
    store.clock.now = created + seconds
    result = Result(member, ok, b"DER" if ok else b"bad CSR", "" if ok else "MalformedCSR")
    assert store.commit("w", [result]) == 1
    return member


def test_commits_count_what_took_with_latencies_and_reasons(store):
    t0 = store.clock.now
    _finished(store, "a1", t0, 0.04)
    _finished(store, "a2", t0, 7.0)
    _finished(store, "a3", t0, 4000.0)
    _finished(store, "a4", t0, 1.0, ok=False)
    store.clock.now = t0
    store.submit_certificate(CA, "111122223333", "a5", b"req", None)
    assert store.commit("w", [Result(member_of(CA, "a5"), True, b"DER")], unexpected_errors=2) == 0

    snap = store.metrics_snapshot()  # a5 is not leased to "w": its result did not take, not counted
    assert snap.issued == 3 and snap.failures == {"MalformedCSR": 1} and snap.unexpected_errors == 2
    assert snap.latency_count == 3 and snap.latency_sum == pytest.approx(4007.04, abs=0.01)
    expected = [0] * (len(LATENCY_BUCKETS) + 1)
    expected[0] += 1  # 0.04 s <= 0.05
    expected[LATENCY_BUCKETS.index(10.0)] += 1  # 7 s: 5 < x <= 10
    expected[-1] += 1  # 4000 s: past the last bound
    assert snap.latency_buckets == expected


def test_a_result_committed_twice_is_counted_once_and_a_failure_without_reason_is_other(store):
    member = _finished(store, "c1", store.clock.now, 1.0)
    assert store.commit("w", [Result(member, True, b"DER again")]) == 0  # a redelivered batch
    store.submit_certificate(CA, "111122223333", "c2", b"req", None)
    assert store.claim_ready("w", 10) == [(member_of(CA, "c2"), b"req")]
    assert store.commit("w", [(member_of(CA, "c2"), False, b"why")]) == 1  # a plain triple: no reason
    snap = store.metrics_snapshot()
    assert snap.issued == 1 and snap.latency_count == 1 and snap.failures == {"Other": 1}


def test_the_snapshot_reads_the_outbox_workers_and_queue(store):
    t0 = store.clock.now
    store.clock.now = t0 + 10
    store.submit_certificate(CA, "111122223333", "b2", b"req", None)
    assert store.claim_ready("w", 10) == [(member_of(CA, "b2"), b"req")]  # leased: not ready
    store.clear_drain_kick()  # the drain that claimed it is gone: no draining mark
    for serial, submitted in (("b1", t0), ("b3", t0 + 20)):
        store.clock.now = submitted
        store.submit_certificate(CA, "111122223333", serial, b"req", None)
    store.clock.now = t0 + 30
    store.heartbeat("host:1")
    store.r.rpush(keys.CELERY_QUEUE, "m1", "m2")
    assert store.ask_urgent(b"an OCSP job", 10, 60) == 1
    store.clock.now = t0 + 100
    snap = store.metrics_snapshot()
    assert (snap.outbox, snap.ready, snap.workers, snap.queued_messages, snap.urgent_jobs) == (
        3,
        2,
        0,
        2,
        1,
    )  # heartbeat: 70 s old
    assert snap.oldest_age == pytest.approx(100.0)  # b1, submitted at t0
    assert snap.longest_wait == pytest.approx(100.0)
    store.clock.now = t0 + 20
    assert store.metrics_snapshot().workers == 1


def _metrics(client) -> dict[str, float]:
    resp = client.get("/metrics")
    assert resp.status_code == 200 and resp.content_type.startswith("text/plain")
    out = {}
    for line in resp.data.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def _call(client, operation: str, body: dict | None = None):
    return client.post(
        "/", data=json.dumps(body or {}), headers={"X-Amz-Target": f"ACMPrivateCA.{operation}"}
    )


def test_the_endpoint_counts_requests_by_operation_and_outcome(redis_base_url):
    with private_redis_db(redis_base_url) as url:
        client = create_app(load({"REDIS_URL": url})).test_client()
        before = _metrics(client)
        ok = 'pcaq_api_requests_total{operation="ListCertificateAuthorities",outcome="success"}'
        bad = (
            'pcaq_api_requests_total{operation="DescribeCertificateAuthority",outcome="InvalidArnException"}'
        )
        unknown = 'pcaq_api_requests_total{operation="unknown",outcome="UnknownOperationException"}'
        for _ in range(3):
            _call(client, "ListCertificateAuthorities")
        _call(client, "DescribeCertificateAuthority", {"CertificateAuthorityArn": "arn:nope"})
        _call(client, "NoSuchOperation")
        after = _metrics(client)
        for name, more in ((ok, 3), (bad, 1), (unknown, 1)):
            assert after[name] - before.get(name, 0) == more, name
        assert after["pcaq_redis_up"] == 1
        assert (
            after['pcaq_issuance_latency_seconds_bucket{le="+Inf"}']
            == after["pcaq_issuance_latency_seconds_count"]
        )
        assert set(k for k in after if k.startswith("pcaq_certificate_authorities")) == {
            f'pcaq_certificate_authorities{{status="{s}"}}'
            for s in ("CREATING", "PENDING_CERTIFICATE", "ACTIVE", "DISABLED", "EXPIRED", "FAILED", "DELETED")
        }
        created = _call(
            client,
            "CreateCertificateAuthority",
            {
                "CertificateAuthorityType": "ROOT",
                "CertificateAuthorityConfiguration": {
                    "KeyAlgorithm": "EC_prime256v1",
                    "SigningAlgorithm": "SHA256WITHECDSA",
                    "Subject": {"CommonName": "Metrics Root"},
                },
            },
        )
        assert created.status_code == 200
        # The CA count is cached for 15 s: a new app (a new process, say) sees the new CA at once.
        fresh = create_app(load({"REDIS_URL": url})).test_client()
        assert _metrics(fresh)['pcaq_certificate_authorities{status="CREATING"}'] == 1


def test_redis_down_is_counted_and_reported(redis_base_url):
    client = create_app(load({"REDIS_URL": "redis://127.0.0.1:1/0"})).test_client()
    name = 'pcaq_api_requests_total{operation="ListCertificateAuthorities",outcome="ServiceUnavailable"}'
    before = _metrics(client).get(name, 0)
    assert _call(client, "ListCertificateAuthorities").status_code == 503
    after = _metrics(client)
    assert after[name] == before + 1
    assert after["pcaq_redis_up"] == 0
