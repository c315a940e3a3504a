"""What a node's home holds besides its config: the node key, the default wallet, the genesis
and the broker's secrets, made by ``smartshare init`` and by the gateway's first boot
(edge/firstboot.py). Each ``ensure_*`` creates what is missing and returns what exists: a key,
a genesis or a secret is never replaced, and a crash while one is written leaves either no file
or the whole file (written aside, synced, then linked into place)."""

import os
import secrets
import time

from chain import genesis as genesis_mod
from chain.genesis import Genesis
from chain.keys import KeyPair

WALLET_DIR = "wallets"
DEFAULT_WALLET = "default"


def new_secrets():
    """Fresh passwords of the broker accounts the node hands out (config attribute -> value)."""
    return {"mqtt_bridge_password": secrets.token_urlsafe(24),
            "mqtt_provision_password": secrets.token_urlsafe(12),
            "ha_password": secrets.token_urlsafe(18)}


def new_devnet_chain_id():
    return f"ss-devnet-{secrets.token_hex(3)}"


def ensure_key(path):
    """``(KeyPair, created)``: the key in ``path``, or a new one written there (mode 0600)."""
    if os.path.lexists(path):
        return KeyPair.load(path), False
    key = KeyPair.generate()
    _publish(path, key.save)
    return key, True


def ensure_wallet(home, name=DEFAULT_WALLET):
    """``(KeyPair, created)`` of the wallet ``name`` in ``home/wallets`` (folder mode 0700)."""
    os.makedirs(os.path.join(home, WALLET_DIR), mode=0o700, exist_ok=True)
    return ensure_key(os.path.join(home, WALLET_DIR, f"{name}.json"))


def ensure_devnet_genesis(config, node_key, wallet, chain_id=None):
    """``(Genesis, created)``: the home's genesis, or a single-producer devnet (the node
    produces, the wallet holds the SSP) starting at the current slot."""
    path = config.path(config.genesis_file)
    if os.path.lexists(path):
        return Genesis.load(path), False
    slot_ms = genesis_mod.Params().slot_ms
    start = time.time_ns() // 1_000_000 // slot_ms * slot_ms
    genesis = genesis_mod.devnet(chain_id or new_devnet_chain_id(), start, node_key.pubkey,
                                 wallet.address)
    _publish(path, genesis.save)
    return genesis, True


def _publish(path, write):
    """``write(aside)``, sync it, then link it to ``path``: never over an existing file."""
    aside = f"{path}.{os.getpid()}.new"
    if os.path.lexists(aside):
        os.unlink(aside)
    try:
        write(aside)
        with open(aside, "rb") as f:
            os.fsync(f.fileno())
        os.link(aside, path)  # fails if path appeared meanwhile: the existing one wins
    finally:
        if os.path.lexists(aside):
            os.unlink(aside)
    _sync_dir(os.path.dirname(path) or ".")


def _sync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
