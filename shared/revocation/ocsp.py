"""The OCSP responder (RFC 6960, with RFC 5019's caching profile): reading requests, building signed
answers, and the API's side of answering.

Answers are signed by the CA itself (no delegated responder certificate), with the responder named by
key hash, and echo the request's CertID, so SHA-1 and SHA-2 CertIDs both work. Only a worker may sign:
the API serves a cached answer when there is one, else asks a worker for it and waits briefly
(``responder_wait_ms``). Answers are cached per (CA, CertID hash, serial) for half their validity
(``ocsp_cache_seconds``); a revocation drops the cached answers of its serial at once. Request nonces
are not echoed (RFC 5019 §2.2.1): that is what lets answers be cached.

Answers that are not signed (RFC 6960 §2.3): ``malformedRequest`` for a request that does not parse,
``unauthorized`` for a CA this service does not answer for, ``tryLater`` when no worker answered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, mldsa, rsa
from cryptography.x509 import ocsp

from pcaq.ca.authority import ACTIVE, DISABLED, Authority
from pcaq.pki import keys
from pcaq.platform.queue import Queue
from pcaq.platform.settings import Settings
from pcaq.records import Store
from pcaq.records.revocations import CertificateState
from pcaq.revocation import urgent
from pcaq.revocation.revoke import all_ca_ids, reason_flag

REQUEST_TYPE = "application/ocsp-request"
RESPONSE_TYPE = "application/ocsp-response"
UNKNOWN_CACHE_SECONDS = 60  # an unknown serial may be issued any moment: remember "unknown" briefly

HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


def unsuccessful(status: ocsp.OCSPResponseStatus) -> bytes:
    """An unsigned OCSP response with an error status (malformedRequest, unauthorized, tryLater...)."""
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(serialization.Encoding.DER)


def parse_request(der: bytes) -> ocsp.OCSPRequest | None:
    """The request, or None if it is not a DER OCSP request for one certificate with a known hash."""
    try:
        request = ocsp.load_der_ocsp_request(der)
        if request.hash_algorithm.name not in HASHES:
            return None
        request.serial_number  # noqa: B018 - parse the CertID now, not later
        return request
    except Exception:  # noqa: BLE001 - anything unreadable (ValueError, unsupported forms) is malformed
        return None


def subject_public_key_bits(public_key) -> bytes:
    """The contents of the certificate's subjectPublicKey BIT STRING, which CertID's issuerKeyHash hashes."""
    if isinstance(public_key, rsa.RSAPublicKey):
        return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return public_key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
    if isinstance(public_key, mldsa.MLDSA44PublicKey | mldsa.MLDSA65PublicKey | mldsa.MLDSA87PublicKey):
        return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    raise TypeError(f"no OCSP key hash for {type(public_key).__name__}")


def _digest(hash_name: str, data: bytes) -> bytes:
    h = hashes.Hash(HASHES[hash_name]())
    h.update(data)
    return h.finalize()


def issuer_key_hashes(public_key) -> dict[str, bytes]:
    """issuerKeyHash of a CA key for every supported CertID hash."""
    bits = subject_public_key_bits(public_key)
    return {name: _digest(name, bits) for name in HASHES}


def issuer_name_hash(name: x509.Name, hash_name: str) -> bytes:
    """issuerNameHash: the hash of the DER of the CA certificate's subject."""
    return _digest(hash_name, name.public_bytes())


@dataclass(frozen=True)
class Answer:
    """What an OCSP answer says about one serial."""

    status: str  # good, revoked, unknown (the words CACHE_OCSP compares)
    revoked_at: float | None = None
    reason: str | None = None


def answer_of(state: CertificateState | None) -> Answer:
    """good for an issued certificate, revoked (time, reason) for a revoked one, else unknown."""
    if state is None or state.status != "ISSUED":
        return Answer("unknown")
    if state.revoked_at is not None:
        return Answer("revoked", state.revoked_at, state.reason or "UNSPECIFIED")
    return Answer("good")


def lifetime(answer: Answer, settings: Settings) -> int:
    """Seconds from thisUpdate to nextUpdate; answers are cached for half of it."""
    cache = max(1, settings.ocsp_cache_seconds)
    return 2 * (min(UNKNOWN_CACHE_SECONDS, cache) if answer.status == "unknown" else cache)


_STATUSES = {
    "good": ocsp.OCSPCertStatus.GOOD,
    "revoked": ocsp.OCSPCertStatus.REVOKED,
    "unknown": ocsp.OCSPCertStatus.UNKNOWN,
}


def build_response(
    ca_cert: x509.Certificate,
    private_key,
    signing_algorithm: str,
    cert_id: tuple[str, bytes, bytes, int],
    answer: Answer,
    this_update: datetime,
    next_update: datetime,
) -> bytes:
    """A signed basic OCSP response (DER) about ``cert_id`` = (hash name, issuer name hash, issuer
    key hash, serial). Signed with the CA key and the hash of the CA's signing algorithm (RSA-PSS CAs
    sign answers with PKCS#1 v1.5: cryptography's OCSP builder offers no PSS). No certificate rides
    along: clients check the signature with the issuer they already hold (an embedded subordinate
    CA certificate would make Go's ocsp.ParseResponseForCert check it against the wrong key)."""
    hash_name, name_hash, key_hash, serial = cert_id
    revoked_at = (
        datetime.fromtimestamp(int(answer.revoked_at), this_update.tzinfo) if answer.revoked_at else None
    )
    builder = (
        ocsp.OCSPResponseBuilder()
        .add_response_by_hash(
            issuer_name_hash=name_hash,
            issuer_key_hash=key_hash,
            serial_number=serial,
            algorithm=HASHES[hash_name](),
            cert_status=_STATUSES[answer.status],
            this_update=this_update,
            next_update=next_update,
            revocation_time=revoked_at,
            revocation_reason=reason_flag(answer.reason) if answer.status == "revoked" else None,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, ca_cert)
    )
    response = builder.sign(private_key, keys.sign_kwargs(signing_algorithm)["algorithm"])
    return response.public_bytes(serialization.Encoding.DER)


def ocsp_wanted(ca: Authority, now: float) -> bool:
    """True if this service answers for the CA: OCSP enabled, a CA certificate, ACTIVE or DISABLED."""
    return (
        ca.ocsp_enabled and ca.certificate_pem is not None and ca.effective_status(now) in (ACTIVE, DISABLED)
    )


@dataclass
class Responder:
    """The API's side of OCSP: find the CA, serve a cached answer or have a worker sign one."""

    store: Store
    queue: Queue
    settings: Settings
    _certs: dict[str, tuple[str, x509.Certificate]] = field(default_factory=dict, repr=False)

    def respond(self, request_der: bytes) -> tuple[bytes, int | None]:
        """The DER OCSP response to send, and for how many seconds HTTP caches may keep it (None: not)."""
        request = parse_request(request_der)
        if request is None:
            return unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST), None
        hash_name = request.hash_algorithm.name
        ca = self._issuer(hash_name, request.issuer_key_hash)
        now = self.store.clock()
        if ca is None or not ocsp_wanted(ca, now):
            return unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED), None
        ca_id = ca.id
        if issuer_name_hash(self._ca_cert(ca).subject, hash_name) != request.issuer_name_hash:
            return unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED), None
        serial_hex = format(request.serial_number, "x")
        cached, ttl = self.store.cached_ocsp(ca_id, hash_name, serial_hex)
        if cached is not None:
            return cached, ttl
        cert_id = (hash_name, request.issuer_name_hash.hex(), request.issuer_key_hash.hex())
        try:
            signed = urgent.ask_and_wait(
                self.store,
                self.queue,
                self.settings.responder_wait_ms / 1000,
                urgent.OCSP,
                ca_id,
                serial_hex,
                cert_id,
            )
        except Exception:  # noqa: BLE001 - broker down: the client may try later
            signed = None
        if signed is None:
            return unsuccessful(ocsp.OCSPResponseStatus.TRY_LATER), None
        return signed, None

    def _ca_cert(self, ca: Authority) -> x509.Certificate:
        # Each request reads the CA afresh: its certificate is parsed once per process, not per request.
        pem = ca.certificate_pem
        cached = self._certs.get(ca.id)
        if cached is None or cached[0] != pem:
            if len(self._certs) > 1000:
                self._certs.clear()
            cached = self._certs[ca.id] = (pem, ca.certificate)
        return cached[1]

    def _issuer(self, hash_name: str, key_hash: bytes) -> Authority | None:
        ca_id = self.store.ocsp_issuer(hash_name, key_hash)
        if ca_id is None and index_new_issuers(self.store, self.settings):
            ca_id = self.store.ocsp_issuer(hash_name, key_hash)
        return Authority.read(self.store, ca_id) if ca_id else None


def index_new_issuers(store: Store, settings: Settings) -> int:
    """Put the key hashes of CAs not yet indexed (and that have a key by now) into the issuer index;
    returns how many CAs were added. Only new CAs are read, so a flood of unknown issuers stays cheap."""
    new = set(all_ca_ids(store, settings)) - store.ocsp_indexed()
    entries: dict[str, str] = {}
    done = []
    for doc in store.get_cas(sorted(new)):
        ca = Authority.of(doc)
        if not ca.public_key_pem:
            continue  # still CREATING: looked at again on the next miss
        for name, digest in issuer_key_hashes(keys.load_public_key_pem(ca.public_key_pem)).items():
            entries[f"{name}:{digest.hex()}"] = ca.id
        done.append(ca.id)
    store.index_ocsp_issuers(entries, done)
    return len(done)
