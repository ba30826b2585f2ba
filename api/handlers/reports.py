"""Handlers of the audit report operations."""

from __future__ import annotations

from pcaq.api.handlers import Context
from pcaq.ca.audit_reports import AuditReports


def create_certificate_authority_audit_report(ctx: Context, p: dict) -> dict:
    report_id, key = AuditReports(ctx.authorities).create(
        ctx.caller,
        p["CertificateAuthorityArn"],
        p["S3BucketName"],
        p["AuditReportResponseFormat"],
        ctx.call(p),
    )
    return {"AuditReportId": report_id, "S3Key": key}


def describe_certificate_authority_audit_report(ctx: Context, p: dict) -> dict:
    return AuditReports(ctx.authorities).describe(
        ctx.caller, p["CertificateAuthorityArn"], p["AuditReportId"]
    )
