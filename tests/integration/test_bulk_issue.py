"""`pcaq bulk-issue`: 300 CSRs issued, interrupted half way and resumed; none issued twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pcaq.records import keys
from tests.acmpca import CLIENT_ENV, activate_root
from tests.support import wait_until
from tests.tls_proxy import TlsProxy

pytestmark = pytest.mark.integration


def write_csrs(folder, count: int) -> dict[str, bytes]:
    folder.mkdir()
    keys = {}
    for i in range(count):
        key = ec.generate_private_key(ec.SECP256R1())
        name = f"device-{i:03d}"
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name}.example.com")]))
            .sign(key, hashes.SHA256())
        )
        (folder / f"{name}.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
        keys[name] = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    return keys


def bulk(stack, ca_arn, *args: str, endpoint_url: str | None = None, **env_extra: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | CLIENT_ENV | env_extra
    cmd = [
        sys.executable,
        "-m",
        "pcaq.cli",
        "bulk-issue",
        "--ca",
        ca_arn,
        "--endpoint-url",
        endpoint_url or stack.endpoint_url,
    ]
    return subprocess.Popen(
        [*cmd, "--quiet", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        process_group=0,  # the tool and its --processes children: frozen together by interrupt()
    )


def interrupt(proc: subprocess.Popen) -> tuple[str, str]:
    """Ctrl-C now: the tool (and its children) frozen first, so that it does no more work between the
    check that called for the interrupt and the signal. Only the parent gets the signal, and it passes
    it on (a terminal's Ctrl-C would reach them all). Its output, once it has stopped."""
    os.killpg(proc.pid, signal.SIGSTOP)
    proc.send_signal(signal.SIGINT)
    os.killpg(proc.pid, signal.SIGCONT)
    return proc.communicate(timeout=60)


def until_written(count, at_least: int, proc: subprocess.Popen) -> None:
    """Wait until ``count()`` reaches ``at_least`` (checked often: the tool writes thousands a second)."""
    wait_until(
        lambda: count() >= at_least or proc.poll() is not None, 120, interval=0.002, what="certificates"
    )


@pytest.fixture(scope="module")
def root(pca):
    return activate_root(pca)


def certificates(out) -> set[str]:
    """The certificate files written so far (not the chains)."""
    return {p.name for p in out.glob("*.pem") if not p.name.endswith(".chain.pem") and p.name[0] != "."}


def interrupted_once(stack, ca_arn: str, csr_dir, out, at_least: int, *options: str) -> set[str]:
    """Runs the tool until ``at_least`` certificates are written, then Ctrl-C: the certificates written."""
    first = bulk(stack, ca_arn, "--csr-dir", str(csr_dir), "--out", str(out), *options)
    until_written(lambda: len(certificates(out)), at_least, first)
    stdout, stderr = interrupt(first)
    assert first.returncode == 130, (stdout, stderr)  # stopped part way, and says so
    assert "interrupted" in stdout
    return certificates(out)


def resumed(stack, ca_arn: str, csr_dir, out, *options: str) -> tuple[int, int]:
    """Runs the tool again to the end: (issued, skipped) from its summary, with nothing failed."""
    second = bulk(stack, ca_arn, "--csr-dir", str(csr_dir), "--out", str(out), *options)
    stdout, stderr = second.communicate(timeout=300)
    assert second.returncode == 0, (stdout, stderr)
    issued, failed, skipped = (
        int(stdout.split(word)[1].split(",")[0].split()[0]) for word in ("issued", "failed", "skipped")
    )
    assert failed == 0, stdout
    return issued, skipped


def assert_each_issued_once(stack, ca_arn: str, root_pem: str, out, public_keys: dict[str, bytes]) -> None:
    """Every CSR has its certificate (its key, signed by the root) and chain; one record each in Redis."""
    root_cert = x509.load_pem_x509_certificate(root_pem.encode())
    serials = set()
    for name, spki in public_keys.items():
        cert = x509.load_pem_x509_certificate((out / f"{name}.pem").read_bytes())
        cert.verify_directly_issued_by(root_cert)
        assert (
            cert.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            == spki
        )
        chain = x509.load_pem_x509_certificates((out / f"{name}.chain.pem").read_bytes())
        assert chain == [root_cert]
        serials.add(cert.serial_number)
    assert len(serials) == len(public_keys)

    # Exactly one record per CSR in Redis (plus the root's own certificate): nothing issued twice.
    ca_id = ca_arn.rsplit("/", 1)[1]
    client = redis.Redis.from_url(stack.redis_url)
    records = list(client.scan_iter(keys.certificate_pattern(ca_id), count=1000))
    assert len(records) == len(public_keys) + 1


def test_interrupt_and_resume_never_issues_twice(stack, root, tmp_path):
    ca_arn, root_pem = root
    public_keys = write_csrs(tmp_path / "csrs", 300)
    out = tmp_path / "out"
    done_first = interrupted_once(stack, ca_arn, tmp_path / "csrs", out, 100, "--concurrency", "4")
    assert 100 <= len(done_first) < 300

    issued, skipped = resumed(stack, ca_arn, tmp_path / "csrs", out)
    assert skipped == len(done_first) and issued + skipped == 300
    assert_each_issued_once(stack, ca_arn, root_pem, out, public_keys)


def test_several_processes_share_the_csrs_and_resume(stack, pca, tmp_path):
    ca_arn, root_pem = activate_root(pca)  # a CA of its own: its records are counted alone
    public_keys = write_csrs(tmp_path / "csrs", 400)
    out = tmp_path / "out"
    # Ctrl-C reaches only the parent here (a terminal's would reach them all): it passes it on.
    options = ("--processes", "3", "--concurrency", "2")
    done_first = interrupted_once(stack, ca_arn, tmp_path / "csrs", out, 50, *options)
    assert 50 <= len(done_first) < 400

    issued, skipped = resumed(stack, ca_arn, tmp_path / "csrs", out, "--processes", "2")
    assert skipped == len(done_first) and issued + skipped == 400
    assert_each_issued_once(stack, ca_arn, root_pem, out, public_keys)


def test_failures_are_reported_and_jsonl_input(stack, root, tmp_path):
    ca_arn, _ = root
    key = ec.generate_private_key(ec.SECP256R1())
    good = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "good.example.com")]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )
    lines = [
        {"name": "good", "csr": good},
        {"name": "bad", "csr": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"},
    ]
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text("\n".join(json.dumps(line) for line in lines))
    out = tmp_path / "out"
    proc = bulk(stack, ca_arn, "--jsonl", str(jsonl), "--out", str(out))
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, (stdout, stderr)
    assert "issued 1, failed 1, skipped 0" in stdout
    assert "failed bad: MalformedCSRException" in stdout
    assert (out / "good.pem").exists() and (out / "bad.error").exists()
    # A re-run skips both (the failure is not retried unless asked).
    again = bulk(stack, ca_arn, "--jsonl", str(jsonl), "--out", str(out))
    stdout, _ = again.communicate(timeout=120)
    assert again.returncode == 0 and "issued 0, failed 0, skipped 2" in stdout


def test_an_https_endpoint_is_trusted_through_the_ca_bundle_and_only_then(stack, pca, tmp_path):
    """pcaq behind a load balancer with a private certificate: refused until its CA is given (the run
    stops, nothing marked failed), then issued through it with AWS_CA_BUNDLE as the AWS CLI reads it,
    and with --ca-bundle."""
    ca_arn, root_pem = activate_root(pca)
    public_keys = write_csrs(tmp_path / "csrs", 40)
    out = tmp_path / "out"
    with TlsProxy(stack.endpoint_url, tmp_path / "tls") as proxy:
        untrusted = bulk(
            stack, ca_arn, "--csr-dir", str(tmp_path / "csrs"), "--out", str(out), endpoint_url=proxy.url
        )
        stdout, stderr = untrusted.communicate(timeout=120)
        assert untrusted.returncode != 0, (stdout, stderr)
        assert "is not trusted" in stderr and "--ca-bundle or AWS_CA_BUNDLE" in stderr, stderr
        assert not list(out.glob("*.error")) and not certificates(out)

        names = sorted(public_keys)
        half = tmp_path / "half"
        half.mkdir()
        for name in names[:20]:
            (tmp_path / "csrs" / f"{name}.csr").rename(half / f"{name}.csr")
        first = bulk(
            stack, ca_arn, "--csr-dir", str(half), "--out", str(out),
            endpoint_url=proxy.url, AWS_CA_BUNDLE=str(proxy.ca_file),
        )  # fmt: skip
        stdout, stderr = first.communicate(timeout=120)
        assert first.returncode == 0 and "issued 20, failed 0" in stdout, (stdout, stderr)
        for name in names[:20]:
            (half / f"{name}.csr").rename(tmp_path / "csrs" / f"{name}.csr")
        second = bulk(
            stack, ca_arn, "--csr-dir", str(tmp_path / "csrs"), "--out", str(out),
            "--ca-bundle", str(proxy.ca_file), endpoint_url=proxy.url,
        )  # fmt: skip
        stdout, stderr = second.communicate(timeout=120)
        assert second.returncode == 0 and "issued 20, failed 0, skipped 20" in stdout, (stdout, stderr)
        assert proxy.handshakes >= 2
    assert_each_issued_once(stack, ca_arn, root_pem, out, public_keys)


def test_jsonl_output_from_several_processes_resumes_and_issues_each_once(stack, pca, tmp_path):
    ca_arn, root_pem = activate_root(pca)
    public_keys = write_csrs(tmp_path / "csrs", 200)
    out = tmp_path / "out"
    lines = out / "certificates.jsonl"

    def written() -> int:
        return lines.read_bytes().count(b"\n") if lines.exists() else 0

    options = ("--csr-dir", str(tmp_path / "csrs"), "--out", str(out), "--output-format", "jsonl")
    first = bulk(stack, ca_arn, *options, "--processes", "2", "--concurrency", "2")
    until_written(written, 40, first)
    stdout, stderr = interrupt(first)
    assert first.returncode == 130, (stdout, stderr)
    done_first = written()
    assert 40 <= done_first < 200

    issued, skipped = resumed(
        stack, ca_arn, tmp_path / "csrs", out, "--output-format", "jsonl", "--processes", "2"
    )
    assert skipped == done_first and issued + skipped == 200
    root_cert = x509.load_pem_x509_certificate(root_pem.encode())
    by_name = {}
    for text in lines.read_text().splitlines():
        line = json.loads(text)
        assert line["name"] not in by_name, line["name"]  # one line a certificate
        by_name[line["name"]] = line
    assert set(by_name) == set(public_keys) and not list(out.glob("*.pem"))
    serials = set()
    for name, line in by_name.items():
        cert = x509.load_pem_x509_certificate(line["certificate"].encode())
        cert.verify_directly_issued_by(root_cert)
        assert line["arn"] == f"{ca_arn}/certificate/{cert.serial_number:x}"
        spki = cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        assert spki == public_keys[name]
        assert x509.load_pem_x509_certificates(line["chain"].encode()) == [root_cert]
        serials.add(cert.serial_number)
    assert len(serials) == 200
    ca_id = ca_arn.rsplit("/", 1)[1]
    assert (
        len(
            list(redis.Redis.from_url(stack.redis_url).scan_iter(keys.certificate_pattern(ca_id), count=1000))
        )
        == 201
    )
