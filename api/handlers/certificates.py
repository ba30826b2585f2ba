"""Handlers of IssueCertificate and GetCertificate."""

from __future__ import annotations

from pcaq.api.handlers import Context


def issue_certificate(ctx: Context, p: dict) -> dict:
    return {"CertificateArn": ctx.issuance.issue(ctx.caller, p, ctx.request_id)}


def get_certificate(ctx: Context, p: dict) -> dict:
    cert, chain = ctx.issuance.get(ctx.caller, p["CertificateAuthorityArn"], p["CertificateArn"])
    return {"Certificate": cert, **({"CertificateChain": chain} if chain else {})}
