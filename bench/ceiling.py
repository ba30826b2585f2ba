"""The API application's own cost per call, and the end-to-end rate the rest of the service allows.

The end-to-end run measures CPU per certificate by process tree. The API's share holds the
application (JSON, validation, the domain, its Redis round trip) and the serving around it (the
HTTP server, its threads handing each request over, the wake-ups while Redis answers). Here the
application is called in this process, one call at a time, against the same Redis and CA, with no
HTTP server: its floor. The ``ceiling`` is then the end-to-end rate this machine's cores would give
if serving HTTP cost nothing and every other part (workers, Redis, clients) cost what the run
measured. A target above the ceiling cannot be met by tuning the HTTP server.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import time
from collections.abc import Callable

from bench.stack import Stack, get_body, issue_body, wait_for


def _environ(port: int, operation: str, body: dict) -> dict:
    """The WSGI environ of one awsJson 1.1 call (open development mode: no signature)."""
    payload = json.dumps(body).encode()
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": str(port),
        "HTTP_HOST": f"127.0.0.1:{port}",
        "CONTENT_TYPE": "application/x-amz-json-1.1",
        "CONTENT_LENGTH": str(len(payload)),
        "HTTP_X_AMZ_TARGET": f"ACMPrivateCA.{operation}",
        "wsgi.input": io.BytesIO(payload),
        "wsgi.url_scheme": "http",
    }


def _cpu_us_per_call(app: Callable, environs: list[dict], answer: Callable[[bytes], None]) -> float:
    """CPU microseconds of this process per call of ``app`` (each answer checked by ``answer``)."""
    statuses: list[str] = []

    def start_response(status: str, headers: list) -> None:
        statuses.append(status)

    bodies = []
    start = time.process_time()
    for environ in environs:
        bodies.append(b"".join(app(environ, start_response)))
    seconds = time.process_time() - start
    for status, body in zip(statuses, bodies, strict=True):
        if not status.startswith("200"):
            raise SystemExit(f"bench: the API in process answered {status}: {body[:300]!r}")
        answer(body)
    return 1e6 * seconds / len(environs)


def api_in_process(stack: Stack, ca_arn: str, signing: str, csrs: list[bytes]) -> dict[str, float]:
    """CPU per IssueCertificate and per GetCertificate (us) of the API application called here.

    The workers are stopped while the IssueCertificate calls run (so that they do not compete with
    them for the CPU), then started to sign the requests, then stopped again; the caller's next step
    starts what it needs.
    """
    from pcaq.api.app import create_app  # the service's own code, imported only for this measurement
    from pcaq.platform.settings import load

    app = create_app(dataclasses.replace(load(stack.env), log_level="ERROR"))  # no open-mode warning here
    stack.stop_workers()
    issue = [_environ(stack.port, "IssueCertificate", issue_body(ca_arn, signing, csr)) for csr in csrs]
    arns: list[str] = []
    issue_us = _cpu_us_per_call(app, issue, lambda body: arns.append(json.loads(body)["CertificateArn"]))
    stack.start_workers(1)
    wait_for(lambda: stack.pending() == 0, 600, "the in-process requests to be signed")
    stack.stop_workers()
    get = [_environ(stack.port, "GetCertificate", get_body(ca_arn, arn)) for arn in arns]

    def has_certificate(body: bytes) -> None:
        if "Certificate" not in json.loads(body):
            raise SystemExit(f"bench: GetCertificate in process gave no certificate: {body[:300]!r}")

    get_us = _cpu_us_per_call(app, get, has_certificate)
    return {"IssueCertificate": issue_us, "GetCertificate": get_us}


def ceiling(row: dict) -> float:
    """Certificates per second the cores allow end to end if serving HTTP cost nothing: the run's
    CPU per certificate with the API's share replaced by its application's in-process cost (one
    IssueCertificate and the run's GetCertificate calls per certificate)."""
    api = row["api_in_process_us"]
    others = sum(us for name, us in row["cpu_us_per_cert"].items() if name != "api")
    per_cert = others + api["IssueCertificate"] + row["polls_per_cert"] * api["GetCertificate"]
    return (os.cpu_count() or 1) * 1e6 / per_cert
