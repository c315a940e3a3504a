"""The encrypted delivery of a data purchase (docs/protocol.md §18.3): what the gateway seals to
the buyer's key, the commitment it posts on chain, and what the buyer checks before it decrypts.

    records   = "ssdr" || u8 1 || bytes8(dataset id) || device public key (32)
                || u32be(count) || (u32be(len) || signed device frame (§11))*
    envelope  = "ssde" || u8 1 || bytes8(purchase id) || crypto_box_seal(box_key, records)
    commitment = H("ss/data", envelope)

``bytes8(x)`` is ``u8(len) || x``. The frames are the device's own signed frames, so the buyer
checks each one's signature with the device key (whose id the dataset names) as well as the
commitment the gateway posted. A sealed box (libsodium ``crypto_box_seal``: an ephemeral X25519
key, XSalsa20-Poly1305) is readable only with the buyer's X25519 secret; the buyer's agent
derives its key pair from its wallet key (``KeyPair.box_key``).
"""

import struct

from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox

from chain.crypto import TAG_FRAME, hash_of, verify_many
from edge import _fast

TAG_DATA = b"ss/data"
TAG_DEVICE = b"ss/device"     # device id = H("ss/device", public key)[:8] (§11)
RECORDS_MAGIC, ENVELOPE_MAGIC, VERSION = b"ssdr", b"ssde", 1
U32 = struct.Struct(">I")
MAX_ID = 32


class DataError(ValueError):
    """A delivery that cannot be used; the message says why and what to do."""


def commitment(envelope):
    """The delivery commitment the gateway posts on chain."""
    return hash_of(TAG_DATA, bytes(envelope))


def _bytes8(value):
    if not 1 <= len(value) <= MAX_ID:
        raise ValueError("an id is 1..32 bytes")
    return bytes([len(value)]) + value


def _take8(data, at, what):
    if at >= len(data) or not 1 <= data[at] <= MAX_ID or at + 1 + data[at] > len(data):
        raise DataError(f"truncated {what}")
    end = at + 1 + data[at]
    return data[at + 1:end], end


def pack_records(dataset_id, device_pubkey, frames):
    """The plaintext of a delivery: the dataset, the device key and its signed frames."""
    parts = [RECORDS_MAGIC, bytes([VERSION]), _bytes8(dataset_id), bytes(device_pubkey),
             U32.pack(len(frames))]
    for frame in frames:
        parts += (U32.pack(len(frame)), frame)
    return b"".join(parts)


def unpack_records(plain):
    """``(dataset id, device public key, [frame bytes])`` of a delivery's plaintext (strict)."""
    plain = bytes(plain)
    if plain[:5] != RECORDS_MAGIC + bytes([VERSION]):
        raise DataError("not a SmartShare data delivery (bad magic or version)")
    dataset_id, at = _take8(plain, 5, "dataset id")
    if at + 36 > len(plain):
        raise DataError("truncated device key")
    pubkey, (count,) = plain[at:at + 32], U32.unpack_from(plain, at + 32)
    at, frames = at + 36, []
    for _ in range(count):
        if at + 4 > len(plain):
            raise DataError("truncated record")
        (size,) = U32.unpack_from(plain, at)
        if at + 4 + size > len(plain):
            raise DataError("truncated record")
        frames.append(plain[at + 4:at + 4 + size])
        at += 4 + size
    if at != len(plain):
        raise DataError("trailing bytes after the records")
    return dataset_id, pubkey, frames


def seal(purchase_id, box_key, plain):
    """The envelope of ``plain`` sealed to the 32-byte X25519 ``box_key``."""
    return (ENVELOPE_MAGIC + bytes([VERSION]) + _bytes8(purchase_id)
            + SealedBox(PublicKey(bytes(box_key))).encrypt(plain))


def open_delivery(envelope, purchase_id, expected_hash, box_secret):
    """The plaintext of a delivery after every check a buyer makes: the envelope is the one
    committed on chain (``expected_hash``), for this purchase, and decrypts with the buyer's
    X25519 secret (a ``nacl.public.PrivateKey``). DataError says which check failed."""
    envelope = bytes(envelope)
    if expected_hash is None:
        raise DataError("no delivery is committed on chain for this purchase yet; fetch again "
                        "later")
    if commitment(envelope) != bytes(expected_hash):
        raise DataError("delivery hash mismatch: the payload is not the one the gateway "
                        "committed on chain (damaged or tampered); fetch it again")
    if envelope[:5] != ENVELOPE_MAGIC + bytes([VERSION]):
        raise DataError("not a SmartShare data envelope (bad magic or version)")
    pid, at = _take8(envelope, 5, "purchase id")
    if pid != bytes(purchase_id):
        raise DataError(f"the envelope is for purchase {pid.hex()}, not {bytes(purchase_id).hex()}")
    try:
        return SealedBox(box_secret).decrypt(envelope[at:])
    except CryptoError:
        raise DataError("the payload does not decrypt with this buyer's key (tampered, or "
                        "sealed to another key)") from None


def verified_frames(plain, dataset, chain_id):
    """The frames of a delivery's plaintext, each checked: the device is the dataset's and every
    frame is signed by it for ``chain_id``; ``[(seq, timestamp_ms, payload JSON text)]``."""
    _, pubkey, frames = unpack_records(plain)
    if _fast.tagged_hash(TAG_DEVICE, pubkey)[:8] != bytes(dataset["device"]):
        raise DataError("the records come from another device than the dataset's")
    decoded = [_fast.decode_frame(raw) for raw in frames]
    checks = verify_many(chain_id, [(pubkey, hash_of(TAG_FRAME, raw[:-64]), frame[6])
                                    for raw, frame in zip(frames, decoded)])
    for frame, ok in zip(decoded, checks):
        if bytes(frame[2]) != bytes(dataset["device"]) or not ok:
            raise DataError(f"record {frame[3]} is not signed by the dataset's device")
    return [(frame[3], frame[4], frame[5]) for frame in decoded]


def buyer_box(keypair):
    """``(box public key bytes, PrivateKey)`` of a buyer's wallet key."""
    secret = keypair.box_key()
    return bytes(secret.public_key), secret


__all__ = ["DataError", "commitment", "pack_records", "unpack_records", "seal", "open_delivery",
           "verified_frames", "buyer_box", "PrivateKey"]
