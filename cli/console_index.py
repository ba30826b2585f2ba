"""``pcaq console-index``: put the certificates recorded before the console into its lists.

See shared/ca/backfill.py. Safe to run while pcaq serves, and again.
"""

from __future__ import annotations

import argparse
import sys

import redis

from pcaq.ca.arns import parse_ca_arn
from pcaq.ca.backfill import backfill
from pcaq.errors import PcaqError
from pcaq.records import Store
from pcaq.revocation.revoke import all_ca_ids


def run(args: argparse.Namespace, store: Store) -> int:
    """Index the certificates of ``args.ca`` (every CA when None) in ``store``; the exit status."""
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
