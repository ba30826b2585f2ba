"""Celery tasks of revocation: rebuild a CA's CRL, sign an OCSP answer, write an audit report; and the
sweeper's share of that work (CRLs due or missing, revocations not yet published, reports left behind).

Every task is safe to run twice: a CRL is stored only if no newer one is (CRL numbers only grow),
OCSP answers are cached only while the record still says what they say, and a report is finished
once. CRL rebuilds fold together: a rebuild reads how many revocations it covers before it reads
the revoked set, and if more came while it built, it builds again (a few times, then re-queues).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives import serialization
from cryptography.x509.ocsp import OCSPResponseStatus

from pcaq.archive import ArchiveDown, open_archive
from pcaq.ca import audit_reports
from pcaq.ca.authority import Authority
from pcaq.ca.pkcs11_token import TokenUnavailable
from pcaq.platform.queue import AUDIT_REPORT_TASK, CRL_TASK, OCSP_TASK
from pcaq.revocation import crl, ocsp
from pcaq.revocation.revoke import all_authorities
from pcaq.worker.app import app
from pcaq.worker.services import Services, services

log = logging.getLogger("pcaq.worker")

_ROUNDS = 5  # rebuilds in one task while revocations keep arriving; then the task re-queues itself
_REPORT_GIVE_UP = 3600  # seconds after which a report still not written is marked FAILED


def rebuild_crl(svc: Services, ca_id: str, reply: str | None = None) -> int | None:
    """Bring the CA's CRL up to date; returns the CRL number stored (None if none was needed)."""
    number = None
    try:
        for _ in range(_ROUNDS):
            ca = Authority.read(svc.store, ca_id)
            now = svc.clock()
            if ca is None or not crl.crl_wanted(ca, now):
                svc.store.crl_not_wanted(ca_id)
                return None
            stored = svc.store.stored_crl(ca_id)
            if crl.freshness(stored, ca, now) is crl.Freshness.FRESH:
                return None  # another rebuild already made it (a repeated message, a waiting reader)
            outcome, number = _build_once(svc, ca, stored, now)
            if outcome == 2:
                return number
        svc.queue.rebuild_crl(ca_id)  # revocations keep coming: let other work run in between
        return number
    finally:
        if reply:
            svc.store.push_reply(reply, b"done")


def _build_once(svc: Services, ca: Authority, stored, now: float) -> tuple[int, int]:
    ca_id = ca.id
    covered = svc.store.revocations_counted(ca_id)  # before the set: the CRL covers at least this many
    listed, dropped = crl.split_expired(svc.store.revoked_entries(ca_id), stored.this_update or None)
    this_update, next_update = crl.validity_window(ca, now)
    number = svc.store.next_crl_number(ca_id)
    built = crl.build_crl(
        ca.certificate,
        svc.vault.get(ca_id),
        ca.signing_algorithm,
        listed,
        number,
        this_update,
        next_update,
        crl.partition_url(ca, svc.settings.public_host),
    )
    outcome = svc.store.save_crl(
        ca_id,
        built.public_bytes(serialization.Encoding.DER),
        number,
        this_update.timestamp(),
        next_update.timestamp(),
        covered,
        crl.fingerprint(ca),
        crl.refresh_time(this_update.timestamp(), next_update.timestamp()),
    )
    if outcome:
        svc.store.forget_revoked(ca_id, [e.serial_hex for e in dropped])
        log.info("CA %s: CRL %d with %d entries", ca_id, number, len(listed))
    return outcome, number


def sign_ocsp(svc: Services, ca_id: str, serial_hex: str, cert_id: list[str], reply: str) -> bytes:
    """Sign (or take from the cache) the OCSP answer about one serial and push it to ``reply``."""
    hash_name, name_hash, key_hash = cert_id
    der = None
    try:
        if hash_name not in ocsp.HASHES:
            raise ValueError(f"unsupported CertID hash {hash_name!r}")
        der, _ = svc.store.cached_ocsp(ca_id, hash_name, serial_hex)
        if der is None:
            der = _sign_answer(
                svc, ca_id, serial_hex, (hash_name, bytes.fromhex(name_hash), bytes.fromhex(key_hash))
            )
    except TokenUnavailable as exc:  # the CA's key is in a token that is away: "try later" (RFC 6960)
        log.warning("OCSP answer about %s of CA %s waits for the token: %s", serial_hex, ca_id, exc)
        der = ocsp.unsuccessful(OCSPResponseStatus.TRY_LATER)
    except Exception:  # noqa: BLE001 - answer internalError rather than let the API time out
        log.exception("OCSP answer about %s of CA %s failed", serial_hex, ca_id)
        der = ocsp.unsuccessful(OCSPResponseStatus.INTERNAL_ERROR)
    svc.store.push_reply(reply, der)
    return der


def _sign_answer(svc: Services, ca_id: str, serial_hex: str, cert_id: tuple[str, bytes, bytes]) -> bytes:
    ca = Authority.read(svc.store, ca_id)
    if ca is None or not ocsp.ocsp_wanted(ca, svc.clock()):
        return ocsp.unsuccessful(OCSPResponseStatus.UNAUTHORIZED)
    answer = ocsp.answer_of(svc.store.certificate_state(ca_id, serial_hex))
    seconds = ocsp.lifetime(answer, svc.settings)
    this_update = datetime.fromtimestamp(int(svc.clock()), UTC)
    der = ocsp.build_response(
        ca.certificate,
        svc.vault.get(ca_id),
        ca.signing_algorithm,
        (*cert_id, int(serial_hex, 16)),
        answer,
        this_update,
        this_update + timedelta(seconds=seconds),
    )
    svc.store.cache_ocsp(ca_id, cert_id[0], serial_hex, der, seconds // 2, answer.status)
    return der


def write_audit_report(svc: Services, ca_id: str, report_id: str) -> str | None:
    """Write a pending report and mark it SUCCESS (FAILED if it cannot be written); its status."""
    record = svc.store.get_audit_report(ca_id, report_id)
    if record is None or record.status != audit_reports.CREATING:
        return record.status if record else None
    archive = open_archive(svc.settings)  # a report covers the CA's whole history, archive included
    try:
        audit_reports.write_report(svc.store, svc.settings.effective_audit_dir, ca_id, report_id, archive)
        status = audit_reports.SUCCESS
    except ArchiveDown as exc:  # left CREATING: the sweeper asks for it again once the archive is back
        log.warning("audit report %s of CA %s waits for the archive: %s", report_id, ca_id, exc)
        return audit_reports.CREATING
    except Exception:  # noqa: BLE001 - a report that cannot be written is FAILED, as in AWS
        log.exception("audit report %s of CA %s failed", report_id, ca_id)
        status = audit_reports.FAILED
    finally:
        archive.close()
    svc.store.finish_audit_report(ca_id, report_id, status)
    return status


def sweep_revocation(svc: Services) -> int:
    """Queue the revocation work that nothing else will ask for; returns how many items were queued."""
    now = svc.clock()
    due = set(svc.store.dirty_crls(now - svc.settings.crl_rebuild_delay)) | set(svc.store.crls_due(now))
    for ca in all_authorities(svc.store, svc.settings):
        if ca.id not in due and crl.crl_wanted(ca, now):
            if crl.freshness(svc.store.stored_crl(ca.id), ca, now) is not crl.Freshness.FRESH:
                due.add(ca.id)  # CRLs just enabled, or a new CA certificate
    for ca_id in sorted(due):
        svc.queue.rebuild_crl(ca_id)
    reports = svc.store.stale_audit_reports(now - svc.settings.stale_after)
    for ca_id, report_id, asked in reports:
        if now - asked > _REPORT_GIVE_UP:
            svc.store.finish_audit_report(ca_id, report_id, audit_reports.FAILED)
        else:
            svc.queue.audit_report(ca_id, report_id)
    if due or reports:
        log.info("sweeper: %d CRL(s) to rebuild, %d audit report(s) re-queued", len(due), len(reports))
    return len(due) + len(reports)


@app.task(name=CRL_TASK)
def crl_rebuild(ca_id: str, reply: str | None = None) -> None:
    """Celery entry point of :func:`rebuild_crl`."""
    rebuild_crl(services(), ca_id, reply)


@app.task(name=OCSP_TASK)
def ocsp_sign(ca_id: str, serial_hex: str, cert_id: list[str], reply: str) -> None:
    """Celery entry point of :func:`sign_ocsp`, for messages an earlier API version queued."""
    sign_ocsp(services(), ca_id, serial_hex, cert_id, reply)


@app.task(name=AUDIT_REPORT_TASK)
def audit_report(ca_id: str, report_id: str) -> None:
    """Celery entry point of :func:`write_audit_report`."""
    write_audit_report(services(), ca_id, report_id)
