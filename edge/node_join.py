"""``smartshare init --genesis FILE [--role light|agent]``: a home that joins an existing network
(docs: README "Light nodes"). The node key is new (it is the p2p identity, and the producer key
once the owner registers it as an agent); the genesis is copied; peers come from ``--seed`` or
mDNS."""

import os
import shutil

from chain.genesis import Genesis
from edge import config as config_mod
from edge.api_tokens import ensure_cli_token
from edge import node_home
from edge.cli_base import CliError
from edge.config import Config, ConfigError


def init_member(args):
    path = config_mod.config_path(args.home)
    if os.path.exists(path):
        raise CliError(f"{os.path.dirname(path)} already holds a node ({path}); use another "
                       "--home, or delete the folder to start over", "exists")
    home = os.path.dirname(path)
    genesis = Genesis.load(args.genesis)
    if not 0 < args.api_port < 65536:
        raise CliError("--api-port must be 1..65535", "bad_port")
    p2p_port = args.p2p_port
    if p2p_port is None:
        from edge.testnet import free_ports
        p2p_port = free_ports(1)[0] if args.role == "agent" else 0
    config = Config(home=home, role=args.role, api_port=args.api_port, p2p_port=p2p_port,
                    seeds=list(args.seed), light_checkpoint=args.checkpoint,
                    advertise=not args.seed, **node_home.new_secrets())
    try:
        config_mod.check(config, path)
    except ConfigError as exc:
        raise CliError(str(exc).replace(f"{path}: ", ""), "bad_config") from None
    os.makedirs(home, exist_ok=True)
    shutil.copyfile(args.genesis, config.path(config.genesis_file))
    node_key, _ = node_home.ensure_producer_key(config)
    wallet, _ = node_home.ensure_wallet(home)
    config.save()
    ensure_cli_token(home)
    data = {"home": home, "role": args.role, "chain_id": genesis.chain_id,
            "genesis_hash": genesis.hash.hex(), "node_address": node_key.address_text,
            "node_pubkey": node_key.pubkey.hex(), "wallet_address": wallet.address_text,
            "api": config.api_url, "seeds": config.seeds}
    text = (f"Initialised a {args.role} node of {genesis.chain_id} in {home}\n"
            f"  node key         {node_key.address_text}\n"
            f"  wallet 'default' {wallet.address_text}\n"
            f"  peers            {', '.join(config.seeds) or 'found on the LAN by mDNS'}\n"
            f"  API              {config.api_url}\n"
            f"Run it with: smartshare --home {home} node run")
    return data, text
