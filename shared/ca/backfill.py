"""Backfill the console's per-CA indexes with the certificates recorded before them.

A pcaq upgraded to one with the console lists only the requests finished since (the commit writes the
indexes). ``pcaq console-index`` runs this over every CA: it reads each finished request once (SCAN,
a page at a time), reads the names and Not After of issued certificates, and adds them to the indexes
as the commit would have. Running it again changes nothing; it may run while pcaq serves.
"""

from __future__ import annotations

from cryptography import x509

from pcaq.pki.names import searchable_names
from pcaq.records import Store
from pcaq.records.certificate_index import Finished


def backfill(store: Store, ca_id: str, page: int = 1000) -> int:
    """Index every finished request of one CA; returns how many were indexed."""
    cursor, done = 0, 0
    while True:
        cursor, found = store.scan_finished(ca_id, cursor, page)
        entries = []
        for serial, issued, der, finished_at in found:
            if issued and der:
                try:
                    cert = x509.load_der_x509_certificate(der)
                except ValueError:
                    entries.append(Finished(serial, True, finished_at))  # listed, if not searchable
                    continue
                names, not_after = searchable_names(cert), cert.not_valid_after_utc.timestamp()
                entries.append(Finished(serial, True, finished_at, not_after, names))
            else:
                entries.append(Finished(serial, issued, finished_at))
        store.add_finished(ca_id, entries)
        done += len(entries)
        if cursor == 0:
            return done
