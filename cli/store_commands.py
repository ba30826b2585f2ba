"""The ``pcaq`` commands that act on a running service's Redis: ``audit``, ``blocklist``,
``console-index`` and ``archive-backfill``; each finds the Redis as ``pcaq up`` does."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import redis

from pcaq.archive import ArchiveDown, open_archive
from pcaq.ca.audit_trail import AuditTrail
from pcaq.cli import archive_backfill, console_index, embedded_redis
from pcaq.errors import PcaqError
from pcaq.pki import key_checks
from pcaq.platform import redis_connect
from pcaq.platform.settings import load
from pcaq.records import Store


def store_for(args: argparse.Namespace) -> Store:
    """The Redis a command names (``--redis-url``), else the service's (Sentinels, ``REDIS_URL``, or the
    embedded Redis of a ``pcaq up`` on ``PCAQ_DATA_DIR``); a password file that cannot be used ends the
    command with the reason."""
    try:
        return _store_for(args)
    except embedded_redis.EmbeddedRedisError as exc:
        raise SystemExit(f"pcaq: {exc}") from exc


def _store_for(args: argparse.Namespace) -> Store:
    settings = load()
    if args.redis_url:  # named on the command line: that one server, whatever the environment says
        return Store.from_settings(replace(settings, redis_url=args.redis_url, redis_sentinels=()))
    if redis_connect.uses_sentinel(settings):
        return Store.from_settings(settings)
    # The embedded Redis asks for the password kept in the data folder: found there, never typed.
    url = settings.redis_url or embedded_redis.embedded_redis_url(settings.data_dir)
    if url:
        settings = replace(settings, redis_url=url)
    return Store.from_settings(settings)


def audit(args: argparse.Namespace) -> int:
    """``pcaq audit``: a CA's audit trail, oldest first (from the archive too, when there is one)."""
    store = store_for(args)
    return _reported(store, lambda: _print_audit(args, store))


def _print_audit(args: argparse.Namespace, store: Store) -> int:
    entries = AuditTrail(store, archive=open_archive(store.settings)).entries(args.ca, args.count)
    for entry in entries:
        print(entry.as_json() if args.json else entry.line())
    if not entries:
        print(f"pcaq: no audit entries for {args.ca}", file=sys.stderr)
    return 0


def blocklist(args: argparse.Namespace) -> int:
    if args.action != "list" and not args.files:
        print(f"pcaq: blocklist {args.action} needs at least one FILE", file=sys.stderr)
        return 2
    fingerprints: set[str] = set()
    for name in args.files:
        try:
            fingerprints |= key_checks.fingerprints_in_text(Path(name).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            print(f"pcaq: {name}: {exc}", file=sys.stderr)
            return 2
    store = store_for(args)
    return _reported(store, lambda: _change_blocklist(args.action, fingerprints, store))


def _change_blocklist(action: str, fingerprints: set[str], store: Store) -> int:
    if action == "list":
        for fingerprint in sorted(store.blocklist_members()):
            print(fingerprint)
        return 0
    changed = store.blocklist_add(fingerprints) if action == "add" else store.blocklist_remove(fingerprints)
    for fingerprint in sorted(fingerprints):
        print(fingerprint)
    verb = "added" if action == "add" else "removed"
    print(f"pcaq: {verb} {changed} of {len(fingerprints)} fingerprints", file=sys.stderr)
    return 0


def index_for_console(args: argparse.Namespace) -> int:
    """``pcaq console-index``."""
    store = store_for(args)
    return _reported(store, lambda: console_index.run(args, store))


def backfill_archive(args: argparse.Namespace) -> int:
    """``pcaq archive-backfill``."""
    store = store_for(args)
    return _reported(store, lambda: archive_backfill.run(store))


def _reported(store: Store, command: Callable[[], int]) -> int:
    """``command``'s exit status; what stops it said in one line: 2 for a bad request (an ARN that is
    not one), 1 for the service's Redis or archive out of reach."""
    try:
        return command()
    except ArchiveDown as exc:
        print(f"pcaq: {exc}", file=sys.stderr)
        return 1
    except PcaqError as exc:
        print(f"pcaq: {exc.message}", file=sys.stderr)
        return 2
    except redis.RedisError as exc:
        print(f"pcaq: Redis at {redis_connect.describe(store.settings)}: {exc}", file=sys.stderr)
        return 1
