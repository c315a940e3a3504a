"""Ed25519 batch verification, the readable reference: one libsodium call per item via PyNaCl."""

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

PUBKEY_SIZE = 32
SIGNATURE_SIZE = 64
MAX_BATCH = 1 << 20


def check_batch(pubkeys, messages, signatures):
    """Validate the shape of a batch; returns its length. Shared by both twins."""
    for name, seq in (("pubkeys", pubkeys), ("messages", messages), ("signatures", signatures)):
        if not isinstance(seq, (list, tuple)):
            raise TypeError(f"{name} must be a list or tuple, not {type(seq).__name__}")
    n = len(pubkeys)
    if n == 0:
        raise ValueError("empty batch: nothing to verify")
    if n > MAX_BATCH:
        raise ValueError(f"batch of {n} exceeds the limit of {MAX_BATCH}")
    if len(messages) != n or len(signatures) != n:
        raise ValueError(f"batch lengths differ: {n} pubkeys, {len(messages)} messages, "
                         f"{len(signatures)} signatures")
    for i in range(n):
        for what, item, size in (("pubkey", pubkeys[i], PUBKEY_SIZE),
                                 ("message", messages[i], None),
                                 ("signature", signatures[i], SIGNATURE_SIZE)):
            if type(item) is not bytes:
                raise TypeError(f"{what} {i} must be bytes, not {type(item).__name__}")
            if size is not None and len(item) != size:
                raise ValueError(f"{what} {i} must be {size} bytes, got {len(item)}")
    return n


def verify_one(pubkey, message, signature):
    """True when ``signature`` is libsodium-valid for ``message`` under ``pubkey``."""
    try:
        VerifyKey(pubkey).verify(message, signature)
    except BadSignatureError:
        return False
    return True


def verify_batch(pubkeys, messages, signatures):
    """Verify each (pubkey, message, signature) triple; returns a list of bools."""
    n = check_batch(pubkeys, messages, signatures)
    return [verify_one(pubkeys[i], messages[i], signatures[i]) for i in range(n)]


class VerifyJob:
    """A checked batch whose verification runs when its result is first asked for."""

    def __init__(self, pubkeys, messages, signatures):
        check_batch(pubkeys, messages, signatures)
        self._batch = (pubkeys, messages, signatures)
        self._results = None

    def result(self):
        if self._results is None:
            self._results = verify_batch(*self._batch)
        return list(self._results)


def start_verify(pubkeys, messages, signatures):
    """Check the batch now; verify it by ``result()`` (the compiled twin starts at once)."""
    return VerifyJob(pubkeys, messages, signatures)
