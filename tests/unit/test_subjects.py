"""Wire structures to X.509 names (shared/pki/subjects.py)."""

from __future__ import annotations

import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat import asn1
from cryptography.hazmat.primitives import serialization
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID, ObjectIdentifier, SubjectInformationAccessOID

from pcaq.errors import InvalidArgument
from pcaq.pki import keys, subjects

FULL_SUBJECT = {
    # Deliberately not in model order: the built name must follow the model's member order.
    "CommonName": "Example Root",
    "GenerationQualifier": "III",
    "Country": "us",
    "Organization": "Example Org",
    "OrganizationalUnit": "PKI",
    "DistinguishedNameQualifier": "dnq-1",
    "State": "Washington",
    "SerialNumber": "1234 ABC",
    "Locality": "Seattle",
    "Title": "Root",
    "Surname": "Doe",
    "GivenName": "Jane",
    "Initials": "JD",
    "Pseudonym": "jd",
}
MODEL_ORDER = [
    NameOID.COUNTRY_NAME,
    NameOID.ORGANIZATION_NAME,
    NameOID.ORGANIZATIONAL_UNIT_NAME,
    NameOID.DN_QUALIFIER,
    NameOID.STATE_OR_PROVINCE_NAME,
    NameOID.COMMON_NAME,
    NameOID.SERIAL_NUMBER,
    NameOID.LOCALITY_NAME,
    NameOID.TITLE,
    NameOID.SURNAME,
    NameOID.GIVEN_NAME,
    NameOID.INITIALS,
    NameOID.PSEUDONYM,
    NameOID.GENERATION_QUALIFIER,
]


def _reencoded(name: x509.Name) -> x509.Name:
    """The name after a DER round trip, so encodings are what a relying party would read."""
    key = keys.generate_private_key("EC_prime256v1")
    builder = x509.CertificateSigningRequestBuilder().subject_name(name)
    csr = builder.sign(key, **keys.sign_kwargs("SHA256WITHECDSA"))
    return x509.load_der_x509_csr(csr.public_bytes(serialization.Encoding.DER)).subject


def test_named_attributes_follow_model_order_one_per_rdn():
    name = subjects.build_name(FULL_SUBJECT)
    assert [a.oid for a in name] == MODEL_ORDER
    assert len(name.rdns) == len(MODEL_ORDER)
    assert name.get_attributes_for_oid(NameOID.COUNTRY_NAME)[0].value == "US"
    assert name.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Example Root"


def test_printable_string_attributes_survive_encoding():
    name = _reencoded(subjects.build_name(FULL_SUBJECT))
    types = {a.oid: a._type for a in name}
    for oid in (NameOID.COUNTRY_NAME, NameOID.DN_QUALIFIER, NameOID.SERIAL_NUMBER):
        assert types[oid] == _ASN1Type.PrintableString
    for oid in (NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME, NameOID.PSEUDONYM):
        assert types[oid] == _ASN1Type.UTF8String


def test_empty_strings_are_skipped_and_empty_subject_is_empty_name():
    name = subjects.build_name({"CommonName": "x", "Organization": "", "Country": ""})
    assert [a.oid for a in name] == [NameOID.COMMON_NAME]
    assert len(subjects.build_name({})) == 0
    assert len(subjects.build_name({"CustomAttributes": []})) == 0


@pytest.mark.parametrize(
    "subject",
    [
        {"Country": "USA"},
        {"Country": "U1"},
        {"SerialNumber": "a_b"},
        {"DistinguishedNameQualifier": "x*y"},
        {"SerialNumber": "é"},
        {"CommonName": "c" * 65},
    ],
)
def test_bad_attribute_values_are_refused(subject):
    with pytest.raises(InvalidArgument) as err:
        subjects.build_name(subject)
    assert next(iter(subject)) in err.value.message


def test_custom_attributes_keep_order_and_encodings():
    name = subjects.build_name(
        {
            "CustomAttributes": [
                {"ObjectIdentifier": "0.9.2342.19200300.100.1.25", "Value": "com"},
                {"ObjectIdentifier": "0.9.2342.19200300.100.1.25", "Value": "example"},
                {"ObjectIdentifier": "2.5.4.6", "Value": "de"},
                {"ObjectIdentifier": "2.5.4.3", "Value": "Grüße"},
                {"ObjectIdentifier": "1.3.6.1.4.1.99999.7", "Value": "custom"},
            ]
        }
    )
    name = _reencoded(name)
    assert [(a.oid.dotted_string, a.value, a._type) for a in name] == [
        ("0.9.2342.19200300.100.1.25", "com", _ASN1Type.IA5String),
        ("0.9.2342.19200300.100.1.25", "example", _ASN1Type.IA5String),
        ("2.5.4.6", "DE", _ASN1Type.PrintableString),
        ("2.5.4.3", "Grüße", _ASN1Type.UTF8String),
        ("1.3.6.1.4.1.99999.7", "custom", _ASN1Type.UTF8String),
    ]


def test_custom_attributes_cannot_be_mixed_with_named_ones():
    with pytest.raises(InvalidArgument, match="CommonName"):
        subjects.build_name(
            {"CommonName": "x", "CustomAttributes": [{"ObjectIdentifier": "2.5.4.10", "Value": "o"}]}
        )


@pytest.mark.parametrize(
    "attr",
    [
        {"ObjectIdentifier": "not.an.oid", "Value": "v"},
        {"ObjectIdentifier": "", "Value": "v"},
        {"ObjectIdentifier": "2.5.4.10", "Value": ""},
        {"ObjectIdentifier": "0.9.2342.19200300.100.1.25", "Value": "ü"},
    ],
)
def test_bad_custom_attributes_are_refused(attr):
    with pytest.raises(InvalidArgument, match=r"CustomAttributes\[0\]"):
        subjects.build_name({"CustomAttributes": [attr]})


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        ({"DnsName": "example.com"}, x509.DNSName("example.com")),
        ({"Rfc822Name": "a@example.com"}, x509.RFC822Name("a@example.com")),
        ({"UniformResourceIdentifier": "http://x.test/a"}, x509.UniformResourceIdentifier("http://x.test/a")),
        ({"IpAddress": "10.1.2.3"}, x509.IPAddress(ipaddress.ip_address("10.1.2.3"))),
        ({"IpAddress": "2001:db8::1"}, x509.IPAddress(ipaddress.ip_address("2001:db8::1"))),
        ({"RegisteredId": "1.2.3.4"}, x509.RegisteredID(ObjectIdentifier("1.2.3.4"))),
        (
            {"DirectoryName": {"CommonName": "dir", "Country": "FR"}},
            x509.DirectoryName(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.COUNTRY_NAME, "FR", _ASN1Type.PrintableString),
                        x509.NameAttribute(NameOID.COMMON_NAME, "dir"),
                    ]
                )
            ),
        ),
    ],
)
def test_each_general_name_kind(wire, expected):
    assert subjects.build_general_name(wire) == expected


def test_other_name_value_is_a_der_utf8string():
    gn = subjects.build_general_name({"OtherName": {"TypeId": "1.3.6.1.4.1.311.20.2.3", "Value": "jé@corp"}})
    assert isinstance(gn, x509.OtherName)
    assert gn.type_id.dotted_string == "1.3.6.1.4.1.311.20.2.3"
    assert gn.value[0] == 0x0C  # UTF8String tag
    assert asn1.decode_der(str, gn.value) == "jé@corp"
    # And it encodes inside a real extension.
    x509.SubjectAlternativeName([gn]).public_bytes()


@pytest.mark.parametrize(
    "wire",
    [
        {},
        {"DnsName": "a.test", "IpAddress": "10.0.0.1"},
        {"DnsName": None},
    ],
)
def test_general_name_needs_exactly_one_member(wire):
    with pytest.raises(InvalidArgument, match="exactly one"):
        subjects.build_general_name(wire)


@pytest.mark.parametrize(
    ("wire", "fragment"),
    [
        ({"IpAddress": "10.0.0.0/8"}, "network"),
        ({"IpAddress": "300.1.1.1"}, "IpAddress"),
        ({"IpAddress": "2001:db8::/32"}, "network"),
        ({"DnsName": ""}, "DnsName"),
        ({"DnsName": "bücher.example"}, "A-labels"),
        ({"RegisteredId": "x.y"}, "RegisteredId"),
        ({"OtherName": {"TypeId": "bad", "Value": "v"}}, "TypeId"),
        ({"EdiPartyName": {"PartyName": "p"}}, "EdiPartyName is not supported"),
        ({"DirectoryName": {"Country": "XYZ"}}, "Country"),
    ],
)
def test_bad_general_names_are_refused(wire, fragment):
    with pytest.raises(InvalidArgument, match=fragment):
        subjects.build_general_name(wire)


@pytest.mark.parametrize(
    ("method", "oid"),
    [
        ({"AccessMethodType": "CA_REPOSITORY"}, "1.3.6.1.5.5.7.48.5"),
        ({"AccessMethodType": "RESOURCE_PKI_MANIFEST"}, "1.3.6.1.5.5.7.48.10"),
        ({"AccessMethodType": "RESOURCE_PKI_NOTIFY"}, "1.3.6.1.5.5.7.48.13"),
        ({"CustomObjectIdentifier": "1.3.6.1.5.5.7.48.2"}, "1.3.6.1.5.5.7.48.2"),
    ],
)
def test_access_description(method, oid):
    ad = subjects.build_access_description(
        {"AccessMethod": method, "AccessLocation": {"UniformResourceIdentifier": "rsync://r.test/repo/"}}
    )
    assert ad.access_method.dotted_string == oid
    assert ad.access_location == x509.UniformResourceIdentifier("rsync://r.test/repo/")


def test_ca_repository_oid_matches_cryptography():
    ad = subjects.build_access_description(
        {"AccessMethod": {"AccessMethodType": "CA_REPOSITORY"}, "AccessLocation": {"DnsName": "r.test"}}
    )
    assert ad.access_method == SubjectInformationAccessOID.CA_REPOSITORY


@pytest.mark.parametrize(
    "ad",
    [
        {"AccessMethod": {}, "AccessLocation": {"DnsName": "a"}},
        {
            "AccessMethod": {"AccessMethodType": "CA_REPOSITORY", "CustomObjectIdentifier": "1.2.3"},
            "AccessLocation": {"DnsName": "a"},
        },
        {"AccessMethod": {"AccessMethodType": "OCSP"}, "AccessLocation": {"DnsName": "a"}},
        {"AccessMethod": {"AccessMethodType": "CA_REPOSITORY"}},
        {"AccessMethod": {"AccessMethodType": "CA_REPOSITORY"}, "AccessLocation": {}},
        {"AccessLocation": {"DnsName": "a"}},
    ],
)
def test_bad_access_descriptions_are_refused(ad):
    with pytest.raises(InvalidArgument):
        subjects.build_access_description(ad)


def test_key_usage_maps_every_flag():
    ku = subjects.build_key_usage(
        {
            "DigitalSignature": True,
            "NonRepudiation": True,
            "KeyEncipherment": True,
            "DataEncipherment": True,
            "KeyAgreement": True,
            "KeyCertSign": True,
            "CRLSign": True,
            "EncipherOnly": True,
            "DecipherOnly": False,
        }
    )
    assert ku.digital_signature and ku.content_commitment and ku.key_encipherment
    assert ku.data_encipherment and ku.key_agreement and ku.key_cert_sign and ku.crl_sign
    assert ku.encipher_only and not ku.decipher_only


def test_key_usage_defaults_to_false():
    ku = subjects.build_key_usage({"KeyCertSign": True, "CRLSign": True})
    assert ku.key_cert_sign and ku.crl_sign
    assert not (ku.digital_signature or ku.content_commitment or ku.key_encipherment or ku.key_agreement)


@pytest.mark.parametrize(
    "wire", [{"EncipherOnly": True}, {"DecipherOnly": True, "DigitalSignature": True}, {}]
)
def test_bad_key_usage_is_refused(wire):
    with pytest.raises(InvalidArgument, match="KeyUsage"):
        subjects.build_key_usage(wire)
