"""Security end to end, with real boto3 and the real AWS CLI against ``pcaq up`` with credentials:
SigV4 errors as AWS names them (unknown key, wrong secret, skewed clock, no signature), tenancy between
accounts, throttling that the SDKs back off on, weak and blocklisted keys refused at signing, request
size limits, and the audit trail printed by ``pcaq audit``."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from unittest import mock

import boto3
import botocore.auth
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError, WaiterError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pcaq.pki.key_checks import spki_fingerprint
from tests.acmpca import WAIT, activate_root, create_ca, error_code, issue, make_csr
from tests.support import REPO, pcaq_argv, running_stack
from tests.weak_keys import fermat_key, roca_key

pytestmark = pytest.mark.integration

ACCOUNT_A, ACCOUNT_B, ACCOUNT_T = "111111111111", "222222222222", "333333333333"
KEYS = {
    "AKIDEXAMPLE": ("secret", ACCOUNT_A),  # the conftest's pca and aws fixtures use this one
    "AKIDSAME": ("same-secret", ACCOUNT_A),
    "AKIDOTHER": ("other-secret", ACCOUNT_B),
    "AKIDTHROTTLE": ("throttle-secret", ACCOUNT_T),
}
MAX_BODY = 200_000
NO_RETRY = Config(retries={"max_attempts": 1, "mode": "standard"})
# What a default client does, for calls that are not about throttling: ListCertificateAuthorities is
# limited to 20/s with a burst of 1 per key here, and a key may have just used its token.
RETRY = Config(retries={"mode": "standard"})
# The AWS CLI with its clock moved by argv[1] minutes (the CLI imports its own copy of botocore).
SKEWED_CLI = (
    "import sys, datetime, awscli, botocore.auth as a; real = a.get_current_datetime; "
    "skew = datetime.timedelta(minutes=float(sys.argv.pop(1))); "
    "a.get_current_datetime = lambda *x, **k: real(*x, **k) + skew; "
    "from awscli.clidriver import main; sys.exit(main())"
)


@pytest.fixture(scope="module")
def blocked_key():
    """A key listed in PCAQ_KEY_BLOCKLIST_FILE when the stack starts."""
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def stack(tmp_path_factory, redis_base_url, blocked_key):
    """``pcaq up`` with four access keys in three accounts, rate limits and a key blocklist file."""
    folder = tmp_path_factory.mktemp("secure")
    blocklist = folder / "blocklist.txt"
    blocklist.write_text(f"# compromised in the test\n{spki_fingerprint(blocked_key.public_key())}\n")
    creds = folder / "credentials"
    creds.write_text("AKIDTHROTTLE:throttle-secret:333333333333\n")
    env = {
        "PCAQ_CREDENTIALS": ",".join(f"{k}:{s}:{a}" for k, (s, a) in KEYS.items() if k != "AKIDTHROTTLE"),
        "PCAQ_CREDENTIALS_FILE": str(creds),
        "PCAQ_RATE_LIMITS": "ListTags=0.01/1,ListCertificateAuthorities=20/1",
        "PCAQ_KEY_BLOCKLIST_FILE": str(blocklist),
        "PCAQ_MAX_BODY_BYTES": str(MAX_BODY),
    }
    with running_stack(folder, env=env, redis_base_url=redis_base_url, workers=2) as s:
        yield s


def client(stack, key="AKIDEXAMPLE", secret=None, config=NO_RETRY, region="us-east-1"):
    return boto3.client(
        "acm-pca",
        endpoint_url=stack.endpoint_url,
        region_name=region,
        aws_access_key_id=key,
        aws_secret_access_key=secret if secret is not None else KEYS.get(key, ("x",))[0],
        config=config,
    )


def cli(stack, *args, key="AKIDEXAMPLE", secret=None, skew_minutes=None) -> subprocess.CompletedProcess:
    """The real AWS CLI v1 with the given keys (and optionally a skewed clock)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=key,
        AWS_SECRET_ACCESS_KEY=secret if secret is not None else KEYS.get(key, ("x",))[0],
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE="/dev/null",
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
    )
    if skew_minutes is None:
        head = [sys.executable, "-m", "awscli"]
    else:
        head = [sys.executable, "-c", SKEWED_CLI, str(skew_minutes)]
    cmd = [*head, "acm-pca", *args, "--endpoint-url", stack.endpoint_url]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


def pcaq(stack, *args) -> subprocess.CompletedProcess:
    """The ``pcaq`` command against the stack's Redis."""
    env = {**stack.env, "REDIS_URL": stack.redis_url}
    return subprocess.run(pcaq_argv(*args), env=env, cwd=REPO, capture_output=True, text=True, timeout=60)


def refused(call, code: str, status: int = 403) -> ClientError:
    with pytest.raises(ClientError) as caught:
        call()
    assert error_code(caught) == code, caught.value.response
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    return caught.value


def cli_refused(proc: subprocess.CompletedProcess, code: str) -> None:
    assert proc.returncode == 255, proc.stdout + proc.stderr
    assert f"An error occurred ({code})" in proc.stderr, proc.stderr


def skewed(minutes: float):
    """boto3's clock moved by ``minutes`` (as on a client machine whose clock is wrong)."""
    real = botocore.auth.get_current_datetime
    return mock.patch.object(
        botocore.auth, "get_current_datetime", lambda *a, **k: real(*a, **k) + dt.timedelta(minutes=minutes)
    )


# -- SigV4 ---------------------------------------------------------------------------------------


def test_the_right_keys_work(stack, aws):
    assert "CertificateAuthorities" in client(stack, "AKIDSAME", config=RETRY).list_certificate_authorities()
    assert "CertificateAuthorities" in aws.json("list-certificate-authorities")
    assert stack.log().count("OPEN DEVELOPMENT MODE") == 0


def test_an_unknown_access_key(stack):
    error = refused(
        client(stack, "AKIDUNKNOWN", "secret").list_certificate_authorities, "UnrecognizedClientException"
    )
    assert "security token included in the request is invalid" in str(error)
    cli_refused(cli(stack, "list-certificate-authorities", key="AKIDUNKNOWN"), "UnrecognizedClientException")


def test_a_wrong_secret(stack):
    error = refused(
        client(stack, secret="not-the-secret").list_certificate_authorities, "InvalidSignatureException"
    )
    assert "does not match the signature you provided" in str(error)
    cli_refused(
        cli(stack, "list-certificate-authorities", secret="not-the-secret"), "InvalidSignatureException"
    )


@pytest.mark.parametrize("minutes, words", [(-10, "Signature expired"), (10, "Signature not yet current")])
def test_a_skewed_clock(stack, minutes, words):
    with skewed(minutes):
        error = refused(client(stack).list_certificate_authorities, "InvalidSignatureException")
    assert words in str(error)
    proc = cli(stack, "list-certificate-authorities", skew_minutes=minutes)
    cli_refused(proc, "InvalidSignatureException")
    assert words in proc.stderr


def test_a_clock_a_little_off_is_fine(stack):
    with skewed(-4):
        client(stack, config=RETRY).list_certificate_authorities()
    assert cli(stack, "list-certificate-authorities", skew_minutes=4).returncode == 0


def test_no_authorization_header(stack):
    unsigned = client(stack, config=Config(signature_version=UNSIGNED, retries={"max_attempts": 1}))
    error = refused(unsigned.list_certificate_authorities, "MissingAuthenticationTokenException")
    assert "Missing Authentication Token" in str(error)
    cli_refused(
        cli(stack, "list-certificate-authorities", "--no-sign-request"), "MissingAuthenticationTokenException"
    )
    request = urllib.request.Request(
        stack.endpoint_url + "/",
        data=b"{}",
        headers={
            "X-Amz-Target": "ACMPrivateCA.ListCertificateAuthorities",
            "Content-Type": "application/x-amz-json-1.1",
        },
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == 403
    assert json.loads(caught.value.read())["__type"] == "MissingAuthenticationTokenException"


def test_a_signature_for_another_service_or_a_replayed_body(stack):
    other = boto3.client(
        "acm",
        endpoint_url=stack.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        config=NO_RETRY,
    )
    refused(other.list_certificates, "InvalidSignatureException")


# -- tenancy ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tenant_a(stack):
    """Account A's ACTIVE root and one certificate it issued."""
    pca = client(stack)
    arn, _ = activate_root(pca)
    cert_arn = issue(pca, arn, make_csr())
    pca.get_waiter("certificate_issued").wait(
        CertificateAuthorityArn=arn, CertificateArn=cert_arn, WaiterConfig=WAIT
    )
    return arn, cert_arn


def test_arns_carry_the_callers_account(stack, tenant_a):
    arn, _ = tenant_a
    assert f":{ACCOUNT_A}:certificate-authority/" in arn
    other_arn = create_ca(client(stack, "AKIDOTHER"), wait=False)
    assert f":{ACCOUNT_B}:certificate-authority/" in other_arn


def test_the_same_account_sees_its_cas_through_any_of_its_keys(stack, tenant_a):
    arn, cert_arn = tenant_a
    same = client(stack, "AKIDSAME")
    assert (
        same.describe_certificate_authority(CertificateAuthorityArn=arn)["CertificateAuthority"]["Arn"] == arn
    )
    assert same.get_certificate(CertificateAuthorityArn=arn, CertificateArn=cert_arn)["Certificate"]


def test_another_account_can_neither_see_nor_use_a_ca(stack, tenant_a):
    arn, cert_arn = tenant_a
    b = client(stack, "AKIDOTHER")
    ca = {"CertificateAuthorityArn": arn}
    calls = {
        "describe": lambda: b.describe_certificate_authority(**ca),
        "csr": lambda: b.get_certificate_authority_csr(**ca),
        "ca certificate": lambda: b.get_certificate_authority_certificate(**ca),
        "certificate": lambda: b.get_certificate(**ca, CertificateArn=cert_arn),
        "issue": lambda: b.issue_certificate(
            **ca, Csr=make_csr(), SigningAlgorithm="SHA256WITHECDSA", Validity={"Value": 1, "Type": "DAYS"}
        ),
        "tag": lambda: b.tag_certificate_authority(**ca, Tags=[{"Key": "owned", "Value": "by-b"}]),
        "untag": lambda: b.untag_certificate_authority(**ca, Tags=[{"Key": "owned"}]),
        "list tags": lambda: b.list_tags(**ca),
        "update": lambda: b.update_certificate_authority(**ca, Status="DISABLED"),
        "delete": lambda: b.delete_certificate_authority(**ca),
        "restore": lambda: b.restore_certificate_authority(**ca),
    }
    for name, call in calls.items():
        with pytest.raises(ClientError) as caught:
            call()
        assert error_code(caught) == "ResourceNotFoundException", name
    listed = [c["Arn"] for c in b.list_certificate_authorities()["CertificateAuthorities"]]
    assert arn not in listed
    # The CA's id under B's own account is no way in either.
    forged = arn.replace(ACCOUNT_A, ACCOUNT_B)
    refused(
        lambda: b.describe_certificate_authority(CertificateAuthorityArn=forged),
        "ResourceNotFoundException",
        400,
    )
    proc = cli(stack, "describe-certificate-authority", "--certificate-authority-arn", arn, key="AKIDOTHER")
    cli_refused(proc, "ResourceNotFoundException")
    proc = cli(
        stack,
        "get-certificate",
        "--certificate-authority-arn",
        arn,
        "--certificate-arn",
        cert_arn,
        key="AKIDOTHER",
    )
    cli_refused(proc, "ResourceNotFoundException")
    # Nothing B tried changed A's CA.
    a_view = client(stack).describe_certificate_authority(**ca)["CertificateAuthority"]
    assert a_view["Status"] == "ACTIVE"
    assert client(stack).list_tags(**ca)["Tags"] == []


# -- throttling ---------------------------------------------------------------------------------


def test_throttled_calls_get_throttling_exception(stack):
    nowhere = (
        f"arn:aws:acm-pca:us-east-1:{ACCOUNT_T}:certificate-authority/00000000-0000-4000-8000-000000000000"
    )
    quick = client(stack, "AKIDTHROTTLE")
    refused(lambda: quick.list_tags(CertificateAuthorityArn=nowhere), "ResourceNotFoundException", 400)
    error = refused(lambda: quick.list_tags(CertificateAuthorityArn=nowhere), "ThrottlingException", 400)
    # The default client backs off and retries it (ThrottlingException is a retryable code).
    patient = client(stack, "AKIDTHROTTLE", config=Config(retries={"mode": "standard"}))
    error = refused(lambda: patient.list_tags(CertificateAuthorityArn=nowhere), "ThrottlingException", 400)
    assert error.response["ResponseMetadata"]["MaxAttemptsReached"]
    assert error.response["ResponseMetadata"]["RetryAttempts"] >= 2, error.response["ResponseMetadata"]
    # Other keys have buckets of their own.
    refused(
        lambda: client(stack, "AKIDSAME").list_tags(CertificateAuthorityArn=nowhere),
        "ResourceNotFoundException",
        400,
    )


def test_a_default_client_gets_through_a_rate_limit(stack):
    patient = client(stack, "AKIDTHROTTLE", config=Config(retries={"mode": "standard"}))
    answers = [patient.list_certificate_authorities() for _ in range(6)]  # 20/s, burst 1
    assert all("CertificateAuthorities" in a for a in answers)
    assert sum(a["ResponseMetadata"]["RetryAttempts"] for a in answers) >= 1


# -- key checks ------------------------------------------------------------------------------------


def refused_at_signing(pca, arn, cert_arn) -> str:
    with pytest.raises(WaiterError):
        pca.get_waiter("certificate_issued").wait(
            CertificateAuthorityArn=arn, CertificateArn=cert_arn, WaiterConfig=WAIT
        )
    with pytest.raises(pca.exceptions.RequestFailedException) as caught:
        pca.get_certificate(CertificateAuthorityArn=arn, CertificateArn=cert_arn)
    return caught.value.response["Error"]["Message"]


@pytest.mark.parametrize(
    "make_key, reason", [(fermat_key, "Fermat factorization"), (roca_key, "(ROCA) vulnerability")]
)
def test_weak_keys_are_refused_with_the_reason(stack, tenant_a, make_key, reason):
    pca = client(stack)
    arn, _ = tenant_a
    cert_arn = issue(pca, arn, make_csr(make_key()))
    message = refused_at_signing(pca, arn, cert_arn)
    assert "known to be weak" in message and reason in message


def test_a_key_on_the_blocklist_file_is_refused(stack, tenant_a, blocked_key):
    pca = client(stack)
    arn, _ = tenant_a
    message = refused_at_signing(pca, arn, issue(pca, arn, make_csr(blocked_key)))
    assert "blocklist of compromised keys" in message
    assert spki_fingerprint(blocked_key.public_key()) in message


def test_pcaq_blocklist_add_takes_effect_at_once(stack, tenant_a, tmp_path, aws):
    pca = client(stack)
    arn, _ = tenant_a
    key = ec.generate_private_key(ec.SECP256R1())
    pem = tmp_path / "leaked.pem"
    pem.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    first = issue(pca, arn, make_csr(key))
    pca.get_waiter("certificate_issued").wait(
        CertificateAuthorityArn=arn, CertificateArn=first, WaiterConfig=WAIT
    )
    added = pcaq(stack, "blocklist", "add", str(pem))
    assert added.returncode == 0, added.stderr
    assert spki_fingerprint(key.public_key()) in pcaq(stack, "blocklist", "list").stdout
    csr = tmp_path / "leaked.csr"
    csr.write_bytes(make_csr(key))
    out = aws.json(
        "issue-certificate", "--certificate-authority-arn", arn, "--csr", f"fileb://{csr}",
        "--signing-algorithm", "SHA256WITHECDSA", "--validity", "Value=1,Type=DAYS",
    )  # fmt: skip
    wait = aws(
        "wait",
        "certificate-issued",
        "--certificate-authority-arn",
        arn,
        "--certificate-arn",
        out["CertificateArn"],
        check=False,
    )
    assert wait.returncode == 255
    proc = aws(
        "get-certificate",
        "--certificate-authority-arn",
        arn,
        "--certificate-arn",
        out["CertificateArn"],
        check=False,
    )
    assert "RequestFailedException" in proc.stderr and "blocklist" in proc.stderr


# -- hostile input -----------------------------------------------------------------------------------


def _raw(stack, headers: dict, body: bytes = b"{}", chunked: bool = False) -> tuple[int, bytes]:
    host, port = stack.endpoint_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request(
            "POST", "/", body=iter([body]) if chunked else body, headers=headers, encode_chunked=chunked
        )
        resp = conn.getresponse()
        return resp.status, resp.read()
    except (BrokenPipeError, ConnectionResetError):
        return 0, b""  # the server may close before reading everything; it must not crash
    finally:
        conn.close()


def test_bodies_over_the_limit_are_413_even_chunked(stack):
    target = {
        "X-Amz-Target": "ACMPrivateCA.ListCertificateAuthorities",
        "Content-Type": "application/x-amz-json-1.1",
    }
    big = b"{" + b" " * (MAX_BODY + 10) + b"}"
    status, body = _raw(stack, {**target, "Content-Length": str(len(big))}, big)
    assert status == 413 and json.loads(body)["__type"] == "RequestEntityTooLargeException"
    status, body = _raw(stack, {**target, "Transfer-Encoding": "chunked"}, big, chunked=True)
    assert status in (0, 413), status
    if status:
        assert json.loads(body)["__type"] == "RequestEntityTooLargeException"
    with pytest.raises(ClientError) as caught:
        client(stack).issue_certificate(
            CertificateAuthorityArn=f"arn:aws:acm-pca:us-east-1:{ACCOUNT_A}:certificate-authority/x",
            Csr=b"A" * MAX_BODY,
            SigningAlgorithm="SHA256WITHECDSA",
            Validity={"Value": 1, "Type": "DAYS"},
        )
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert client(stack, config=RETRY).list_certificate_authorities()  # still serving


def test_oversized_headers_are_400_not_a_crash(stack):
    target = {"X-Amz-Target": "ACMPrivateCA.ListCertificateAuthorities"}
    status, _ = _raw(stack, {**target, "X-Big": "a" * 70_000})  # over the server's 64 KiB for headers
    assert status in (0, 431), status  # 0: the server answered 431 and closed while we still sent
    status, _ = _raw(stack, {**target, **{f"X-Many-{i}": "v" for i in range(150)}})
    assert status == 431
    status, _ = _raw(stack, {**target, "Authorization": "AWS4-HMAC-SHA256 " + "x" * 7000})
    assert 400 <= status < 500
    assert client(stack, config=RETRY).list_certificate_authorities()  # still serving


# -- audit trail -------------------------------------------------------------------------------------


def test_pcaq_audit_prints_the_cas_events(stack, tenant_a):
    pca = client(stack)
    arn = create_ca(pca)
    created_request = pca.describe_certificate_authority(CertificateAuthorityArn=arn)  # read: not audited
    assert created_request
    csr = pca.get_certificate_authority_csr(CertificateAuthorityArn=arn)["Csr"]
    response = pca.issue_certificate(
        CertificateAuthorityArn=arn,
        Csr=csr.encode(),
        SigningAlgorithm="SHA256WITHECDSA",
        TemplateArn="arn:aws:acm-pca:::template/RootCACertificate/V1",
        Validity={"Value": 5, "Type": "YEARS"},
    )
    cert_arn, request_id = response["CertificateArn"], response["ResponseMetadata"]["RequestId"]
    pca.get_waiter("certificate_issued").wait(
        CertificateAuthorityArn=arn, CertificateArn=cert_arn, WaiterConfig=WAIT
    )
    pem = pca.get_certificate(CertificateAuthorityArn=arn, CertificateArn=cert_arn)["Certificate"]
    pca.import_certificate_authority_certificate(CertificateAuthorityArn=arn, Certificate=pem.encode())
    client(stack, "AKIDSAME").update_certificate_authority(CertificateAuthorityArn=arn, Status="DISABLED")
    with pytest.raises(ClientError):
        client(stack, "AKIDOTHER").tag_certificate_authority(CertificateAuthorityArn=arn, Tags=[{"Key": "k"}])

    proc = pcaq(stack, "audit", "--ca", arn)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    events = [line.split()[1] for line in lines]
    assert events == [
        "CreateCertificateAuthority",
        "CertificateAuthorityKeyGenerated",
        "IssueCertificate",
        "CertificateIssued",
        "ImportCertificateAuthorityCertificate",
        "UpdateCertificateAuthority",
    ], proc.stdout
    issue_line = lines[2]
    assert "who=AKIDEXAMPLE" in issue_line and f"request={request_id}" in issue_line
    assert f"account={ACCOUNT_A}" in issue_line and f"CertificateArn={cert_arn}" in issue_line
    assert f"CertificateArn={cert_arn}" in lines[3] and "who=pcaq-worker" in lines[3]
    assert "who=AKIDSAME" in lines[5] and "Status=DISABLED" in lines[5]
    assert "AKIDOTHER" not in proc.stdout  # a refused call changes nothing and is not a CA event

    as_json = [
        json.loads(line)
        for line in pcaq(stack, "audit", "--ca", arn, "--json", "--count", "2").stdout.splitlines()
    ]
    assert [e["event"] for e in as_json] == [
        "ImportCertificateAuthorityCertificate",
        "UpdateCertificateAuthority",
    ]
    assert all(e["ca"] == arn and e["when"] > 0 for e in as_json)
    bad = pcaq(stack, "audit", "--ca", "not-an-arn")
    assert bad.returncode == 2 and "not a valid certificate authority ARN" in bad.stderr


def test_weak_key_refusals_are_in_the_audit_trail(stack, tenant_a):
    arn, _ = tenant_a
    pca = client(stack)
    cert_arn = issue(pca, arn, make_csr(fermat_key()))
    refused_at_signing(pca, arn, cert_arn)
    trail = pcaq(stack, "audit", "--ca", arn).stdout
    failed = [line for line in trail.splitlines() if "CertificateRequestFailed" in line and cert_arn in line]
    assert len(failed) == 1 and "Fermat" in failed[0]
