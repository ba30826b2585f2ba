"""Request validation derived from botocore's acm-pca model (api/schemas.py)."""

from __future__ import annotations

import base64
import copy

import botocore.session
import pytest
from botocore.model import ServiceModel

from pcaq.api import model_fields, schemas
from pcaq.api.model_fields import compile_pattern
from pcaq.api.schemas import OPERATIONS, build_schemas, validate_request
from pcaq.errors import InvalidArn, InvalidTag, MalformedCertificate, MalformedCSR, ValidationFailed

MODEL = botocore.session.get_session().get_service_model("acm-pca")
CA_ARN = "arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/12345678-1234-1234-1234-123456789012"
CSR_PEM = b"-----BEGIN CERTIFICATE REQUEST-----\nMIIBfake\n-----END CERTIFICATE REQUEST-----\n"
ISSUE = {
    "CertificateAuthorityArn": CA_ARN,
    "Csr": base64.b64encode(CSR_PEM).decode(),
    "SigningAlgorithm": "SHA256WITHRSA",
    "Validity": {"Value": 365, "Type": "DAYS"},
    "IdempotencyToken": "tok-1",
    "TemplateArn": "arn:aws:acm-pca:::template/EndEntityCertificate/V1",
}
CREATE = {
    "CertificateAuthorityConfiguration": {
        "KeyAlgorithm": "EC_prime256v1",
        "SigningAlgorithm": "SHA256WITHECDSA",
        "Subject": {"Country": "US", "CommonName": "Example Root"},
    },
    "CertificateAuthorityType": "ROOT",
    "Tags": [{"Key": "team", "Value": "pki"}],
}

# Example values for patterned string shapes, used to build minimal bodies from the model.
PATTERN_SAMPLES = {
    "Arn": CA_ARN,
    "Principal": "acm.amazonaws.com",
    "AccountId": "123456789012",
    "AuditReportId": "12345678-abcd-1234-abcd-1234567890ab",
    "AWSPolicy": '{"Version": "2012-10-17"}',
    "IdempotencyToken": "tok",
    "CountryCodeString": "US",
    "CustomObjectIdentifier": "1.3.6.1.4.1.99",
    "ASN1PrintableString64": "Printable 1",
    "Base64String1To4096": "AAEC",
    "CnameString": "crl.example.com",
    "S3BucketName3To255": "bucket",
    "CrlPathString": "crl/path",
    "TagKey": "key",
    "TagValue": "value",
}


def error_of(operation: str, body: object, kind: type[Exception] = ValidationFailed) -> str:
    with pytest.raises(kind) as caught:
        validate_request(operation, body)
    assert type(caught.value) is kind
    return caught.value.message


def with_(base: dict, **changes: object) -> dict:
    body = copy.deepcopy(base)
    body.update(changes)
    return body


def minimal_value(shape):
    """The smallest valid wire value of a shape, built from the model's traits."""
    kind, traits = shape.type_name, shape.metadata
    if kind == "structure":
        return {name: minimal_value(shape.members[name]) for name in shape.required_members}
    if kind == "list":
        return [minimal_value(shape.member)] * max(traits.get("min", 0), 1)
    if kind == "string":
        if shape.enum:
            return shape.enum[0]
        if "pattern" in traits:
            return PATTERN_SAMPLES[shape.name]
        return "x" * max(traits.get("min", 0), 1)
    if kind == "blob":
        return base64.b64encode(b"x" * max(traits.get("min", 0), 1)).decode()
    if kind in ("integer", "long"):
        return traits.get("min", 1)
    if kind == "boolean":
        return True
    raise AssertionError(f"no sample for {shape.name} ({kind})")


def lower_camel(name: str) -> str:
    return name[:1].lower() + name[1:]


# ---- the schema set ---------------------------------------------------------------------------------


def test_operations_are_the_models_23():
    assert OPERATIONS == frozenset(MODEL.operation_names)
    assert len(OPERATIONS) == 23


def test_unknown_operation_is_a_key_error():
    with pytest.raises(KeyError):
        validate_request("IssueCertificates", {})


@pytest.mark.parametrize("operation", sorted(MODEL.operation_names))
def test_every_operation_accepts_its_minimal_body(operation):
    shape = MODEL.operation_model(operation).input_shape
    body = minimal_value(shape)
    result = validate_request(operation, body)
    assert set(result) == set(shape.required_members)
    for name, member in shape.members.items():
        if name in body and member.type_name == "blob":
            assert result[name] == base64.b64decode(body[name])


@pytest.mark.parametrize("operation", sorted(MODEL.operation_names))
def test_every_required_member_is_enforced(operation):
    shape = MODEL.operation_model(operation).input_shape
    body = minimal_value(shape)
    for name in shape.required_members:
        left_out = {key: value for key, value in body.items() if key != name}
        for absent in (left_out, with_(body, **{name: None})):
            message = error_of(operation, absent)
            assert message == (
                f"1 validation error detected: Value null at '{lower_camel(name)}' "
                "failed to satisfy constraint: Member must not be null"
            )


def test_every_model_pattern_compiles_and_accepts_its_sample():
    patterned = {}
    for name in MODEL.shape_names:
        shape = MODEL.shape_for(name)
        if "pattern" in shape.metadata:
            patterned[name] = compile_pattern(shape.metadata["pattern"])
    assert "TagKey" in patterned and "IdempotencyToken" in patterned
    for name, sample in PATTERN_SAMPLES.items():
        assert patterned[name].fullmatch(sample), name


def test_patterns_follow_java_semantics():
    arn = compile_pattern(MODEL.shape_for("Arn").metadata["pattern"])
    assert arn.fullmatch(CA_ARN)
    assert not arn.fullmatch(CA_ARN.replace("1234-1234", "1234-12é4"))  # Java's \w is ASCII
    assert not arn.fullmatch(CA_ARN + "\n")  # anchored on the whole value
    token = compile_pattern(MODEL.shape_for("IdempotencyToken").metadata["pattern"])
    assert token.fullmatch("tab\there, é ÿ")
    assert not token.fullmatch("ā")  # U+0101 is beyond \u00FF
    tag = compile_pattern(MODEL.shape_for("TagKey").metadata["pattern"])
    assert tag.fullmatch("é 日本 ٣ _.:/=+-@")
    assert not tag.fullmatch("a*b")


# ---- valid requests -------------------------------------------------------------------------------


def test_issue_certificate_decodes_the_csr_and_keeps_wire_names():
    result = validate_request("IssueCertificate", with_(ISSUE, Unknown="x", ApiPassthrough=None))
    assert result["Csr"] == CSR_PEM
    assert result["Validity"] == {"Value": 365, "Type": "DAYS"}
    assert set(result) == {
        "CertificateAuthorityArn",
        "Csr",
        "SigningAlgorithm",
        "Validity",
        "IdempotencyToken",
        "TemplateArn",
    }


def test_unknown_nested_members_are_dropped():
    body = with_(CREATE)
    body["CertificateAuthorityConfiguration"]["Subject"]["Nickname"] = "x"
    result = validate_request("CreateCertificateAuthority", body)
    subject = result["CertificateAuthorityConfiguration"]["Subject"]
    assert subject == {"Country": "US", "CommonName": "Example Root"}


def test_list_certificate_authorities_accepts_empty_body():
    assert validate_request("ListCertificateAuthorities", {}) == {}


def test_unicode_tag_key_passes():
    tag = {"Key": "é", "Value": "naïve value"}
    body = {"CertificateAuthorityArn": CA_ARN, "Tags": [tag, {"Key": "k"}]}
    assert validate_request("TagCertificateAuthority", body)["Tags"][0] == tag


def test_import_decodes_certificate_and_allows_empty_chain():
    pem = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    encoded = base64.b64encode(pem).decode()
    body = {"CertificateAuthorityArn": CA_ARN, "Certificate": encoded, "CertificateChain": ""}
    result = validate_request("ImportCertificateAuthorityCertificate", body)
    assert result["Certificate"] == pem and result["CertificateChain"] == b""


def test_csr_at_the_size_limit_passes_and_integral_float_is_an_integer():
    csr = base64.b64encode(b"a" * 32768).decode()
    body = with_(ISSUE, Csr=csr, Validity={"Value": 365.0, "Type": "DAYS"})
    result = validate_request("IssueCertificate", body)
    assert len(result["Csr"]) == 32768
    assert result["Validity"]["Value"] == 365 and type(result["Validity"]["Value"]) is int


# ---- constraint violations ------------------------------------------------------------------------


def test_idempotency_token_too_long():
    token = "t" * 37
    assert error_of("IssueCertificate", with_(ISSUE, IdempotencyToken=token)) == (
        f"1 validation error detected: Value '{token}' at 'idempotencyToken' failed to satisfy "
        "constraint: Member must have length less than or equal to 36"
    )


def test_unknown_signing_algorithm_lists_the_model_enum():
    allowed = ", ".join(MODEL.shape_for("SigningAlgorithm").enum)
    assert error_of("IssueCertificate", with_(ISSUE, SigningAlgorithm="BOGUS")) == (
        "1 validation error detected: Value 'BOGUS' at 'signingAlgorithm' failed to satisfy "
        f"constraint: Member must satisfy enum value set: [{allowed}]"
    )


def test_nested_enum_has_dotted_path():
    message = error_of("IssueCertificate", with_(ISSUE, Validity={"Value": 2, "Type": "WEEKS"}))
    assert message.startswith("1 validation error detected: Value 'WEEKS' at 'validity.type' failed")
    assert "Member must satisfy enum value set: [END_DATE, ABSOLUTE, DAYS, MONTHS, YEARS]" in message


@pytest.mark.parametrize(
    ("operation", "body", "expected"),
    [
        (
            "ListCertificateAuthorities",
            {"MaxResults": 5000},
            "Value '5000' at 'maxResults' failed to satisfy constraint: "
            "Member must have value less than or equal to 1000",
        ),
        (
            "DeleteCertificateAuthority",
            {"CertificateAuthorityArn": CA_ARN, "PermanentDeletionTimeInDays": 99},
            "Value '99' at 'permanentDeletionTimeInDays' failed to satisfy constraint: "
            "Member must have value less than or equal to 30",
        ),
        (
            "DeleteCertificateAuthority",
            {"CertificateAuthorityArn": CA_ARN, "PermanentDeletionTimeInDays": 3},
            "Member must have value greater than or equal to 7",
        ),
        (
            "IssueCertificate",
            with_(ISSUE, Validity={"Value": 0, "Type": "DAYS"}),
            "at 'validity.value' failed to satisfy constraint: "
            "Member must have value greater than or equal to 1",
        ),
    ],
)
def test_ranges(operation, body, expected):
    message = error_of(operation, body)
    assert message.startswith("1 validation error detected: ")
    assert expected in message


def test_country_of_three_letters_breaks_length_and_pattern():
    body = with_(CREATE)
    body["CertificateAuthorityConfiguration"]["Subject"]["Country"] = "USA"
    message = error_of("CreateCertificateAuthority", body)
    path = "at 'certificateAuthorityConfiguration.subject.country' failed to satisfy constraint"
    assert message == (
        f"2 validation errors detected: Value 'USA' {path}: Member must have length less than or equal to 2; "
        f"Value 'USA' {path}: Member must satisfy regular expression pattern: [A-Za-z]{{2}}"
    )


def test_arn_pattern_is_an_invalid_arn():
    with pytest.raises(InvalidArn) as exc:
        validate_request("DescribeCertificateAuthority", {"CertificateAuthorityArn": "abcdef"})
    assert "'abcdef'" in exc.value.message
    # With another violation beside it, the framework error lists both.
    # Beside a framework violation, the framework error wins (and names only the framework violation).
    message = error_of("ListTags", {"CertificateAuthorityArn": "abcdef", "MaxResults": 5000})
    assert message.startswith("1 validation error detected: ") and "'maxResults'" in message


def test_tag_key_with_star_is_an_invalid_tag():
    body = {"CertificateAuthorityArn": CA_ARN, "Tags": [{"Key": "ok"}, {"Key": "bad*key"}]}
    with pytest.raises(InvalidTag) as exc:
        validate_request("TagCertificateAuthority", body)
    assert "'bad*key'" in exc.value.message


def test_list_length_is_checked_before_items():
    body = {"CertificateAuthorityArn": CA_ARN, "Tags": [{"Key": "*"}] * 51}
    assert error_of("TagCertificateAuthority", body) == (
        "1 validation error detected: The list at 'tags' failed to satisfy constraint: "
        "Member must have length less than or equal to 50"
    )
    assert "greater than or equal to 1" in error_of("TagCertificateAuthority", with_(body, Tags=[]))


def test_null_list_item_is_an_error():
    body = {"CertificateAuthorityArn": CA_ARN, "Tags": [{"Key": "a"}, None]}
    assert "Value null at 'tags.2.member' failed" in error_of("TagCertificateAuthority", body)


def test_several_errors_are_counted_and_listing_is_capped():
    body = {"CertificateAuthorityArn": CA_ARN, "Tags": [{"Key": f"k{i}" * 100} for i in range(12)]}
    message = error_of("TagCertificateAuthority", body)
    assert message.startswith("12 validation errors detected: ")
    assert message.count("failed to satisfy constraint") == 10 and message.endswith("; ...")


def test_bad_value_is_truncated_and_control_characters_escaped():
    message = error_of("IssueCertificate", with_(ISSUE, IdempotencyToken="\x01" + "z" * 500))
    assert "z" * 64 not in message and "z" * 60 + "..." in message
    assert "\x01" not in message and "\\u0001" in message


# ---- blobs -----------------------------------------------------------------------------------------


def test_oversized_csr_is_a_validation_error_without_echo():
    encoded = base64.b64encode(b"A" * 40_000).decode()
    message = error_of("IssueCertificate", with_(ISSUE, Csr=encoded))
    assert message == (
        "1 validation error detected: The value at 'csr' failed to satisfy constraint: "
        "Member must have length less than or equal to 32768"
    )


def test_huge_csr_is_rejected_before_decoding(monkeypatch):
    def no_decode(*args, **kwargs):
        raise AssertionError("decoded a value that is over the size limit")

    monkeypatch.setattr(model_fields.base64, "b64decode", no_decode)
    assert "less than or equal to 32768" in error_of("IssueCertificate", with_(ISSUE, Csr="QUFB" * 1_000_000))


@pytest.mark.parametrize(
    ("csr", "words"),
    [
        ("", "The CSR is empty"),
        ("not base64!!", "not valid base64"),
        ("QUJ", "not valid base64"),  # bad padding
        ("é", "not valid base64"),
    ],
)
def test_bad_csr_encoding_is_malformed_csr(csr, words):
    message = error_of("IssueCertificate", with_(ISSUE, Csr=csr), MalformedCSR)
    assert words in message


@pytest.mark.parametrize("member", ["Certificate", "CertificateChain"])
def test_bad_certificate_encoding_is_malformed_certificate(member):
    body = {"CertificateAuthorityArn": CA_ARN, "Certificate": "QUJD", member: "<<junk>>"}
    message = error_of("ImportCertificateAuthorityCertificate", body, MalformedCertificate)
    assert member in message and "base64" in message and "junk" not in message


def test_empty_certificate_is_malformed_certificate():
    body = {"CertificateAuthorityArn": CA_ARN, "Certificate": ""}
    assert "empty" in error_of("ImportCertificateAuthorityCertificate", body, MalformedCertificate)


def test_validation_errors_win_over_a_malformed_csr():
    message = error_of("IssueCertificate", with_(ISSUE, Csr="secret!!", SigningAlgorithm="BOGUS"))
    assert message.startswith("1 validation error detected: Value 'BOGUS'")
    assert "secret" not in message


# ---- wrong JSON types ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "body", "where"),
    [
        ("ListCertificateAuthorities", {"MaxResults": "5"}, "at 'maxResults'"),
        ("ListCertificateAuthorities", {"MaxResults": True}, "at 'maxResults'"),
        ("ListCertificateAuthorities", {"MaxResults": 2.5}, "at 'maxResults'"),
        ("ListCertificateAuthorities", {"NextToken": 7}, "at 'nextToken'"),
        ("IssueCertificate", with_(ISSUE, Validity=[365, "DAYS"]), "at 'validity'"),
        ("IssueCertificate", with_(ISSUE, Validity={"Value": "365", "Type": "DAYS"}), "at 'validity.value'"),
        ("IssueCertificate", with_(ISSUE, Validity={"Value": 2**63, "Type": "DAYS"}), "at 'validity.value'"),
        ("IssueCertificate", with_(ISSUE, Csr=12), "at 'csr'"),
        ("TagCertificateAuthority", {"CertificateAuthorityArn": CA_ARN, "Tags": {"Key": "a"}}, "at 'tags'"),
        (
            "CreatePermission",
            {"CertificateAuthorityArn": CA_ARN, "Principal": "p", "Actions": [1]},
            "at 'actions.1.member'",
        ),
    ],
)
def test_wrong_member_types(operation, body, where):
    message = error_of(operation, body)
    assert message.startswith("1 validation error detected: ") and where in message


@pytest.mark.parametrize("body", [[], ["a"], "text", 5, None, True])
def test_body_that_is_not_an_object(body):
    assert "must be a JSON object" in error_of("ListCertificateAuthorities", body)


def test_boolean_members_require_json_booleans():
    revocation = {"CrlConfiguration": {"Enabled": 1}}
    body = {"CertificateAuthorityArn": CA_ARN, "RevocationConfiguration": revocation}
    message = error_of("UpdateCertificateAuthority", body)
    assert "at 'revocationConfiguration.crlConfiguration.enabled'" in message
    assert "Member must be a boolean" in message


# ---- generality: a synthetic model with a map and a recursive structure ----------------------------


def test_builder_handles_maps_and_recursion():
    model = ServiceModel(
        {
            "metadata": {"protocol": "json", "endpointPrefix": "demo", "apiVersion": "2020-01-01"},
            "operations": {"Put": {"name": "Put", "http": {}, "input": {"shape": "Node"}}},
            "shapes": {
                "Node": {
                    "type": "structure",
                    "required": ["Name"],
                    "members": {name: {"shape": name} for name in ("Name", "Labels", "Kids")},
                },
                "Kids": {"type": "list", "member": {"shape": "Node"}, "max": 2},
                "Labels": {"type": "map", "key": {"shape": "Name"}, "value": {"shape": "Count"}, "max": 3},
                "Name": {"type": "string", "min": 1, "max": 8, "pattern": "[a-z]+"},
                "Count": {"type": "integer", "min": 0},
            },
        },
        "demo",
    )
    put = build_schemas(model)["Put"]
    good = {"Name": "root", "Labels": {"a": 1}, "Kids": [{"Name": "kid", "Kids": [{"Name": "leaf"}]}]}
    assert put.load(good) == good
    with pytest.raises(ValidationFailed) as caught:
        bad = {"Name": "root", "Labels": {"a": -1}, "Kids": [{"Kids": [{"Name": "X"}]}]}
        schemas._raise_for(put.validate(bad))
    message = caught.value.message
    assert message.startswith("3 validation errors detected: ")
    assert "Value '-1' at 'labels.a' failed" in message
    assert "Value null at 'kids.1.member.name' failed" in message
    assert "Value 'X' at 'kids.1.member.kids.1.member.name' failed" in message
