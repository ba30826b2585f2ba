"""Handler of RevokeCertificate."""

from __future__ import annotations

from pcaq.api.handlers import Context
from pcaq.revocation.revoke import Revocations


def revoke_certificate(ctx: Context, p: dict) -> None:
    Revocations(ctx.authorities).revoke(
        ctx.caller, p["CertificateAuthorityArn"], p["CertificateSerial"], p["RevocationReason"], ctx.call(p)
    )
