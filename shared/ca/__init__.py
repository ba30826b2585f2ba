"""The certificate authority's services: CAs and their lifecycle, issuance, permissions and policies,
tags, the key vault, the audit trail and audit reports, revocation configuration."""
