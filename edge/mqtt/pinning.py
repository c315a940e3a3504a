"""A device's side of the gateway's TLS (docs/protocol.md §15.3): trust exactly the gateway's own
CA, identified by the SHA-256 fingerprint that mDNS announces and the sealed credentials repeat.

Before onboarding a device knows only the fingerprint: it connects once without verification,
reads the CA the broker keeps retained on ``ss/v1/ca``, and keeps it only if its fingerprint
matches; from then on every connection verifies the broker's chain against that CA."""

import hashlib
import ssl


class PinningError(Exception):
    """The gateway's CA is unknown or does not match its announced fingerprint."""


def fingerprint(pem):
    """SHA-256 of a PEM certificate's DER encoding, hex: what devices pin."""
    try:
        return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()
    except ValueError as exc:
        raise PinningError(f"not a PEM certificate ({exc})") from None


def check(pem, expected):
    """``pem`` when its fingerprint is ``expected``, else PinningError."""
    actual = fingerprint(pem)
    if actual != expected.lower():
        raise PinningError(f"the broker's CA has fingerprint {actual[:16]}..., the gateway "
                           f"announced {expected[:16]}...: refusing it (someone else's broker?)")
    return pem


def client_context(pem):
    """An SSL context that trusts exactly the gateway CA ``pem``. The chain is checked, the
    name is not: devices reach the gateway by whatever address mDNS gave, and the pinned CA
    signs for this gateway only."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=pem)
    return context


def unverified_context():
    """For a device's first connection only, to read the CA (then ``check`` it)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context
