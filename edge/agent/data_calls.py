"""Transactions of the data market (``data_market.lua``, docs/protocol.md §14.7, §18): the owner's
register, consent and revoke, the buyer's purchase and refund, the gateway's deploy and deliver,
as outbox payload documents (``wallet.payload_of``) or ``chain.tx`` payloads."""

from chain.crypto import hash_of
from contracts.system import system_contract
from edge.agent.chain_port import to_json_value
from edge.agent.wallet import payload_of

# Gas limits: deploy uses about 710,000; the calls 22,000-40,000 in SSP, more with a token.
GAS = {"deploy": 1_000_000, "call": 150_000}
CODE = system_contract("data_market")
CODE_HASH = hash_of(b"ss/code", CODE.encode())
DEFAULT_FEE_PERMILLE = 20


def deploy_payload(fee_to, fee_permille=DEFAULT_FEE_PERMILLE):
    return {"type": "deploy", "code": CODE, "args": to_json_value([fee_to, fee_permille]),
            "gas_limit": GAS["deploy"]}


def call_payload(contract, method, args, value=0):
    return {"type": "call", "contract": contract.hex(), "method": method,
            "args": to_json_value(args), "value": value, "gas_limit": GAS["call"]}


def register_payload(contract, dataset_id, terms):
    return call_payload(contract, "register", [dataset_id, terms])


def consent_payload(contract, dataset_id, buyer=None, revoke=False):
    args = [dataset_id] if buyer is None else [dataset_id, buyer]
    return call_payload(contract, "revoke" if revoke else "consent", args)


def purchase_payload(contract, purchase_id, dataset_id, box_key, from_ms, to_ms, max_records,
                     cost, token=None):
    return call_payload(contract, "purchase", [purchase_id, dataset_id, box_key, from_ms, to_ms,
                                               max_records], 0 if token else cost)


def deliver_payload(contract, purchase_id, digest, records, size):
    return call_payload(contract, "deliver", [purchase_id, digest, records, size])


def refund_payload(contract, purchase_id):
    return call_payload(contract, "refund", [purchase_id])


def cost_of(dataset, from_ms, to_ms, max_records):
    """What a purchase of the range costs under a dataset's terms (the contract's rule)."""
    if dataset["unit"] in (b"record", "record"):
        return dataset["price"] * max_records
    span = to_ms - from_ms
    if span <= 0 or span % dataset["period_ms"]:
        raise ValueError(f"the range must be whole periods of {dataset['period_ms']} ms")
    return dataset["price"] * (span // dataset["period_ms"])


def tx_payload(doc):
    """The ``chain.tx`` payload of a payload document (for wallets outside the agent)."""
    return payload_of(doc)
