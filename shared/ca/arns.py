"""ARNs of CAs, certificates and templates (docs/architecture.md, "Decisions")."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from pcaq.errors import InvalidArgument, InvalidArn

_CA_RE = re.compile(
    r"^arn:(?P<partition>[\w-]+):acm-pca:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):"
    r"certificate-authority/(?P<ca_id>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
    r"(?:/certificate/(?P<serial>[0-9a-f]{1,40}))?$"
)
_TEMPLATE_RE = re.compile(
    r"^arn:(?P<partition>[\w-]+):acm-pca:::template/(?P<name>[A-Za-z0-9_]+)/V(?P<version>\d+)$"
)


@dataclass(frozen=True)
class CaArn:
    """A parsed CA ARN."""

    partition: str
    region: str
    account: str
    ca_id: str

    def __str__(self) -> str:
        return f"arn:{self.partition}:acm-pca:{self.region}:{self.account}:certificate-authority/{self.ca_id}"

    def certificate(self, serial_hex: str) -> str:
        """The ARN of the certificate with this serial issued by this CA."""
        return f"{self}/certificate/{serial_hex}"


def new_ca_arn(partition: str, region: str, account: str) -> CaArn:
    """A fresh CA ARN with a random lower-case UUID."""
    return CaArn(partition, region, account, str(uuid.uuid4()))


def parse_ca_arn(arn: str) -> CaArn:
    """Parse a CA ARN; raise InvalidArn if it is not one."""
    m = _CA_RE.match(arn)
    if not m or m.group("serial"):
        raise InvalidArn(f"The ARN {arn!r} is not a valid certificate authority ARN.")
    return CaArn(m.group("partition"), m.group("region"), m.group("account"), m.group("ca_id"))


def parse_certificate_arn(arn: str) -> tuple[CaArn, str]:
    """Parse a certificate ARN into its CA ARN and the serial as lower-case hex."""
    m = _CA_RE.match(arn)
    if not m or not m.group("serial"):
        raise InvalidArn(f"The ARN {arn!r} is not a valid certificate ARN.")
    ca = CaArn(m.group("partition"), m.group("region"), m.group("account"), m.group("ca_id"))
    return ca, m.group("serial")


def parse_template_arn(arn: str, partition: str = "aws") -> str:
    """The template name (without version) of a template ARN, e.g. ``EndEntityCertificate``.

    AWS documents the templates as ``arn:aws:acm-pca:::template/...`` and says they carry the
    partition of the region: both forms are accepted (``partition`` is the caller's), no other.
    """
    m = _TEMPLATE_RE.match(arn)
    if not m or m.group("partition") not in ("aws", partition):
        raise InvalidArn(f"The ARN {arn!r} is not a valid template ARN.")
    if m.group("version") != "1":
        raise InvalidArgument(f"The template {arn!r} does not exist.")
    return m.group("name")
