"""The lean client of ``pcaq bulk-issue`` (cli/bulk_wire.py): it signs as botocore signs, sends what
botocore would send, and retries and reports errors as botocore's standard mode does.

The signature is checked twice: equal to botocore's own SigV4 signer on the same request, and
accepted by pcaq's SigV4 verifier (the API's) on the request as it arrived over a socket.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from datetime import UTC, datetime
from unittest import mock

import botocore.auth
import botocore.session
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError, EndpointConnectionError
from botocore.serialize import create_serializer

from pcaq.api.sigv4 import HttpRequest, SigV4Verifier
from pcaq.cli import bulk_issue, bulk_wire
from pcaq.errors import InvalidSignature
from pcaq.platform.credentials import Credential
from tests.bulk_fakes import CA, ScriptedServer, args_for

NOW = datetime(2026, 12, 3, 9, 30, 15, tzinfo=UTC)
ISSUE = {
    "CertificateAuthorityArn": CA,
    "Csr": b"-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n",
    "SigningAlgorithm": "SHA256WITHECDSA",
    "Validity": {"Value": 30, "Type": "DAYS"},
    "IdempotencyToken": "0123456789abcdef0123456789abcdef",
}


@pytest.fixture
def server():
    started: list[ScriptedServer] = []

    def start(*answers) -> ScriptedServer:  # the answers in order, or one dict of them by operation
        one = len(answers) == 1 and isinstance(answers[0], dict)
        started.append(ScriptedServer(answers[0] if one else list(answers)))
        return started[-1]

    yield start
    for s in started:
        s.close()


def lean(url: str, secret: str = "secret", token: str | None = None) -> bulk_wire.LeanClient:
    client = bulk_wire.LeanClient(url, "us-east-1", Credentials("AKIDEXAMPLE", secret, token))
    client.backoff_base = 0.001  # the retries' waits, shortened: what is tested is how many and when
    return client


def botocore_signed(url: str, target: str, body: bytes, token: str | None) -> AWSRequest:
    request = AWSRequest(
        method="POST",
        url=url + "/",
        data=body,
        headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target},
    )
    with mock.patch.object(botocore.auth, "get_current_datetime", lambda *a, **k: NOW.replace(tzinfo=None)):
        SigV4Auth(Credentials("AKIDEXAMPLE", "secret", token), "acm-pca", "us-east-1").add_auth(request)
    return request


@pytest.mark.parametrize("token", [None, "session-token"])
def test_the_signature_is_botocores(token):
    body = b'{"CertificateAuthorityArn":"x"}'
    signer = bulk_wire.Signer(Credentials("AKIDEXAMPLE", "secret", token), "us-east-1", "127.0.0.1:8080")
    ours = dict(signer.headers("ACMPrivateCA.IssueCertificate", body, now=NOW))
    theirs = botocore_signed("http://127.0.0.1:8080", "ACMPrivateCA.IssueCertificate", body, token)
    assert ours["authorization"] == theirs.headers["Authorization"]
    assert ours["x-amz-date"] == theirs.headers["X-Amz-Date"]
    assert ours.get("x-amz-security-token") == theirs.headers.get("X-Amz-Security-Token")
    # The next day's signature (a new signing key) is botocore's too.
    later = NOW.replace(day=4)
    with mock.patch.object(botocore.auth, "get_current_datetime", lambda *a, **k: later.replace(tzinfo=None)):
        again = AWSRequest(method="POST", url="http://127.0.0.1:8080/", data=body, headers=theirs.headers)
        del again.headers["Authorization"], again.headers["X-Amz-Date"]
        SigV4Auth(Credentials("AKIDEXAMPLE", "secret", token), "acm-pca", "us-east-1").add_auth(again)
    assert (
        dict(signer.headers("ACMPrivateCA.IssueCertificate", body, now=later))["authorization"]
        == (again.headers["Authorization"])
    )


def test_what_it_sends_is_what_botocore_sends_and_pcaq_verifies_it(server):
    scripted = server((200, {"CertificateArn": f"{CA}/certificate/abc"}))
    answer = lean(scripted.url).issue_certificate(**ISSUE)
    assert answer == {"CertificateArn": f"{CA}/certificate/abc"}
    ((path, headers, body),) = scripted.received
    # The body and the headers that select the operation are botocore's (its serializer, its model).
    model = botocore.session.get_session().get_service_model("acm-pca").operation_model("IssueCertificate")
    expected = create_serializer("json").serialize_to_request(ISSUE, model)
    assert json.loads(body) == json.loads(expected["body"])
    assert base64.b64decode(json.loads(body)["Csr"]) == ISSUE["Csr"]
    assert headers["x-amz-target"] == expected["headers"]["X-Amz-Target"]
    assert headers["content-type"] == expected["headers"]["Content-Type"]
    # pcaq's own verifier accepts the request as it arrived, and refuses it for another secret.
    arrived = HttpRequest("POST", path, "", headers, body)
    now = lambda: datetime.now(UTC).timestamp()  # noqa: E731
    accepted = SigV4Verifier(
        {"AKIDEXAMPLE": Credential("AKIDEXAMPLE", "secret", "111122223333")}.get, clock=now
    )
    assert accepted.verify(arrived).credential.access_key == "AKIDEXAMPLE"
    other = SigV4Verifier({"AKIDEXAMPLE": Credential("AKIDEXAMPLE", "other", "111122223333")}.get, clock=now)
    with pytest.raises(InvalidSignature):
        other.verify(arrived)


def test_calls_share_one_keep_alive_connection(server):
    scripted = server()
    client = lean(scripted.url)
    for _ in range(5):
        client.get_certificate(CertificateAuthorityArn=CA, CertificateArn=f"{CA}/certificate/a")
    assert len(scripted.received) == 5 and scripted.connections == 1


def test_a_modelled_error_is_a_client_error_with_its_type_and_message_not_retried(server):
    scripted = server((400, {"__type": "com.amazonaws.acmpca#MalformedCSRException", "message": "bad CSR"}))
    with pytest.raises(ClientError) as caught:
        lean(scripted.url).issue_certificate(**ISSUE)
    assert caught.value.response["Error"] == {"Code": "MalformedCSRException", "Message": "bad CSR"}
    assert caught.value.operation_name == "IssueCertificate"
    assert len(scripted.received) == 1


def test_in_progress_is_reported_as_botocore_reports_it(server):
    scripted = server((400, {"__type": "RequestInProgressException", "message": "later"}))
    with pytest.raises(ClientError) as caught:
        lean(scripted.url).get_certificate(CertificateAuthorityArn=CA, CertificateArn=f"{CA}/certificate/a")
    assert caught.value.response["Error"]["Code"] == "RequestInProgressException"
    assert len(scripted.received) == 1  # not retried: the tool's schedule polls again later


def test_throttling_and_5xx_are_retried_then_answered(server):
    throttled = (400, {"__type": "ThrottlingException", "message": "slow down"})
    scripted = server(throttled, (503, {"message": "busy"}), throttled, (200, {"CertificateArn": "arn:x"}))
    assert lean(scripted.url).issue_certificate(**ISSUE) == {"CertificateArn": "arn:x"}
    bodies = {body for _, _, body in scripted.received}
    assert len(scripted.received) == 4 and len(bodies) == 1  # the same request (its token) each time


def test_retries_stop_after_five_attempts(server):
    scripted = server(*[(400, {"__type": "ThrottlingException", "message": "slow down"})] * 6)
    with pytest.raises(ClientError) as caught:
        lean(scripted.url).issue_certificate(**ISSUE)
    assert caught.value.response["Error"]["Code"] == "ThrottlingException"
    assert len(scripted.received) == bulk_wire.MAX_ATTEMPTS == 5


def test_a_dropped_connection_is_reopened_and_the_call_retried(server):
    scripted = server("drop", (200, {"Certificate": "cert", "CertificateChain": "chain"}))
    got = lean(scripted.url).get_certificate(CertificateAuthorityArn=CA, CertificateArn=f"{CA}/certificate/a")
    assert got == {"Certificate": "cert", "CertificateChain": "chain"}
    assert len(scripted.received) == 2 and scripted.connections == 2


def test_a_kept_alive_connection_the_server_closed_is_replaced_at_once_not_counted(server):
    # Each answer is followed by the server hanging up unannounced (an idle timeout racing the next
    # request): the next call finds the connection dead and goes again on a new one, at once.
    scripted = server(*[(200, {"CertificateArn": f"{CA}/certificate/{i}"}, "then close") for i in range(6)])
    client = lean(scripted.url)
    client.backoff_base = 60.0  # a counted retry would wait here for up to a minute
    started = time.monotonic()
    for i in range(6):
        assert client.issue_certificate(**ISSUE)["CertificateArn"] == f"{CA}/certificate/{i}"
    assert time.monotonic() - started < 10
    assert len(scripted.received) == 6  # the requests sent on dead connections never arrived


def test_no_server_is_a_connection_error_after_the_retries(server):
    scripted = server()
    url = scripted.url
    scripted.close()  # nothing listens there any more
    with pytest.raises(EndpointConnectionError):
        lean(url).get_certificate(CertificateAuthorityArn=CA, CertificateArn=f"{CA}/certificate/a")


def test_credentials_region_and_endpoint_come_from_the_usual_places(monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "credentials").write_text(
        "[bulk]\naws_access_key_id = AKIDPROFILE\naws_secret_access_key = s\n"
    )
    (tmp_path / "config").write_text("[profile bulk]\nregion = eu-west-3\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_PROFILE", "bulk")
    monkeypatch.setenv("AWS_ENDPOINT_URL_ACM_PCA", "http://127.0.0.1:9/pca")
    client = bulk_wire.make_lean_client(None, None)
    assert client.signer.credentials.get_frozen_credentials().access_key == "AKIDPROFILE"
    assert client.signer.region == "eu-west-3"
    assert (client.host, client.port, client.path) == ("127.0.0.1", 9, "/pca")
    # Without an endpoint anywhere, the region's AWS endpoint, over TLS.
    monkeypatch.delenv("AWS_ENDPOINT_URL_ACM_PCA")
    aws = bulk_wire.make_lean_client(None, "us-west-2")
    assert (aws.host, aws.port, aws.tls is not None) == ("acm-pca.us-west-2.amazonaws.com", 443, True)


def test_bulk_issue_multiplexes_its_calls_from_one_thread_with_retries(monkeypatch, server, tmp_path):
    arn = f"{CA}/certificate/a"
    scripted = server(
        (400, {"__type": "ThrottlingException", "message": "slow down"}),
        (200, {"CertificateArn": arn}),
        (400, {"__type": "RequestInProgressException", "message": "later"}),
        "drop",
        (200, {"Certificate": "cert a\n", "CertificateChain": "chain\n"}),
        (400, {"__type": "MalformedCSRException", "message": "bad CSR"}),
    )
    client = lean(scripted.url)
    threads = set()
    encode = client.encode
    monkeypatch.setattr(client, "encode", lambda *a: threads.add(threading.current_thread()) or encode(*a))
    monkeypatch.setattr(bulk_issue, "make_client", lambda *a: client)

    def run(name: str, concurrency: int) -> bulk_issue.Summary:
        jsonl = tmp_path / f"{name}.jsonl"
        jsonl.write_text(f'{{"name": "{name}", "csr": "{name}"}}')
        return bulk_issue.run(args_for(tmp_path, jsonl, concurrency))

    summary = run("a", concurrency=4)
    assert summary.issued == 1 and not summary.failed
    assert (tmp_path / "out" / "a.pem").read_text() == "cert a\n"
    assert [json.loads(body).get("CertificateArn") for _, _, body in scripted.received[:5]] == [
        None,
        None,
        arn,
        arn,
        arn,
    ]
    assert threads == {threading.main_thread()}  # no thread per connection: no GIL hand-offs

    summary = run("b", concurrency=1)
    assert summary.failed == {"b": "MalformedCSRException: bad CSR"}
    assert (tmp_path / "out" / "b.error").read_text() == "MalformedCSRException: bad CSR\n"


def test_the_region_is_the_ca_arns_unless_given(monkeypatch, tmp_path):
    (tmp_path / "config").write_text("[default]\nregion = eu-west-3\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    for name in ("AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_ENDPOINT_URL_ACM_PCA"):
        monkeypatch.delenv(name, raising=False)
    ca = "arn:aws-us-gov:acm-pca:us-gov-west-1:123456789012:certificate-authority/" + CA.rsplit("/", 1)[1]
    # A CA is reached in its own region, whatever the profile's default: signed for it, sent to it.
    client = bulk_wire.make_lean_client(None, None, ca)
    assert client.signer.region == "us-gov-west-1"
    assert client.host == "acm-pca.us-gov-west-1.amazonaws.com"
    assert (
        bulk_wire.make_lean_client("http://127.0.0.1:9", "ca-central-1", ca).signer.region == "ca-central-1"
    )
    assert bulk_wire.make_lean_client("http://127.0.0.1:9", None, "not-an-arn").signer.region == "eu-west-3"


def test_a_ca_bundle_that_cannot_be_read_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_CA_BUNDLE", str(tmp_path / "missing.pem"))
    with pytest.raises(SystemExit, match="cannot use the CA bundle .*missing.pem"):
        bulk_wire.make_lean_client("https://127.0.0.1:9", "us-east-1", CA)
    # Plain HTTP reads no bundle.
    assert bulk_wire.make_lean_client("http://127.0.0.1:9", "us-east-1", CA).tls is None


def test_connections_the_server_closes_between_calls_are_reopened(monkeypatch, server, tmp_path):
    names = [f"n{i}" for i in range(6)]
    answers = {"IssueCertificate": [], "GetCertificate": []}
    for name in names:  # every answer followed by the server hanging up, as at an idle timeout
        answers["IssueCertificate"].append(
            (200, {"CertificateArn": f"{CA}/certificate/{name}"}, "then close")
        )
        answers["GetCertificate"].append(
            (200, {"Certificate": f"cert {name}\n", "CertificateChain": "chain\n"}, "then close")
        )
    scripted = server(answers)
    client = lean(scripted.url)
    monkeypatch.setattr(bulk_issue, "make_client", lambda *a: client)
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text("\n".join(json.dumps({"name": name, "csr": name}) for name in names))
    summary = bulk_issue.run(args_for(tmp_path, jsonl, concurrency=3))
    assert summary.issued == 6 and not summary.failed
    assert len(scripted.received) == 12 and scripted.connections >= 12  # a connection a call
    # (the script answers calls in the order they come, so which name gets which text is not fixed)
    written = sorted((tmp_path / "out" / f"{name}.pem").read_text() for name in names)
    assert written == sorted(f"cert {name}\n" for name in names)


def raw_exchange(answer: bytes) -> tuple[bulk_wire.Connection, list[tuple[int, bytes]]]:
    """Read every response in ``answer`` (bytes a server sent) with the lean client's connection."""
    listener = socket.create_server(("127.0.0.1", 0))
    conn = bulk_wire.Connection("127.0.0.1", listener.getsockname()[1], None, 5.0)
    peer, _ = listener.accept()
    listener.close()
    peer.sendall(answer)
    peer.shutdown(socket.SHUT_WR)
    answers = []
    try:
        while not conn.closed:
            answers.append(conn.response())
    except ConnectionError:
        pass  # the server closed the connection after its last answer
    finally:
        conn.close()
        peer.close()
    return conn, answers


def test_responses_are_read_whatever_the_case_of_their_fields_and_however_framed():
    _, answers = raw_exchange(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\nCONTENT-LENGTH: 2\r\n\r\n{}"
        b'HTTP/1.1 400 Bad Request\r\ncontent-length:  13\r\nx-amzn-requestid: 1\r\n\r\n{"__type":1}\n'
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: 1\r\n\r\n"
        b"HTTP/1.1 503 Slow Down\r\nContent-Length: 0\r\nConnection: Close\r\n\r\n"
    )
    assert answers == [(200, b"{}"), (400, b'{"__type":1}\n'), (200, b"abcde"), (503, b"")]


def test_an_http_1_0_answer_closes_the_connection_and_garbage_is_an_error():
    conn, answers = raw_exchange(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx")
    assert answers == [(200, b"x")] and conn.closed
    listener = socket.create_server(("127.0.0.1", 0))
    conn = bulk_wire.Connection("127.0.0.1", listener.getsockname()[1], None, 5.0)
    peer, _ = listener.accept()
    peer.sendall(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
    with pytest.raises(ValueError):
        conn.response()
    conn.close(), peer.close(), listener.close()
