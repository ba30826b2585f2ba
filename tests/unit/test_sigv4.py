"""SigV4 verification (api/sigv4.py) against botocore's own signer: what botocore signs verifies; any
change to body, headers, date, region, service, key or secret is refused with the AWS error type."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from unittest import mock

import botocore.auth
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from pcaq.api.sigv4 import HttpRequest, SigV4Verifier, canonical_query, canonical_uri
from pcaq.errors import IncompleteSignature, InvalidSignature, MissingAuthentication, UnrecognizedClient
from pcaq.platform.credentials import Credential

NOW = datetime(2026, 11, 26, 17, 25, 47, tzinfo=UTC)
KEYS = {
    "AKIDEXAMPLE": Credential("AKIDEXAMPLE", "secret", "111122223333"),
    "AKIDOTHER": Credential("AKIDOTHER", "other-secret", "444455556666"),
}
BODY = json.dumps(
    {"CertificateAuthorityArn": "arn:aws:acm-pca:us-east-1:111122223333:certificate-authority/x"}
)


def sign(
    body: str | bytes = BODY,
    when: datetime = NOW,
    region: str = "us-east-1",
    service: str = "acm-pca",
    key: str = "AKIDEXAMPLE",
    secret: str = "secret",
    url: str = "http://127.0.0.1:8080/",
    extra_headers: dict | None = None,
    token: str | None = None,
) -> AWSRequest:
    """A request signed by botocore exactly as boto3 signs an acm-pca call."""
    headers = {
        "X-Amz-Target": "ACMPrivateCA.DescribeCertificateAuthority",
        "Content-Type": "application/x-amz-json-1.1",
        **(extra_headers or {}),
    }
    request = AWSRequest(method="POST", url=url, data=body, headers=headers)
    with mock.patch.object(botocore.auth, "get_current_datetime", lambda *a, **k: when.replace(tzinfo=None)):
        SigV4Auth(BotoCredentials(key, secret, token), service, region).add_auth(request)
    return request


def as_received(request: AWSRequest, **changes) -> HttpRequest:
    """The request as the server sees it (lower-case header names, Host added as urllib3 does)."""
    prepared = request.prepare()
    path, _, query = prepared.url.split("://", 1)[1].partition("/")[2].partition("?")
    headers = {k.lower(): v for k, v in prepared.headers.items()}
    headers.setdefault("host", prepared.url.split("://", 1)[1].split("/", 1)[0])
    headers.update({k.lower(): v for k, v in changes.pop("headers", {}).items()})
    for name in changes.pop("drop", ()):
        headers.pop(name, None)
    body = prepared.body if isinstance(prepared.body, bytes) else (prepared.body or "").encode()
    fields = {"method": "POST", "raw_path": "/" + path, "raw_query": query, "headers": headers, "body": body}
    fields.update(changes)
    return HttpRequest(**fields)


@pytest.fixture
def verifier() -> SigV4Verifier:
    return SigV4Verifier(KEYS.get, clock=lambda: NOW.timestamp())


def test_a_request_signed_by_botocore_verifies(verifier):
    verified = verifier.verify(as_received(sign()))
    assert verified.credential.access_key == "AKIDEXAMPLE"
    assert verified.credential.account == "111122223333"
    assert verified.region == "us-east-1"


def test_the_region_comes_from_the_credential_scope(verifier):
    assert verifier.verify(as_received(sign(region="eu-west-3"))).region == "eu-west-3"


def test_each_access_key_verifies_with_its_own_secret(verifier):
    verified = verifier.verify(as_received(sign(key="AKIDOTHER", secret="other-secret")))
    assert verified.credential.account == "444455556666"


@pytest.mark.parametrize(
    "body",
    ["", "{}", '{"Csr": "\\u00e9\\u4e2d"}', "é中 unicode body".encode(), b"\x00\xff binary"],
)
def test_bodies_of_any_content_verify(verifier, body):
    verifier.verify(as_received(sign(body=body)))


def test_a_path_and_query_string_verify(verifier):
    signed = sign(url="http://127.0.0.1:8080/a%20b/./c/?b=2&a=1&a=0&sp=x%20y")
    verifier.verify(as_received(signed))


def test_a_changed_body_is_refused(verifier):
    with pytest.raises(InvalidSignature, match="does not match"):
        verifier.verify(as_received(sign(), body=BODY.replace("x", "y").encode()))


@pytest.mark.parametrize(
    "header, value",
    [
        ("x-amz-target", "ACMPrivateCA.DeleteCertificateAuthority"),
        ("content-type", "application/json"),
        ("host", "evil.example:8080"),
    ],
)
def test_a_changed_signed_header_is_refused(verifier, header, value):
    with pytest.raises(InvalidSignature):
        verifier.verify(as_received(sign(), headers={header: value}))


def test_an_added_unsigned_header_is_ignored(verifier):
    verifier.verify(as_received(sign(), headers={"user-agent": "changed", "amz-sdk-request": "attempt=2"}))


def test_a_changed_date_header_is_refused(verifier):
    later = (NOW + timedelta(seconds=1)).strftime("%Y%m%dT%H%M%SZ")
    with pytest.raises(InvalidSignature):
        verifier.verify(as_received(sign(), headers={"x-amz-date": later}))


def test_a_changed_path_or_method_is_refused(verifier):
    with pytest.raises(InvalidSignature):
        verifier.verify(as_received(sign(), raw_path="/other"))
    with pytest.raises(InvalidSignature):
        verifier.verify(as_received(sign(), method="PUT"))


def test_a_wrong_secret_is_refused(verifier):
    with pytest.raises(InvalidSignature, match="Check your AWS Secret Access Key"):
        verifier.verify(as_received(sign(secret="not-the-secret")))


def test_an_unknown_access_key_is_unrecognized(verifier):
    with pytest.raises(UnrecognizedClient, match="security token included in the request is invalid"):
        verifier.verify(as_received(sign(key="AKIDUNKNOWN")))


def test_session_credentials_are_unrecognized(verifier):
    with pytest.raises(UnrecognizedClient):
        verifier.verify(as_received(sign(token="session-token")))


def test_no_authorization_header_is_missing_authentication(verifier):
    with pytest.raises(MissingAuthentication, match="Missing Authentication Token"):
        verifier.verify(as_received(sign(), drop=("authorization",)))


@pytest.mark.parametrize(
    "region, service, match",
    [("us-east-1", "acm", "correct service: 'acm-pca'"), ("US_EAST", "acm-pca", "valid region")],
)
def test_a_scope_for_another_service_or_a_bad_region_is_refused(verifier, region, service, match):
    with pytest.raises(InvalidSignature, match=match):
        verifier.verify(as_received(sign(region=region, service=service)))


def test_a_scope_day_other_than_the_request_day_is_refused(verifier):
    signed = as_received(sign())
    auth = signed.headers["authorization"].replace("/20261126/", "/20261125/")
    with pytest.raises(InvalidSignature, match="Date in Credential scope does not match"):
        verifier.verify(as_received(sign(), headers={"authorization": auth}))


@pytest.mark.parametrize("minutes", [-10, -5.1, 5.1, 60 * 24])
def test_a_request_time_more_than_5_minutes_off_is_refused(verifier, minutes):
    signed = sign(when=NOW + timedelta(minutes=minutes))
    expected = "Signature expired" if minutes < 0 else "Signature not yet current"
    with pytest.raises(InvalidSignature, match=expected):
        verifier.verify(as_received(signed))


@pytest.mark.parametrize("minutes", [-4.9, 4.9])
def test_a_request_time_within_5_minutes_is_accepted(verifier, minutes):
    verifier.verify(as_received(sign(when=NOW + timedelta(minutes=minutes))))


def test_the_expired_message_names_both_times(verifier):
    with pytest.raises(InvalidSignature) as caught:
        verifier.verify(as_received(sign(when=NOW - timedelta(minutes=10))))
    assert caught.value.message == (
        "Signature expired: 20261126T171547Z is now earlier than 20261126T172047Z (20261126T172547Z - 5 min.)"
    )


def test_a_content_sha256_header_must_match_the_body(verifier):
    with pytest.raises(InvalidSignature, match="x-amz-content-sha256"):
        verifier.verify(as_received(sign(extra_headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})))
    import hashlib

    good = hashlib.sha256(BODY.encode()).hexdigest()
    verifier.verify(as_received(sign(extra_headers={"X-Amz-Content-SHA256": good})))


@pytest.mark.parametrize(
    "authorization, error",
    [
        ("AWS AKIDEXAMPLE:c2lnbmF0dXJl", IncompleteSignature),  # SigV2
        ("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261126/us-east-1/acm-pca/aws4_request", IncompleteSignature),
        ("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261126/us-east-1, SignedHeaders=host, Signature=" + "0" * 64,
         IncompleteSignature),
        ("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261126/us-east-1/acm-pca/aws4_request, "
         "SignedHeaders=Host;X-Amz-Date, Signature=" + "0" * 64, IncompleteSignature),
        ("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261126/us-east-1/acm-pca/aws4_request, "
         "SignedHeaders=host;x-amz-date, Signature=xyz", InvalidSignature),
        ("AWS4-HMAC-SHA256 " + "x" * 5000, IncompleteSignature),
    ],
)  # fmt: skip
def test_malformed_authorization_headers_are_refused(verifier, authorization, error):
    with pytest.raises(error):
        verifier.verify(as_received(sign(), headers={"authorization": authorization}))


def test_host_and_target_must_be_signed(verifier):
    signed = as_received(sign())
    unsigned_host = signed.headers["authorization"].replace("content-type;host;", "content-type;")
    with pytest.raises(IncompleteSignature, match="'Host' must be a 'SignedHeader'"):
        verifier.verify(as_received(sign(), headers={"authorization": unsigned_host}))
    unsigned_target = signed.headers["authorization"].replace(";x-amz-target", "")
    with pytest.raises(IncompleteSignature, match="'X-Amz-Target' must be a 'SignedHeader'"):
        verifier.verify(as_received(sign(), headers={"authorization": unsigned_target}))


def test_a_date_header_works_in_place_of_x_amz_date(verifier):
    signed = sign(extra_headers={"Date": "Thu, 26 Nov 2026 17:25:47 GMT"})
    received = as_received(signed)
    assert "x-amz-date" not in received.headers
    verifier.verify(received)


def test_no_date_at_all_is_incomplete(verifier):
    with pytest.raises(IncompleteSignature, match="X-Amz-Date' or a 'Date' header"):
        verifier.verify(as_received(sign(), drop=("x-amz-date",)))


def test_the_signing_key_is_cached_per_day_and_region(verifier):
    verifier.verify(as_received(sign()))
    verifier.verify(as_received(sign(body="{}")))
    verifier.verify(as_received(sign(region="eu-west-1")))
    assert len(verifier._keys) == 2


def test_canonical_uri_and_query_follow_the_spec():
    assert canonical_uri("/") == "/"
    assert canonical_uri("") == "/"
    assert canonical_uri("/a/./b/../c//d/") == "/a/c/d/"
    assert canonical_uri("/a%20b") == "/a%2520b"  # encoded twice, as for every service but S3
    assert canonical_query("") == ""
    assert canonical_query("b=2&a=%41&a=1&c") == "a=1&a=A&b=2&c="


def test_verification_is_cheap(verifier):
    """The hot path: a verification of a typical IssueCertificate body costs well under a millisecond."""
    received = as_received(sign(body=BODY * 10))
    verifier.verify(received)
    rounds = 2000
    start = time.perf_counter()
    for _ in range(rounds):
        verifier.verify(received)
    per_call = (time.perf_counter() - start) / rounds
    print(f"SigV4 verification: {per_call * 1e6:.1f} us per request")
    assert per_call < 0.001
