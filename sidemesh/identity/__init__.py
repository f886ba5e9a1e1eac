"""Identity: the mesh's certificate authority and SPIFFE workload certificates.

Owns: the root and intermediate CA (made once, persisted 0600, or loaded from the
operator's files), SPIFFE IDs taken apart (``SpiffeId``), CSR checks (pure
functions), signing, bootstrap tokens that prove which workload is asking, and the
trust bundle.
Must not: ever hold a workload's private key (workloads send CSRs), or log a token;
write or parse a SPIFFE ID's text, or define a workload reference, itself (both are
``model.refs``').
"""

from sidemesh.identity.ca import CertificateAuthority, IssuedCertificate
from sidemesh.identity.spiffe import SpiffeId

__all__ = ["CertificateAuthority", "IssuedCertificate", "SpiffeId"]
