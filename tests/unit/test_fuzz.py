"""Hostile input, property-based (Hypothesis): random and mutated bodies, headers, blobs, JSON types and
Unicode thrown at every operation of the real Flask app never produce a 5xx (a 501 only for an
operation this server does not implement), and the worker's functions, run in-process on whatever the
API accepted, never crash: every request ends ISSUED or FAILED. CSR parsing and signing are fuzzed the
same way: only the domain's own errors (``PcaqError``) may come out.

Runs on a private database of the test Redis, with an ACTIVE root CA made through the API and the
worker's functions (no Celery worker runs).
"""

from __future__ import annotations

import base64
import json
import os
from datetime import UTC, datetime, timedelta

import pytest
import redis
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pcaq.api import schemas
from pcaq.api.app import create_app
from pcaq.api.operations import HANDLERS
from pcaq.ca.authorities import Authorities
from pcaq.ca.vault import EncryptedRedisVault, verify_master_key
from pcaq.errors import PcaqError
from pcaq.pki import certificates
from pcaq.platform.settings import load
from pcaq.records import Store
from tests.support import private_redis_db

EXAMPLES = int(os.environ.get("PCAQ_FUZZ_EXAMPLES", "150"))  # per test (per operation where parametrized)
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
OPERATIONS = sorted(schemas.OPERATIONS)
JSON_CT = "application/x-amz-json-1.1"
_HEADER_TEXT = st.characters(blacklist_categories=("Cc", "Cs"))  # what an HTTP header line can carry

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()
    | st.text(alphabet=st.characters(codec="utf-8"), max_size=300)
    | st.binary(max_size=200).map(lambda b: base64.b64encode(b).decode())
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=20), inner, max_size=5),
    max_leaves=20,
)


class NoQueue:
    """The worker's functions are run directly; nothing needs to be published."""

    def drain(self, helper=None):
        pass

    def create_ca_key(self, ca_id):
        pass


def call(client, operation: str, body, headers: dict | None = None):
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return client.post(
        "/",
        data=data,
        headers={"X-Amz-Target": f"ACMPrivateCA.{operation}", "Content-Type": JSON_CT, **(headers or {})},
    )


def make_csr(cn: str = "fuzz.example.com") -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    )
    builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


class World:
    """The app, the worker's services and an ACTIVE root CA to aim at."""

    def __init__(self, url: str):
        from pcaq.worker.services import Services

        self.settings = load({"REDIS_URL": url, "PCAQ_LOG_LEVEL": "WARNING"})
        self.store = Store(redis.Redis.from_url(url), self.settings)
        kek = os.urandom(32)
        verify_master_key(self.store, kek)
        queue = NoQueue()
        self.svc = Services(
            self.settings,
            self.store,
            queue,
            EncryptedRedisVault(self.store, kek),
            Authorities(self.store, queue, self.settings),
        )
        self.client = create_app(self.settings).test_client()
        self.ca = self._active_root()
        self.victim = self._created_ca()  # the lifecycle operations are aimed at this one
        self.csr_der = make_csr()
        out = self.ok("IssueCertificate", self.issue_body(self.csr_der))
        self.cert_arn = out["CertificateArn"]
        self.work()

    def ok(self, operation: str, body: dict) -> dict:
        resp = call(self.client, operation, body)
        assert resp.status_code == 200, resp.data
        return json.loads(resp.data or b"{}")

    def work(self) -> None:
        """What the workers would do: generate pending CA keys, sign everything ready."""
        from pcaq.worker.tasks import drain_outbox, generate_ca_key

        for ca_id in self.store.stale_pending_cas(older_than=float("inf")):
            generate_ca_key(self.svc, ca_id)
        drain_outbox(self.svc)

    def _created_ca(self) -> str:
        config = {
            "KeyAlgorithm": "EC_prime256v1",
            "SigningAlgorithm": "SHA256WITHECDSA",
            "Subject": {"CommonName": "Fuzz Root"},
        }
        body = {"CertificateAuthorityType": "ROOT", "CertificateAuthorityConfiguration": config}
        return self.ok("CreateCertificateAuthority", body)["CertificateAuthorityArn"]

    def _active_root(self) -> str:
        arn = self._created_ca()
        self.work()
        csr = self.ok("GetCertificateAuthorityCsr", {"CertificateAuthorityArn": arn})["Csr"]
        body = {
            "CertificateAuthorityArn": arn,
            "Csr": base64.b64encode(csr.encode()).decode(),
            "SigningAlgorithm": "SHA256WITHECDSA",
            "TemplateArn": "arn:aws:acm-pca:::template/RootCACertificate/V1",
            "Validity": {"Value": 5, "Type": "YEARS"},
        }
        cert_arn = self.ok("IssueCertificate", body)["CertificateArn"]
        self.work()
        pem = self.ok("GetCertificate", {"CertificateAuthorityArn": arn, "CertificateArn": cert_arn})[
            "Certificate"
        ]
        self.root_pem = pem
        body = {"CertificateAuthorityArn": arn, "Certificate": base64.b64encode(pem.encode()).decode()}
        self.ok("ImportCertificateAuthorityCertificate", body)
        return arn

    def issue_body(self, csr: bytes) -> dict:
        return {
            "CertificateAuthorityArn": self.ca,
            "Csr": base64.b64encode(csr).decode(),
            "SigningAlgorithm": "SHA256WITHECDSA",
            "TemplateArn": "arn:aws:acm-pca:::template/EndEntityCertificate_APIPassthrough/V1",
            "Validity": {"Value": 30, "Type": "DAYS"},
            "ApiPassthrough": {
                "Extensions": {
                    "KeyUsage": {"DigitalSignature": True},
                    "SubjectAlternativeNames": [{"DnsName": "fuzz.example.com"}],
                    "CustomExtensions": [{"ObjectIdentifier": "1.2.3.4", "Value": "BQA="}],
                },
                "Subject": {"CommonName": "fuzz", "Organization": "Fuzz"},
            },
            "IdempotencyToken": "tok",
        }

    def baseline(self, operation: str) -> dict:
        """A well-formed body for ``operation`` to mutate."""
        ca = {"CertificateAuthorityArn": self.ca}
        victim = {"CertificateAuthorityArn": self.victim}
        tags = {"Tags": [{"Key": "team", "Value": "pki"}]}
        bodies = {
            "CreateCertificateAuthority": {
                "CertificateAuthorityType": "SUBORDINATE",
                "CertificateAuthorityConfiguration": {
                    "KeyAlgorithm": "EC_prime256v1",
                    "SigningAlgorithm": "SHA256WITHECDSA",
                    "Subject": {"CommonName": "Fuzz Sub", "Country": "DE"},
                },
                "RevocationConfiguration": {"CrlConfiguration": {"Enabled": False}},
                **tags,
            },
            "IssueCertificate": self.issue_body(self.csr_der),
            "GetCertificate": {**ca, "CertificateArn": self.cert_arn},
            "ListCertificateAuthorities": {"MaxResults": 10, "ResourceOwner": "SELF"},
            "ImportCertificateAuthorityCertificate": {
                **victim,
                "Certificate": base64.b64encode(self.root_pem.encode()).decode(),
                "CertificateChain": base64.b64encode(self.root_pem.encode()).decode(),
            },
            "UpdateCertificateAuthority": {**victim, "Status": "DISABLED"},
            "DeleteCertificateAuthority": {**victim, "PermanentDeletionTimeInDays": 7},
            "TagCertificateAuthority": {**victim, **tags},
            "UntagCertificateAuthority": {**victim, **tags},
            "RevokeCertificate": {
                **ca,
                "CertificateSerial": self.cert_arn.rsplit("/", 1)[1],
                "RevocationReason": "UNSPECIFIED",
            },
            "CreatePermission": {**victim, "Principal": "acm.amazonaws.com", "Actions": ["IssueCertificate"]},
            "PutPolicy": {"ResourceArn": self.victim, "Policy": "{}"},
        }
        return bodies.get(operation, ca)


@pytest.fixture(scope="module")
def world(redis_base_url):
    with private_redis_db(redis_base_url) as url:
        w = World(url)
        yield w
        w.store.r.close()


def check_answer(resp, operation: str) -> None:
    """No 5xx (a 501 only for an operation not implemented), and errors carry an AWS ``__type``."""
    implemented = operation in HANDLERS
    assert resp.status_code < 500 or (resp.status_code == 501 and not implemented), (
        operation,
        resp.status_code,
        resp.data[:500],
    )
    if resp.status_code >= 400:
        assert json.loads(resp.data)["__type"]


def paths_of(value, prefix=()) -> list[tuple]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += paths_of(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += paths_of(v, (*prefix, i))
    return out


def mutate(body, path: tuple, action: str, new):
    """``body`` with the value at ``path`` replaced, removed or given an unknown sibling."""
    if not path:
        return new
    copy = json.loads(json.dumps(body))
    parent = copy
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if action == "drop":
        del parent[last]
    elif action == "sibling" and isinstance(parent, dict):
        parent[f"Unknown{len(parent)}"] = new
    else:
        parent[last] = new
    return copy


# -- the API -----------------------------------------------------------------------------------


@FUZZ
@given(
    operation=st.sampled_from(OPERATIONS) | st.text(alphabet=_HEADER_TEXT, max_size=40),
    body=st.binary(max_size=2000) | st.text(max_size=2000) | json_values.map(json.dumps),
)
def test_random_bodies_never_5xx(world, operation, body):
    check_answer(call(world.client, operation, body), operation)


def near(original) -> st.SearchStrategy:
    """Values of the original's own type, close to what the schema accepts (where handler bugs hide)."""
    if isinstance(original, bool):
        return st.booleans()
    if isinstance(original, int):
        return (
            st.integers(-2, 2)
            | st.integers(original - 3, original + 3)
            | st.integers(0, 10 * (abs(original) + 100))
            | st.sampled_from([2**31, 2**63, -(2**63)])
        )
    if isinstance(original, str):
        edits = st.tuples(st.integers(0, len(original)), st.integers(0, 3), st.text(max_size=4))
        return (
            edits.map(lambda e: original[: e[0]] + e[2] + original[e[0] + e[1] :])
            | st.sampled_from(
                ["", " ", original.upper(), original * 3, original.replace("111122223333", "999988887777")]
            )
            | st.text(alphabet=st.characters(codec="utf-8"), min_size=1000, max_size=5000)
        )
    if isinstance(original, list):
        return st.sampled_from([[], original * 2, original * 60, [original]])
    if isinstance(original, dict):
        return st.sampled_from([{}, [original], json.dumps(original)])
    return json_values


@settings(FUZZ, max_examples=max(10, EXAMPLES // 4))
@given(data=st.data())
@pytest.mark.parametrize("operation", OPERATIONS)
def test_mutated_well_formed_requests_never_5xx(world, data, operation):
    body = world.baseline(operation)
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        path = data.draw(st.sampled_from(paths_of(body)), label="path")
        action = data.draw(st.sampled_from(["replace", "drop", "sibling"]) if path else st.just("replace"))
        original = body
        for step in path:
            original = original[step]
        new = data.draw(near(original) | json_values, label="value")
        body = mutate(body, path, action, new)
    check_answer(call(world.client, operation, body), operation)


blob_mutations = st.sampled_from(["flip", "truncate", "insert", "pem", "junk-pem", "utf16"])


def mutated_csr(data, der: bytes) -> bytes:
    kind = data.draw(blob_mutations, label="csr mutation")
    if kind == "flip":
        i = data.draw(st.integers(0, len(der) - 1))
        return der[:i] + bytes([der[i] ^ data.draw(st.integers(1, 255))]) + der[i + 1 :]
    if kind == "truncate":
        return der[: data.draw(st.integers(0, len(der) - 1))]
    if kind == "insert":
        i = data.draw(st.integers(0, len(der)))
        return der[:i] + data.draw(st.binary(min_size=1, max_size=40)) + der[i:]
    pem = x509.load_der_x509_csr(der).public_bytes(serialization.Encoding.PEM)
    if kind == "pem":
        i = data.draw(st.integers(0, len(pem) - 1))
        return pem[:i] + data.draw(st.binary(max_size=20)) + pem[i + 1 :]
    if kind == "junk-pem":
        return b"-----BEGIN CERTIFICATE REQUEST-----\n" + data.draw(st.binary(max_size=300)) + pem
    return pem.decode().encode("utf-16")


@FUZZ
@given(data=st.data())
def test_mutated_csrs_through_the_api_and_the_worker(world, data):
    """Whatever IssueCertificate accepts, the worker finishes: ISSUED or FAILED, never stuck or crashed."""
    csr = mutated_csr(data, world.csr_der)
    resp = call(
        world.client, "IssueCertificate", {**world.issue_body(csr), "IdempotencyToken": os.urandom(8).hex()}
    )
    check_answer(resp, "IssueCertificate")
    if resp.status_code == 200:
        world.work()
        assert world.store.pending_count() == 0
        got = call(
            world.client,
            "GetCertificate",
            {"CertificateAuthorityArn": world.ca, "CertificateArn": json.loads(resp.data)["CertificateArn"]},
        )
        assert got.status_code == 200 or json.loads(got.data)["__type"] == "RequestFailedException"


@FUZZ
@given(
    target=st.text(alphabet=_HEADER_TEXT, max_size=100)
    | st.sampled_from([f"ACMPrivateCA.{op}" for op in OPERATIONS]),
    content_type=st.text(alphabet=_HEADER_TEXT, max_size=60),
    extra=st.dictionaries(
        st.text(
            alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=":"),
            min_size=1,
            max_size=30,
        ),
        st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255), max_size=500),
        max_size=6,
    ),
    authorization=st.none()
    | st.text(alphabet=_HEADER_TEXT, max_size=300)
    | st.just(
        "AWS4-HMAC-SHA256 Credential=A/20260101/us-east-1/acm-pca/aws4_request, SignedHeaders=host, Signature="
        + "0" * 64
    ),
)
def test_random_headers_never_5xx(world, target, content_type, extra, authorization):
    headers = {**extra, "X-Amz-Target": target, "Content-Type": content_type}
    if authorization is not None:
        headers["Authorization"] = authorization
    resp = world.client.post(
        "/", data=json.dumps(world.baseline("DescribeCertificateAuthority")), headers=headers
    )
    operation = target.partition(".")[2]
    check_answer(resp, operation)


# -- authentication ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def secured(world):
    """The same service with SigV4 credentials configured."""
    from dataclasses import replace

    return create_app(replace(world.settings, credentials="AKIDFUZZ:fuzz-secret:111122223333")).test_client()


def signed_headers(body: str, when: datetime | None = None, secret: str = "fuzz-secret") -> dict:
    request = AWSRequest(
        method="POST",
        url="http://localhost/",
        data=body,
        headers={"X-Amz-Target": "ACMPrivateCA.ListCertificateAuthorities", "Content-Type": JSON_CT},
    )
    from unittest import mock

    import botocore.auth

    moment = (when or datetime.now(UTC)).replace(tzinfo=None)
    with mock.patch.object(botocore.auth, "get_current_datetime", lambda *a, **k: moment):
        SigV4Auth(BotoCredentials("AKIDFUZZ", secret), "acm-pca", "us-east-1").add_auth(request)
    return dict(request.headers.items())


def test_the_secured_app_accepts_a_good_signature(secured):
    body = "{}"
    resp = secured.post("/", data=body, headers=signed_headers(body))
    assert resp.status_code == 200, resp.data


@FUZZ
@given(
    data=st.data(),
    part=st.sampled_from(
        ["Authorization", "X-Amz-Date", "X-Amz-Target", "Content-Type", "body", "drop", "skew"]
    ),
)
def test_tampered_signed_requests_are_refused_never_5xx(secured, data, part):
    body = '{"MaxResults": 5}'
    headers = signed_headers(body)
    if part == "body":
        body = data.draw(st.text(max_size=200).filter(lambda b: b != '{"MaxResults": 5}'))
    elif part == "drop":
        headers.pop(data.draw(st.sampled_from(sorted(headers))))
    elif part == "skew":
        minutes = data.draw(st.floats(5.05, 10**6) | st.floats(-(10**6), -5.05))
        headers = signed_headers(body, datetime.now(UTC) + timedelta(minutes=minutes))
    else:
        original = headers[part]
        headers[part] = data.draw(
            st.text(alphabet=_HEADER_TEXT, max_size=400).filter(
                lambda v: " ".join(v.split()) != " ".join(original.split())
            )
        )
    resp = secured.post("/", data=body, headers=headers)
    assert resp.status_code == 403, (part, resp.status_code, resp.data)
    assert json.loads(resp.data)["__type"] in (
        "MissingAuthenticationTokenException",
        "IncompleteSignatureException",
        "InvalidSignatureException",
        "UnrecognizedClientException",
    )


# -- CSR parsing and signing -------------------------------------------------------------------------


@FUZZ
@given(data=st.data())
def test_csr_parsing_raises_only_domain_errors(world, data):
    raw = data.draw(st.binary(max_size=3000) | st.just(None).map(lambda _: mutated_csr(data, world.csr_der)))
    try:
        csr = certificates.parse_csr(raw)
        certificates.check_csr(csr)
    except PcaqError:
        pass


@FUZZ
@given(data=st.data())
def test_signing_fuzzed_csrs_raises_only_domain_errors(world, data):
    from pcaq.worker.tasks import _Issuers

    issuer, _ = _Issuers(world.svc).get(world.ca.rsplit("/", 1)[1], False)
    now = datetime.now(UTC)
    request = certificates.IssueRequest(
        csr_der=mutated_csr(data, world.csr_der),
        signing_algorithm="SHA256WITHECDSA",
        template=data.draw(st.sampled_from(["EndEntityCertificate", "EndEntityCertificate_CSRPassthrough"])),
        not_before=now,
        not_after=now + timedelta(days=1),
        serial=data.draw(st.integers(1, 2**127)),
    )
    try:
        certificates.build_certificate(request, issuer)
    except PcaqError:
        pass
