"""The provenance ledger: a signed, hash-chained, replicated record of who contributed what to
each model (see docs/provenance.md)."""

from medfed.provenance.digests import MessageDigest, model_file_digest, weights_digest
from medfed.provenance.entries import GENESIS, Entry, entry_hash
from medfed.provenance.errors import LedgerError
from medfed.provenance.ledger import Ledger, append_signed, divergence, replicate
from medfed.provenance.signers import Signer, Signers, load_signers, new_signer, save_signers, sign

__all__ = [
    "GENESIS",
    "Entry",
    "Ledger",
    "LedgerError",
    "MessageDigest",
    "Signer",
    "Signers",
    "append_signed",
    "divergence",
    "entry_hash",
    "load_signers",
    "model_file_digest",
    "new_signer",
    "replicate",
    "save_signers",
    "sign",
    "weights_digest",
]
