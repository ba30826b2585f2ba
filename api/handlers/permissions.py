"""Handlers of the permission and policy operations."""

from __future__ import annotations

from pcaq.api.handlers import Context
from pcaq.ca.permissions import Permissions


def create_permission(ctx: Context, p: dict) -> None:
    Permissions(ctx.authorities).create(
        ctx.caller,
        p["CertificateAuthorityArn"],
        p["Principal"],
        p["Actions"],
        p.get("SourceAccount"),
        ctx.call(p),
    )


def delete_permission(ctx: Context, p: dict) -> None:
    Permissions(ctx.authorities).delete(
        ctx.caller, p["CertificateAuthorityArn"], p["Principal"], p.get("SourceAccount"), ctx.call(p)
    )


def list_permissions(ctx: Context, p: dict) -> dict:
    items, token = Permissions(ctx.authorities).list(
        ctx.caller, p["CertificateAuthorityArn"], p.get("MaxResults"), p.get("NextToken")
    )
    return {"Permissions": items, **({"NextToken": token} if token else {})}


def put_policy(ctx: Context, p: dict) -> None:
    Permissions(ctx.authorities).put_policy(ctx.caller, p["ResourceArn"], p["Policy"], ctx.call(p))


def get_policy(ctx: Context, p: dict) -> dict:
    return {"Policy": Permissions(ctx.authorities).get_policy(ctx.caller, p["ResourceArn"])}


def delete_policy(ctx: Context, p: dict) -> None:
    Permissions(ctx.authorities).delete_policy(ctx.caller, p["ResourceArn"], ctx.call(p))
