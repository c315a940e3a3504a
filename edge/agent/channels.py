"""Settlement through ``payment_channel.lua`` (docs/protocol.md §14.7, §17.5): the transactions
each side sends, the voucher checks the seller makes at once (without waiting for a block), and
what the buyer checks before it opens a channel.

A session's channel id is the session id (8 bytes). Vouchers are bound to the chain id, the
channel contract's address and the payee (``contracts.vouchers``).
"""

from chain.address import address_from_pubkey
from chain.crypto import hash_of
from contracts.system import system_contract
from contracts.vouchers import Voucher, verify_voucher
from edge.agent.chain_port import to_json_value

# Gas limits of the channel's transactions: 2-3x what they use (docs/protocol.md §17.5).
GAS = {"deploy": 900_000, "open": 80_000, "redeem": 80_000, "close": 100_000,
       "request_close": 80_000, "refund": 80_000}
CODE = system_contract("payment_channel")
CODE_HASH = hash_of(b"ss/code", CODE.encode())


def _call(contract, method, args, value=0):
    return {"type": "call", "contract": contract.hex(), "method": method,
            "args": to_json_value(args), "value": value, "gas_limit": GAS[method]}


def deploy_payload():
    return {"type": "deploy", "code": CODE, "args": [], "gas_limit": GAS["deploy"]}


def open_payload(contract, channel, seller, buyer_pubkey, expiry_height, dispute_ms, deposit):
    return _call(contract, "open", [channel, seller, buyer_pubkey, expiry_height, None, None,
                                    dispute_ms], deposit)


def redeem_payload(contract, channel, voucher):
    return _call(contract, "redeem", [channel, voucher["amount"], voucher["nonce"],
                                      bytes.fromhex(voucher["signature"])])


def close_payload(contract, channel, voucher=None):
    if voucher is None:
        return _call(contract, "close", [channel])
    return _call(contract, "close", [channel, voucher["amount"], voucher["nonce"],
                                     bytes.fromhex(voucher["signature"])])


def request_close_payload(contract, channel):
    return _call(contract, "request_close", [channel])


def refund_payload(contract, channel):
    return _call(contract, "refund", [channel])


def read_channel(chain, contract, channel):
    """The channel record on the head's state (``channel(id)``), or None."""
    return chain.query(contract, "channel", channel)


def check_voucher(session, body, chain_id):
    """Why the seller refuses a voucher message for ``session``, or None to accept it: it must
    be for this session's channel, contract and payee, not above the deposit, not below the best
    voucher held, with a higher nonce, and signed by the channel's buyer key."""
    if session["state"] not in ("ready", "starting", "active", "stopping", "ended"):
        return f"the session is {session['state']}"
    if body["channel"] != session["id"]:
        return "voucher is for another channel"
    if body["contract"] != session["contract"]:
        return "voucher is for another channel contract"
    if body["payee"] != session["payee"]:
        return "voucher is for another payee"
    if body["amount"] > session["deposit"]:
        return f"voucher of {body['amount']} exceeds the deposit {session['deposit']}"
    best = session["voucher"]
    if best is not None:
        if body["amount"] < best["amount"]:
            return f"voucher of {body['amount']} is lower than the one held ({best['amount']})"
        if body["nonce"] <= best["nonce"]:
            return f"voucher nonce {body['nonce']} is not above {best['nonce']} (replayed)"
    voucher = voucher_of(chain_id, session, body["amount"], body["nonce"])
    if not verify_voucher(bytes.fromhex(session["buyer"]), voucher,
                          bytes.fromhex(body["signature"])):
        return "bad voucher signature"
    return None


def voucher_of(chain_id, session, amount, nonce):
    return Voucher(chain_id, bytes.fromhex(session["contract"]), bytes.fromhex(session["payee"]),
                   bytes.fromhex(session["id"]), amount, nonce)


def check_open(session, record, channel, seller_address, lib_ok):
    """Why the seller will not serve a channel yet (or at all), or None when it may: the open
    transaction is irreversible and the channel on chain is the one agreed."""
    if record is None or record.get("status") != "committed":
        return "the open transaction is not in a block yet", True
    receipt = record["receipt"]
    if receipt["status"] != 0:
        return f"the open transaction failed: {receipt.get('error')}", False
    if receipt.get("return") != {"bytes": session["id"]}:
        return "the transaction did not open this channel", False
    if not lib_ok(record["height"]):
        return "the open transaction is not irreversible yet", True
    if channel is None or not channel.get("open"):
        return "the channel is not open", False
    if channel["seller"] != seller_address:
        return "the channel pays another seller", False
    if channel["pubkey"].hex() != session["buyer"]:
        return "the channel's voucher key is not the buyer's", False
    if channel["deposit"] < session["deposit"] or channel.get("token") is not None:
        return f"the channel holds {channel['deposit']}, not the {session['deposit']} agreed", False
    if channel["dispute"] < session["dispute_ms"]:
        return "the channel's dispute window is shorter than agreed", False
    if channel.get("closing") is not None:
        return "the buyer already asked to close the channel", False
    return None, False


def payee_of(pubkey):
    return address_from_pubkey(pubkey)
