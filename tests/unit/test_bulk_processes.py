"""`pcaq bulk-issue --processes N`: disjoint shares in child processes, one summary, stops passed on.

Real child processes run a stand-in share runner (the integration test runs the real tool against
the real service); the runners record what they were given in files, so overlaps can be seen.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import threading

import pytest

from pcaq.cli import bulk_issue, bulk_processes
from pcaq.cli.bulk_issue import Summary
from tests.bulk_fakes import FakeClient
from tests.bulk_fakes import args_for as cli_args


def args_for(tmp_path, processes: int) -> argparse.Namespace:
    return argparse.Namespace(processes=processes, out=tmp_path)


def record_share(args, share, stop, progress) -> Summary:
    """Writes the share's items to a file named after this process; every item issued."""
    (args.out / f"share-{os.getpid()}").write_text("\n".join(share))
    progress(len(share))
    return Summary(issued=len(share))


def die_on_poison(args, share, stop, progress) -> Summary:
    """A share holding "poison" dies without a summary (as a crashed child would)."""
    if "poison" in share:
        os._exit(3)
    progress(len(share))
    return Summary(issued=len(share))


def wait_for_stop(args, share, stop, progress) -> Summary:
    """Marks itself started, then waits for the stop the parent passes on: "issued" 1 if it came."""
    (args.out / f"started-{os.getpid()}").touch()
    stopped = stop.wait(30)
    return Summary(issued=int(stopped), interrupted=stopped)


def test_split_deals_every_item_into_exactly_one_share():
    items = [f"csr-{i}" for i in range(10)]
    shares = bulk_processes.split(items, 3)
    assert [len(s) for s in shares] == [4, 3, 3]
    assert sorted(x for s in shares for x in s) == sorted(items)
    assert bulk_processes.split(items[:2], 5) == [["csr-0"], ["csr-1"]]  # no empty share


def test_shares_run_in_separate_processes_and_their_summaries_add_up(tmp_path):
    items = [f"csr-{i}" for i in range(101)]
    shown: list[int] = []
    summary = bulk_processes.run_shares(
        record_share, args_for(tmp_path, 4), items, threading.Event(), shown.append, Summary(skipped=7)
    )
    assert summary.issued == 101 and summary.skipped == 7 and summary.lost_shares == 0
    assert sum(shown) == 101  # the progress bar reached the end
    files = list(tmp_path.glob("share-*"))
    assert len(files) == 4 and str(os.getpid()) not in {f.name[6:] for f in files}
    seen = [line for f in files for line in f.read_text().splitlines()]
    assert sorted(seen) == sorted(items)  # every CSR in exactly one share


def test_a_share_that_dies_is_counted_as_lost(tmp_path):
    items = ["a", "poison", "b", "c"]  # split in two: ["a", "b"] and ["poison", "c"]
    summary = bulk_processes.run_shares(
        die_on_poison, args_for(tmp_path, 2), items, threading.Event(), lambda n: None, Summary()
    )
    assert summary.issued == 2 and summary.lost_shares == 1 and not summary.interrupted


def test_a_stop_is_passed_on_to_every_share(tmp_path):
    stop = threading.Event()

    def stop_once_all_started():
        while len(list(tmp_path.glob("started-*"))) < 3:
            if stop.wait(0.01):
                return
        stop.set()

    watcher = threading.Thread(target=stop_once_all_started)
    watcher.start()
    try:
        summary = bulk_processes.run_shares(
            wait_for_stop, args_for(tmp_path, 3), ["a", "b", "c"], stop, lambda n: None, Summary()
        )
    finally:
        stop.set()
        watcher.join()
    assert summary.issued == 3  # each share saw the stop, and reported
    assert summary.interrupted and summary.lost_shares == 0


@pytest.mark.parametrize("processes", [0, -1])
def test_processes_below_one_are_refused_with_a_message(tmp_path, processes):
    args = cli_args(tmp_path, tmp_path / "none.jsonl", concurrency=1)
    args.processes = processes
    with pytest.raises(SystemExit, match="--processes must be at least 1"):
        bulk_issue.main(args)


class CertifiedBy(FakeClient):
    """Answers like FakeClient, with the certificate naming the process that collected it."""

    def get_certificate(self, **request) -> dict:
        return {**super().get_certificate(**request), "Certificate": f"{os.getpid()}\n"}


def test_bulk_issue_with_processes_hands_its_csrs_to_child_processes(monkeypatch, tmp_path):
    # Forked children inherit the stand-in client (a spawned child would import the real one).
    fork = multiprocessing.get_context("fork")
    monkeypatch.setattr(bulk_processes.multiprocessing, "get_context", lambda method=None: fork)
    monkeypatch.setattr(bulk_issue, "make_client", lambda *a: CertifiedBy())
    names = [f"n{i}" for i in range(30)]
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text("\n".join(f'{{"name": "{n}", "csr": "{n}"}}' for n in names))
    args = cli_args(tmp_path, jsonl, concurrency=2)
    args.processes = 3
    summary = bulk_issue.run(args)
    assert summary.issued == 30 and not summary.failed and summary.lost_shares == 0
    collectors = {(tmp_path / "out" / f"{n}.pem").read_text().strip() for n in names}
    assert len(collectors) == 3 and str(os.getpid()) not in collectors  # three children, not this one
