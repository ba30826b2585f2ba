"""The lean ACM PCA client of ``pcaq bulk-issue``: awsJson 1.1 over keep-alive sockets, signed with SigV4.

A profile of the tool on botocore's client showed about half its CPU in botocore's request pipeline
(event hooks, request objects, urllib3 and http.client's header parsing, the signer rebuilding the
signing key each call). This client does only what the two calls the tool makes need, and keeps what
makes it work against AWS Private CA as well as pcaq:

* botocore resolves the credentials (environment, profiles, SSO, instance roles: the usual chain)
  and the endpoint (``--endpoint-url``, ``AWS_ENDPOINT_URL_ACM_PCA``, the region's endpoint) once;
  refreshable credentials are read at each call, so they refresh as botocore's own client would;
* each request is signed with SigV4 over the headers botocore signs for awsJson (content-type, host,
  x-amz-date, x-amz-target and the session token if any), the signing key derived once per day;
* throttling, 5xx answers and broken connections are retried with botocore's "standard" backoff (up
  to 5 attempts; IssueCertificate is safe to send again: its idempotency token is in the body), and
  any other error is raised as botocore's ``ClientError`` with the ``__type`` and message answered.

Each thread has its own connection (HTTP/1.1 keep-alive), reopened when the server closes it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import socket
import ssl
import struct
import threading
import time
from datetime import datetime
from urllib.parse import urlsplit

import botocore.session
from botocore.exceptions import ClientError, EndpointConnectionError

from pcaq.api.sigv4 import signing_key
from pcaq.ca.arns import parse_ca_arn
from pcaq.errors import InvalidArn

SERVICE = "acm-pca"
TARGET_PREFIX = "ACMPrivateCA."
CONTENT_TYPE = "application/x-amz-json-1.1"
MAX_ATTEMPTS = 5  # as botocore's "standard" retry mode
MAX_BACKOFF = 20.0  # seconds, as botocore's "standard" retry mode
# Error codes botocore's standard retry mode retries (throttling and transient), and 5xx statuses.
RETRIED_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
RETRIED_STATUSES = frozenset({500, 502, 503, 504})
_HEAD_END = b"\r\n\r\n"
_JSON = json.JSONEncoder(separators=(",", ":"))  # json.dumps with options builds one per call


class Signer:
    """SigV4 for awsJson 1.1 POSTs to one host, region and service; the key is derived once a day."""

    def __init__(self, credentials, region: str, host: str, service: str = SERVICE):
        self.credentials = credentials  # botocore Credentials (refreshable or not)
        self.region = region
        self.host = host
        self.service = service
        self._key: tuple[str, str, bytes] | None = None  # (secret, day, key)
        self._lock = threading.Lock()
        self._second: tuple[int, str] = (-1, "")  # (Unix second, its X-Amz-Date)

    def _signing_key(self, secret: str, day: str) -> bytes:
        cached = self._key
        if cached is not None and cached[0] == secret and cached[1] == day:
            return cached[2]
        key = signing_key(secret, day, self.region, self.service)
        with self._lock:
            self._key = (secret, day, key)
        return key

    def headers(self, target: str, body: bytes, now: datetime | None = None) -> list[tuple[str, str]]:
        """The headers of one signed request (Host and Content-Length are the caller's to add)."""
        frozen = self.credentials.get_frozen_credentials()
        stamp = self._stamp() if now is None else now.strftime("%Y%m%dT%H%M%SZ")
        day = stamp[:8]
        signed = [
            ("content-type", CONTENT_TYPE),
            ("host", self.host),
            ("x-amz-date", stamp),
            ("x-amz-target", target),
        ]
        if frozen.token:
            signed.append(("x-amz-security-token", frozen.token))
            signed.sort()  # SigV4 lists the signed headers in order of name
        names = ";".join(name for name, _ in signed)
        canonical = "POST\n/\n\n{}\n{}\n{}".format(
            "".join(f"{name}:{value}\n" for name, value in signed), names, hashlib.sha256(body).hexdigest()
        )
        scope = f"{day}/{self.region}/{self.service}/aws4_request"
        to_sign = f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        signature = hmac.new(
            self._signing_key(frozen.secret_key, day), to_sign.encode(), "sha256"
        ).hexdigest()
        authorization = (
            f"AWS4-HMAC-SHA256 Credential={frozen.access_key}/{scope}, SignedHeaders={names},"
            f" Signature={signature}"
        )
        return [(name, value) for name, value in signed if name != "host"] + [
            ("authorization", authorization)
        ]

    def _stamp(self) -> str:
        """X-Amz-Date for now: formatted once a second (strftime was a tenth of the signing time)."""
        second = int(time.time())
        cached = self._second
        if cached[0] != second:
            cached = self._second = (second, time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(second)))
        return cached[1]


class Connection:
    """One keep-alive HTTP/1.1 connection: send a request, read one response (Content-Length or chunked)."""

    def __init__(self, host: str, port: int, tls: ssl.SSLContext | None, timeout: float):
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # The timeout kept by the kernel: a Python socket timeout costs a poll() before every send
        # and recv (a profile counted four a certificate).
        limit = struct.pack("ll", int(timeout), int(timeout % 1 * 1e6))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, limit)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, limit)
        sock.settimeout(None)
        self.sock = tls.wrap_socket(sock, server_hostname=host) if tls else sock
        self.buf = bytearray()
        self.closed = False
        self.answered = 0  # responses read whole: a connection that answered before may have gone stale

    def exchange(self, request: bytes) -> tuple[int, bytes]:
        self.sock.sendall(request)
        return self.response()

    def response(self) -> tuple[int, bytes]:
        """The next response (status, body), read to its end."""
        while (end := self.buf.find(_HEAD_END)) < 0:
            self._fill()
        # The head is searched, not split into a dict: three fields matter (a tenth of the tool's
        # time per call went to parsing every header line).
        head = bytes(self.buf[: end + 2]).lower()  # each line ends with CRLF, the last one too
        del self.buf[: end + 4]
        if not head.startswith(b"http/1."):
            raise ValueError(f"not an HTTP/1.x response: {head[:40]!r}")
        status = int(head[9:12])
        if b"chunked" in _field(head, b"transfer-encoding"):
            body = self._chunked()
        else:
            body = self._take(int(_field(head, b"content-length") or b"0"))
        if b"close" in _field(head, b"connection") or head.startswith(b"http/1.0"):
            self.close()
        self.answered += 1
        return status, body

    def stale(self, exc: Exception) -> bool:
        """Whether ``exc`` says the server had closed this kept-alive connection before the request
        came (an idle timeout racing the request): nothing of an answer read, so the request was not
        handled and goes again at once on a new connection, as HTTP clients do, without counting as
        a failed attempt. A new connection that fails is an attempt."""
        return self.answered > 0 and not self.buf and isinstance(exc, (ConnectionError, BrokenPipeError))

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buf += chunk

    def _take(self, length: int) -> bytes:
        while len(self.buf) < length:
            self._fill()
        data = bytes(self.buf[:length])
        del self.buf[:length]
        return data

    def _chunked(self) -> bytes:
        body = bytearray()
        while True:
            while (end := self.buf.find(b"\r\n")) < 0:
                self._fill()
            size = int(bytes(self.buf[:end]).split(b";")[0], 16)
            del self.buf[: end + 2]
            if size == 0:
                while (end := self.buf.find(b"\r\n")) != 0:  # trailers, then the empty line
                    if end < 0:
                        self._fill()
                    else:
                        del self.buf[: end + 2]
                del self.buf[:2]
                return bytes(body)
            body += self._take(size)
            self._take(2)

    def close(self) -> None:
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass


def _field(head: bytes, name: bytes) -> bytes:
    """The value of header ``name`` in a lower-cased response head (b"" when absent)."""
    start = head.find(b"\r\n" + name + b":")
    if start < 0:
        return b""
    start += len(name) + 3
    return head[start : head.index(b"\r\n", start)].strip()


class UntrustedEndpoint(SystemExit):
    """The endpoint's TLS certificate did not verify: the run stops with this message, nothing
    journalled as failed."""


def _tls_context(ca_bundle: str | None) -> ssl.SSLContext:
    """Certificates checked against ``ca_bundle`` (a PEM file) or the system's trust store, host names
    checked: never unchecked."""
    try:
        return ssl.create_default_context(cafile=ca_bundle)
    except (OSError, ssl.SSLError) as exc:
        raise SystemExit(f"pcaq bulk-issue: cannot use the CA bundle {ca_bundle}: {exc}") from exc


class LeanClient:
    """``issue_certificate`` and ``get_certificate`` as botocore's acm-pca client offers them (same
    arguments, same answers, errors raised as ``ClientError``), thread-safe."""

    def __init__(
        self, endpoint_url: str, region: str, credentials, timeout: float = 60.0, ca_bundle: str | None = None
    ):
        parts = urlsplit(endpoint_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"pcaq bulk-issue: not an http(s) endpoint URL: {endpoint_url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.path = parts.path or "/"
        self.tls = _tls_context(ca_bundle) if parts.scheme == "https" else None
        self.timeout = timeout
        self.signer = Signer(credentials, region, parts.netloc)
        self.backoff_base = 1.0  # seconds: the first retry waits up to this long (tests shorten it)
        self._local = threading.local()
        self.attempts = 0  # requests sent, retries included (what a benchmark or test may count)

    def issue_certificate(self, **request) -> dict:
        """IssueCertificate; ``Csr`` is bytes (base64-encoded on the wire, as botocore does)."""
        return self.call("IssueCertificate", request)

    def get_certificate(self, **request) -> dict:
        return self.call("GetCertificate", request)

    def call(self, operation: str, params: dict) -> dict:
        """One operation, retried as botocore's standard mode would; its answer, parsed."""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                conn = self.connection()
                try:
                    status, answer = conn.exchange(self.encode(operation, params))
                except OSError as exc:
                    if not conn.stale(exc):
                        raise
                    self._drop()
                    status, answer = self.connection().exchange(self.encode(operation, params))
            except (OSError, ValueError, IndexError) as exc:  # refused, reset, timed out, garbled
                self._drop()
                if attempt == MAX_ATTEMPTS:
                    raise self.unreachable(exc) from exc
                time.sleep(self.backoff(attempt))
                continue
            judged = self.judge(operation, status, answer, attempt)
            if judged is None:
                time.sleep(self.backoff(attempt))
                continue
            if isinstance(judged, ClientError):
                raise judged
            return judged
        raise AssertionError("unreachable")

    def encode(self, operation: str, params: dict) -> bytes:
        """One signed request on the wire (``Csr`` bytes base64-encoded, as botocore does)."""
        if isinstance(params.get("Csr"), bytes):
            params = params | {"Csr": base64.b64encode(params["Csr"]).decode()}
        body = _JSON.encode(params).encode()
        headers = self.signer.headers(TARGET_PREFIX + operation, body)
        head = f"POST {self.path} HTTP/1.1\r\nHost: {self.signer.host}\r\n" + "".join(
            f"{name}: {value}\r\n" for name, value in headers
        )
        head += f"user-agent: pcaq-bulk-issue\r\ncontent-length: {len(body)}\r\n\r\n"
        self.attempts += 1
        return head.encode() + body

    def judge(self, operation: str, status: int, answer: bytes, attempt: int) -> dict | ClientError | None:
        """An answer: parsed (200), an error to report, or None when it is to be retried."""
        if status == 200:
            return json.loads(answer) if answer else {}
        error = _error(status, answer)
        if attempt < MAX_ATTEMPTS and (status in RETRIED_STATUSES or error["Error"]["Code"] in RETRIED_CODES):
            return None
        return ClientError(error, operation)

    def unreachable(self, exc: Exception) -> EndpointConnectionError:
        return EndpointConnectionError(endpoint_url=f"{self.host}:{self.port}", error=exc)

    def connect(self) -> Connection:
        """A new keep-alive connection to the endpoint.

        An endpoint whose certificate is not trusted stops the run (:class:`UntrustedEndpoint`) rather
        than failing each CSR in turn: no retry helps, and CSRs marked failed would be skipped by the
        next run, the one with the right CA bundle."""
        try:
            return Connection(self.host, self.port, self.tls, self.timeout)
        except ssl.SSLCertVerificationError as exc:
            raise UntrustedEndpoint(
                f"pcaq bulk-issue: the certificate of https://{self.host}:{self.port} is not trusted "
                f"({exc.verify_message}): give the CA bundle that signed it with --ca-bundle or AWS_CA_BUNDLE"
            ) from exc

    def connection(self) -> Connection:
        """This thread's connection, opened if it has none (or the server closed it)."""
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = self._local.conn = self.connect()
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def backoff(self, attempt: int) -> float:
        """botocore's standard mode: a random wait up to base * 2^(attempt-1), at most MAX_BACKOFF."""
        return random.random() * min(MAX_BACKOFF, self.backoff_base * 2 ** (attempt - 1))


def _error(status: int, answer: bytes) -> dict:
    """botocore's shape of an awsJson error answer: the code from ``__type`` (after any '#')."""
    try:
        parsed = json.loads(answer) if answer else {}
    except ValueError:
        parsed = {}
    if not isinstance(parsed, dict):
        parsed = {}
    code = str(parsed.get("__type") or parsed.get("code") or status).rsplit("#", 1)[-1]
    message = parsed.get("message") or parsed.get("Message") or answer[:200].decode("utf-8", "replace")
    return {"Error": {"Code": code, "Message": str(message)}, "ResponseMetadata": {"HTTPStatusCode": status}}


def make_lean_client(
    endpoint_url: str | None,
    region: str | None,
    ca_arn: str | None = None,
    ca_bundle: str | None = None,
) -> LeanClient:
    """A lean client with the endpoint, region and credentials botocore resolves from the usual places
    (``endpoint_url`` if given: ``--endpoint-url`` or ``AWS_ENDPOINT_URL_ACM_PCA``).

    The region is ``region`` if given, else the one in the CA's ARN (a CA is only reached in its own
    region, whatever the profile's default), else the configured one. TLS certificates are checked
    against ``ca_bundle``, else botocore's ``ca_bundle`` setting (``AWS_CA_BUNDLE`` or the profile's),
    else the system's trust store: a pcaq behind a load balancer with a private certificate is reached
    as the AWS CLI reaches it.
    """
    session = botocore.session.get_session()
    region = region or arn_region(ca_arn) or session.get_config_variable("region") or "us-east-1"
    if endpoint_url is None:  # a botocore client resolves it (a profile's endpoint_url, else AWS's)
        endpoint_url = session.create_client("acm-pca", region_name=region).meta.endpoint_url
    credentials = session.get_credentials()
    if credentials is None:
        raise SystemExit("pcaq bulk-issue: no AWS credentials found (environment, profile or SSO)")
    return LeanClient(
        endpoint_url, region, credentials, ca_bundle=ca_bundle or session.get_config_variable("ca_bundle")
    )


def arn_region(arn: str | None) -> str | None:
    """The region of a CA's ARN (as pcaq parses it), or None when ``arn`` is not one."""
    try:
        return parse_ca_arn(arn).region if arn else None
    except InvalidArn:
        return None
