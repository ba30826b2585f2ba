"""How fast `pcaq bulk-issue` can go when the service is not the limit: the tool on cores of its own.

    python bench/bulk_ceiling.py [--count 20000] [--runs 3] [--concurrency 8] [--quick]

On the 2-core machines we measure on, the service and the tool share the cores, so the tool's rate
there is the service's minus what the tool takes from it. What a user with the tool on a machine of
its own gets is the smaller of the service's rate and the tool's own ceiling, measured here: one tool
process on one core (``sched_setaffinity``), against a stand-in for the service on the other core that
answers IssueCertificate with an ARN and GetCertificate with a certificate at once (canned answers,
one thread, a few microseconds a request: the tool is what is measured). The tool does everything it
does against pcaq (SigV4, the journal, the files or JSON lines it writes); nothing is checked by a
CA. Each process of ``--processes`` adds about this rate on a core of its own. Prints the rate and
the tool's CPU per certificate. No assertion: a benchmark prints figures.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import socket
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.against_up import run_tool  # noqa: E402
from bench.issuance import make_csrs  # noqa: E402

CA_ARN = "arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/11111111-2222-3333-4444-555555555555"
_CERT = (
    "-----BEGIN CERTIFICATE-----\n" + "A" * 64 * 12 + "\n-----END CERTIFICATE-----\n"
)  # about a P-256 leaf


def _answer(body: dict) -> bytes:
    payload = json.dumps(body).encode()
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\n"
        + f"Content-Length: {len(payload)}\r\n\r\n".encode()
        + payload
    )


ISSUED = _answer({"CertificateArn": CA_ARN + "/certificate/0123456789abcdef"})
CERTIFICATE = _answer({"Certificate": _CERT, "CertificateChain": _CERT})


def serve(listener: socket.socket) -> None:
    """The stand-in service: every connection on one thread, canned answers, until the listener closes."""
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, None)
    buffers: dict[socket.socket, bytearray] = {}
    while True:
        for key, _ in selector.select():
            if key.data is None:
                conn, _ = listener.accept()
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                buffers[conn] = bytearray()
                selector.register(conn, selectors.EVENT_READ, conn)
                continue
            conn = key.data
            data = conn.recv(65536)
            if not data:
                selector.unregister(conn)
                conn.close()
                del buffers[conn]
                continue
            buf = buffers[conn]
            buf += data
            while (end := buf.find(b"\r\n\r\n")) >= 0:
                head = bytes(buf[:end]).lower()
                length = int(head.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
                if len(buf) < end + 4 + length:
                    break
                del buf[: end + 4 + length]
                conn.sendall(ISSUED if b"issuecertificate" in head else CERTIFICATE)


def start_server() -> tuple[int, int]:
    """The stand-in on core 0 in a child process: (port, pid)."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=128)
    pid = os.fork()
    if pid == 0:  # the child: serve until killed
        os.sched_setaffinity(0, {0})
        try:
            serve(listener)
        finally:
            os._exit(0)
    port = listener.getsockname()[1]
    listener.close()
    return port, pid


def tool_run(port: int, csr_dir: Path, out: Path, options: list[str]) -> dict:
    """`pcaq bulk-issue` on core 1: its rate as it reports it and its CPU per certificate (us)."""
    tool = run_tool(port, CA_ARN, csr_dir, out, options, prefix=("taskset", "-c", "1"))
    return {
        "rate": tool["rate"],
        "user_us": tool["user_us"],
        "system_us": tool["system_us"],
        "count": tool["issued"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=20000, help="CSRs per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny run (a smoke test of the benchmark)")
    args = parser.parse_args(argv)
    if args.quick:
        args.count, args.runs = 200, 1
    if os.cpu_count() is None or os.cpu_count() < 2:
        raise SystemExit("bench: needs two cores (the stand-in on one, the tool on the other)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="pcaq-bench-bulk-") as tmp:
        csr_dir = Path(tmp) / "csrs"
        csr_dir.mkdir()
        for i, csr in enumerate(make_csrs(args.count)):
            (csr_dir / f"c{i:06d}.csr").write_bytes(csr)
        port, server = start_server()
        try:
            print(f"tool on core 1, stand-in service on core 0; {args.count} CSRs a run", flush=True)
            for number in range(1, args.runs + 1):
                for output in ("files", "jsonl"):
                    out = Path(tmp) / f"out-{number}-{output}"
                    row = tool_run(port, csr_dir, out, ["--output-format", output]) | {"output": output}
                    rows.append(row)
                    print(
                        f"run {number}: --output-format {output}: {row['rate']:.0f}/s on one core; CPU per"
                        f" certificate {row['user_us']:.0f} us user, {row['system_us']:.0f} us system",
                        flush=True,
                    )
        finally:
            os.kill(server, 9)
            os.waitpid(server, 0)
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
