"""Payment-channel vouchers: the digest the buyer signs off chain (docs/protocol.md §14.6).

    voucher_hash = H("ss/voucher", fixed(contract, 20) || fixed(payee, 20)
                                   || bytes(channel_id, 64) || u64be(amount) || u64be(nonce))
    message      = H("ss/sig", text(chain_id) || voucher_hash)      (the project's signing rule)

A voucher is bound to one chain, one deployment of the channel contract and one payee, so it can
never be replayed against another network, another deployment that reuses the channel id, or
another seller. ``amount`` is cumulative (everything owed so far); ``amount`` and ``nonce`` must
both increase from one redeemed voucher to the next. Wallets sign with ``sign_voucher``; the
payment-channel contract gets the same 32-byte message from the host helper
``chain.voucher_message(channel_id, payee, amount, nonce)``, which binds the calling contract.
"""

from typing import NamedTuple

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from edge import _fast
from edge._fast.codec_py import MAX_CHAIN_ID, encode_text, encode_uvarint

TAG_VOUCHER = b"ss/voucher"
TAG_SIG = b"ss/sig"
ADDRESS_SIZE = 20
MAX_CHANNEL_ID = 64
U64_MAX = (1 << 64) - 1


class Voucher(NamedTuple):
    """What a voucher signature covers: the cumulative ``amount`` owed on ``channel_id`` of the
    channel contract at ``contract`` on ``chain_id``, payable to ``payee``, at ``nonce``."""
    chain_id: str
    contract: bytes
    payee: bytes
    channel_id: bytes
    amount: int
    nonce: int

    def digest(self) -> bytes:
        """voucher_hash (ValueError naming a field that is out of range)."""
        for name in ("contract", "payee"):
            value = getattr(self, name)
            if not isinstance(value, bytes) or len(value) != ADDRESS_SIZE:
                raise ValueError(f"{name} must be a {ADDRESS_SIZE}-byte address")
        channel_id = self.channel_id
        if not isinstance(channel_id, bytes) or not 0 < len(channel_id) <= MAX_CHANNEL_ID:
            raise ValueError(f"channel id must be 1..{MAX_CHANNEL_ID} bytes")
        for name in ("amount", "nonce"):
            v = getattr(self, name)
            if type(v) is not int or not 0 <= v <= U64_MAX:
                raise ValueError(f"{name} must be an integer in 0..2^64-1")
        return _fast.tagged_hash(TAG_VOUCHER, b"".join((
            self.contract, self.payee, encode_uvarint(len(channel_id)), channel_id,
            self.amount.to_bytes(8, "big"), self.nonce.to_bytes(8, "big"))))

    def message(self) -> bytes:
        """The 32-byte message an Ed25519 voucher signature signs."""
        return _fast.tagged_hash(TAG_SIG, encode_text(self.chain_id, MAX_CHAIN_ID, "chain_id")
                                 + self.digest())


def voucher_message(chain_id, contract, payee, channel_id, amount, nonce) -> bytes:
    """``Voucher(...).message()``: what the contract host computes for ``chain.voucher_message``."""
    return Voucher(chain_id, contract, payee, channel_id, amount, nonce).message()


def sign_voucher(signing_key: SigningKey, voucher: Voucher) -> bytes:
    """The buyer's 64-byte signature of ``voucher``."""
    return signing_key.sign(voucher.message()).signature


def verify_voucher(pubkey: bytes, voucher: Voucher, signature: bytes) -> bool:
    """True when ``signature`` is ``pubkey``'s valid signature of ``voucher``."""
    try:
        VerifyKey(pubkey).verify(voucher.message(), signature)
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True
