"""``pcaq bulk-issue``'s output folder (cli/bulk_outputs.py): a chain file per certificate that is a
hard link to one shared copy, and what happens where links are refused or run out."""

from __future__ import annotations

import errno
import json
import os
import time

import pytest

from pcaq.cli import bulk_outputs
from pcaq.cli.bulk_outputs import Outputs, outputs_for

CHAIN = "-----BEGIN CERTIFICATE-----\nroot\n-----END CERTIFICATE-----\n"


def finished(outputs: Outputs, name: str) -> None:
    """``name`` finished and its files written."""
    outputs.finish(name, "cert\n", CHAIN, "arn")
    outputs.close()


def test_chains_are_links_to_one_copy_and_certificates_files_of_their_own(tmp_path):
    outputs = Outputs(tmp_path)
    for i in range(5):
        outputs.finish(f"n{i}", f"cert {i}\n", CHAIN, "arn")
    outputs.close()  # the files are written by a thread of their own: close waits for them
    inodes = {(tmp_path / f"n{i}.chain.pem").stat().st_ino for i in range(5)}
    assert len(inodes) == 1  # one inode for the five chains
    assert (tmp_path / "n3.chain.pem").read_text() == CHAIN
    assert (tmp_path / "n3.chain.pem").stat().st_nlink == 6  # five names and the shared copy
    assert len({(tmp_path / f"n{i}.pem").stat().st_ino for i in range(5)}) == 5
    assert (tmp_path / "n4.pem").read_text() == "cert 4\n"
    # Another chain (another CA, a renewed intermediate) gets a copy of its own.
    outputs.finish("other", "cert\n", "other chain\n", "arn")
    outputs.close()
    assert (tmp_path / "other.chain.pem").stat().st_ino not in inodes
    assert (tmp_path / "other.chain.pem").read_text() == "other chain\n"


def test_a_resumed_run_links_over_a_chain_left_behind(tmp_path):
    (tmp_path / "n0.chain.pem").write_text("half a ch")  # an interrupted run, before its certificate
    finished(Outputs(tmp_path), "n0")
    assert (tmp_path / "n0.chain.pem").read_text() == CHAIN and (
        tmp_path / "n0.chain.pem"
    ).stat().st_nlink == 2
    # A later run reuses the shared copy already in the folder.
    finished(Outputs(tmp_path), "n1")
    assert (tmp_path / "n1.chain.pem").stat().st_ino == (tmp_path / "n0.chain.pem").stat().st_ino


def test_a_file_system_without_hard_links_gets_a_file_per_chain(monkeypatch, tmp_path):
    calls = []

    def refused(src, dst):
        calls.append(dst)
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", refused)
    outputs = Outputs(tmp_path)
    for i in range(3):
        finished(outputs, f"n{i}")
    assert len(calls) == 1  # asked once, then files
    assert all((tmp_path / f"n{i}.chain.pem").read_text() == CHAIN for i in range(3))
    assert all((tmp_path / f"n{i}.chain.pem").stat().st_nlink == 1 for i in range(3))


def test_a_copy_out_of_links_is_followed_by_a_new_copy(monkeypatch, tmp_path):
    link = os.link

    def at_most_two(src, dst):  # as ext4 refuses a 65,001st link
        if os.stat(src).st_nlink >= 3:
            raise OSError(errno.EMLINK, "Too many links")
        link(src, dst)

    monkeypatch.setattr(os, "link", at_most_two)
    outputs = Outputs(tmp_path)
    for i in range(5):
        finished(outputs, f"n{i}")
    assert all((tmp_path / f"n{i}.chain.pem").read_text() == CHAIN for i in range(5))
    assert len({(tmp_path / f"n{i}.chain.pem").stat().st_ino for i in range(5)}) == 3
    assert len([p for p in tmp_path.iterdir() if p.name.startswith(".chain-")]) == 3


def test_jsonl_output_is_a_line_a_certificate_and_a_failure_and_resumes(tmp_path):
    outputs = outputs_for(tmp_path, "jsonl")
    outputs.journal("a", "arn-a")
    outputs.finish("a", "cert a\n", CHAIN, "arn-a")
    outputs.fail("b", "MalformedCSRException: bad")
    outputs.close()
    lines = [json.loads(line) for line in (tmp_path / "certificates.jsonl").read_text().splitlines()]
    assert lines == [{"name": "a", "arn": "arn-a", "certificate": "cert a\n", "chain": CHAIN}]
    assert json.loads((tmp_path / "errors.jsonl").read_text()) == {
        "name": "b",
        "error": "MalformedCSRException: bad",
    }
    assert not list(tmp_path.glob("*.pem"))  # no file a certificate
    # A crash cut the last line short: that certificate is not done, and is asked for again.
    with open(tmp_path / "certificates.jsonl", "a") as f:
        f.write('{"name": "c", "arn": "arn-c", "certif')
    again = outputs_for(tmp_path, "jsonl")
    assert again.done("a") and not again.done("c") and again.failed_before("b")
    assert again.journalled_arn("a") == "arn-a"
    # The next line starts on a line of its own, after the cut one.
    again.finish("c", "cert c\n", CHAIN, "arn-c")
    again.close()
    assert outputs_for(tmp_path, "jsonl").done("c")


def test_a_certificate_that_cannot_be_written_stops_the_run_with_the_reason(monkeypatch, tmp_path):
    outputs = Outputs(tmp_path)

    def disk_full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(outputs, "_write_certificate", disk_full)
    outputs.finish("n0", "cert\n", CHAIN, "arn")
    with pytest.raises(SystemExit, match="cannot write to .*No space left on device"):
        outputs.close()
    # The ARN was journalled before: a later run asks for the certificate again.
    assert not (tmp_path / "n0.pem").exists()


def test_certificates_reach_the_writer_thread_in_batches_and_none_waits_long(monkeypatch, tmp_path):
    outputs = Outputs(tmp_path)
    handed: list[int] = []
    outputs.finish("first", "cert\n", CHAIN, "arn")  # starts the writer thread and its queue
    outputs.flush()
    queue = outputs._writes

    class Counted:  # the writer thread's queue, counting what is put in it
        def put(self, batch):
            handed.append(len(batch or ()))
            queue.put(batch)

    monkeypatch.setattr(outputs, "_writes", Counted())
    for i in range(2 * bulk_outputs.WRITE_BATCH):
        outputs.finish(f"n{i}", "cert\n", CHAIN, "arn")
    assert handed == [bulk_outputs.WRITE_BATCH, bulk_outputs.WRITE_BATCH]  # two hand-offs for 128 files
    outputs.finish("late", "cert\n", CHAIN, "arn")
    outputs.flush(due_only=True)
    assert handed[2:] == []  # "late" has not waited WRITE_DELAY yet
    clock = time.monotonic() + bulk_outputs.WRITE_DELAY
    monkeypatch.setattr(bulk_outputs.time, "monotonic", lambda: clock)
    outputs.flush(due_only=True)
    assert handed[2:] == [1]  # now it is handed over, without waiting for a batch to fill
    monkeypatch.setattr(outputs, "_writes", queue)
    outputs.close()
    written = {p.name for p in tmp_path.glob("*.pem") if not p.name.startswith(".")}
    assert len(written) == 2 * (2 * bulk_outputs.WRITE_BATCH + 2)  # every certificate and chain


def test_processes_writing_the_shared_chain_at_once_do_not_trip_over_each_other(monkeypatch, tmp_path):
    # With --processes, two processes may write the same shared copy of the chain at the same moment.
    first, second = Outputs(tmp_path), Outputs(tmp_path)
    replace = os.replace
    pid = os.getpid()

    def other_process_meanwhile(source, target):
        monkeypatch.setattr(bulk_outputs.os, "replace", replace)
        monkeypatch.setattr(bulk_outputs.os, "getpid", lambda: pid + 1)
        second._shared_chain(CHAIN, 0)  # the other process writes and renames its copy first
        monkeypatch.setattr(bulk_outputs.os, "getpid", lambda: pid)
        replace(source, target)

    monkeypatch.setattr(bulk_outputs.os, "replace", other_process_meanwhile)
    shared = first._shared_chain(CHAIN, 0)
    assert shared.read_text() == CHAIN
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
