"""The CA pages: the list of the account's CAs, and one CA with its certificate, chain, revocation
configuration, tags, permissions, policy and audit trail."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Blueprint, Response, g, render_template

from pcaq.ca.audit_trail import AuditTrail
from pcaq.ca.permissions import Permissions
from pcaq.errors import InvalidState, NotFound
from pcaq.platform.identity import Caller

if TYPE_CHECKING:
    from pcaq.api.console import Services

AUDIT_ENTRIES_SHOWN = 50
_ID_CHARS = frozenset("0123456789abcdef-")


def visible_ca(services: Services, caller: Caller, ca_id: str) -> dict:
    """The CA with this id as DescribeCertificateAuthority gives it, if the caller may see it (the
    domain's own check decides); NotFound otherwise, as the API answers for another account's CA."""
    missing = NotFound(f"There is no certificate authority {ca_id[:64]} in your account.")
    doc = services.store.get_ca(ca_id) if len(ca_id) <= 64 and set(ca_id) <= _ID_CHARS else None
    if doc is None:
        raise missing
    try:
        return services.authorities.describe(caller, doc["Arn"])  # the account and partition check
    except NotFound:
        raise missing from None  # the same words whether it is another account's or none at all


def ca_arn(services: Services, caller: Caller, ca_id: str) -> str:
    """The ARN of the CA with this id if the caller may see it (see :func:`visible_ca`)."""
    return visible_ca(services, caller, ca_id)["Arn"]


def ca_page(template: str, ca: dict, ca_id: str, **context) -> str:
    """A page about one CA: ``template`` with the CA, its id and its name, and ``context``."""
    return render_template(template, ca=ca, id=ca_id, name=common_name(ca), **context)


def all_cas(services: Services, caller: Caller) -> list[dict]:
    """Every CA of the caller, as ListCertificateAuthorities pages them."""
    found: list[dict] = []
    token = None
    while True:
        items, token = services.authorities.list(caller, 100, token, None)
        found += items
        if not token:
            return found


def common_name(ca: dict) -> str:
    """The CA's subject common name (or its id when it has none)."""
    subject = ca["CertificateAuthorityConfiguration"].get("Subject", {})
    return subject.get("CommonName") or ca["Arn"].rsplit("/", 1)[1]


def register(bp: Blueprint, services: Services) -> None:
    """Add the CA pages to the console's blueprint."""
    authorities = services.authorities

    @bp.get("/", endpoint="authorities")
    def authorities_page() -> str:
        cas = all_cas(services, g.visitor.caller)
        ids = [ca["Arn"].rsplit("/", 1)[1] for ca in cas]
        counts = services.store.index_counts(ids)
        rows = [
            {"ca": ca, "id": i, "name": common_name(ca), "counts": counts[i]}
            for ca, i in zip(cas, ids, strict=True)
        ]
        return render_template("cas.html", rows=rows)

    @bp.get("/cas/<ca_id>")
    def authority(ca_id: str) -> str:
        caller = g.visitor.caller
        ca = visible_ca(services, caller, ca_id)
        arn = ca["Arn"]
        try:
            certificate, chain = authorities.certificate(caller, arn)
        except InvalidState:
            certificate, chain = None, None
        tags, _ = authorities.list_tags(caller, arn, 50, None)
        permissions, _ = Permissions(authorities).list(caller, arn, 100, None)
        try:
            policy = Permissions(authorities).get_policy(caller, arn)
        except NotFound:
            policy = None
        trail = list(reversed(AuditTrail(services.store).entries(arn, AUDIT_ENTRIES_SHOWN)))
        return ca_page(
            "ca.html",
            ca,
            ca_id,
            certificate=certificate,
            chain=chain,
            tags=tags,
            permissions=permissions,
            policy=policy,
            trail=trail,
            counts=services.store.index_counts([ca_id])[ca_id],
        )

    @bp.get("/cas/<ca_id>/certificate.pem")
    def ca_certificate(ca_id: str) -> Response:
        certificate, _ = authorities.certificate(g.visitor.caller, ca_arn(services, g.visitor.caller, ca_id))
        return download(certificate, f"{ca_id}.pem")

    @bp.get("/cas/<ca_id>/chain.pem")
    def ca_chain(ca_id: str) -> Response:
        certificate, chain = authorities.certificate(
            g.visitor.caller, ca_arn(services, g.visitor.caller, ca_id)
        )
        return download(certificate + "\n" + (chain or ""), f"{ca_id}-chain.pem")


def download(pem: str, filename: str) -> Response:
    """A PEM file for the browser to save as ``filename``."""
    return Response(
        pem,
        200,
        {
            "Content-Type": "application/x-pem-file",
            "Content-Disposition": f'attachment; filename="{filename}"',
        },
    )
