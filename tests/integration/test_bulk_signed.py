"""`pcaq bulk-issue` against a pcaq that checks SigV4 (credentials configured, not the open mode): its
lean client's signatures are accepted, and a refused one is reported with the service's error type."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.acmpca import CLIENT_ENV, activate_root, make_csr, pca_client
from tests.support import running_stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def signed_stack(tmp_path_factory, redis_base_url):
    """``pcaq up`` that knows one access key (CLIENT_ENV's) and refuses unsigned calls."""
    env = {"PCAQ_CREDENTIALS": "AKIDEXAMPLE:secret:111122223333"}
    folder = tmp_path_factory.mktemp("signed")
    with running_stack(folder, env=env, redis_base_url=redis_base_url, workers=1) as s:
        yield s


def bulk(stack, ca_arn: str, csr_dir, out, **aws_env: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | CLIENT_ENV | aws_env
    command = [sys.executable, "-m", "pcaq.cli", "bulk-issue", "--ca", ca_arn, "--quiet"]
    command += ["--endpoint-url", stack.endpoint_url, "--csr-dir", str(csr_dir), "--out", str(out)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def test_signed_requests_are_accepted_and_a_bad_secret_is_reported(signed_stack, tmp_path):
    pca = pca_client(signed_stack.endpoint_url)
    ca_arn, _ = activate_root(pca)
    csrs = tmp_path / "csrs"
    csrs.mkdir()
    for i in range(20):
        (csrs / f"d{i:02d}.csr").write_bytes(make_csr(cn=f"d{i}.example.com", sans=(f"d{i}.example.com",)))

    refused = bulk(signed_stack, ca_arn, csrs, tmp_path / "refused", AWS_SECRET_ACCESS_KEY="not-the-secret")
    assert refused.returncode == 1, (refused.stdout, refused.stderr)
    assert "issued 0, failed 20" in refused.stdout
    assert "failed d00: InvalidSignatureException: The request signature we calculated" in refused.stdout

    done = bulk(signed_stack, ca_arn, csrs, tmp_path / "out")
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "issued 20, failed 0, skipped 0" in done.stdout
    assert all((tmp_path / "out" / f"d{i:02d}.pem").exists() for i in range(20))
