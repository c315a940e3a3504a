"""Node authentication (DESIGN §7): the agent's key behind a ``Signer``, its registration as an
agent on chain, and the local devices the owner approved.

The device registry is ``edge/mqtt``'s (approvals, public keys, kinds); the node hands it in as
any object with ``get(device_id)`` and ``approved()``, and ``kind_of`` (the schemas' spelling of
a device kind), so the agent never imports ``edge/mqtt``.
"""

from chain.address import encode_address


class Identity:
    """Who the agent is, on chain and towards its devices."""

    def __init__(self, signer, chain, devices=None, kind_of=None):
        self.signer, self.chain, self.devices = signer, chain, devices
        self._kind_of = kind_of or (lambda kind: kind)

    @property
    def address(self):
        return self.signer.address

    @property
    def address_text(self):
        return encode_address(self.signer.address)

    def registration(self):
        """The agent record on chain (``GET /v1/accounts``' ``agent``), or None. A gateway
        becomes a block-producer candidate with ``smartshare stake register`` (its owner key,
        a stake and the node's producer key); selling needs no registration."""
        return self.chain.account(self.signer.address).get("agent")

    def device(self, device_id):
        """The approved device's record (``pubkey``, ``kind``...), or None."""
        if self.devices is None:
            return None
        record = self.devices.get(device_id)
        return record if record is not None and record.get("status") == "approved" else None

    def device_pubkey(self, device_id):
        record = self.device(device_id)
        return bytes.fromhex(record["pubkey"]) if record else None

    def kind(self, device_id):
        """The approved device's kind as the frame schemas spell it, or None."""
        record = self.device(device_id)
        return self._kind_of(record.get("kind")) if record else None
