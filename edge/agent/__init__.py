"""The SmartAgent (DESIGN §7): what makes a gateway a market.

One module per job, each with a small interface:

- ``signer``, ``identity``: the node's key behind a ``Signer``, its on-chain registration, and the
  devices the owner approved (the ``edge/mqtt`` registry, handed in by the node);
- ``chain_port``, ``wallet``, ``outbox``: the chain through the node's HTTP API, and the wallet
  that signs, submits, tracks and re-submits transactions until irreversible, from a durable
  LMDB outbox with backoff;
- ``services``, ``quotes``, ``matching``: service types with units and price policies, supply and
  demand quotes, and an order book per service type (price-time priority, fair-price bounds);
- ``metering``, ``retention``: usage per session from committed device frames, idempotent under
  redelivery and restart, and pruning of what is settled;
- ``channels``, ``messages``, ``seller``, ``buyer``: vouchers through the payment channel
  (docs/protocol.md §14.6-14.7, §17) between the two sides of a session;
- ``market_link``: the MQTT side of the market (``ss/v1/market/...``);
- ``data_desk``, ``data_store``, ``data_envelope``, ``data_calls``: the data market (§18): offered
  devices' data kept per dataset, purchases sealed to the buyer's key and committed on chain
  through ``data_market.lua``, on the seller's worker and wallet.

It imports ``chain`` and ``contracts`` (never the reverse) and nothing of ``edge`` or
``edge/mqtt``: the node (``edge/node.py``) wires it to the bridge's commits, the device registry
and the API client. Its state lives in named LMDB databases of the node's environment
(``records.AGENT_DBS``).
"""
