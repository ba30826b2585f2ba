"""Celery tasks: generate a CA's key and CSR; drain the outbox of pending certificate requests.

Every task is safe to run twice (Redis redelivers unacked messages): key generation holds a lock
and only moves a CA out of CREATING once; signing commits a result only for requests it still
leases and that are still PENDING (invariant 2).

A drain keeps its core signing: before it signs a batch it sends the claim of the next one, and it
reads the reply of the previous batch's commit only after signing this one, so Redis runs both Lua
steps (on its own core) while the worker signs, and the worker does not wait for two round trips per
batch. At most one claim and one commit are in flight; both are safe to run again (``Sent``).
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import NamedTuple

from cryptography.hazmat.primitives import serialization

from pcaq.ca import audit_trail, revocation_config
from pcaq.ca.authorities import CREATING
from pcaq.ca.authority import Authority
from pcaq.ca.issuance import ROOT_TEMPLATES
from pcaq.ca.key_store import describe_storage
from pcaq.ca.pkcs11_token import TokenUnavailable
from pcaq.errors import PcaqError
from pcaq.pki import ca_certificates, certificates, key_checks, keys
from pcaq.pki.names import searchable_names
from pcaq.platform.queue import CREATE_CA_KEY_TASK, DRAIN_TASK
from pcaq.records import STORE_DOWN, Claimed, Result, split_member
from pcaq.records.pending import PendingRequest
from pcaq.records.sent import Sent
from pcaq.revocation import urgent
from pcaq.worker.app import app
from pcaq.worker.observe import BatchReport, abandoned
from pcaq.worker.services import Services, services
from pcaq.worker.urgent import Watch
from pcaq.worker.urgent import serve as serve_urgent

log = logging.getLogger("pcaq.worker")

# A drain task signs for at most this long, then hands the rest to a new drain message: under a
# steady load a task still ends, so a warm shutdown (SIGTERM) waits for one slice, not for the load.
DRAIN_SLICE_SECONDS = 5.0
# How long a drain that lost Redis part-way keeps trying to hand back what it holds (a failover takes
# seconds; past this, the requests wait for their lease).
HAND_BACK_SECONDS = 20.0


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def generate_ca_key(svc: Services, ca_id: str) -> None:
    """CREATING -> PENDING_CERTIFICATE: make the key and the CA's CSR, store the key encrypted.

    The key is stored in the same atomic step as the change, and only if the CA is still CREATING
    then: a CA deleted while its key was being made keeps no key, and the task just ends.
    """
    ca = Authority.read(svc.store, ca_id)
    if ca is None or ca.status != CREATING:
        svc.store.ca_key_generated(ca_id)
        return
    owner = _owner()
    if not svc.store.try_key_generation_lock(ca_id, owner):
        return  # another worker is at it; the sweeper re-sends if it dies
    config = ca.configuration
    try:
        key = svc.vault.generate(ca_id, config["KeyAlgorithm"], ca.key_storage)
        csr = ca_certificates.build_ca_csr(key, config)
    except TokenUnavailable:
        # The CA stays CREATING and the sweeper asks again; the lock goes now, not in 10 minutes.
        svc.store.release_key_generation_lock(ca_id, owner)
        raise
    except PcaqError as exc:
        log.warning("CA %s creation failed: %s", ca_id, exc.message)
        audit = audit_trail.worker_fields(ca.arn, "CertificateAuthorityCreationFailed", svc.clock())
        svc.authorities.creation_failed(ca_id, "UNSUPPORTED_ALGORITHM", audit)
        return
    csr_pem = csr.public_bytes(serialization.Encoding.PEM).decode()
    audit = audit_trail.worker_fields(
        ca.arn, "CertificateAuthorityKeyGenerated", svc.clock(), {"KeyStorage": describe_storage(key)}
    )
    if svc.authorities.key_generated(
        ca_id, keys.public_key_pem(key), csr_pem, svc.vault.seal(ca_id, key), audit
    ):
        log.info("CA %s key generated (%s)", ca_id, config["KeyAlgorithm"])
    else:
        log.info("CA %s was deleted or changed while its key was made; the key is discarded", ca_id)
        svc.vault.discard(ca_id, key)


# Issuer objects outlive a batch (each keeps its template layers): one is reused while the CA read for
# a batch still has the same certificate and algorithms and the vault the same key.
_ISSUER_CACHE_SIZE = 64
_issuer_cache: dict[tuple, certificates.Issuer] = {}


class _Issuers:
    """Issuer objects per CA for one batch (the CA is read once per batch; ``cas`` may hold the CAs
    already read for it, right after its claim)."""

    def __init__(self, svc: Services, cas: dict[str, Authority | None] | None = None):
        self.svc = svc
        self.cas: dict[str, Authority | None] = dict(cas or {})
        self.cache: dict[tuple[str, bool], tuple[certificates.Issuer, Authority]] = {}
        self.urls: dict[str, tuple[str | None, str | None]] = {}

    def ca(self, ca_id: str) -> Authority | None:
        """The CA as read once in this batch (None: the CA no longer exists)."""
        if ca_id not in self.cas:
            self.cas[ca_id] = Authority.read(self.svc.store, ca_id)
        return self.cas[ca_id]

    def get(self, ca_id: str, self_signed: bool) -> tuple[certificates.Issuer, Authority]:
        key = (ca_id, self_signed)
        if key not in self.cache:
            ca = self.ca(ca_id)
            if ca is None:
                raise PcaqError("The issuing certificate authority no longer exists.")
            cert_pem = None if self_signed else ca.certificate_pem
            if not self_signed and cert_pem is None:
                raise PcaqError("The issuing certificate authority has no certificate.")
            private_key = self.svc.vault.get(ca_id)
            reuse = (ca_id, cert_pem, ca.signing_algorithm, ca.key_algorithm)
            issuer = _issuer_cache.get(reuse)
            if issuer is None or issuer.private_key is not private_key:
                issuer = certificates.Issuer(
                    certificate=None if self_signed else ca.certificate,
                    private_key=private_key,
                    signing_algorithm=ca.signing_algorithm,
                    key_algorithm=ca.key_algorithm,
                )
                if len(_issuer_cache) >= _ISSUER_CACHE_SIZE:
                    _issuer_cache.clear()
                _issuer_cache[reuse] = issuer
            self.cache[key] = (issuer, ca)
        return self.cache[key]

    def revocation_urls(self, ca: Authority) -> tuple[str | None, str | None]:
        """The CDP and OCSP URLs the CA's certificates carry (from the CA as read in this batch)."""
        urls = self.urls.get(ca.id)
        if urls is None:
            rc, host = ca.revocation_configuration, self.svc.settings.public_host
            urls = self.urls[ca.id] = (
                revocation_config.crl_url(rc, ca.id, host),
                revocation_config.ocsp_url(rc, host),
            )
        return urls


class _Signed(NamedTuple):
    """A signed certificate with what the commit indexes it by."""

    der: bytes
    names: tuple[str, ...]
    not_after: float


def _sign(svc: Services, issuers: _Issuers, member: str, req: PendingRequest) -> _Signed:
    """The certificate for one decoded request; raises PcaqError when its content is refused."""
    ca_id, serial_hex = split_member(member)
    issuer, ca = issuers.get(ca_id, req.template in ROOT_TEMPLATES)
    crl_url, ocsp_url = issuers.revocation_urls(ca)
    request = certificates.IssueRequest(
        csr_der=req.csr_der,
        signing_algorithm=req.signing_algorithm,
        template=req.template,
        not_before=req.not_before,
        not_after=req.not_after,
        serial=int(serial_hex, 16),
        api_passthrough=req.api_passthrough,
        crl_url=crl_url,
        ocsp_url=ocsp_url,
    )
    cert = certificates.build_certificate(request, issuer)
    # The console's indexes want the names and the end of validity: read here, from the object at hand
    return _Signed(
        cert.public_bytes(serialization.Encoding.DER),
        searchable_names(cert),
        cert.not_valid_after_utc.timestamp(),
    )


def _batch(svc: Services, claim: Sent[Claimed]) -> tuple[Claimed, dict[str, Authority | None]]:
    """A drain's next batch from its claim: the leased requests, once the key blocklist is refreshed,
    with the CAs they need (both read after the claim). A full claim that asked for a helper
    drain sends its message here."""
    claimed = _claimed(claim.result())
    if claimed.urgent:  # an API process waits on these: before the batch
        serve_urgent(svc, claimed.urgent)
    if claimed.helper:
        try:
            svc.queue.drain(claimed.helper)
        except Exception:  # noqa: BLE001 - only a helper: this drain goes on, the mark lapses by itself
            log.warning("could not ask for a helper drain", exc_info=True)
    if not claimed:
        return claimed, {}
    _refresh_blocklist(svc)
    return claimed, {
        ca_id: Authority.read(svc.store, ca_id) for ca_id in {split_member(m)[0] for m, _ in claimed}
    }


def _refresh_blocklist(svc: Services) -> None:
    """Bring the operator's key blocklist up to date (one GET) before a batch is signed. Called after
    the batch is claimed: a key blocklisted before a request was submitted is in the list it meets."""
    key_checks.refresh_blocklist(svc.settings.key_blocklist_file, svc.store)


def _sign_all(
    svc: Services,
    claimed: list[tuple[str, bytes]],
    cas: dict[str, Authority | None] | None = None,
    between: Callable[[], None] | None = None,
) -> tuple[list[Result], BatchReport]:
    """The results of a batch of leased requests, with their audit entries, ready for a commit
    (the key blocklist was refreshed since the batch was claimed: :func:`_refresh_blocklist`; ``cas``:
    the CAs read since then; ``between``: called after each signature, see worker/urgent.py)."""
    issuers = _Issuers(svc, cas)
    outcomes: list[tuple[str, bool, bytes]] = []
    indexed: dict[str, _Signed] = {}
    report = BatchReport()
    for member, raw in claimed:
        if between is not None and outcomes:
            between()
        try:
            req = PendingRequest.decode(raw)  # UnreadableRequest: FAILED, like a refused CSR
            report.request(member, req)
            signed = indexed[member] = _sign(svc, issuers, member, req)
            outcomes.append((member, True, signed.der))
        except PcaqError as exc:
            outcomes.append((member, False, exc.message.encode()))
            report.failed(member, exc)
        except TokenUnavailable:
            # The rest of the batch stays leased, signed after the lease once the token answers again
            # (the drain stops claiming meanwhile: drain_outbox).
            report.unexpected(member)
            left = len(claimed) - len(outcomes) - 1
            report.errors += left
            report.token_down = True
            log.warning("the PKCS#11 token is not reachable; %d more requests wait for it", left)
            break
        except Exception:  # noqa: BLE001 - left leased: retried after the lease, up to max attempts
            report.unexpected(member)
    now = svc.store.clock()
    results = []
    for member, issued, payload in outcomes:
        ca_id, serial_hex = split_member(member)
        ca = issuers.ca(ca_id)
        audit = (
            None  # a CA that no longer exists has no trail to append to
            if ca is None
            else audit_trail.signing_fields(
                ca.arn, serial_hex, issued, payload, report.request_id(member), now
            )
        )
        signed = indexed.get(member) if issued else None
        names, not_after = (signed.names, signed.not_after) if signed else ((), None)
        results.append(Result(member, issued, payload, report.reason(member), audit, names, not_after))
    return results, report


def _took(commit: Sent[int], results: int, report: BatchReport) -> int:
    """How many results of a sent commit took (waits for its reply)."""
    done = commit.result()
    report.finish(results, done)
    return done


def _claimed(claim: Claimed) -> Claimed:
    abandoned(claim.abandoned)  # given up by the claim itself (FAILED, counted and audited there)
    return claim


def _token_ready(svc: Services) -> bool:
    """Whether this worker's PKCS#11 token answers (True without a token)."""
    token = getattr(svc.vault, "token", None)
    if token is None or token.reachable():
        return True
    log.warning("the PKCS#11 token %r is not reachable; requests wait in the outbox", token.label)
    return False


def drain_outbox(svc: Services, slice_seconds: float = DRAIN_SLICE_SECONDS, helper: str | None = None) -> int:
    """Sign ready requests from the outbox, a batch at a time, until none is ready; returns how many.

    While it takes work its claims keep the draining mark alive, so submitters do not send drain
    messages; a full claim asks for one helper drain at a time, so idle processes join a backlog.
    After a claim that was not full it lingers (``PCAQ_DRAIN_LINGER_MS``) before claiming again, so
    that under a steady stream of requests a batch is several requests, not one: per-batch costs are
    spread over them. Before it stops it clears the drain kick and the draining mark and looks once
    more, so a request submitted while it was stopping is either seen here or makes its submitter ask
    for a new drain. After ``slice_seconds`` it stops anyway and asks for a new drain (another worker
    may take it). ``helper``: the token this drain was asked for with, if it is a helper.
    """
    if not _token_ready(svc):
        return 0  # claims would only count attempts: the requests wait, the sweeper wakes a drain later
    owner = _owner()
    started = svc.store.clock()  # the claims' times, and so their leases' ends, come after this
    try:
        return _drain(svc, owner, slice_seconds, helper)
    except STORE_DOWN:
        _hand_back(svc, owner, started)
        raise


def _hand_back(svc: Services, owner: str, started: float) -> None:
    """After Redis was lost part-way (a failover, an outage), hand back the requests this drain holds
    and ask for a drain, so that they are signed at once instead of after their lease. Retried for a
    bounded time: a failover takes seconds (docs/operations.md)."""
    ends = time.monotonic() + HAND_BACK_SECONDS
    while True:
        try:
            released = svc.store.release(owner, started, svc.store.clock())
        except STORE_DOWN:
            if time.monotonic() >= ends:
                log.warning("could not hand back this drain's leased requests: they wait for their lease")
                return
            time.sleep(0.5)  # a pace between attempts while Redis is away, not a wait for a state
            continue
        log.info("Redis was lost part-way: handed back %d leased requests", released)
        if released:
            try:
                svc.queue.drain()  # they are ready now: a drain takes them without waiting for the sweeper
            except Exception:  # noqa: BLE001 - the broker may still be reconnecting; the sweeper finds them
                log.warning("could not ask for a drain after handing back requests", exc_info=True)
        return


def _drain(svc: Services, owner: str, slice_seconds: float, helper: str | None) -> int:
    """The loop of :func:`drain_outbox`."""
    done = 0
    ends = time.monotonic() + slice_seconds

    store, batch_size = svc.store, svc.settings.batch_size
    linger = svc.settings.drain_linger_ms / 1000
    tokens = (f"{owner}:{n}" for n in itertools.count())  # one per claim: the helper it may ask for
    if helper:
        store.helper_started(helper)
    committing: tuple[Sent[int], int, BatchReport] | None = None  # the commit of the batch signed last
    ahead: Sent[Claimed] | None = None  # the claim of the next batch, sent before this one is signed
    batch: tuple[Claimed, dict] | None = None
    claimed_at = time.monotonic()  # when the last claim was sent (the linger counts from it)

    def claim(take_urgent: bool = True) -> Sent[Claimed]:
        nonlocal claimed_at
        claimed_at = time.monotonic()
        return store.send_claim_ready(
            owner, batch_size, next(tokens), urgent.TAKE_PER_CLAIM if take_urgent else 0
        )

    watch = Watch(svc)  # urgent jobs wait for a few signatures, not for the batch

    try:
        while True:
            if batch is None:
                if time.monotonic() >= ends:
                    svc.queue.drain()
                    break
                batch = _batch(svc, claim())
            if not batch[0]:
                store.clear_drain_kick()
                batch = _batch(svc, claim())
                if not batch[0]:
                    break
            full = len(batch[0]) >= batch_size
            if full and time.monotonic() < ends:
                ahead = claim(take_urgent=False)  # read after the batch: the watch serves them sooner
            results, report = _sign_all(svc, *batch, between=watch)
            if committing is not None:
                previous, committing = committing, None
                done += _took(*previous)
            # The next batch is read before this one's commit is sent: its reads do not queue behind it.
            batch, ahead = (None if ahead is None else _batch(svc, ahead)), None
            committing = (store.send_commit(owner, results, report.errors), len(results), report)
            if report.token_down:
                break  # the next drain (the sweeper's) starts once the token answers again
            if not full:
                # Let requests gather for the next claim (a deliberate batching delay, as Kafka's
                # linger.ms; the commit is already on its way meanwhile).
                pause = claimed_at + linger - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
    finally:
        if ahead is not None:  # only on an exception: its batch stays leased until its leases end
            ahead.close()
        if committing is not None:  # the last results are written, even on the way out of an exception
            done += _took(*committing)
    return done


@app.task(name=CREATE_CA_KEY_TASK)
def create_ca_key(ca_id: str) -> None:
    """Celery entry point of :func:`generate_ca_key`."""
    generate_ca_key(services(), ca_id)


@app.task(name=DRAIN_TASK)
def drain(helper: str | None = None) -> None:
    """Celery entry point of :func:`drain_outbox` (the message is only a wake-up: no ids travel;
    ``helper`` is the token of a helper drain)."""
    drain_outbox(services(), helper=helper)
