"""The gateway's own certificate authority and the broker's server certificate (DESIGN §6).

``smartshare init`` (and the node's first start, for older homes) makes, in ``<home>/tls/``:

    ca.crt      the gateway's CA (EC P-256, self-signed, 20 years); devices pin it
    ca.key      its key (mode 0600)
    server.crt  Mosquitto's certificate, signed by the CA (825 days): names localhost, the
                host name (and ``<name>.local``) and the machine's addresses when it was made
    server.key  its key (mode 0600)

Devices learn the CA's SHA-256 fingerprint from mDNS (TXT ``ca``) and, once approved, from their
sealed credentials (which carry the CA itself); they verify the broker's chain against it.
``smartshare cert rotate`` makes a new server certificate (``--ca``: a new CA too, after which
every device must onboard again). Keys and certificates come from the ``cryptography`` library.
"""

import datetime
import ipaddress
import os
import socket

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from chain.secretfile import write_secret
from edge.mqtt.pinning import fingerprint

TLS_DIR = "tls"
CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY = "ca.crt", "ca.key", "server.crt", "server.key"
CA_DAYS, SERVER_DAYS = 20 * 365, 825


class TlsError(Exception):
    """The gateway's certificates are missing or unusable; the message says what to do."""


def tls_path(home, name):
    return os.path.join(home, TLS_DIR, name)


def ensure(home, names=()):
    """Make the CA and the server certificate when they are missing; returns the CA's SHA-256
    fingerprint (hex). ``names``: more host names or addresses for the server certificate."""
    os.makedirs(os.path.join(home, TLS_DIR), mode=0o700, exist_ok=True)
    if not os.path.exists(tls_path(home, CA_CERT)):
        _make_ca(home)
    if not os.path.exists(tls_path(home, SERVER_CERT)):
        issue_server(home, names)
    return ca_fingerprint(home)


def rotate(home, new_ca=False, names=()):
    """A new server certificate (and, with ``new_ca``, a new CA first); the CA fingerprint."""
    if new_ca:
        _make_ca(home)
    issue_server(home, names)
    return ca_fingerprint(home)


def ca_pem(home):
    try:
        with open(tls_path(home, CA_CERT)) as f:
            return f.read()
    except OSError as exc:
        raise TlsError(f"no gateway CA in {tls_path(home, CA_CERT)} ({exc.strerror}); "
                       "make one with: smartshare cert rotate --ca") from None


def ca_fingerprint(home):
    return fingerprint(ca_pem(home))


def server_names(home):
    """The DNS names and IP addresses the server certificate carries."""
    with open(tls_path(home, SERVER_CERT), "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.DNSName) + [
        str(ip) for ip in san.get_values_for_type(x509.IPAddress)]


# -- making them ----------------------------------------------------------------------------------

def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def _write_key(path, key):
    write_secret(path, key.private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()))


def _write_cert(path, cert):
    fresh = path + ".new"
    with open(fresh, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    os.replace(fresh, path)


def _make_ca(home):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                         f"SmartShare gateway CA {socket.gethostname()[:32]}")])
    now = _now()
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                         False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    _write_key(tls_path(home, CA_KEY), key)
    _write_cert(tls_path(home, CA_CERT), cert)


def issue_server(home, names=()):
    """A fresh server key and certificate signed by the gateway CA."""
    try:
        with open(tls_path(home, CA_KEY), "rb") as f:
            ca_key = serialization.load_pem_private_key(f.read(), None)
        with open(tls_path(home, CA_CERT), "rb") as f:
            ca = x509.load_pem_x509_certificate(f.read())
    except (OSError, ValueError) as exc:
        raise TlsError(f"the gateway CA in {os.path.join(home, TLS_DIR)} cannot be used ({exc}); "
                       "make a new one with: smartshare cert rotate --ca") from None
    key = ec.generate_private_key(ec.SECP256R1())
    host = socket.gethostname().lower()
    now = _now()
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host[:64])]))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=SERVER_DAYS))
            .add_extension(x509.SubjectAlternativeName(_alt_names(host, names)), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    _write_key(tls_path(home, SERVER_KEY), key)
    _write_cert(tls_path(home, SERVER_CERT), cert)


def _alt_names(host, extra):
    dns, ips = ["localhost", host, f"{host}.local"], ["127.0.0.1", "::1"] + _lan_addresses()
    for name in extra:
        try:
            ips.append(str(ipaddress.ip_address(name)))
        except ValueError:
            dns.append(name.lower())
    out = [x509.DNSName(n) for n in dict.fromkeys(dns) if n]
    return out + [x509.IPAddress(ipaddress.ip_address(ip)) for ip in dict.fromkeys(ips)]


def _lan_addresses():
    import ifaddr   # a dependency of zeroconf
    return sorted({ip.ip for adapter in ifaddr.get_adapters() for ip in adapter.ips
                   if isinstance(ip.ip, str) and not ip.ip.startswith("127.")})
