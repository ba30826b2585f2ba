"""IssueCertificate load through boto3 with the SDK's standard retry mode, as a client fleet would run
it during a failover; and a probe that measures how soon after a fault IssueCertificate works again.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

# The SDK's standard retry mode (exponential back-off with jitter, 5xx and broken connections
# retried), with more attempts than its default 3: a failover takes a few seconds, and a client
# that cares about every certificate says so (AWS_MAX_ATTEMPTS).
RETRIES = {"mode": "standard", "max_attempts": 10}


def sdk_client(endpoint_url: str, retries: dict | None = None):
    """A boto3 acm-pca client of a test stack with ``retries`` (default :data:`RETRIES`)."""
    import boto3

    return boto3.client(
        "acm-pca",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        config=Config(retries=retries or RETRIES, connect_timeout=5, read_timeout=30),
    )


def issue_kwargs(ca_arn: str, csr: bytes, token: str) -> dict:
    return {
        "CertificateAuthorityArn": ca_arn,
        "Csr": csr,
        "SigningAlgorithm": "SHA256WITHECDSA",
        "Validity": {"Value": 30, "Type": "DAYS"},
        "IdempotencyToken": token,  # the SDK's retries repeat it: a lost answer makes no second record
    }


@dataclass
class SdkLoad:
    """``len(csrs)`` IssueCertificate calls from ``threads`` boto3 clients, each call with its own
    idempotency token; ``arns`` holds what clients were told, ``failed`` the calls that gave up."""

    endpoint_url: str
    ca_arn: str
    csrs: list[bytes]
    threads: int = 8
    arns: dict[int, str] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    @property
    def answered(self) -> int:
        with self._lock:
            return len(self.arns) + len(self.failed)

    def start(self) -> SdkLoad:
        for n in range(self.threads):
            thread = threading.Thread(target=self._run, args=(n,), name=f"sdk-load-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _run(self, n: int) -> None:
        client = sdk_client(self.endpoint_url)
        for i in range(n, len(self.csrs), self.threads):
            try:
                arn = client.issue_certificate(**issue_kwargs(self.ca_arn, self.csrs[i], f"ha-{i}"))
            except (ClientError, BotoCoreError) as exc:
                with self._lock:
                    self.failed[i] = f"{type(exc).__name__}: {exc}"
                continue
            with self._lock:
                self.arns[i] = arn["CertificateArn"]

    def wait(self, timeout: float = 180.0) -> None:
        end = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, end - time.monotonic()))
            assert not thread.is_alive(), "the SDK load did not finish in time"


def first_success_after(
    endpoint_url: str, ca_arn: str, csr: bytes, since: float, timeout: float = 60.0
) -> tuple[float, str]:
    """Call IssueCertificate once at a time (no SDK retries) until one succeeds: seconds from ``since``
    (a ``time.monotonic()``) to that success, and its ARN."""
    client = sdk_client(endpoint_url, {"mode": "standard", "max_attempts": 1})
    token = f"probe-{since}"  # one token for every attempt: an answer lost in the fault makes no 2nd record
    while time.monotonic() - since < timeout:
        try:
            got = client.issue_certificate(**issue_kwargs(ca_arn, csr, token))
        except (ClientError, BotoCoreError):
            time.sleep(0.02)  # the probe's own pace between single attempts, not a wait for a state
            continue
        return time.monotonic() - since, got["CertificateArn"]
    raise AssertionError(f"no IssueCertificate succeeded within {timeout:.0f} s")
