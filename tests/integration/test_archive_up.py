"""`pcaq up` with a PostgreSQL archive and a short retention: certificates valid a few seconds leave
Redis, and every ARN issued still answers GetCertificate, the same, and appears in the audit report."""

from __future__ import annotations

import json
import time

import pytest
import redis

from pcaq.records import keys
from tests.acmpca import activate_root, fetch, issue, make_csr, pca_client
from tests.archive_db import needs_postgres, private_database
from tests.faults.harness import scrape
from tests.support import running_stack, wait_until

pytestmark = [pytest.mark.integration, needs_postgres]

COUNT = 20


def test_certificates_that_left_redis_answer_from_the_archive(tmp_path, redis_base_url):
    with private_database() as archive_url:
        env = {
            "PCAQ_ARCHIVE_URL": archive_url,
            "PCAQ_RETENTION_AFTER_EXPIRY": "1s",
            "PCAQ_FAILED_RETENTION": "1s",
        }
        with running_stack(tmp_path, env=env, redis_base_url=redis_base_url) as stack:
            pca = pca_client(stack.endpoint_url)
            root_arn, _ = activate_root(pca)
            short = {"Value": int(time.time()) + 4, "Type": "ABSOLUTE"}  # expires in seconds
            arns = [issue(pca, root_arn, make_csr(), validity=short) for _ in range(COUNT)]
            before = {}
            for arn in arns:
                _, pem, chain = fetch(pca, root_arn, arn)
                before[arn] = (pem, chain)
            port = int(stack.endpoint_url.rsplit(":", 1)[1])
            wait_until(
                lambda: scrape(port).get("pcaq_records_removed_total", 0) >= COUNT,
                timeout=60,
                what="the short-lived certificates leaving Redis",
            )
            client = redis.Redis.from_url(stack.redis_url)
            ca_id = root_arn.rsplit("/", 1)[1]
            for arn in arns:
                assert not client.exists(keys.certificate(f"{ca_id}:{arn.rsplit('/', 1)[1]}"))
                got = pca.get_certificate(CertificateAuthorityArn=root_arn, CertificateArn=arn)
                assert (got["Certificate"], got.get("CertificateChain")) == before[arn]

            report = pca.create_certificate_authority_audit_report(
                CertificateAuthorityArn=root_arn, S3BucketName="reports", AuditReportResponseFormat="JSON"
            )
            wait_until(
                lambda: (
                    pca.describe_certificate_authority_audit_report(
                        CertificateAuthorityArn=root_arn, AuditReportId=report["AuditReportId"]
                    )["AuditReportStatus"]
                    == "SUCCESS"
                ),
                timeout=60,
                what="the audit report",
            )
            rows = json.loads((stack.data_dir / "s3" / "reports" / report["S3Key"]).read_text())
            assert set(arns) < {row["certificateArn"] for row in rows} and len(rows) == COUNT + 1
