"""Handlers of the CA lifecycle operations."""

from __future__ import annotations

from pcaq.api.handlers import Context


def create_certificate_authority(ctx: Context, p: dict) -> dict:
    return {"CertificateAuthorityArn": ctx.authorities.create(ctx.caller, p, ctx.call(p))}


def describe_certificate_authority(ctx: Context, p: dict) -> dict:
    return {"CertificateAuthority": ctx.authorities.describe(ctx.caller, p["CertificateAuthorityArn"])}


def list_certificate_authorities(ctx: Context, p: dict) -> dict:
    items, token = ctx.authorities.list(
        ctx.caller, p.get("MaxResults"), p.get("NextToken"), p.get("ResourceOwner")
    )
    out: dict = {"CertificateAuthorities": items}
    if token:
        out["NextToken"] = token
    return out


def get_certificate_authority_csr(ctx: Context, p: dict) -> dict:
    return {"Csr": ctx.authorities.csr(ctx.caller, p["CertificateAuthorityArn"])}


def get_certificate_authority_certificate(ctx: Context, p: dict) -> dict:
    cert, chain = ctx.authorities.certificate(ctx.caller, p["CertificateAuthorityArn"])
    return {"Certificate": cert, **({"CertificateChain": chain} if chain else {})}


def import_certificate_authority_certificate(ctx: Context, p: dict) -> None:
    ctx.authorities.import_certificate(
        ctx.caller, p["CertificateAuthorityArn"], p["Certificate"], p.get("CertificateChain"), ctx.call(p)
    )


def update_certificate_authority(ctx: Context, p: dict) -> None:
    ctx.authorities.update(
        ctx.caller,
        p["CertificateAuthorityArn"],
        p.get("Status"),
        p.get("RevocationConfiguration"),
        ctx.call(p),
    )


def delete_certificate_authority(ctx: Context, p: dict) -> None:
    ctx.authorities.delete(
        ctx.caller, p["CertificateAuthorityArn"], p.get("PermanentDeletionTimeInDays"), ctx.call(p)
    )


def restore_certificate_authority(ctx: Context, p: dict) -> None:
    ctx.authorities.restore(ctx.caller, p["CertificateAuthorityArn"], ctx.call(p))


def tag_certificate_authority(ctx: Context, p: dict) -> None:
    ctx.authorities.tag(ctx.caller, p["CertificateAuthorityArn"], p["Tags"], ctx.call(p))


def untag_certificate_authority(ctx: Context, p: dict) -> None:
    ctx.authorities.untag(ctx.caller, p["CertificateAuthorityArn"], p["Tags"], ctx.call(p))


def list_tags(ctx: Context, p: dict) -> dict:
    items, token = ctx.authorities.list_tags(
        ctx.caller, p["CertificateAuthorityArn"], p.get("MaxResults"), p.get("NextToken")
    )
    return {"Tags": items, **({"NextToken": token} if token else {})}
