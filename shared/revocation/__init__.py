"""Revocation: RevokeCertificate, CRLs, the OCSP responder, and the urgent work queue through which
an API process has a worker sign what a reader is waiting for."""
