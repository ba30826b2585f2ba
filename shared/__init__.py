"""pcaq: a private certificate authority that speaks the AWS Private CA API.

This folder (``shared/`` in the repository) is the package ``pcaq`` itself and holds the domain, one
package per role, lowest first:

- :mod:`pcaq.errors`: the typed errors every layer raises; only the front end turns them into HTTP.
- :mod:`pcaq.pki`: pure certificate rules on cryptography objects (keys, CSRs, subjects, profiles,
  validity, certificate building). No Redis, no Celery.
- :mod:`pcaq.platform`: settings, logs, the Celery queue, the Redis transport, throttling, credentials.
- :mod:`pcaq.records`: every Redis key and script.
- :mod:`pcaq.ca`: CAs, issuance, permissions, policies, tags, the key vault, the audit trail.
- :mod:`pcaq.revocation`: RevokeCertificate, CRLs, OCSP, and the urgent work they wait for.

Above them sit :mod:`pcaq.api` (``api/``, the wire), :mod:`pcaq.worker` (``worker/``, Celery) and
:mod:`pcaq.cli` (``cli/``, the ``pcaq`` command). ``lint-imports`` holds the layers to that order.
"""
