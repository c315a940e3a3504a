"""JSON shapes both local APIs share (the full node's, edge/api.py, and the light node's,
edge/light_api.py): finality records, receipts, contract queries, the software version
(docs/api.md)."""

from chain.address import encode_address
from contracts.values import decode_value
from edge.values_json import from_value, to_value

VERSION = "0.1.0"
QUERY_MAX_GAS = 50_000   # a read-only query's gas, on either kind of node


class QueryBodyError(ValueError):
    """A query body that is not ``{"method": text, "args": [values]}``."""


def query_call(body):
    """``(method, args)`` of a contract query's JSON body (QueryBodyError saying why not)."""
    try:
        method, args = body["method"], [to_value(a) for a in body.get("args", [])]
        if not isinstance(method, str):
            raise ValueError("method must be text")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise QueryBodyError(f"body must be {{\"method\": text, \"args\": [values]}} "
                             f"({exc})") from None
    return method, args


def query_json(result):
    """A query's VM Result for the API."""
    return {"ok": result.ok, "gas_used": result.gas_used,
            "error": f"{result.error_code}: {result.error}" if not result.ok else "",
            "return": from_value(decode_value(result.return_value))
            if result.ok and result.return_value else None}


def finality_json(finality):
    """The finality record for the API (docs/api.md)."""
    def checkpoint(c):
        return {"round": c.round, "hash": c.hash.hex(), "height": c.height}
    return {"justified": checkpoint(finality.justified), "finalized": checkpoint(finality.finalized),
            "active": [k.hex() for k in finality.active],
            "phase": ("stable", "proposed", "joint")[finality.phase],
            "next": [k.hex() for k in finality.next], "mark": finality.mark}


def receipt_json(r):
    """A receipt for people: contract events and return values decoded."""
    doc = {"tx_id": r.tx_id.hex(), "status": r.status, "fee": str(r.fee)}
    if r.gas_used or r.error or r.events or r.return_value:
        doc.update(gas_used=r.gas_used, error=r.error,
                   events=[{"contract": encode_address(c), "name": name,
                            "data": from_value(decode_value(data)) if data else None}
                           for c, name, data in r.events],
                   **{"return": from_value(decode_value(r.return_value))
                      if r.return_value else None})
    return doc


def proof_json(key, value, header, proof):
    """A state value with its proof (docs/protocol.md §10.3) and the block it is proven at."""
    return {"key": key.hex(), "present": value is not None,
            "value": value.hex() if value is not None else None, "height": header.height,
            "block_hash": header.hash.hex(), "state_root": header.state_root.hex(),
            "proof": proof.hex()}


def account_json(account):
    """An account record's fields (docs/api.md)."""
    return {"balance": str(account.balance), "nonce": account.nonce,
            "stake": str(account.stake),
            "unbonding": [{"amount": str(a), "release_height": h} for a, h in account.unbonding],
            "votes": [encode_address(v) for v in account.votes]}


def agent_json(agent, producer):
    """An agent record and its producer key's record (or None) for the API."""
    return {"name": agent.name, "endpoint": agent.endpoint, "active": agent.active,
            "producer": agent.pubkey.hex(),
            "producer_epoch": producer.epoch if producer is not None else 0,
            "votes": str(agent.votes), "registered_height": agent.registered_height,
            "jailed_until": agent.jailed_until, "missed_in_a_row": agent.missed_in_a_row,
            "missed_total": agent.missed_total, "produced": agent.produced,
            "voter_pool": str(agent.voter_pool)}
