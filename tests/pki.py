"""Checks on issued certificates shared by unit and integration tests: pkilint and chain verification.

``pkilint_findings`` runs pkilint's RFC 5280 certificate linter exactly as docs/architecture.md names it
(``lint_pkix_cert lint -s WARNING``), asking for JSON output so that the findings parse reliably.
The linter exits with the number of findings (0 when clean) and prints ``{"results": [...]}``; a
document it cannot load gives a non-zero exit and no JSON, which is raised as an error here rather
than mistaken for a finding or for a clean result.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

from cryptography import x509

# Prefer the script installed beside this interpreter: it skips the pyenv shim (about 40 ms a run).
_BESIDE = os.path.join(os.path.dirname(sys.executable), "lint_pkix_cert")
_LINTER = _BESIDE if os.access(_BESIDE, os.X_OK) else shutil.which("lint_pkix_cert") or "lint_pkix_cert"
# id-ml-dsa-44/65/87 (FIPS 204, NIST CSOR)
_ML_DSA_OIDS = frozenset(f"2.16.840.1.101.3.4.3.{n}" for n in (17, 18, 19))


def _write(directory: str, name: str, pem: str) -> str:
    path = os.path.join(directory, name)
    with open(path, "w", encoding="ascii") as handle:
        handle.write(pem)
    return path


def pkilint_findings(cert_pem: str) -> list[str]:
    """pkilint findings of severity WARNING or worse for one PEM certificate; ``[]`` means clean.

    Each finding reads ``SEVERITY code @ node path (validator): message``.
    """
    with tempfile.TemporaryDirectory(prefix="pcaq-pkilint-") as tmp:
        path = _write(tmp, "cert.pem", cert_pem)
        run = subprocess.run(
            [_LINTER, "lint", "-s", "WARNING", "-f", "JSON", path],
            capture_output=True,
            text=True,
            timeout=120,
        )
    try:
        results = json.loads(run.stdout)["results"]
    except (ValueError, KeyError, TypeError):
        raise RuntimeError(
            f"lint_pkix_cert failed (exit {run.returncode}): {run.stdout.strip()} {run.stderr.strip()}"
        ) from None
    findings = [
        f"{d['severity']} {d['code']} @ {r['node_path']} ({r['validator']})"
        + (f": {d['message']}" if d.get("message") else "")
        for r in results
        for d in r["finding_descriptions"]
    ]
    if (run.returncode == 0) != (not findings):
        raise RuntimeError(f"lint_pkix_cert exit {run.returncode} disagrees with its output: {run.stdout}")
    return findings


def pkilint_findings_many(cert_pems: list[str]) -> list[list[str]]:
    """:func:`pkilint_findings` for several certificates, linted in parallel processes."""
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        return list(pool.map(pkilint_findings, cert_pems))


def openssl_verify(leaf_pem: str, chain_pems: list[str], root_pem: str) -> None:
    """Assert that ``openssl verify`` builds and accepts leaf -> chain -> root.

    OpenSSL 3.0 cannot verify ML-DSA signatures; for an ML-DSA chain each link is checked with
    ``cryptography``'s ``verify_directly_issued_by`` instead (signature, issuer name, CA flag are
    what that checks; validity periods are compared here).
    """
    certs = [x509.load_pem_x509_certificate(p.encode()) for p in [leaf_pem, *chain_pems, root_pem]]
    if any(c.signature_algorithm_oid.dotted_string in _ML_DSA_OIDS for c in certs):
        for child, parent in zip(certs, certs[1:], strict=False):
            child.verify_directly_issued_by(parent)
            assert parent.not_valid_before_utc <= child.not_valid_before_utc, "child starts before its issuer"
            assert child.not_valid_after_utc <= parent.not_valid_after_utc, "child outlives its issuer"
        root = certs[-1]
        root.verify_directly_issued_by(root)
        return
    with tempfile.TemporaryDirectory(prefix="pcaq-verify-") as tmp:
        root_path = _write(tmp, "root.pem", root_pem)
        leaf_path = _write(tmp, "leaf.pem", leaf_pem)
        cmd = ["openssl", "verify", "-x509_strict", "-CAfile", root_path]
        if chain_pems:
            cmd += ["-untrusted", _write(tmp, "chain.pem", "".join(chain_pems))]
        run = subprocess.run([*cmd, leaf_path], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.strip().endswith(": OK"), (
        f"openssl verify failed: {run.stdout.strip()} {run.stderr.strip()}"
    )


# -- CRLs and OCSP answers --------------------------------------------------------------------------

_BESIDE_CRL = os.path.join(os.path.dirname(sys.executable), "lint_crl")
LINT_CRL = _BESIDE_CRL if os.access(_BESIDE_CRL, os.X_OK) else "lint_crl"
_BESIDE_OCSP = os.path.join(os.path.dirname(sys.executable), "lint_ocsp_response")
LINT_OCSP = _BESIDE_OCSP if os.access(_BESIDE_OCSP, os.X_OK) else "lint_ocsp_response"


def lint_crl(der: bytes) -> list[str]:
    """pkilint's RFC 5280 CRL findings of severity WARNING or worse (``[]``: clean)."""
    with tempfile.NamedTemporaryFile(suffix=".crl") as f:
        f.write(der)
        f.flush()
        run = subprocess.run(
            [LINT_CRL, "lint", "-t", "CRL", "-p", "PKIX", "-s", "WARNING", "-f", "JSON", f.name],
            capture_output=True,
            text=True,
            timeout=60,
        )
    results = json.loads(run.stdout)["results"]
    return [f"{d['code']} @ {r['node_path']}" for r in results for d in r["finding_descriptions"]]


def openssl_crl_verifies(der: bytes, ca_pem: bytes) -> bool:
    """``openssl crl -inform DER -CAfile`` checks the CRL's signature against the CA certificate."""
    with tempfile.TemporaryDirectory() as tmp:
        crl_path, ca_path = os.path.join(tmp, "c.crl"), os.path.join(tmp, "ca.pem")
        with open(crl_path, "wb") as f:
            f.write(der)
        with open(ca_path, "wb") as f:
            f.write(ca_pem)
        run = subprocess.run(
            ["openssl", "crl", "-inform", "DER", "-in", crl_path, "-CAfile", ca_path, "-noout"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    return run.returncode == 0 and "verify OK" in (run.stdout + run.stderr)


def lint_ocsp(der: bytes) -> list[str]:
    """pkilint's OCSP response findings of severity WARNING or worse (``[]``: clean)."""
    with tempfile.NamedTemporaryFile(suffix=".der") as f:
        f.write(der)
        f.flush()
        run = subprocess.run(
            [LINT_OCSP, "lint", "-s", "WARNING", "-f", "JSON", f.name],
            capture_output=True,
            text=True,
            timeout=60,
        )
    results = json.loads(run.stdout)["results"]
    return [f"{d['code']} @ {r['node_path']}" for r in results for d in r["finding_descriptions"]]
