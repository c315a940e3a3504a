"""Who signs for the agent: a ``Signer`` (DESIGN §7), so that a secure element or a remote signer
can replace the key file without the rest of the agent noticing.

A signer has ``pubkey`` (32 bytes), ``address`` (20 bytes) and ``sign(chain_id, object_hash)``:
the Ed25519 signature of ``H("ss/sig", text(chain_id) || object_hash)`` (docs/protocol.md §3).
That one operation signs transactions (object = tx id), vouchers (object = voucher_hash,
§14.6) and market messages (object = H("ss/market", body), §17.2).
"""

from typing import Protocol

from chain.address import encode_address
from chain.crypto import verify
from chain.keys import KeyPair


class Signer(Protocol):
    """The interface every signer offers."""
    pubkey: bytes
    address: bytes

    def sign(self, chain_id: str, object_hash: bytes) -> bytes:
        ...


class KeyFileSigner:
    """A signer over a key file (mode 0600; ``chain.keys``). The secret never leaves it."""

    def __init__(self, path):
        self._pair = KeyPair.load(path)
        self.pubkey, self.address = self._pair.pubkey, self._pair.address

    @classmethod
    def from_keypair(cls, pair):
        signer = cls.__new__(cls)
        signer._pair, signer.pubkey, signer.address = pair, pair.pubkey, pair.address
        return signer

    def sign(self, chain_id, object_hash):
        return self._pair.sign(chain_id, object_hash)

    def __repr__(self):
        return f"KeyFileSigner({encode_address(self.address)})"


def check_signer(signer, chain_id):
    """Raise ValueError unless ``signer`` produces signatures its public key verifies."""
    probe = b"\x5a" * 32
    if not verify(signer.pubkey, chain_id, probe, signer.sign(chain_id, probe)):
        raise ValueError("the signer's signatures do not verify under its public key")
