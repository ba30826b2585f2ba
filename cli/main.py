"""The ``pcaq`` command: its subcommands' arguments, each command's code loaded only when it runs.

``pcaq up`` runs the whole service (:mod:`pcaq.cli.up`); ``bulk-issue`` is a client of the API
(:mod:`pcaq.cli.bulk_issue`); ``audit``, ``blocklist``, ``console-index`` and ``archive-backfill``
act on a service's Redis (:mod:`pcaq.cli.store_commands`). Every parser is built here from the
standard library alone: ``pcaq bulk-issue`` does not load Redis, the CA or the archive to start (it
started in 0.45 s of CPU with them, a tenth of a second a thousand certificates).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pcaq.cli.children import default_workers

EMBEDDED_REDIS_CHOICES = ("auto", "redis-server", "fakeredis")  # cli/embedded_redis.py's kinds


def _command(module: str, function: str) -> Callable[[argparse.Namespace], int]:
    """The handler ``pcaq.cli.<module>.<function>``, imported when its command runs."""

    def run(args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(f"pcaq.cli.{module}"), function)(args)

    return run


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pcaq", description="A private CA speaking the AWS Private CA API.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up = commands.add_parser(
        "up",
        help="run the API and the workers in the foreground (Ctrl-C stops them)",
        description="Run the API and the workers in the foreground until Ctrl-C or SIGTERM. Uses Redis at "
        "REDIS_URL, or an embedded one (redis-server from PATH, else an in-process server) when unset.",
    )
    up.add_argument("--host", default="127.0.0.1", help="address the API listens on (default: %(default)s)")
    up.add_argument("--port", type=int, default=8080, help="port the API listens on (default: %(default)s)")
    up.add_argument(
        "--workers",
        type=int,
        default=default_workers(),
        help="signing processes (Celery --concurrency; default: one per CPU but one, at least one; "
        "here %(default)s)",
    )
    up.add_argument(
        "--embedded-redis",
        choices=EMBEDDED_REDIS_CHOICES,
        default=None,
        help="which Redis to run when REDIS_URL is unset (default: PCAQ_EMBEDDED_REDIS, else auto)",
    )
    up.set_defaults(func=_command("up", "run"))
    _add_store_commands(commands)
    _add_bulk_issue(commands)
    return parser


def _add_store_commands(commands: argparse._SubParsersAction) -> None:
    redis_url = argparse.ArgumentParser(add_help=False)
    redis_url.add_argument(
        "--redis-url",
        help="the Redis pcaq uses (default: REDIS_URL, else the embedded Redis of a pcaq up running on "
        "PCAQ_DATA_DIR, else redis://127.0.0.1:6379/0)",
    )
    audit = commands.add_parser(
        "audit",
        parents=[redis_url],
        help="print a CA's audit trail (state changes, issuance, revocation)",
        description="Print the audit trail of one CA, oldest first: when, what, who (access key), account, "
        "request id and details.",
    )
    audit.add_argument("--ca", required=True, metavar="ARN", help="the CA's ARN")
    audit.add_argument("--count", type=int, default=None, help="only the last COUNT entries")
    audit.add_argument("--json", action="store_true", help="one JSON object per line")
    audit.set_defaults(func=_command("store_commands", "audit"))
    blocklist = commands.add_parser(
        "blocklist",
        parents=[redis_url],
        help="manage the public keys the workers refuse to certify",
        description="Keys on the blocklist are refused at signing (GetCertificate answers "
        "RequestFailedException). FILE holds PEM public keys, certificates, CSRs or private keys, or "
        "SHA-256 fingerprints of SubjectPublicKeyInfo (64 hex digits), one per line.",
    )
    blocklist.add_argument("action", choices=("add", "remove", "list"))
    blocklist.add_argument("files", nargs="*", metavar="FILE", help="for add and remove")
    blocklist.set_defaults(func=_command("store_commands", "blocklist"))
    index = commands.add_parser(
        "console-index",
        parents=[redis_url],
        help="list the certificates recorded before the console in its pages (once, after an upgrade)",
        description="Add every issued and failed certificate request to the console's per-CA lists and "
        "search (requests finished since the console exists are there already). Safe to repeat.",
    )
    index.add_argument("--ca", metavar="ARN", default=None, help="only this CA (default: every CA)")
    index.set_defaults(func=_command("store_commands", "index_for_console"))
    backfill = commands.add_parser(
        "archive-backfill",
        parents=[redis_url],
        help="queue for the archive the finished records Redis held before the archive existed",
        description="Walk Redis's certificate records (SCAN, in small steps) and queue every finished one "
        "that is not archived yet; the workers archive them, then retention removes them when due. Safe "
        "to run again.",
    )
    backfill.set_defaults(func=_command("store_commands", "backfill_archive"))


def _add_bulk_issue(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "bulk-issue",
        help="issue a folder of CSRs through the API (resumable, never issues twice)",
        description="Issue every CSR in --csr-dir (*.csr, *.pem, *.der, *.req) or --jsonl through the ACM PCA "
        "API, writing <name>.pem and <name>.chain.pem to --out. Interrupt it and run it again to resume. Credentials "
        "and region come from the usual AWS environment variables or files.",
    )
    p.add_argument("--ca", required=True, help="ARN of the issuing CA")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--csr-dir", type=Path, help="folder of CSR files")
    source.add_argument("--jsonl", type=Path, help='file of JSON lines {"name": ..., "csr": "<PEM>"}')
    p.add_argument("--out", type=Path, required=True, help="folder for certificates, chains and the journal")
    p.add_argument(
        "--endpoint-url", default=os.environ.get("AWS_ENDPOINT_URL_ACM_PCA"), help="the pcaq API URL"
    )
    p.add_argument(
        "--region",
        default=None,
        help="region for SigV4 (default: the CA ARN's, else the AWS configuration's)",
    )
    p.add_argument(
        "--ca-bundle",
        default=None,
        help="PEM file of the CAs that an https endpoint's certificate is checked against (default: "
        "AWS_CA_BUNDLE or the profile's ca_bundle, else the system's)",
    )
    p.add_argument("--signing-algorithm", default="SHA256WITHECDSA", help="default: %(default)s")
    p.add_argument("--validity-days", type=int, default=365, help="default: %(default)s")
    p.add_argument("--template-arn", default=None, help="default: the service's EndEntityCertificate/V1")
    p.add_argument(
        "--concurrency", type=int, default=8, help="requests in flight per process (default: %(default)s)"
    )
    p.add_argument(
        "--processes",
        type=int,
        default=1,
        help="client processes, each with a disjoint share of the CSRs (default: %(default)s); the tool's "
        "own CPU (HTTP, SigV4, JSON, files) is then spread over that many cores",
    )
    p.add_argument(
        "--output-format",
        choices=("files", "jsonl"),
        default="files",
        help="files: <name>.pem and <name>.chain.pem per CSR (<name>.error for a failure); jsonl: a line "
        'per certificate in certificates.jsonl ({"name", "arn", "certificate", "chain"}) and per failure '
        "in errors.jsonl, cheaper for large runs (default: %(default)s)",
    )
    p.add_argument("--retry-failed", action="store_true", help="try again CSRs that failed in an earlier run")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_command("bulk_issue", "main"))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pcaq`` console script; returns the process exit status."""
    args = _parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
