"""Account addresses: 20 bytes derived from a public key, printed as bech32m (BIP-350).

``address = H("ss/addr", pubkey)[:20]``, shown as ``ssp1...`` with a 6-character checksum: any
single typo, and almost every other, is caught before tokens are sent (docs/protocol.md §6).
The bech32m checksum is a published error-detecting code, not cryptography; the few lines below
follow BIP-350 (no maintained PyPI package implements bech32m).
"""

from chain.crypto import TAG_ADDRESS, hash_of

HRP = "ssp"
ADDRESS_SIZE = 20
_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32M_CONST = 0x2BC830A3
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


class AddressError(ValueError):
    """A printed address is malformed or fails its checksum."""


def address_from_pubkey(pubkey):
    """The 20-byte account address of an Ed25519 public key."""
    if len(pubkey) != 32:
        raise ValueError(f"public key must be 32 bytes, got {len(pubkey)}")
    return hash_of(TAG_ADDRESS, bytes(pubkey))[:ADDRESS_SIZE]


def encode_address(address):
    """Print a 20-byte address as ``ssp1...``."""
    if len(address) != ADDRESS_SIZE:
        raise ValueError(f"address must be {ADDRESS_SIZE} bytes, got {len(address)}")
    data = _to_5bit(address)
    return HRP + "1" + "".join(_CHARSET[d] for d in data + _checksum(HRP, data))


def decode_address(text):
    """Parse ``ssp1...`` back to 20 bytes; raises AddressError saying what is wrong."""
    if not isinstance(text, str):
        raise AddressError("address must be text")
    text = text.strip()
    if text.lower() != text and text.upper() != text:
        raise AddressError(f"address {text!r} mixes upper and lower case")
    text = text.lower()
    prefix = HRP + "1"
    if not text.startswith(prefix):
        raise AddressError(f"address {text!r} must start with '{prefix}'")
    body = text[len(prefix):]
    bad = sorted({c for c in body if c not in _CHARSET})
    if bad:
        raise AddressError(f"address {text!r} has characters not used in addresses: {''.join(bad)}")
    data = [_CHARSET.index(c) for c in body]
    if len(data) != 38:
        raise AddressError(f"address {text!r} has {len(body)} characters after '{prefix}', "
                           "expected 38")
    if _polymod(_hrp_expand(HRP) + data) != _BECH32M_CONST:
        raise AddressError(f"address {text!r} fails its checksum (mistyped?)")
    raw = _from_5bit(data[:-6])
    if raw is None or len(raw) != ADDRESS_SIZE:
        raise AddressError(f"address {text!r} does not hold a 20-byte account id")
    return raw


def _polymod(values):
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= _GENERATOR[i] if (top >> i) & 1 else 0
    return chk


def _hrp_expand(hrp):
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _checksum(hrp, data):
    mod = _polymod(_hrp_expand(hrp) + data + [0] * 6) ^ _BECH32M_CONST
    return [(mod >> 5 * (5 - i)) & 31 for i in range(6)]


def _to_5bit(data):
    acc = bits = 0
    out = []
    for byte in data:
        acc = (acc << 8) | byte
        bits += 8
        while bits >= 5:
            bits -= 5
            out.append((acc >> bits) & 31)
    if bits:
        out.append((acc << (5 - bits)) & 31)
    return out


def _from_5bit(data):
    acc = bits = 0
    out = bytearray()
    for value in data:
        acc = (acc << 5) | value
        bits += 5
        if bits >= 8:
            bits -= 8
            out.append((acc >> bits) & 0xFF)
    if bits >= 5 or (acc << (8 - bits)) & 0xFF:
        return None  # non-zero padding: not a canonical encoding
    return bytes(out)
