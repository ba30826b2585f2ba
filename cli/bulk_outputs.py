"""What ``pcaq bulk-issue`` writes to its output folder, and what it finds there when it resumes."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import queue
import threading
import time
from pathlib import Path

WRITE_BATCH = 64  # certificates handed to the writer thread at once
WRITE_DELAY = 0.1  # seconds: a certificate waits at most about this long for its batch to fill


class Outputs:
    """The output folder: ``<name>.pem``, ``<name>.chain.pem``, ``<name>.error`` and the ARN journal.

    The journal is one append-only file per process (``.journal-<pid>``, a JSON ``[name, arn]`` a
    line), written with one ``write`` the moment IssueCertificate answers, before the certificate is
    asked for: one system call per ARN where a file per ARN took six. Journals of earlier versions
    (``<name>.arn``) are read too, so a folder they left is resumed. The folder is listed once, at
    the start: each CSR is handled once per run.

    Every certificate of a CA has the same chain, so ``<name>.chain.pem`` is a hard link to one copy
    of it (``.chain-<digest>.pem``) where the file system allows: a link is a directory entry, while a
    file of its own costs an inode, the dearest thing the tool asks of the kernel (about 130 us of
    system time each on the ext4 we measure, more than the tool spends on a certificate otherwise).
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
        self._chains: dict[str, Path] = {}  # chain text -> the shared copy links point at
        self._link = True  # False once the file system refused a hard link: a file per chain then
        self._writes: queue.SimpleQueue | None = None  # certificates for the writer thread
        self._writer: threading.Thread | None = None
        self._write_error: OSError | None = None
        self._batch: list[tuple[str, str, str | None]] = []  # certificates not yet handed over
        self._batch_since = 0.0  # when the first of them came

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
        # The temporary name is the process's own: with --processes, several write the shared chain.
        target = final.with_name(f"{final.name}.{os.getpid()}.tmp") if atomic else final
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

    def finish(self, name: str, certificate: str, chain: str | None, arn: str) -> None:
        """``name`` is issued: its certificate and chain written (``arn`` is the certificate's).

        The files are written by a thread of their own, so that the calls go on while the kernel
        makes them (creating a file is a system call of 100 us and more on some file systems), and
        handed to it in batches (:data:`WRITE_BATCH`, or what came within :data:`WRITE_DELAY`): a
        hand-off per certificate cost two context switches, dear where the tool shares its cores
        with the service. :meth:`flush` hands over what is waiting, :meth:`close` waits for the
        last. A certificate not written when the process dies is asked for again by the next run,
        from its journalled ARN."""
        if self._writer is None:
            self._writes = queue.SimpleQueue()
            self._writer = threading.Thread(target=self._write_files, name="bulk-issue-files", daemon=True)
            self._writer.start()
        if self._write_error is not None:
            raise SystemExit(f"pcaq bulk-issue: cannot write to {self.out}: {self._write_error}")
        if not self._batch:
            self._batch_since = time.monotonic()
        self._batch.append((name, certificate, chain))
        if len(self._batch) >= WRITE_BATCH or time.monotonic() - self._batch_since >= WRITE_DELAY:
            self.flush()

    def flush(self, due_only: bool = False) -> None:
        """Hand the certificates waiting to be written to the writer thread (with ``due_only``, only
        once the first has waited :data:`WRITE_DELAY`)."""
        if self._batch and not (due_only and time.monotonic() - self._batch_since < WRITE_DELAY):
            self._writes.put(self._batch)
            self._batch = []

    def _write_files(self) -> None:
        while (batch := self._writes.get()) is not None:
            for item in batch:
                try:
                    self._write_certificate(*item)
                except OSError as exc:  # disk full, folder gone: reported by finish() and close()
                    self._write_error = exc

    def _write_certificate(self, name: str, certificate: str, chain: str | None) -> None:
        if chain:  # no rename needed: a chain counts only once its certificate is there
            self._write_chain(name, chain)
        self._write(name, ".pem", certificate)
        if self.failed_before(name):
            self.path(name, ".error").unlink(missing_ok=True)

    def _write_chain(self, name: str, chain: str) -> None:
        target = self.path(name, ".chain.pem")
        while self._link:
            shared = self._chains.get(chain) or self._shared_chain(chain, 0)
            try:
                os.link(shared, target)
                return
            except FileExistsError:  # left by an interrupted run: replaced by the link
                target.unlink()
            except OSError as exc:
                if exc.errno == errno.EMLINK:  # the copy has all the links it may have: a new copy
                    self._shared_chain(chain, int(shared.stem.rsplit("-", 1)[-1]) + 1)
                else:  # no hard links here (some network and FAT file systems)
                    self._link = False
        self._write(name, ".chain.pem", chain, atomic=False)

    def _shared_chain(self, chain: str, number: int) -> Path:
        """The ``number``-th shared copy of ``chain``, written (whole, by rename) unless it is there."""
        digest = hashlib.sha256(chain.encode()).hexdigest()[:32]
        name = f".chain-{digest}-{number}"
        shared = self.path(name, ".pem")
        if not shared.exists():
            self._write(name, ".pem", chain)
        self._chains[chain] = shared
        return shared

    def fail(self, name: str, reason: str) -> None:
        """``name`` failed for ``reason`` (a later run skips it unless told to retry failures)."""
        self._write(name, ".error", reason + "\n")

    def close(self) -> None:
        """Wait for the files still to be written and close the journal."""
        if self._writer is not None:
            self.flush()
            self._writes.put(None)
            self._writer.join()
            self._writer = None
        if self._write_error is not None:
            raise SystemExit(f"pcaq bulk-issue: cannot write to {self.out}: {self._write_error}")
        if self._journal_fd is not None:
            os.close(self._journal_fd)
            self._journal_fd = None


CERTIFICATES_JSONL = "certificates.jsonl"
ERRORS_JSONL = "errors.jsonl"


class JsonlOutputs(Outputs):
    """``--output-format jsonl``: a line a certificate in ``certificates.jsonl`` (``{"name", "arn",
    "certificate", "chain"}``) and a line a failure in ``errors.jsonl`` (``{"name", "error"}``),
    instead of files of their own: one ``write`` to a file already open, where files cost an inode
    each. Lines are appended whole (``O_APPEND``, one ``write``), so the processes of ``--processes``
    share the files; a line cut short by a crash is ignored on resume, and its certificate is asked
    for again from the journalled ARN.
    """

    def __init__(self, out: Path):
        super().__init__(out)
        self._issued = {line["name"] for line in _lines(out / CERTIFICATES_JSONL)}
        self._failed = {line["name"] for line in _lines(out / ERRORS_JSONL)}
        self._fds: dict[str, int] = {}

    def done(self, name: str) -> bool:
        return name in self._issued

    def failed_before(self, name: str) -> bool:
        return name in self._failed

    def finish(self, name: str, certificate: str, chain: str | None, arn: str) -> None:
        line = {"name": name, "arn": arn, "certificate": certificate, "chain": chain}
        self._append(CERTIFICATES_JSONL, line)

    def fail(self, name: str, reason: str) -> None:
        self._append(ERRORS_JSONL, {"name": name, "error": reason})

    def _append(self, file: str, line: dict) -> None:
        if (fd := self._fds.get(file)) is None:
            fd = self._fds[file] = os.open(self.out / file, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
            end = os.lseek(fd, 0, os.SEEK_END)
            if end and os.pread(fd, 1, end - 1) != b"\n":  # a line cut short by a crash: end it
                os.write(fd, b"\n")
        data = memoryview(json.dumps(line).encode() + b"\n")
        while data:
            data = data[os.write(fd, data) :]

    def close(self) -> None:
        super().close()
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


def _lines(path: Path) -> list[dict]:
    """The whole JSON objects in a JSON-lines file (none if it is missing)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    lines = []
    for text in raw.splitlines():
        try:
            line = json.loads(text)
        except ValueError:
            continue  # cut short by a crash
        if isinstance(line, dict) and isinstance(line.get("name"), str):
            lines.append(line)
    return lines


def outputs_for(out: Path, output_format: str) -> Outputs:
    """The output folder as ``--output-format`` lays it out (``files`` or ``jsonl``)."""
    return JsonlOutputs(out) if output_format == "jsonl" else Outputs(out)
