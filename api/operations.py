"""The routing table: operation name -> handler. Adding an operation is adding a row."""

from __future__ import annotations

from pcaq.api.handlers import Handler, reports, revocation
from pcaq.api.handlers import authorities as ca
from pcaq.api.handlers import certificates as certs
from pcaq.api.handlers import permissions as perms

HANDLERS: dict[str, Handler] = {
    "CreateCertificateAuthority": ca.create_certificate_authority,
    "DescribeCertificateAuthority": ca.describe_certificate_authority,
    "ListCertificateAuthorities": ca.list_certificate_authorities,
    "GetCertificateAuthorityCsr": ca.get_certificate_authority_csr,
    "GetCertificateAuthorityCertificate": ca.get_certificate_authority_certificate,
    "ImportCertificateAuthorityCertificate": ca.import_certificate_authority_certificate,
    "UpdateCertificateAuthority": ca.update_certificate_authority,
    "DeleteCertificateAuthority": ca.delete_certificate_authority,
    "RestoreCertificateAuthority": ca.restore_certificate_authority,
    "TagCertificateAuthority": ca.tag_certificate_authority,
    "UntagCertificateAuthority": ca.untag_certificate_authority,
    "ListTags": ca.list_tags,
    "IssueCertificate": certs.issue_certificate,
    "GetCertificate": certs.get_certificate,
    "RevokeCertificate": revocation.revoke_certificate,
    "CreateCertificateAuthorityAuditReport": reports.create_certificate_authority_audit_report,
    "DescribeCertificateAuthorityAuditReport": reports.describe_certificate_authority_audit_report,
    "CreatePermission": perms.create_permission,
    "DeletePermission": perms.delete_permission,
    "ListPermissions": perms.list_permissions,
    "PutPolicy": perms.put_policy,
    "GetPolicy": perms.get_policy,
    "DeletePolicy": perms.delete_policy,
}
