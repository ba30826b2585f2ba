"""Wire structures to X.509 names and small extensions.

Turns the ``ASN1Subject``, ``GeneralName``, ``AccessDescription`` and ``KeyUsage`` wire dicts into
``cryptography`` objects. The input is the already schema-validated JSON dict; whatever the schema
cannot express (exactly one member set, no mixing of custom and named attributes, PrintableString
characters, IP address syntax) is checked here and raised as :class:`InvalidArgument`.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from cryptography import x509
from cryptography.hazmat import asn1
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID, ObjectIdentifier

from pcaq.errors import InvalidArgument

# Member order of the ASN1Subject shape = RDN order of the built name.
_NAMED_ATTRIBUTES: tuple[tuple[str, ObjectIdentifier], ...] = (
    ("Country", NameOID.COUNTRY_NAME),
    ("Organization", NameOID.ORGANIZATION_NAME),
    ("OrganizationalUnit", NameOID.ORGANIZATIONAL_UNIT_NAME),
    ("DistinguishedNameQualifier", NameOID.DN_QUALIFIER),
    ("State", NameOID.STATE_OR_PROVINCE_NAME),
    ("CommonName", NameOID.COMMON_NAME),
    ("SerialNumber", NameOID.SERIAL_NUMBER),
    ("Locality", NameOID.LOCALITY_NAME),
    ("Title", NameOID.TITLE),
    ("Surname", NameOID.SURNAME),
    ("GivenName", NameOID.GIVEN_NAME),
    ("Initials", NameOID.INITIALS),
    ("Pseudonym", NameOID.PSEUDONYM),
    ("GenerationQualifier", NameOID.GENERATION_QUALIFIER),
)

# RFC 5280 Appendix A: these attributes are PrintableString; domainComponent and emailAddress IA5String.
_PRINTABLE_OIDS = frozenset({NameOID.COUNTRY_NAME, NameOID.DN_QUALIFIER, NameOID.SERIAL_NUMBER})
_IA5_OIDS = frozenset({NameOID.DOMAIN_COMPONENT, NameOID.EMAIL_ADDRESS})
_PRINTABLE_RE = re.compile(r"[A-Za-z0-9 '()+,\-./:=?]*")
_COUNTRY_RE = re.compile(r"[A-Za-z]{2}")

_ACCESS_METHODS = {
    "CA_REPOSITORY": x509.ObjectIdentifier("1.3.6.1.5.5.7.48.5"),
    "RESOURCE_PKI_MANIFEST": x509.ObjectIdentifier("1.3.6.1.5.5.7.48.10"),
    "RESOURCE_PKI_NOTIFY": x509.ObjectIdentifier("1.3.6.1.5.5.7.48.13"),
}

_GENERAL_NAME_MEMBERS = (
    "OtherName",
    "Rfc822Name",
    "DnsName",
    "DirectoryName",
    "EdiPartyName",
    "UniformResourceIdentifier",
    "IpAddress",
    "RegisteredId",
)


def parse_oid(text: Any, field: str) -> ObjectIdentifier:
    """An OID from its dotted text; :class:`InvalidArgument` naming ``field`` if it is not one."""
    if not isinstance(text, str) or not text:
        raise InvalidArgument(f"{field} must be a dotted object identifier such as 1.3.6.1.4.1.99999.1")
    try:
        return ObjectIdentifier(text)
    except ValueError as exc:
        raise InvalidArgument(f"{field} {text!r} is not a valid object identifier") from exc


def _attribute(oid: ObjectIdentifier, value: str, field: str) -> x509.NameAttribute:
    if oid == NameOID.COUNTRY_NAME:
        if not _COUNTRY_RE.fullmatch(value):
            raise InvalidArgument(f"{field} must be a two-letter country code, got {value!r}")
        value = value.upper()
    if oid in _PRINTABLE_OIDS:
        if not _PRINTABLE_RE.fullmatch(value):
            raise InvalidArgument(
                f"{field} may only contain PrintableString characters (letters, digits, space and "
                f"'()+,-./:=?), got {value!r}"
            )
        asn1_type = _ASN1Type.PrintableString
    elif oid in _IA5_OIDS:
        if not value.isascii():
            raise InvalidArgument(f"{field} must be ASCII (IA5String), got {value!r}")
        asn1_type = _ASN1Type.IA5String
    else:
        asn1_type = _ASN1Type.UTF8String
    try:
        return x509.NameAttribute(oid, value, asn1_type)
    except ValueError as exc:  # length limits cryptography knows (e.g. CN at most 64 characters)
        raise InvalidArgument(f"{field}: {exc}") from exc


def build_name(subject: dict[str, Any]) -> x509.Name:
    """An X.509 name from an ``ASN1Subject`` wire dict, one attribute per RDN.

    Named attributes come in the shape's member order (C, O, OU, dnQualifier, ST, CN, serialNumber,
    L, title, SN, givenName, initials, pseudonym, generationQualifier); empty strings are skipped.
    ``CustomAttributes`` keep their given order and may not be mixed with named attributes. An
    empty subject gives an empty name; the caller decides whether that is allowed.
    """
    named = [(member, oid) for member, oid in _NAMED_ATTRIBUTES if subject.get(member)]
    custom = subject.get("CustomAttributes") or []
    if custom and named:
        raise InvalidArgument(
            "Subject CustomAttributes cannot be combined with named attributes ("
            + ", ".join(member for member, _ in named)
            + "); put every attribute in CustomAttributes or use named attributes only"
        )
    attributes = [_attribute(oid, subject[member], f"Subject {member}") for member, oid in named]
    for i, item in enumerate(custom):
        field = f"Subject CustomAttributes[{i}]"
        oid = parse_oid(item.get("ObjectIdentifier"), f"{field}.ObjectIdentifier")
        value = item.get("Value")
        if not isinstance(value, str) or not value:
            raise InvalidArgument(f"{field}.Value must be a non-empty string")
        attributes.append(_attribute(oid, value, field))
    return x509.Name(attributes)


def _require_text(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"{field} must be a non-empty string")
    return value


def _text_name(cls: type, value: Any, field: str) -> x509.GeneralName:
    text = _require_text(value, field)
    try:
        return cls(text)
    except ValueError as exc:  # cryptography wants A-labels (punycode) for DNS, email and URI
        raise InvalidArgument(
            f"{field} {text!r} must be ASCII; encode international domain names as A-labels (xn--...)"
        ) from exc


def build_general_name(gn: dict[str, Any], field: str = "GeneralName") -> x509.GeneralName:
    """A ``cryptography`` general name from a ``GeneralName`` wire dict with exactly one member set.

    OtherName values are encoded as a DER UTF8String. EdiPartyName cannot be built with
    cryptography and is refused. ``field`` names the structure in error messages.
    """
    present = [member for member in _GENERAL_NAME_MEMBERS if gn.get(member) is not None]
    if len(present) != 1:
        got = ", ".join(present) if present else "none"
        raise InvalidArgument(
            f"{field} must set exactly one of {', '.join(_GENERAL_NAME_MEMBERS)}; it sets {got}"
        )
    member = present[0]
    value = gn[member]
    where = f"{field}.{member}"
    if member == "DnsName":
        return _text_name(x509.DNSName, value, where)
    if member == "Rfc822Name":
        return _text_name(x509.RFC822Name, value, where)
    if member == "UniformResourceIdentifier":
        return _text_name(x509.UniformResourceIdentifier, value, where)
    if member == "IpAddress":
        text = _require_text(value, where)
        try:
            return x509.IPAddress(ipaddress.ip_address(text))
        except ValueError as exc:
            raise InvalidArgument(
                f"{where} {text!r} is not an IPv4 or IPv6 address "
                "(a network such as 10.0.0.0/8 is not allowed)"
            ) from exc
    if member == "RegisteredId":
        return x509.RegisteredID(parse_oid(value, where))
    if member == "DirectoryName":
        if not isinstance(value, dict):
            raise InvalidArgument(f"{where} must be an ASN1Subject structure")
        return x509.DirectoryName(build_name(value))
    if member == "OtherName":
        if not isinstance(value, dict):
            raise InvalidArgument(f"{where} must be a structure with TypeId and Value")
        type_id = parse_oid(value.get("TypeId"), f"{where}.TypeId")
        text = value.get("Value")
        if not isinstance(text, str):
            raise InvalidArgument(f"{where}.Value must be a string")
        return x509.OtherName(type_id, asn1.encode_der(text))  # a str encodes as UTF8String
    raise InvalidArgument(f"{where} is not supported; use another kind of GeneralName")  # EdiPartyName


def build_access_description(ad: dict[str, Any], field: str = "AccessDescription") -> x509.AccessDescription:
    """An access description from an ``AccessDescription`` wire dict.

    ``AccessMethod`` must set exactly one of ``CustomObjectIdentifier`` and ``AccessMethodType``.
    """
    method = ad.get("AccessMethod")
    if not isinstance(method, dict):
        raise InvalidArgument(f"{field}.AccessMethod is required")
    custom, kind = method.get("CustomObjectIdentifier"), method.get("AccessMethodType")
    if (custom is None) == (kind is None):
        raise InvalidArgument(
            f"{field}.AccessMethod must set exactly one of CustomObjectIdentifier and AccessMethodType"
        )
    if custom is not None:
        oid = parse_oid(custom, f"{field}.AccessMethod.CustomObjectIdentifier")
    elif kind in _ACCESS_METHODS:
        oid = _ACCESS_METHODS[kind]
    else:
        raise InvalidArgument(
            f"{field}.AccessMethod.AccessMethodType {kind!r} is not one of " + ", ".join(_ACCESS_METHODS)
        )
    location = ad.get("AccessLocation")
    if not isinstance(location, dict):
        raise InvalidArgument(f"{field}.AccessLocation is required")
    return x509.AccessDescription(oid, build_general_name(location, f"{field}.AccessLocation"))


def build_key_usage(ku: dict[str, Any]) -> x509.KeyUsage:
    """A KeyUsage extension value from the nine-boolean ``KeyUsage`` wire dict (absent means false).

    At least one usage must be true, and EncipherOnly/DecipherOnly need KeyAgreement.
    """
    flags = {
        "digital_signature": bool(ku.get("DigitalSignature")),
        "content_commitment": bool(ku.get("NonRepudiation")),
        "key_encipherment": bool(ku.get("KeyEncipherment")),
        "data_encipherment": bool(ku.get("DataEncipherment")),
        "key_agreement": bool(ku.get("KeyAgreement")),
        "key_cert_sign": bool(ku.get("KeyCertSign")),
        "crl_sign": bool(ku.get("CRLSign")),
        "encipher_only": bool(ku.get("EncipherOnly")),
        "decipher_only": bool(ku.get("DecipherOnly")),
    }
    if (flags["encipher_only"] or flags["decipher_only"]) and not flags["key_agreement"]:
        raise InvalidArgument("KeyUsage EncipherOnly and DecipherOnly require KeyAgreement")
    if not any(flags.values()):
        raise InvalidArgument("KeyUsage must set at least one usage to true (RFC 5280 4.2.1.3)")
    return x509.KeyUsage(**flags)
