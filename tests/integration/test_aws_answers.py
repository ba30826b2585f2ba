"""What AWS answers, end to end with real boto3 against `pcaq up`: ARNs in the partition of the region
the request was signed for, and the defaults AWS fills in and shows in DescribeCertificateAuthority."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from tests.acmpca import activate_root, create_ca, error_code, fetch, make_csr, pca_client

pytestmark = pytest.mark.integration

DOCUMENTED_TEMPLATE = "arn:aws:acm-pca:::template/EndEntityCertificate/V1"
CHINESE_STANDARD = {"KeyStorageSecurityStandard": "CCPC_LEVEL_1_OR_HIGHER"}  # the only one China takes


def client(stack, region: str):
    """A boto3 acm-pca client of the stack that signs for ``region``."""
    return pca_client(stack.endpoint_url, region=region)


@pytest.mark.parametrize(
    "region, partition, extra",
    [("us-gov-west-1", "aws-us-gov", {}), ("cn-north-1", "aws-cn", CHINESE_STANDARD)],
)
def test_a_ca_lives_in_the_partition_of_its_region(stack, pca, region, partition, extra):
    regional = client(stack, region)
    arn, _ = activate_root(regional, **extra)
    assert arn.startswith(f"arn:{partition}:acm-pca:{region}:")
    described = regional.describe_certificate_authority(CertificateAuthorityArn=arn)["CertificateAuthority"]
    assert (described["Arn"], described["Status"]) == (arn, "ACTIVE")

    # The template ARN AWS documents works in every partition, and so does the region's own form.
    for template in (DOCUMENTED_TEMPLATE, DOCUMENTED_TEMPLATE.replace("arn:aws:", f"arn:{partition}:")):
        cert_arn = regional.issue_certificate(
            CertificateAuthorityArn=arn,
            Csr=make_csr(),
            SigningAlgorithm="SHA256WITHECDSA",
            Validity={"Value": 1, "Type": "DAYS"},
            TemplateArn=template,
        )["CertificateArn"]
        assert cert_arn.startswith(f"{arn}/certificate/")
        cert, _, chain = fetch(regional, arn, cert_arn)
        assert chain and cert.issuer.rfc4514_string()

    with pytest.raises(ClientError) as exc:  # partitions are apart: us-east-1 does not see it
        pca.describe_certificate_authority(CertificateAuthorityArn=arn)
    assert error_code(exc) == "ResourceNotFoundException"


def test_describe_shows_the_defaults_aws_fills_in(pca):
    arn = create_ca(
        pca,
        wait=False,
        RevocationConfiguration={"CrlConfiguration": {"Enabled": True, "S3BucketName": "crl-bucket"}},
    )
    ca = pca.describe_certificate_authority(CertificateAuthorityArn=arn)["CertificateAuthority"]
    assert "KeyStorageSecurityStandard" not in ca  # a software key (no token here) meets no FIPS level
    assert ca["UsageMode"] == "GENERAL_PURPOSE"
    assert ca["OwnerAccount"] == arn.split(":")[4]
    assert ca["CreatedAt"] and ca["LastStateChangeAt"]
    crl = ca["RevocationConfiguration"]["CrlConfiguration"]
    assert (crl["ExpirationInDays"], crl["CrlType"], crl["S3ObjectAcl"]) == (7, "COMPLETE", "PUBLIC_READ")
    assert ca["RevocationConfiguration"]["OcspConfiguration"] == {"Enabled": False}


def test_a_china_region_keeps_ca_keys_to_the_chinese_standard_only(stack):
    beijing = client(stack, "cn-north-1")
    with pytest.raises(beijing.exceptions.InvalidArgsException):  # the FIPS default is refused there
        create_ca(beijing, wait=False)
    arn = create_ca(beijing, wait=False, **CHINESE_STANDARD)
    ca = beijing.describe_certificate_authority(CertificateAuthorityArn=arn)["CertificateAuthority"]
    assert ca["Status"] in (
        "CREATING",
        "PENDING_CERTIFICATE",
    )  # accepted (a software key: no standard claimed)
