"""Throttling (shared/platform/throttle.py, shared/records/throttle.py): parsing PCAQ_RATE_LIMITS, the token
bucket in Redis shared by every process (time from an injected clock, no sleeping), and the API's
ThrottlingException."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from pcaq.api import schemas
from pcaq.errors import Throttled
from pcaq.platform.settings import load
from pcaq.platform.throttle import Rate, Throttle, parse_rate_limits
from pcaq.records import Store
from tests.support import Clock, private_redis_db


@pytest.fixture
def redis_url(redis_base_url):
    with private_redis_db(redis_base_url) as url:
        yield url


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(redis_url, clock):
    client = redis.Redis.from_url(redis_url)
    yield Store(client, load({"REDIS_URL": redis_url}), clock=clock)
    client.close()


# -- parsing -----------------------------------------------------------------------------------


def test_aws_default_style_limits():
    limits = parse_rate_limits("IssueCertificate=25,GetCertificate=75", schemas.OPERATIONS)
    assert limits == {"IssueCertificate": Rate(25.0, 25), "GetCertificate": Rate(75.0, 75)}


def test_burst_fractions_star_and_spaces():
    limits = parse_rate_limits(" ListTags = 0.5/3 ,\n*=100", schemas.OPERATIONS)
    assert limits == {"ListTags": Rate(0.5, 3), "*": Rate(100.0, 100)}
    assert parse_rate_limits("ListTags=0.2")["ListTags"].burst == 1  # at least one token


def test_nothing_configured_is_no_limit():
    assert parse_rate_limits("") == {}
    assert parse_rate_limits(" , ") == {}


@pytest.mark.parametrize(
    "text, message",
    [
        ("IssueCertificate", "is not Operation=rate"),
        ("IssueCertificate=fast", "is not Operation=rate"),
        ("IssueCertificate=0", "above 0"),
        ("IssueCertificate=5/0", "at least 1"),
        ("IssueCertificate=5,IssueCertificate=6", "more than once"),
        ("IssueCertificates=5", "not an operation"),
    ],
)
def test_bad_limits_are_refused(text, message):
    with pytest.raises(ValueError, match=message):
        parse_rate_limits(text, schemas.OPERATIONS)


# -- the throttle without Redis ------------------------------------------------------------------


def test_no_limits_never_calls_the_store():
    def take(*args):
        raise AssertionError("the store was called although no limit is configured")

    throttle = Throttle({}, take)
    assert not throttle.enabled
    for _ in range(1000):
        throttle.check("AKIDEXAMPLE", "IssueCertificate")


def test_only_limited_operations_call_the_store():
    calls = []
    throttle = Throttle({"IssueCertificate": Rate(1, 1)}, lambda *a: calls.append(a) or True)
    throttle.check("AKID", "GetCertificate")
    throttle.check("AKID", "IssueCertificate")
    assert calls == [("AKID", "IssueCertificate", Rate(1, 1))]


def test_the_star_limit_covers_unnamed_operations():
    throttle = Throttle({"*": Rate(2, 2), "IssueCertificate": Rate(9, 9)}, lambda *a: True)
    assert throttle.rate_for("ListTags") == Rate(2, 2)
    assert throttle.rate_for("IssueCertificate") == Rate(9, 9)


def test_an_empty_bucket_raises_throttled_with_the_aws_message():
    throttle = Throttle({"IssueCertificate": Rate(1, 1)}, lambda *a: False)
    with pytest.raises(Throttled, match="Rate exceeded"):
        throttle.check("AKID", "IssueCertificate")


# -- the token bucket in Redis ---------------------------------------------------------------------


def test_a_burst_then_refill_at_the_rate(store, clock):
    rate = Rate(2.0, 5)
    taken = [store.take_token("AKID", "IssueCertificate", rate) for _ in range(7)]
    assert taken == [True] * 5 + [False] * 2
    clock.now += 0.49  # under one token's worth of time
    assert not store.take_token("AKID", "IssueCertificate", rate)
    clock.now += 0.02
    assert store.take_token("AKID", "IssueCertificate", rate)
    assert not store.take_token("AKID", "IssueCertificate", rate)
    clock.now += 100  # refills to the burst, not beyond
    assert [store.take_token("AKID", "IssueCertificate", rate) for _ in range(6)] == [True] * 5 + [False]


def test_buckets_are_per_access_key_and_operation(store):
    rate = Rate(1.0, 1)
    assert store.take_token("AKIDA", "IssueCertificate", rate)
    assert not store.take_token("AKIDA", "IssueCertificate", rate)
    assert store.take_token("AKIDB", "IssueCertificate", rate)
    assert store.take_token("AKIDA", "GetCertificate", rate)


def test_a_clock_behind_never_adds_tokens(store, clock):
    rate = Rate(1.0, 1)
    assert store.take_token("AKID", "ListTags", rate)
    clock.now -= 30  # another API process with a slower clock
    assert not store.take_token("AKID", "ListTags", rate)


def test_idle_buckets_expire(store, redis_url):
    store.take_token("AKID", "ListTags", Rate(10.0, 20))
    client = redis.Redis.from_url(redis_url)
    ttls = [client.pttl(k) for k in client.keys("pcaq:throttle:*")]
    assert ttls and all(0 < t <= 3000 for t in ttls)  # burst/rate = 2 s, plus 1 s
    client.close()


def test_the_bucket_is_shared_by_concurrent_processes(redis_url, clock):
    """Many clients (as many API processes would) take from one bucket: exactly the burst gets through."""
    settings = load({"REDIS_URL": redis_url})
    stores = [Store(redis.Redis.from_url(redis_url), settings, clock=clock) for _ in range(8)]
    rate = Rate(0.001, 50)
    with ThreadPoolExecutor(8) as pool:
        results = list(
            pool.map(lambda i: stores[i % 8].take_token("AKID", "IssueCertificate", rate), range(200))
        )
    assert sum(results) == 50
    for s in stores:
        s.r.close()


# -- through the API ------------------------------------------------------------------------------


def test_the_api_answers_throttling_exception(redis_url):
    from pcaq.api.app import create_app

    settings = load({"REDIS_URL": redis_url, "PCAQ_RATE_LIMITS": "ListCertificateAuthorities=0.001/2"})
    client = create_app(settings).test_client()
    headers = {
        "X-Amz-Target": "ACMPrivateCA.ListCertificateAuthorities",
        "Content-Type": "application/x-amz-json-1.1",
    }
    answers = [client.post("/", data="{}", headers=headers) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 400]
    assert json.loads(answers[2].data) == {"__type": "ThrottlingException", "message": "Rate exceeded"}
    other = client.post("/", data="{}", headers={**headers, "X-Amz-Target": "ACMPrivateCA.ListTags"})
    assert other.status_code == 400 and json.loads(other.data)["__type"] != "ThrottlingException"
