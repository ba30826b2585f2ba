"""Stand-ins for ``pcaq bulk-issue``'s unit tests: a botocore-like client and parsed arguments."""

from __future__ import annotations

import argparse
import threading

from botocore.exceptions import ClientError

CA = "arn:aws:acm-pca:us-east-1:111122223333:certificate-authority/0b5c3a1e-1111-4222-8333-444455556666"


class FakeClient:
    """A botocore-like client: each certificate is in progress at its first poll; ``fail`` are refused."""

    def __init__(self, fail: set[str] = frozenset()):
        self.calls: list[tuple[str, str]] = []
        self.polled: set[str] = set()
        self.fail = fail
        self.lock = threading.Lock()

    def issue_certificate(self, **request) -> dict:
        name = request["Csr"].decode()
        with self.lock:
            self.calls.append(("issue", name))
        if name in self.fail:
            error = {"Error": {"Code": "MalformedCSRException", "Message": "no"}}
            raise ClientError(error, "IssueCertificate")
        return {"CertificateArn": f"{CA}/certificate/{name}"}

    def get_certificate(self, CertificateAuthorityArn: str, CertificateArn: str) -> dict:  # noqa: N803
        name = CertificateArn.rsplit("/", 1)[1]
        with self.lock:
            first = name not in self.polled
            self.polled.add(name)
            self.calls.append(("get", name))
        if first:
            error = {"Error": {"Code": "RequestInProgressException", "Message": "later"}}
            raise ClientError(error, "GetCertificate")
        return {"Certificate": f"cert {name}\n", "CertificateChain": "chain\n"}


def args_for(tmp_path, jsonl, concurrency: int) -> argparse.Namespace:
    """``pcaq bulk-issue``'s parsed arguments for a JSON-lines input."""
    return argparse.Namespace(
        csr_dir=None,
        jsonl=jsonl,
        out=tmp_path / "out",
        endpoint_url="http://127.0.0.1:1",
        region="us-east-1",
        signing_algorithm="SHA256WITHECDSA",
        validity_days=30,
        template_arn=None,
        concurrency=concurrency,
        processes=1,
        retry_failed=False,
        quiet=True,
        ca=CA,
    )
