"""Stand-ins for ``pcaq bulk-issue``'s unit tests: a botocore-like client, parsed arguments, and a
scripted HTTP server for the lean client."""

from __future__ import annotations

import argparse
import http.server
import json
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
        ca_bundle=None,
        output_format="files",
    )


class ScriptedServer:
    """A local HTTP/1.1 keep-alive server that answers each POST with the next scripted answer and
    records what it received: a stand-in for AWS in the lean client's tests (errors on demand).

    An answer is ``(status, body)`` (a dict sent as JSON), ``(status, body, "then close")``: answered,
    then the connection closed without a word (as a server's idle timeout does), or ``"drop"``: close the
    connection without answering. When the script runs out, every request is answered 200 ``{}``.
    ``answers`` may also be a dict of such lists by operation (``{"GetCertificate": [...]}``).
    """

    def __init__(self, answers: list | dict):
        self.answers = (
            {op: list(a) for op, a in answers.items()} if isinstance(answers, dict) else list(answers)
        )
        self.received: list[tuple[str, dict[str, str], bytes]] = []  # (path, lower-case headers, body)
        self.connections = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with server.lock:
                    server.connections += 1

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with server.lock:
                    server.received.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    script = server.answers
                    if isinstance(script, dict):  # a script per operation
                        script = script.get(self.headers.get("X-Amz-Target", "").rsplit(".", 1)[-1], [])
                    answer = script.pop(0) if script else (200, {})
                if answer == "drop":
                    self.close_connection = True
                    return
                status, payload, *then = answer
                self.close_connection = bool(then)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.lock = threading.Lock()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
