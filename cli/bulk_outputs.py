"""What ``pcaq bulk-issue`` writes to its output folder, and what it finds there when it resumes."""

from __future__ import annotations

import json
import os
from pathlib import Path


class Outputs:
    """The output folder: ``<name>.pem``, ``<name>.chain.pem``, ``<name>.error`` and the ARN journal.

    The journal is one append-only file per process (``.journal-<pid>``, a JSON ``[name, arn]`` a
    line), written with one ``write`` the moment IssueCertificate answers, before the certificate is
    asked for: one system call per ARN where a file per ARN took six. Journals of earlier versions
    (``<name>.arn``) are read too, so a folder they left is resumed. The folder is listed once, at
    the start: each CSR is handled once per run.
    """

    def __init__(self, out: Path):
        self.out = out
        out.mkdir(parents=True, exist_ok=True)
        self._names = set(os.listdir(out))
        self._arns: dict[str, str] = {}
        for entry in sorted(self._names):
            if entry.startswith(".journal-"):
                self._read_journal(out / entry)
            elif entry.endswith(".arn"):
                self._arns[entry[: -len(".arn")]] = (out / entry).read_text().strip()
        self._journal_fd: int | None = None

    def _read_journal(self, path: Path) -> None:
        for line in path.read_bytes().splitlines():
            try:
                name, arn = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash: its CSR is sent again (same idempotency token)
            self._arns[name] = arn

    def path(self, name: str, suffix: str) -> Path:
        return self.out / f"{name}{suffix}"

    def done(self, name: str) -> bool:
        return f"{name}.pem" in self._names

    def failed_before(self, name: str) -> bool:
        return f"{name}.error" in self._names

    def journalled_arn(self, name: str) -> str | None:
        return self._arns.get(name)

    def _write(self, name: str, suffix: str, text: str, atomic: bool = True) -> None:
        # Write then rename, so an interrupted run never leaves a half-written certificate behind.
        final = self.path(name, suffix)
        target = final.with_name(final.name + ".tmp") if atomic else final
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
        if atomic:
            os.replace(target, final)

    def journal(self, name: str, arn: str) -> None:
        """Record ``arn`` for ``name`` before anything else is done with it (one append)."""
        if self._journal_fd is None:
            journal = self.out / f".journal-{os.getpid()}"
            self._journal_fd = os.open(journal, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.write(self._journal_fd, json.dumps([name, arn]).encode() + b"\n")

    def finish(self, name: str, certificate: str, chain: str | None) -> None:
        if chain:  # no rename needed: a chain counts only once its certificate is there
            self._write(name, ".chain.pem", chain, atomic=False)
        self._write(name, ".pem", certificate)
        if self.failed_before(name):
            self.path(name, ".error").unlink(missing_ok=True)

    def fail(self, name: str, reason: str) -> None:
        self._write(name, ".error", reason + "\n")

    def close(self) -> None:
        if self._journal_fd is not None:
            os.close(self._journal_fd)
            self._journal_fd = None
