"""Ed25519 key pairs and key files (mode 0600; the secret is never printed or logged)."""

import json
import os
import stat

from nacl.signing import SigningKey

from chain import crypto
from chain.address import address_from_pubkey, encode_address


class KeyFileError(Exception):
    """A key file is missing, unreadable, malformed or too widely readable."""


class KeyPair:
    """A signing key with its public key and address. ``repr`` never shows the secret."""

    __slots__ = ("_signing_key", "pubkey", "address")

    def __init__(self, signing_key: SigningKey):
        self._signing_key = signing_key
        self.pubkey = bytes(signing_key.verify_key)
        self.address = address_from_pubkey(self.pubkey)

    @classmethod
    def generate(cls):
        return cls(SigningKey.generate())

    @classmethod
    def from_seed(cls, seed):
        """Deterministic key from a 32-byte seed (tests and vectors only)."""
        return cls(SigningKey(seed))

    @property
    def address_text(self):
        return encode_address(self.address)

    def reveal_secret(self, epoch):
        """The secret of this key's reveal chain number ``epoch``: derived from the seed, so a
        node that lost its data rebuilds the same chain (docs/protocol.md §13)."""
        return crypto.hash_of(b"ss/reveal-secret",
                              bytes(self._signing_key) + epoch.to_bytes(8, "big"))

    def sign(self, chain_id, object_hash):
        """Signature over ``object_hash`` for ``chain_id`` (see chain.crypto)."""
        return crypto.sign(self._signing_key, chain_id, object_hash)

    def box_key(self):
        """The X25519 private key (``nacl.public.PrivateKey``) of this key, for sealed boxes
        (libsodium's Ed25519-to-Curve25519 conversion; docs/protocol.md §18.3)."""
        return self._signing_key.to_curve25519_private_key()

    def __repr__(self):
        return f"KeyPair(address={self.address_text})"

    def save(self, path):
        """Write a new key file with mode 0600; refuses to overwrite an existing one."""
        doc = {"type": "ed25519", "seed": bytes(self._signing_key).hex(),
               "pubkey": self.pubkey.hex(), "address": self.address_text}
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())

    @classmethod
    def load(cls, path):
        """Read a key file, refusing one that group or others may read."""
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            raise KeyFileError(f"key file {path} does not exist") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyFileError(f"key file {path} is readable by others (mode {mode & 0o777:o}); "
                               f"fix it with: chmod 600 {path}")
        try:
            with open(path) as f:
                doc = json.load(f)
            seed = bytes.fromhex(doc["seed"])
            if doc.get("type") != "ed25519" or len(seed) != 32:
                raise ValueError("not an ed25519 seed")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise KeyFileError(f"key file {path} is not a valid SmartShare key ({exc})") from None
        pair = cls.from_seed(seed)
        if "pubkey" in doc and doc["pubkey"] != pair.pubkey.hex():
            raise KeyFileError(f"key file {path} is corrupt: its public key does not match its seed")
        return pair
