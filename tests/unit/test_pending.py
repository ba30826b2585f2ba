"""The pending request that crosses from IssueCertificate to Redis to the worker
(shared/records/pending.py): its round trip, the encoding written before it was versioned, the errors
of an unreadable payload, and the one field the claim's Lua script reads of it."""

from __future__ import annotations

import json
from datetime import UTC

import pytest
import redis
from cryptography import x509
from cryptography.x509.oid import NameOID

from pcaq.errors import UnreadableRequest
from pcaq.platform.settings import load
from pcaq.records import Store, member_of
from pcaq.records.pending import VERSION, PendingRequest
from tests.legacy_requests import (
    LEGACY_FULL,
    LEGACY_PLAIN,
    LEGACY_RID,
    NOT_AFTER,
    NOT_BEFORE,
    legacy_full_request,
)
from tests.support import Clock, private_redis_db

# -- round trip and the encoding --------------------------------------------------------------------


def test_a_request_comes_back_as_it_went_in():
    full = legacy_full_request()
    assert PendingRequest.decode(full.encode()) == full
    plain = PendingRequest(b"\x30\x03der", "SHA384WITHRSA", "EndEntityCertificate", NOT_BEFORE, NOT_AFTER)
    back = PendingRequest.decode(plain.encode())
    assert back == plain and back.api_passthrough is None and back.request_id == "-"
    assert back.not_before.tzinfo is UTC


def test_the_encoding_is_the_previous_one_with_a_version_in_front():
    # Compact as before (one key more), the same keys: a worker of the previous version signs it too.
    assert legacy_full_request().encode() == b'{"v":%d,' % VERSION + LEGACY_FULL[1:]
    plain = PendingRequest(
        legacy_full_request().csr_der, "SHA256WITHECDSA", "EndEntityCertificate", NOT_BEFORE, NOT_AFTER
    )
    assert plain.encode() == b'{"v":%d,' % VERSION + LEGACY_PLAIN[1:]


def test_the_encoding_written_before_versions_is_read():
    assert PendingRequest.decode(LEGACY_FULL) == legacy_full_request()
    plain = PendingRequest.decode(LEGACY_PLAIN)
    assert (plain.template, plain.api_passthrough, plain.request_id) == ("EndEntityCertificate", None, "-")
    assert (plain.not_before, plain.not_after) == (NOT_BEFORE, NOT_AFTER)
    csr = x509.load_der_x509_csr(plain.csr_der)
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "legacy.example.com"
    assert csr.is_signature_valid


# -- unreadable payloads ----------------------------------------------------------------------------


def _with(**changes) -> bytes:
    doc = json.loads(legacy_full_request().encode())
    for key, value in changes.items():
        if value is None:
            del doc[key]
        else:
            doc[key] = value
    return json.dumps(doc).encode()


def test_a_newer_version_is_refused_with_a_reason():
    with pytest.raises(UnreadableRequest, match=f"version {VERSION + 1}, newer than this worker reads"):
        PendingRequest.decode(_with(v=VERSION + 1))


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"\xff\xfe{}",  # not UTF-8
        b"[1, 2]",
        b'"a string"',
        LEGACY_FULL + b"trailing",
        LEGACY_FULL[:-10],  # cut short
        _with(v=0),
        _with(v="2"),
        _with(v=True),
        _with(csr=None),
        _with(alg=None),
        _with(na=None),
        _with(csr=12),
        _with(nb="1796284800"),
        _with(na=1.5),
        _with(api=["not", "a", "mapping"]),
        _with(rid=7),
        _with(csr="abc"),  # base64 with wrong padding
        _with(na=10**20),  # past any datetime
    ],
)
def test_a_corrupt_payload_is_refused_with_a_reason(raw):
    with pytest.raises(UnreadableRequest, match="corrupt"):
        PendingRequest.decode(raw)


# -- the field the Lua scripts read -----------------------------------------------------------------


@pytest.fixture
def store(redis_base_url):
    with private_redis_db(redis_base_url) as url:
        client = redis.Redis.from_url(url)
        yield Store(client, load({"REDIS_URL": url, "PCAQ_MAX_ATTEMPTS": "1"}), clock=Clock())
        client.close()


@pytest.mark.parametrize("request_id", [LEGACY_RID, "-"])
def test_the_claim_script_reads_the_request_id_of_an_encoded_request(store, request_id):
    ca = "0b5c3a1e-1111-4222-8333-444455556666"
    request = PendingRequest(
        b"\x30\x00", "SHA256WITHECDSA", "EndEntityCertificate", NOT_BEFORE, NOT_AFTER, None, request_id
    )
    assert store.submit_certificate(ca, "111122223333", "a1", request.encode(), None)
    assert len(store.claim_ready("w1", 10)) == 1  # its one attempt; the worker dies
    store.clock.advance(store.settings.lease_seconds + 1)
    claimed = store.claim_ready("w2", 10)  # gives it up, reading its request id in Lua
    assert claimed == [] and claimed.abandoned == [(member_of(ca, "a1"), request_id)]
