"""``pcaq bulk-issue``: issue a directory (or JSON-lines file) of CSRs through the public API.

It is a client: it speaks the ACM PCA API (``bulk_wire``: botocore's credentials, SigV4, awsJson 1.1),
so it works against pcaq or AWS alike. Re-running it never issues anything twice: a certificate
already written is skipped; an ARN is journalled (``Outputs.journal``) the moment IssueCertificate
returns, so a re-run only polls for it;
and every request carries an idempotency token derived from the CSR's bytes, which covers the
moment between IssueCertificate answering and the journal being written.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError
from tqdm import tqdm

from pcaq.cli import bulk_loop, bulk_processes, bulk_wire
from pcaq.cli.bulk_outputs import Outputs, outputs_for
from pcaq.cli.bulk_schedule import MAX_POLLS_PER_THREAD, Poll, Schedule

CSR_SUFFIXES = (".csr", ".pem", ".der", ".req")


@dataclass(frozen=True)
class Job:
    """One CSR to issue: its name (the output file stem) and its bytes."""

    name: str
    csr: bytes

    @property
    def token(self) -> str:
        """The idempotency token: the same CSR always asks for the same certificate."""
        return hashlib.sha256(self.csr).hexdigest()[:32]


@dataclass
class Summary:
    """What a run did (or one process's share of it: :meth:`add` sums the shares)."""

    issued: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    interrupted: bool = False
    lost_shares: int = 0  # client processes (``--processes``) that ended without a summary

    def add(self, other: Summary) -> None:
        """Count ``other`` (another process's share) into this summary."""
        self.issued += other.issued
        self.skipped += other.skipped
        self.failed.update(other.failed)
        self.interrupted = self.interrupted or other.interrupted
        self.lost_shares += other.lost_shares


def read_jobs(csr_dir: Path | None, jsonl: Path | None) -> list[Job]:
    """The CSRs to issue, from a directory of CSR files or a JSON-lines file of {"name", "csr"}."""
    jobs: list[Job] = []
    if csr_dir is not None:
        for entry in sorted(os.scandir(csr_dir), key=lambda e: e.name):  # by name: Paths compare slowly
            stem, _, suffix = entry.name.rpartition(".")
            if stem and ("." + suffix).lower() in CSR_SUFFIXES and entry.is_file():
                jobs.append(Job(stem, _read(entry.path)))
    if jsonl is not None:
        for number, line in enumerate(jsonl.read_text().splitlines(), 1):
            if line.strip():
                try:
                    item = json.loads(line)
                    jobs.append(Job(str(item["name"]), item["csr"].encode()))
                except (ValueError, KeyError, TypeError, AttributeError) as exc:
                    raise SystemExit(
                        f"pcaq bulk-issue: {jsonl}:{number}: expected {{'name': ..., 'csr': ...}}"
                    ) from exc
    names = [j.name for j in jobs]
    if len(set(names)) != len(names):
        raise SystemExit("pcaq bulk-issue: two CSRs share a name; output files would collide")
    for name in names:
        if not name or "/" in name or name.startswith("."):
            raise SystemExit(f"pcaq bulk-issue: {name!r} cannot be used as a file name")
    return jobs


def _read(path: str) -> bytes:
    """A CSR file's bytes (unbuffered: Path.read_bytes made seven system calls a file, this three or four)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


class Issuer:
    """The two API calls a job needs; shared by the worker threads (the client is thread-safe)."""

    def __init__(self, client, ca_arn: str, args: argparse.Namespace, outputs: Outputs):
        self.client = client
        self.ca_arn = ca_arn
        self.args = args
        self.outputs = outputs

    def issue(self, job: Job) -> tuple[str, str]:
        """IssueCertificate, journalled: ``("issuing", arn)`` or ``("failed", reason)``."""
        try:
            answer = self.client.issue_certificate(**self.issue_request(job))
        except ClientError as exc:
            answer = exc
        return self.issued(job, answer)

    def issue_request(self, job: Job) -> dict:
        request = {
            "CertificateAuthorityArn": self.ca_arn,
            "Csr": job.csr,
            "SigningAlgorithm": self.args.signing_algorithm,
            "Validity": {"Value": self.args.validity_days, "Type": "DAYS"},
            "IdempotencyToken": job.token,
        }
        if self.args.template_arn:
            request["TemplateArn"] = self.args.template_arn
        return request

    def issued(self, job: Job, answer: dict | ClientError) -> tuple[str, str]:
        """What IssueCertificate answered, journalled before anything else is done with it."""
        if isinstance(answer, ClientError):
            return "failed", self._failed(job, answer)
        arn = answer["CertificateArn"]
        self.outputs.journal(job.name, arn)
        return "issuing", arn

    def collect(self, job: Job, arn: str) -> tuple[str, str | None]:
        """One GetCertificate: ``("issued", None)``, ``("issuing", arn)`` or ``("failed", reason)``."""
        try:
            answer = self.client.get_certificate(**self.collect_request(arn))
        except ClientError as exc:
            answer = exc
        return self.collected(job, arn, answer)

    def collect_request(self, arn: str) -> dict:
        return {"CertificateAuthorityArn": self.ca_arn, "CertificateArn": arn}

    def collected(self, job: Job, arn: str, answer: dict | ClientError) -> tuple[str, str | None]:
        """What GetCertificate answered: the certificate written, still in progress, or a failure."""
        if isinstance(answer, ClientError):
            if answer.response["Error"]["Code"] == "RequestInProgressException":
                return "issuing", arn
            return "failed", self._failed(job, answer)
        self.outputs.finish(job.name, answer["Certificate"], answer.get("CertificateChain"), arn)
        return "issued", None

    def _failed(self, job: Job, exc: ClientError) -> str:
        error = exc.response.get("Error", {})
        reason = f"{error.get('Code', 'Error')}: {error.get('Message', str(exc))}"
        self.outputs.fail(job.name, reason)
        return reason


def make_client(args: argparse.Namespace) -> bulk_wire.LeanClient:
    """The lean acm-pca client (``bulk_wire``): botocore's credentials, endpoint and CA bundle, the
    region of ``--region`` or of the CA's ARN, botocore's standard retries."""
    return bulk_wire.make_lean_client(args.endpoint_url, args.region, args.ca, args.ca_bundle)


def _pending(jobs: list[Job], outputs: Outputs, retry_failed: bool) -> tuple[list[Job], int]:
    todo, skipped = [], 0
    for job in jobs:
        if outputs.done(job.name) or (not retry_failed and outputs.failed_before(job.name)):
            skipped += 1
        else:
            todo.append(job)
    return todo, skipped


def run(args: argparse.Namespace) -> Summary:
    """Issue every CSR not done yet, with a progress bar, in ``args.processes`` processes of
    ``args.concurrency`` threads each. Interrupted (SIGINT, SIGTERM), it finishes the calls in flight
    and stops; everything answered is journalled, so a re-run resumes."""
    jobs = read_jobs(args.csr_dir, args.jsonl)
    outputs = outputs_for(args.out, args.output_format)
    todo, skipped = _pending(jobs, outputs, args.retry_failed)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    bar = tqdm(total=len(todo), unit="cert", disable=args.quiet, dynamic_ncols=True, smoothing=0.1)
    try:
        if args.processes > 1 and len(todo) > 1:
            summary = bulk_processes.run_shares(issue_share, args, todo, stop, bar.update, Summary())
        else:
            summary = issue_share(args, todo, stop, bar.update)
    finally:
        bar.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    summary.skipped += skipped
    return summary


def issue_share(
    args: argparse.Namespace, todo: list[Job], stop: threading.Event, progress: Callable[[int], object]
) -> Summary:
    """Issue ``todo`` (CSRs not done yet) with ``args.concurrency`` requests in flight until done or
    ``stop`` is set; ``progress(1)`` for each CSR that ends (issued or failed).

    The calls are pipelined: no connection waits for a certificate to be signed. IssueCertificate
    answers go into a schedule of polls, and every free connection takes the next poll that is due,
    else the next CSR, so new requests keep flowing while earlier ones are being signed. A CSR with a
    journalled ARN (an interrupted run) is only polled. The lean client's connections are multiplexed
    by this one thread (``bulk_loop``); any other client (a botocore-like one) gets a thread each.
    """
    outputs = outputs_for(args.out, args.output_format)
    try:
        client = make_client(args)
        issuer = Issuer(client, args.ca, args, outputs)
        share = _Share(issuer, Schedule(todo, MAX_POLLS_PER_THREAD * args.concurrency), stop, progress)
        if isinstance(client, bulk_wire.LeanClient):  # one thread multiplexing the connections
            bulk_loop.run(share, client, args.concurrency)
            share.summary.interrupted = stop.is_set()
            return share.summary
        threads = [
            threading.Thread(target=share.work, name=f"bulk-issue-{i}", daemon=True)
            for i in range(args.concurrency)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():  # with a timeout: the main thread must stay free for signals
                thread.join(0.5)
    finally:
        outputs.close()
    share.summary.interrupted = stop.is_set()
    return share.summary


class _Share:
    """The work of one process: its threads each take the next call under one lock and make it.

    Each thread schedules for itself (no thread pool, no futures): a call costs no hand-off between
    threads, which a profile of the pool-based version showed as a tenth of the tool's CPU.
    """

    def __init__(self, issuer: Issuer, schedule: Schedule, stop: threading.Event, progress):
        self.issuer = issuer
        self.schedule = schedule
        self.stop = stop
        self.progress = progress
        self.summary = Summary()
        self.cond = threading.Condition(threading.RLock())  # next_call is also taken inside _take
        self.in_flight = 0  # calls being made

    def work(self) -> None:
        """One thread: take a call, make it, record what it answered; until nothing is left."""
        while (task := self._take()) is not None:
            job, poll = task
            try:
                if poll is None:
                    outcome, detail = self.issuer.issue(job)
                else:
                    outcome, detail = self.issuer.collect(job, poll.arn)
            except (BotoCoreError, OSError) as exc:  # connection trouble after retries
                outcome, detail = "failed", f"{type(exc).__name__}: {exc}"
            self.record(job, poll, outcome, detail)

    def record(self, job: Job, poll: Poll | None, outcome: str, detail: str | None) -> None:
        """What a call ended with: into the schedule and the summary, and the progress bar."""
        with self.cond:
            self.in_flight -= 1
            if outcome == "issuing":
                self.schedule.signing(job, detail, poll)
            elif outcome == "issued":
                self.summary.issued += 1
                self.schedule.collected(poll)
            else:
                self.summary.failed[job.name] = detail or "unknown"
                self.schedule.failed(poll)
            self.cond.notify()  # a thread waiting may now have a poll to make, or be done
        if outcome != "issuing":
            self.progress(1)

    def next_call(self) -> tuple[Job, Poll | None] | None:
        """The next call if one can be made now (a due poll, else a CSR to send), without waiting."""
        outputs = self.issuer.outputs
        with self.cond:
            while not self.stop.is_set():
                if (poll := self.schedule.due()) is not None:
                    self.in_flight += 1
                    return poll.job, poll
                if (job := self.schedule.next_job()) is None:
                    return None
                if (arn := outputs.journalled_arn(job.name)) is not None:
                    self.schedule.journalled(job, arn)  # answered in an earlier run: only collect it
                else:
                    self.in_flight += 1
                    return job, None
        return None

    def done(self) -> bool:
        """Nothing left to send, to poll or in flight."""
        return self.schedule.finished() and not self.in_flight

    def _take(self) -> tuple[Job, Poll | None] | None:
        """The next call, waiting for one; None when done or stopped."""
        with self.cond:
            while not self.stop.is_set():
                if (task := self.next_call()) is not None:
                    return task
                if self.done():
                    self.cond.notify_all()  # the others are done too
                    return None
                # Wake for the next poll that falls due, else for an answer (or a stop).
                self.cond.wait(self.schedule.wait())
        return None


def main(args: argparse.Namespace) -> int:
    """Run and print the summary; exit status 0 all done, 1 some failed, 130 interrupted."""
    if args.concurrency < 1:
        raise SystemExit("pcaq bulk-issue: --concurrency must be at least 1")
    if args.processes < 1:
        raise SystemExit("pcaq bulk-issue: --processes must be at least 1")
    started = time.monotonic()
    summary = run(args)
    seconds = time.monotonic() - started
    rate = summary.issued / seconds if seconds else 0.0
    print(
        f"issued {summary.issued}, failed {len(summary.failed)}, skipped {summary.skipped} "
        f"in {seconds:.1f} s ({rate:.0f}/s){' (interrupted: run again to resume)' if summary.interrupted else ''}"
    )
    for name, reason in sorted(summary.failed.items()):
        print(f"  failed {name}: {reason}")
    if summary.lost_shares:
        print(f"  {summary.lost_shares} client process(es) ended early (see above): run again to resume")
    if summary.interrupted:
        return 130
    return 1 if summary.failed or summary.lost_shares else 0
