"""``pcaq console-index``: put the certificates recorded before the console into its lists.

See shared/ca/backfill.py. Safe to run while pcaq serves, and again.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import redis

from pcaq.ca.arns import parse_ca_arn
from pcaq.ca.backfill import backfill
from pcaq.errors import PcaqError
from pcaq.records import Store
from pcaq.revocation.revoke import all_ca_ids


def add_parser(
    commands, redis_url: argparse.ArgumentParser, store_for: Callable[[argparse.Namespace], Store]
) -> None:
    """Register ``pcaq console-index`` on the CLI's subcommands (``store_for``: the Redis it names)."""
    p = commands.add_parser(
        "console-index",
        parents=[redis_url],
        help="list the certificates recorded before the console in its pages (once, after an upgrade)",
        description="Add every issued and failed certificate request to the console's per-CA lists and "
        "search (requests finished since the console exists are there already). Safe to repeat.",
    )
    p.add_argument("--ca", metavar="ARN", default=None, help="only this CA (default: every CA)")
    p.set_defaults(func=lambda args: _run(args, store_for(args)))


def _run(args: argparse.Namespace, store: Store) -> int:
    try:
        ca_ids = [parse_ca_arn(args.ca).ca_id] if args.ca else all_ca_ids(store, store.settings)
        for ca_id in ca_ids:
            print(f"{ca_id}: {backfill(store, ca_id)} certificate requests indexed")
    except PcaqError as exc:
        print(f"pcaq: {exc.message}", file=sys.stderr)
        return 2
    except redis.RedisError as exc:
        print(f"pcaq: Redis: {exc}", file=sys.stderr)
        return 1
    return 0
