"""``pcaq bulk-issue --processes N``: the CSRs split into N disjoint shares, one client process each.

The tool's own CPU (building, signing and parsing each call, writing the files; a few hundred
microseconds a certificate) runs on one core per process because of Python's GIL, and its threads
contend for that GIL. Each share runs the same pipelined loop (``bulk_issue.issue_share``) with its
own client and threads; the outputs are per CSR (certificate, chain) and each process appends to a
journal of its own, so shares never write the same file, and a re-run resumes whatever any of them
left undone.

The parent draws the one progress bar (a shared counter) and sums the shares' summaries. A stop
(SIGINT or SIGTERM to the parent, or Ctrl-C, which reaches the whole process group) is passed on to
every share, which finishes its calls in flight and reports. A share that dies without reporting is
counted as lost: what it answered is journalled, and the next run picks up the rest.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import queue
import signal
import threading
from collections.abc import Callable
from typing import Protocol, TypeVar


class Summary(Protocol):
    """What ``bulk_issue.Summary`` offers here (passed in: no import cycle)."""

    interrupted: bool
    lost_shares: int

    def add(self, other: Summary) -> None: ...


S = TypeVar("S", bound=Summary)
# (args, share, stop, progress) -> a share's summary: bulk_issue.issue_share.
ShareRunner = Callable[[argparse.Namespace, list, threading.Event, Callable[[int], object]], Summary]

_POLL_SECONDS = 0.1  # how often the parent moves the progress bar and checks its children


def split(items: list, shares: int) -> list[list]:
    """``items`` dealt round-robin into at most ``shares`` non-empty, disjoint lists (each CSR in one)."""
    count = max(1, min(shares, len(items)))
    return [items[i::count] for i in range(count)]


def run_shares(
    runner: ShareRunner,
    args: argparse.Namespace,
    todo: list,
    stop: threading.Event,
    progress: Callable[[int], object],
    summary: S,
) -> S:
    """Run ``runner`` over ``args.processes`` shares of ``todo`` in child processes and add their
    summaries into ``summary`` (``Summary.add``), counting in ``lost_shares`` the children that ended
    without one. Returns ``summary``."""
    context = multiprocessing.get_context()
    done = context.Value("q", 0)  # CSRs ended (issued or failed), over all shares
    results = context.Queue()
    children = [
        context.Process(target=_share, args=(runner, args, share, done, results), name=f"bulk-issue-{i}")
        for i, share in enumerate(split(todo, args.processes))
    ]
    for child in children:
        child.start()
    parts: list[Summary] = []
    shown, passed_on = 0, False
    try:
        while len(parts) < len(children):
            if stop.is_set() and not passed_on:
                _signal(children, signal.SIGINT)
                passed_on = True
            try:
                parts.append(results.get(timeout=_POLL_SECONDS))
            except queue.Empty:
                if all(child.exitcode is not None for child in children):
                    parts.extend(_left_in(results))
                    break
            shown = _show(done, shown, progress)
    finally:
        if len(parts) < len(children):  # left early (an error here): no child runs on unwatched
            _signal(children, signal.SIGINT)
        for child in children:
            child.join()
    _show(done, shown, progress)
    for part in parts:
        summary.add(part)
    summary.lost_shares += len(children) - len(parts)
    summary.interrupted = summary.interrupted or stop.is_set()
    return summary


def _share(runner: ShareRunner, args: argparse.Namespace, share: list, done, results) -> None:
    """A child: run one share with a stop of its own (SIGINT, SIGTERM), counting into ``done``."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    def progress(count: int) -> None:
        with done.get_lock():
            done.value += count

    results.put(runner(args, share, stop, progress))


def _signal(children: list, sig: int) -> None:
    for child in children:
        if child.exitcode is None and child.pid is not None:
            try:
                os.kill(child.pid, sig)
            except ProcessLookupError:
                pass  # it has just ended


def _left_in(results) -> list[Summary]:
    """Summaries still in the queue once every child has ended (each is flushed before its child exits)."""
    left = []
    while True:
        try:
            left.append(results.get(timeout=_POLL_SECONDS))
        except queue.Empty:
            return left


def _show(done, shown: int, progress: Callable[[int], object]) -> int:
    """Move the progress bar to the shared count; the count now shown."""
    now = done.value
    if now > shown:
        progress(now - shown)
    return now
