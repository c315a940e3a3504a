"""Hash domains and Ed25519 signing (DESIGN §3, docs/protocol.md §2).

Every signature covers the chain id: the signed message is
``H("ss/sig", text(chain_id) || object_hash)``, so a signature made for one chain never verifies
on another.
"""

from nacl.signing import SigningKey

from edge import _fast
from edge._fast.codec_py import MAX_CHAIN_ID, encode_text

TAG_TX = b"ss/tx"
TAG_HEADER = b"ss/header"
TAG_SIG = b"ss/sig"
TAG_ADDRESS = b"ss/addr"
TAG_GENESIS = b"ss/genesis"
TAG_RECEIPT = b"ss/receipt"
TAG_STATE_KEY = b"ss/state-key"
TAG_FRAME = b"ss/frame"

HASH_SIZE = 32


def hash_of(tag, data):
    """BLAKE2b-256 of ``data`` in the domain ``tag``."""
    return _fast.tagged_hash(tag, data)


def signing_message(chain_id, object_hash):
    """The 32-byte message an Ed25519 signature actually signs."""
    return _fast.tagged_hash(TAG_SIG, encode_text(chain_id, MAX_CHAIN_ID, "chain_id") + object_hash)


def sign(signing_key: SigningKey, chain_id, object_hash):
    """Signature of ``object_hash`` on chain ``chain_id``."""
    return signing_key.sign(signing_message(chain_id, object_hash)).signature


def verify(pubkey, chain_id, object_hash, signature):
    """True when ``signature`` signs ``object_hash`` for ``chain_id`` under ``pubkey``."""
    return _fast.verify_batch([pubkey], [signing_message(chain_id, object_hash)], [signature])[0]


def verify_many(chain_id, items):
    """Verify ``(pubkey, object_hash, signature)`` triples in one batch; returns a list of bools."""
    return start_verify_many(chain_id, items).result()


class _NothingToVerify:
    def result(self):
        return []


def start_verify_many(chain_id, items):
    """Start verifying ``(pubkey, object_hash, signature)`` triples; returns a job whose
    ``result()`` is the list of bools. The compiled verifier runs on its own native thread, so a
    block's signatures are checked while its transactions execute."""
    if not items:
        return _NothingToVerify()
    prefix = encode_text(chain_id, MAX_CHAIN_ID, "chain_id")
    messages = _fast.hash_batch(TAG_SIG, [prefix + item[1] for item in items])
    return _fast.start_verify([item[0] for item in items], messages, [item[2] for item in items])
