"""The SmartAgent inside the node: the seller of the gateway's devices (``edge/agent``), wired to
what the node has (docs/protocol.md §17).

- its key: ``[agent] key_file`` (made at the first start, mode 0600), the payee of every sale
  and the payer of the settlement fees;
- the chain: the node's own HTTP API (``edge.client``), so the agent sees exactly what a remote
  client would, and queues settlements while it does not answer;
- the devices: the ``edge/mqtt`` registry (approvals, keys, kinds) and the bridge's commits
  (``DeviceService.commit_listeners``); frames pruned through the registry;
- the market: its own MQTT session as the broker's ``smartshare-bridge`` user, where the
  bridge connects (the plaintext loopback listener, else TLS with the home's CA).
"""

import os

from chain.address import decode_address
from chain.keys import KeyPair
from edge.agent.chain_port import ChainPort
from edge.agent.data_desk import DataConfig
from edge.agent.identity import Identity
from edge.agent.market_link import SELLER_SUBSCRIPTIONS, MarketLink
from edge.agent.runner import AgentRunner
from edge.agent.seller import Seller, SellerConfig
from edge.agent.signer import KeyFileSigner
from edge.client import ApiClient
from edge.mqtt.broker import BRIDGE_USER
from edge.mqtt.pinning import client_context
from edge.mqtt.schemas import canonical_kind


def agent_signer(config):
    """The agent's signer over ``[agent] key_file``, making the key on first use."""
    path = config.path(config.agent_key_file)
    if not os.path.exists(path):
        KeyPair.generate().save(path)
    return KeyFileSigner(path)


def seller_config(config):
    contract = config.agent_channel_contract
    if contract:
        contract = decode_address(contract)
    return SellerConfig(interval_ms=config.agent_interval_s * 1000,
                        settle_interval_ms=config.agent_settlement_s * 1000,
                        dispute_ms=config.agent_dispute_s * 1000,
                        channel_blocks=config.agent_channel_blocks,
                        retention_ms=config.agent_retention_days * 86_400_000,
                        auto_offer=config.agent_auto_offer, contract=contract or None)


def data_config(config):
    contract, fee_to = config.agent_data_contract, config.agent_data_fee_account
    return DataConfig(decode_address(contract) if contract else None,
                      decode_address(fee_to) if fee_to else None, config.agent_data_fee_permille,
                      config.agent_data_retention_days * 86_400_000)


class NodeAgent:
    """The node's selling agent and its worker; ``runner.call`` reaches it from the API."""

    def __init__(self, config, store, chain_id, node_pubkey, devices, log=print):
        self.config, self.log = config, log
        self.signer = agent_signer(config)
        self.chain = ChainPort(ApiClient.for_home(config.home, config.api_url, timeout=10.0))
        identity = Identity(self.signer, self.chain, devices.registry, canonical_kind)
        self.seller = Seller(store, self.signer, self.chain, chain_id, identity,
                             devices.registry, seller_config(config), log, data_config(config))
        host, port = devices.broker.local_address      # as the bridge connects
        context = None if config.mqtt_port else client_context(devices.ca_pem)
        self.runner = AgentRunner(self.seller, log=log)
        self.runner.link = MarketLink(host, port, BRIDGE_USER, config.mqtt_bridge_password,
                                      f"smartshare-agent-{node_pubkey.hex()[:16]}",
                                      SELLER_SUBSCRIPTIONS, self.runner.deliver, log, context)
        devices.commit_listeners.append(self.runner.on_frames)

    def start(self):
        self.runner.start()
        self.log(f"agent: selling as {self.signer.address.hex()[:8]}… "
                 f"({self.config.agent_interval_s} s metering interval)")

    def stop(self):
        self.runner.stop()
