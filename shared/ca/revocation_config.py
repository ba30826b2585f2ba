"""Rules for a CA's RevocationConfiguration (docs/revocation.md)."""

from __future__ import annotations

from pcaq.errors import InvalidArgument


def _check_cname(value: str, member: str) -> None:
    if value.lower().startswith(("http://", "https://")):
        raise InvalidArgument(f"{member} must be a host name without 'http://' or 'https://'.")


def normalise(config: dict | None) -> dict:
    """Validate a RevocationConfiguration and return it with AWS's defaults filled in."""
    if not config:
        return {"CrlConfiguration": {"Enabled": False}, "OcspConfiguration": {"Enabled": False}}
    out: dict = {}
    crl = config.get("CrlConfiguration")
    if crl is None or not crl.get("Enabled"):
        if crl and set(crl) - {"Enabled"}:
            raise InvalidArgument("A CrlConfiguration with Enabled=false must not set any other member.")
        out["CrlConfiguration"] = {"Enabled": False}
    else:
        crl = dict(crl)
        if "CustomCname" in crl:
            _check_cname(crl["CustomCname"], "CrlConfiguration.CustomCname")
        omit = crl.get("CrlDistributionPointExtensionConfiguration", {}).get("OmitExtension", False)
        if omit and crl.get("CustomCname"):
            raise InvalidArgument("OmitExtension=true cannot be combined with a CustomCname.")
        crl.setdefault("ExpirationInDays", 7)
        crl.setdefault("CrlType", "COMPLETE")
        if crl.get("S3BucketName"):
            crl.setdefault("S3ObjectAcl", "PUBLIC_READ")
        out["CrlConfiguration"] = crl
    ocsp = config.get("OcspConfiguration")
    if ocsp is None or not ocsp.get("Enabled"):
        if ocsp and set(ocsp) - {"Enabled"}:
            raise InvalidArgument("An OcspConfiguration with Enabled=false must not set any other member.")
        out["OcspConfiguration"] = {"Enabled": False}
    else:
        if "OcspCustomCname" in ocsp:
            _check_cname(ocsp["OcspCustomCname"], "OcspConfiguration.OcspCustomCname")
        out["OcspConfiguration"] = dict(ocsp)
    return out


def crl_url(config: dict, ca_id: str, public_host: str) -> str | None:
    """The CRL Distribution Point URL certificates of this CA carry, or None."""
    crl = config.get("CrlConfiguration", {})
    if not crl.get("Enabled"):
        return None
    if crl.get("CrlDistributionPointExtensionConfiguration", {}).get("OmitExtension"):
        return None
    host = crl.get("CustomCname") or public_host
    return f"http://{host}/crl/{ca_id}.crl"


def ocsp_url(config: dict, public_host: str) -> str | None:
    """The OCSP responder URL certificates of this CA carry in AIA, or None."""
    ocsp = config.get("OcspConfiguration", {})
    if not ocsp.get("Enabled"):
        return None
    return f"http://{ocsp.get('OcspCustomCname') or public_host}/ocsp"
