"""The names a certificate is found by: its common names and subject alternative names, lower-cased.

The worker hands them to the commit, which writes them into the CA's names index for the console's
search (shared/records/certificate_index.py).
"""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import NameOID

MAX_NAME = 256  # a longer name is cut: a search by prefix still finds it
MAX_NAMES = 1000  # names indexed per certificate (a CSR may carry many SANs; the index must stay bounded)


def searchable_names(cert: x509.Certificate) -> tuple[str, ...]:
    """The certificate's CNs and SAN values (DNS, e-mail, URI, IP address), lower-cased, distinct."""
    found: list[str] = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    if san is not None:
        for kind in (x509.DNSName, x509.RFC822Name, x509.UniformResourceIdentifier, x509.IPAddress):
            found.extend(str(v) for v in san.get_values_for_type(kind))
    # "\0" separates a name from its serial in the index: a name never carries one
    names = dict.fromkeys(n.lower().replace("\0", "")[:MAX_NAME] for n in found if n)
    return tuple(names)[:MAX_NAMES]
