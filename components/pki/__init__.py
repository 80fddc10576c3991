"""The cluster's PKI: a declarative table (table.py) rendered into pulumi-tls resources (component.py)."""
from components.pki.component import CertPair, Pki, PkiArgs

__all__ = ["CertPair", "Pki", "PkiArgs"]
