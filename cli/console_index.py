"""``pcaq console-index``: put the certificates recorded before the console into its lists.

See shared/ca/backfill.py. Safe to run while pcaq serves, and again.
"""

from __future__ import annotations

import argparse

from pcaq.ca.arns import parse_ca_arn
from pcaq.ca.backfill import backfill
from pcaq.records import Store
from pcaq.revocation.revoke import all_ca_ids


def run(args: argparse.Namespace, store: Store) -> int:
    """Index the certificates of ``args.ca`` (every CA when None) in ``store``; the exit status
    (a bad ARN and Redis errors are raised: ``pcaq`` reports them)."""
    ca_ids = [parse_ca_arn(args.ca).ca_id] if args.ca else all_ca_ids(store, store.settings)
    for ca_id in ca_ids:
        print(f"{ca_id}: {backfill(store, ca_id)} certificate requests indexed")
    return 0
