"""The partition ARNs carry comes from the caller's region, by botocore's partition data
(shared/platform/partitions.py), unless PCAQ_PARTITION names one (docs/configuration.md)."""

from __future__ import annotations

import pytest

from pcaq.api.auth import caller_of
from pcaq.ca.arns import parse_template_arn
from pcaq.errors import InvalidArn
from pcaq.platform import settings
from pcaq.platform.identity import Caller
from pcaq.platform.partitions import partition_of


@pytest.mark.parametrize(
    "region, partition",
    [
        ("us-gov-west-1", "aws-us-gov"),
        ("us-gov-east-1", "aws-us-gov"),
        ("cn-north-1", "aws-cn"),
        ("cn-northwest-1", "aws-cn"),
        ("eu-west-1", "aws"),
        ("us-east-1", "aws"),
        ("eusc-de-east-1", "aws-eusc"),
        ("us-iso-east-1", "aws-iso"),
        ("us-isob-east-1", "aws-iso-b"),
    ],
)
def test_a_known_region_is_in_its_partition(region, partition):
    assert partition_of(region) == partition


def test_a_region_botocore_does_not_list_yet_goes_by_its_partitions_pattern():
    assert partition_of("us-gov-north-9") == "aws-us-gov"
    assert partition_of("cn-south-7") == "aws-cn"
    assert partition_of("ap-nowhere-9") == "aws"


def test_a_region_no_partition_claims_is_in_aws():
    assert partition_of("zz-unknown-1") == "aws"
    assert partition_of("local") == "aws"


def test_a_caller_is_in_the_partition_of_its_region_unless_one_is_named():
    assert Caller(account="111122223333", region="cn-north-1").partition == "aws-cn"
    assert Caller(account="111122223333", region="us-gov-west-1").partition == "aws-us-gov"
    assert Caller(account="111122223333", region="cn-north-1", partition="aws").partition == "aws"


def test_the_lookup_is_cached():
    partition_of.cache_clear()
    partition_of("cn-north-1")
    partition_of("cn-north-1")
    assert partition_of.cache_info().hits == 1


def _scoped(region: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"AWS4-HMAC-SHA256 Credential=AKID/20260101/{region}/acm-pca/aws4_request"}


def test_an_open_mode_caller_takes_the_partition_of_its_signed_region_or_of_pcaq_region():
    plain = settings.load({})
    assert caller_of(_scoped("us-gov-west-1"), plain).partition == "aws-us-gov"
    assert caller_of({}, settings.load({"PCAQ_REGION": "cn-northwest-1"})).partition == "aws-cn"
    assert caller_of({}, plain).partition == "aws"


def test_pcaq_partition_overrides_the_region():
    forced = settings.load({"PCAQ_PARTITION": "aws"})
    assert caller_of(_scoped("cn-north-1"), forced).partition == "aws"
    assert settings.load({"PCAQ_PARTITION": ""}).partition is None


@pytest.mark.parametrize("bad", ["AWS", "aws:cn", "aws cn", "-aws"])
def test_pcaq_partition_must_be_a_name_an_arn_can_carry(bad):
    with pytest.raises(SystemExit, match="PCAQ_PARTITION"):
        settings.load({"PCAQ_PARTITION": bad})


@pytest.mark.parametrize("partition", ["aws", "aws-cn"])
def test_the_documented_template_arn_and_the_regions_own_form_both_name_the_template(partition):
    assert parse_template_arn(f"arn:{partition}:acm-pca:::template/EndEntityCertificate/V1", "aws-cn") == (
        "EndEntityCertificate"
    )


def test_a_template_arn_of_a_third_partition_is_not_valid():
    with pytest.raises(InvalidArn):
        parse_template_arn("arn:aws-us-gov:acm-pca:::template/EndEntityCertificate/V1", "aws-cn")
