"""Heavy contract calls and adaptive verification (docs/protocol.md §9).

A call whose gas limit is at least ``heavy_gas`` is *heavy*. Whoever runs it, it runs on the
state its block starts from (its contract sees nothing of its own block), carries no value, and
changes nothing but its sender's fee and nonce: its only outcome is its receipt, whose return
value is the *result hash* ``H("ss/heavy-result", the full receipt)`` (as a bytes value).

Below the network-load threshold (the last block's contract gas limits under
``heavy_load_gas``) every full node runs heavy calls, as any call. Above it only the block's
producer does: it follows each heavy call with a ``HeavyResult`` it signs, the other nodes take
that result, record it (``HeavyRecord``) and re-run it lazily once the block is irreversible
(``audit``). A result that re-runs differently is proved wrong by an ``evidence`` transaction
(``check_fraud``) within ``heavy_window`` blocks, which slashes and jails the producer's agent.
"""

from chain import calls
from chain.block import Block, Receipt
from chain.crypto import hash_of
from chain.errors import Reason, TxRejected
from chain.state.records import HeavyRecord, evidence_key, heavy_key
from chain.state.view import StateView
from chain.tx import HEAVY_EVIDENCE, Call, Evidence, HeavyResult, Tx
from contracts.values import encode_value

TAG_RESULT = b"ss/heavy-result"
TAG_EVIDENCE = HEAVY_EVIDENCE   # evidence.first = u8(0x30) || heavy call's tx id; second empty
HEAVY_FRAUD = 3            # offence number of evidence_key
ALL, AGENT = "all", "agent"

stats = {"executed": 0}    # heavy calls this process ran (tests, metrics)


def is_heavy(tx, params):
    payload = tx.payload
    return (isinstance(payload, Call) and params.heavy_gas > 0
            and payload.gas_limit >= params.heavy_gas)


def mode(view, params):
    """Who verifies this block's heavy calls: every node, or only its producer."""
    return AGENT if view.load() >= params.heavy_load_gas else ALL


def block_load(txs):
    """A block's network load: the gas limits of its contract transactions."""
    return sum(getattr(tx.payload, "gas_limit", 0) for tx in txs)


def run(base, tx, header_info, params):
    """Run heavy call ``tx`` on ``base`` (a StateView of the state its block starts from),
    keep nothing, and return its ``HeavyResult``."""
    stats["executed"] += 1
    receipt = calls.call(base.child(), tx, header_info, params)
    full = Receipt(tx.id, receipt.status, 0, receipt.gas_used, receipt.error, receipt.events,
                   receipt.return_value)
    return HeavyResult(tx.id, receipt.status, receipt.gas_used,
                       hash_of(TAG_RESULT, full.encode()))


def receipt_of(tx, result):
    """The consensus receipt of heavy call ``tx`` with ``result``: its return value is the
    result hash as a contract value (bytes)."""
    return Receipt(tx.id, result.status, tx.fee, result.gas_used, "", (),
                   encode_value(result.result))


def record(view, tx, result, producer, height, time_ms):
    """Keep the producer's claim until ``heavy_window`` blocks have passed (``expire``)."""
    view.set_heavy(tx.id, HeavyRecord(height, time_ms, producer, result.status,
                                      result.gas_used, result.result, tx.raw))
    view.set_heavy_expiry(height, view.heavy_expiry(height) + (tx.id,))


def expire(view, params, height):
    """At the start of block ``height``: forget the claims of the block ``heavy_window + 1``
    below, which no evidence can reach any more."""
    old = height - params.heavy_window - 1
    if old < 1:
        return
    ids = view.heavy_expiry(old)
    for tx_id in ids:
        view.put(heavy_key(tx_id), None)
    if ids:
        view.set_heavy_expiry(old, ())


def claim_of(view, tx, params, height):
    """``(HeavyRecord, evidence key)`` of the claim heavy-result evidence ``tx`` names, when it
    may still be challenged and the evidence pays for re-running the call (the minimum fee of
    its size plus the call's gas limit at ``gas_price``); else TxRejected. Whether the claim is
    wrong is ``wrong``'s question: evidence that finds it right is a failed transaction that
    paid its fee, as a failed call is (re-running is paid work)."""
    evidence = tx.payload
    first = evidence.first
    if len(first) != 33 or evidence.second:
        raise TxRejected(Reason.INVALID_EVIDENCE, "heavy-result evidence is u8(0x30) followed "
                                                  "by the call's transaction id, and nothing else")
    found = view.heavy(first[1:])
    if found is None:
        raise TxRejected(Reason.INVALID_EVIDENCE, "no agent-verified heavy call has that id")
    if height > found.height + params.heavy_window:
        raise TxRejected(Reason.INVALID_EVIDENCE, f"heavy results older than "
                                                  f"{params.heavy_window} blocks are final")
    key = evidence_key(found.producer, HEAVY_FRAUD, found.height)
    if view.get(key) is not None:
        raise TxRejected(Reason.DUPLICATE_EVIDENCE, "this offence was already punished")
    floor = params.min_fee_for(len(tx.raw), Tx.decode(found.tx).payload.gas_limit)
    if tx.fee < floor:
        raise TxRejected(Reason.FEE_TOO_LOW, f"heavy-result evidence re-runs the call: its fee "
                                             f"must be at least {floor}")
    return found, key


def wrong(view, found, params):
    """Whether the recorded claim re-runs differently on the state before its block."""
    return rerun(view.versions, found, params) != _claimed(found)


def rerun(versions, found, params):
    """The result of the recorded call re-run on the state of the block before its own."""
    base = StateView(versions(found.height - 1))
    return run(base, Tx.decode(found.tx), (found.height, found.time_ms), params)


def _claimed(found):
    return HeavyResult(Tx.decode(found.tx).id, found.status, found.gas_used, found.result)


def audit(ledger, height):
    """``(tx id, gas limit)`` of the heavy calls of main-chain block ``height`` whose recorded
    results re-run differently (the lazy check a full node makes once the block is
    irreversible); evidence against one pays for that much gas."""
    raw = ledger.block_bytes_at(height)
    if raw is None:
        return []
    wrong = []
    with ledger.store.read() as txn:
        view = ledger.view(txn)
        for tx in Block.decode(raw).txs:
            if not isinstance(tx.payload, HeavyResult):
                continue
            found = view.heavy(tx.payload.call)
            if found is not None and found.height == height \
                    and rerun(view.versions, found, ledger.params) != _claimed(found):
                wrong.append((tx.payload.call, Tx.decode(found.tx).payload.gas_limit))
    return wrong


def evidence_for(tx_id):
    """The ``Evidence`` payload proving the heavy result of ``tx_id`` wrong."""
    return Evidence(bytes((TAG_EVIDENCE,)) + tx_id, b"")
