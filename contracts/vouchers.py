"""Payment-channel vouchers: the digest the buyer signs off chain (docs §14.6).

    voucher_hash = H("ss/voucher", channel_id || u64be(amount) || u64be(nonce))
    message      = H("ss/sig", text(chain_id) || voucher_hash)      (the project's signing rule)

``amount`` is cumulative (everything owed so far); ``amount`` and ``nonce`` must both increase
from one redeemed voucher to the next. Wallets sign with ``sign_voucher``; the payment-channel
contract gets the same 32-byte message from the host helper ``chain.voucher_message``.
"""

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from edge import _fast
from edge._fast.codec_py import MAX_CHAIN_ID, encode_text

TAG_VOUCHER = b"ss/voucher"
TAG_SIG = b"ss/sig"
MAX_CHANNEL_ID = 64
U64_MAX = (1 << 64) - 1


def voucher_hash(channel_id: bytes, amount: int, nonce: int) -> bytes:
    """H("ss/voucher", channel_id || u64be(amount) || u64be(nonce))."""
    if not isinstance(channel_id, bytes) or not 0 < len(channel_id) <= MAX_CHANNEL_ID:
        raise ValueError(f"channel id must be 1..{MAX_CHANNEL_ID} bytes")
    for name, v in (("amount", amount), ("nonce", nonce)):
        if type(v) is not int or not 0 <= v <= U64_MAX:
            raise ValueError(f"{name} must be an integer in 0..2^64-1")
    return _fast.tagged_hash(TAG_VOUCHER, channel_id + amount.to_bytes(8, "big")
                             + nonce.to_bytes(8, "big"))


def voucher_message(chain_id: str, channel_id: bytes, amount: int, nonce: int) -> bytes:
    """The 32-byte message an Ed25519 voucher signature signs on chain ``chain_id``."""
    return _fast.tagged_hash(TAG_SIG, encode_text(chain_id, MAX_CHAIN_ID, "chain_id")
                             + voucher_hash(channel_id, amount, nonce))


def sign_voucher(signing_key: SigningKey, chain_id: str, channel_id: bytes, amount: int,
                 nonce: int) -> bytes:
    """The buyer's 64-byte signature of a voucher."""
    return signing_key.sign(voucher_message(chain_id, channel_id, amount, nonce)).signature


def verify_voucher(pubkey: bytes, chain_id: str, channel_id: bytes, amount: int, nonce: int,
                   signature: bytes) -> bool:
    """True when ``signature`` is the buyer's valid signature of this voucher."""
    try:
        VerifyKey(pubkey).verify(voucher_message(chain_id, channel_id, amount, nonce), signature)
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True
