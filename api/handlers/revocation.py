"""Handler of RevokeCertificate."""

from __future__ import annotations

from api.handlers import Context
from shared.revocation import Revocations


def revoke_certificate(ctx: Context, p: dict) -> None:
    Revocations(ctx.authorities).revoke(
        ctx.caller, p["CertificateAuthorityArn"], p["CertificateSerial"], p["RevocationReason"]
    )
