"""A lean load generator: N keep-alive HTTP/1.1 connections driven by one thread with ``selectors``.

The benchmark's clients share the machine with the service, so they must cost little: requests are
encoded before the clock starts, one thread multiplexes every connection (no GIL hand-offs between
client threads), and a response is parsed only as far as its status line, Content-Length and body.
"""

from __future__ import annotations

import json
import selectors
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

_HEAD_END = b"\r\n\r\n"


def encode(port: int, operation: str, body: dict) -> bytes:
    """One awsJson 1.1 request (open development mode: no signature) as bytes on the wire."""
    payload = json.dumps(body, separators=(",", ":")).encode()
    head = (
        f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Content-Type: application/x-amz-json-1.1\r\n"
        f"X-Amz-Target: ACMPrivateCA.{operation}\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


@dataclass
class _Conn:
    sock: socket.socket
    job: int = -1
    sent_at: float = 0.0
    buf: bytearray = field(default_factory=bytearray)


def _parse(buf: bytearray) -> tuple[int, bytes, int] | None:
    """(status, body, bytes used) when ``buf`` holds a whole response, else None."""
    end = buf.find(_HEAD_END)
    if end < 0:
        return None
    head = bytes(buf[:end]).decode("latin-1").split("\r\n")
    status = int(head[0].split(" ", 2)[1])
    length = 0
    for line in head[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    total = end + 4 + length
    if len(buf) < total:
        return None
    return status, bytes(buf[end + 4 : total]), total


def run(
    port: int,
    requests: list[bytes],
    on_answer: Callable[[int, int, bytes], bool],
    connections: int = 8,
    retry_after: float = 0.02,
) -> list[float]:
    """Send every request over ``connections`` keep-alive connections; returns each one's latency.

    ``on_answer(index, status, body)`` returns True when request ``index`` is done, False to send it
    again. A False (a certificate still being issued) also pauses sending for ``retry_after`` seconds:
    requests are sent in the order they were issued and workers sign in that order too, so the ones
    behind it are not ready either.
    """
    latencies = [0.0] * len(requests)
    ready: deque[int] = deque(range(len(requests)))
    hold_until = 0.0
    sel = selectors.DefaultSelector()
    idle: list[_Conn] = []
    for _ in range(connections):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _Conn(sock)
        sel.register(sock, selectors.EVENT_READ, conn)
        idle.append(conn)
    outstanding = len(requests)
    try:
        while outstanding:
            now = time.perf_counter()
            while idle and ready and now >= hold_until:
                conn = idle.pop()
                conn.job = ready.popleft()
                conn.sent_at = time.perf_counter()
                conn.sock.sendall(requests[conn.job])
            timeout = max(0.0, hold_until - now) if ready and idle else None
            for key, _ in sel.select(timeout):
                conn = key.data
                chunk = conn.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("the server closed a keep-alive connection")
                conn.buf += chunk
                parsed = _parse(conn.buf)
                if parsed is None:
                    continue
                status, body, used = parsed
                del conn.buf[:used]
                latencies[conn.job] = time.perf_counter() - conn.sent_at
                if on_answer(conn.job, status, body):
                    outstanding -= 1
                else:
                    ready.appendleft(conn.job)
                    hold_until = time.perf_counter() + retry_after
                conn.job = -1
                idle.append(conn)
    finally:
        for key in list(sel.get_map().values()):
            key.fileobj.close()
        sel.close()
    return latencies
