"""A drain that lost Redis part-way hands back what it holds (records ``release``, worker ``_hand_back``):
the requests are ready at once on the primary that serves now, instead of after their lease."""

from __future__ import annotations

import pytest
import redis

from pcaq.platform.settings import load
from pcaq.records import Store, keys, member_of
from tests.support import Clock, private_redis_db

CA = "0b5c3a1e-1111-4222-8333-444455556666"
ACCOUNT = "111122223333"


@pytest.fixture
def store(redis_base_url):
    with private_redis_db(redis_base_url) as url:
        yield Store(redis.Redis.from_url(url), load({"PCAQ_LEASE_SECONDS": "120"}), clock=Clock())


def test_a_drain_hands_back_only_what_it_still_holds(store):
    for serial in ("a1", "b2", "c3", "d4"):
        store.submit_certificate(CA, ACCOUNT, serial, b"request", None)
    a1, b2, c3, d4 = (member_of(CA, s) for s in ("a1", "b2", "c3", "d4"))
    started = store.clock()
    assert len(store.claim_ready("w1", 3)) == 3  # a1, b2, c3: w1's claims, read or not
    store.clock.advance(10)
    assert store.claim_ready("w2", 10) == [(d4, b"request")]  # another drain's lease, in the window
    assert store.commit("w1", [(c3, True, b"der")]) == 1  # written: not w1's to hand back any more
    store.clock.advance(10)

    assert store.release("w1", started - 100, started - 50) == 0  # no lease of w1 ends in that window
    assert store.release("w1", started, store.clock()) == 2
    # Ready at once (no lease to wait out), the attempt the claim counted given back; w2's lease kept.
    assert sorted(m for m, _ in store.claim_ready("w3", 10)) == [a1, b2]
    assert store.r.hget(keys.certificate(a1), "a") == b"1"  # only w3's claim counts
    assert store.r.hget(keys.certificate(d4), "o") == b"w2"
    assert store.commit("w1", [(a1, True, b"late")]) == 0  # the first drain's late commit does not take
    assert store.commit("w3", [(a1, True, b"der")]) == 1
