"""Participation rewards (docs/protocol.md §9): the ecological pool pays, per epoch, the sellers
(device owners) and agents whose service was metered and settled on chain in that epoch, pro
rata to what was settled, at most ``participation_cap`` per epoch.

Service counts when it is paid: a successful ``redeem`` or ``close`` of a channel of the
settlement contract genesis pins (``payment_channel.lua``, by code hash) moves ``paid`` SSP base
units to the seller. That payment is the seller's weight, less the agent's share
(``participation_agent_permille``) which goes to the channel contract's creator (the agent that
runs the market). Settlements between linked wallets (``self_dealing``) count nothing.

No step walks the participants (the F1 idea of chain/dpos/rewards.py): an epoch's end moves its
pot to ``payable`` and records the pot per unit of weight; each participant takes its share the
next time it sends a contract transaction (deploy or call), or earns weight in a later epoch.
"""

from chain.address import address_from_pubkey
from chain.dpos.rewards import REWARD_SHIFT, owed
from chain.state import records
from chain.state.records import Participant
from contracts.values import decode_value

SETTLEMENT_EVENTS = ("redeem", "close")


def epoch_of(height, params):
    return height // params.epoch_blocks


def close_epoch(view, params, height):
    """At the first block of a later epoch: the open epoch's pot (``min(cap, pool)`` when any
    service was counted) moves to ``payable`` and its reward per unit of weight is recorded."""
    record = view.participation()
    now = epoch_of(height, params)
    if record is None or now <= record.epoch:
        return
    pot = min(params.participation_cap, record.pool) if record.weight else 0
    if pot:
        view.set_epoch_reward(record.epoch, (pot << REWARD_SHIFT) // record.weight)
    view.set_participation(record._replace(pool=record.pool - pot, epoch=now, weight=0,
                                           payable=record.payable + pot))


def due(view, address):
    """What ``address`` may take now: its weight in a closed epoch times that epoch's reward
    per unit (rounded down, so the participants of an epoch never take more than its pot)."""
    participant = view.participant(address)
    record = view.participation()
    if participant is None or record is None or participant.epoch >= record.epoch:
        return None
    return owed(participant.weight, view.epoch_reward(participant.epoch), 0)


def settle(view, address):
    """Pay ``address`` what ``due`` says and forget its closed-epoch weight."""
    amount = due(view, address)
    if amount is None:
        return
    record = view.participation()
    view.set_participation(record._replace(payable=record.payable - amount))
    view.set_participant(address, None)
    if amount:
        account = view.account(address)
        view.set_account(address, account._replace(balance=account.balance + amount))


def count_settlements(view, tx, receipt, params):
    """Count the SSP that ``receipt``'s settlement events paid (a successful contract call in
    the current epoch) as service weight."""
    record = view.participation()
    if record is None or not receipt.events:
        return
    for contract, name, data in receipt.events:
        if name not in SETTLEMENT_EVENTS:
            continue
        settled = _settlement(view, record.code_hash, contract, data)
        if settled is None or self_dealing(view, tx, *settled[1:]):
            continue
        paid, channel, creator = settled
        to_agent = paid * params.participation_agent_permille // 1000
        _add_weight(view, channel["seller"], paid - to_agent)
        _add_weight(view, creator, to_agent)


def _settlement(view, code_hash, contract, data):
    """``(paid, channel record, contract creator)`` of a settlement event of the pinned
    contract that paid SSP, else None."""
    raw = view.get(records.contract_key(contract))
    if raw is None:
        return None
    meta = records.decode_contract(raw)
    if meta.code_hash != code_hash:
        return None
    try:
        event = decode_value(data)
        paid, channel_id = event["paid"], event["id"]
        channel = decode_value(view.get(records.storage_key(contract, b"c" + channel_id)))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None     # the pinned contract always emits these; be strict anyway
    if type(paid) is not int or paid <= 0 or not _is_channel(channel) \
            or channel.get("token") is not None:
        return None     # nothing paid, or paid in a token rather than SSP
    return paid, channel, meta.creator


def _is_channel(channel):
    return (isinstance(channel, dict) and isinstance(channel.get("pubkey"), bytes)
            and len(channel["pubkey"]) == 32
            and all(isinstance(channel.get(k), bytes) and len(channel[k]) == 20
                    for k in ("buyer", "seller")))


def self_dealing(view, tx, channel, creator):
    """True when the channel's buyer side and seller side are wallets the chain can tie to one
    owner: the buyer or the owner of its voucher key, against the seller, the contract's creator,
    or the owner of the key that sent this settlement (docs/protocol.md §9)."""
    buyer_side = {channel["buyer"], address_from_pubkey(channel["pubkey"]),
                  view.owner_of(channel["pubkey"])}
    seller_side = {channel["seller"], creator, tx.sender_address, view.owner_of(tx.sender)}
    buyer_side.discard(None)
    seller_side.discard(None)
    return bool(buyer_side & seller_side)


def _add_weight(view, address, weight):
    if weight <= 0:
        return
    settle(view, address)
    record = view.participation()
    participant = view.participant(address) or Participant(record.epoch, 0)
    view.set_participant(address, Participant(record.epoch, participant.weight + weight))
    view.set_participation(record._replace(weight=record.weight + weight))


def held(view):
    """Base units the participation pool still holds (to pay, and set aside)."""
    record = view.participation()
    return record.pool + record.payable if record is not None else 0
