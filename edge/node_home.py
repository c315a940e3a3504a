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
from chain.producer import BlockSigner, start_watermark

WALLET_DIR = "wallets"
DEFAULT_WALLET = "default"
OWNER_WALLET = "owner"


def new_secrets():
    """Fresh passwords of the broker accounts the node hands out (config attribute -> value).
    Hex, so none starts with "-" (one in 64 URL-safe ones did, and ``--market-password <it>``
    then read as an unknown option)."""
    return {"mqtt_bridge_password": secrets.token_hex(24),
            "mqtt_provision_password": secrets.token_hex(12),
            "mqtt_market_password": secrets.token_hex(12),
            "ha_password": secrets.token_hex(18)}


def new_devnet_chain_id():
    return f"ss-devnet-{secrets.token_hex(3)}"


def ensure_key(path):
    """``(KeyPair, created)``: the key in ``path``, or a new one written there (mode 0600)."""
    if os.path.lexists(path):
        return KeyPair.load(path), False
    key = KeyPair.generate()
    _publish(path, key.save)
    return key, True


def ensure_producer_key(config):
    """``(KeyPair, created)``: the node (producer) key; a new one also gets its first vote
    watermark (it never voted). An existing key without a watermark keeps none: the node then
    waits out the evidence window before it votes (docs/protocol.md §13)."""
    key, created = ensure_key(config.path(config.key_file))
    if created:
        start_watermark(config.path(config.votes_dir), key.pubkey)
    return key, created


def ensure_wallet(home, name=DEFAULT_WALLET):
    """``(KeyPair, created)`` of the wallet ``name`` in ``home/wallets`` (folder mode 0700)."""
    os.makedirs(os.path.join(home, WALLET_DIR), mode=0o700, exist_ok=True)
    return ensure_key(os.path.join(home, WALLET_DIR, f"{name}.json"))


def ensure_devnet_genesis(config, node_key, owner, wallet, chain_id=None):
    """``(Genesis, created)``: the home's genesis, or a single-producer devnet (the node key
    produces, ``owner`` stakes and earns, ``wallet`` holds the SSP) from the current slot."""
    path = config.path(config.genesis_file)
    if os.path.lexists(path):
        return Genesis.load(path), False
    slot_ms = genesis_mod.Params().slot_ms
    start = time.time_ns() // 1_000_000 // slot_ms * slot_ms
    genesis = genesis_mod.devnet(chain_id or new_devnet_chain_id(), start,
                                 genesis_agent(node_key, "devnet-agent", owner.address),
                                 wallet.address)
    _publish(path, genesis.save)
    return genesis, True


def genesis_agent(node_key, name, owner_address):
    """A genesis agent: ``node_key`` produces for ``owner_address``, committed to the key's
    first reveal chain."""
    return genesis_mod.GenesisAgent(node_key.pubkey, name, owner_address,
                                    BlockSigner(node_key).commitment(0))


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
