"""State transition: the rules each transaction and block obey (docs/protocol.md §9).

Every handler checks all its conditions before it writes anything, so a rejected transaction
leaves the view untouched. Amounts are integers; nothing here reads a clock or a random source.
"""

from chain import calls, crypto, heavy, participation
from chain import tx as txmod
from chain.address import encode_address
from chain.block import STATUS_FAILED, STATUS_OK, Header, Receipt
from chain.dpos.finality import DOUBLE_PRODUCTION, DOUBLE_VOTE, vote_offence
from chain.dpos.reveal import binding_hash
from chain.dpos.rewards import owed, slash
from chain.dpos.rounds import apply_votes, begin_round_and_slot, pay_producer
from chain.errors import BlockRejected, Reason, TxRejected
from chain.state.consensus import Producer
from chain.state.records import Account, Agent, evidence_key
from chain.state.view import StateView
from chain.votes import TAG_VOTE, FinalityVote
from edge._fast import DecodeError


def check_static(tx, chain_id, params, in_block=False):
    """Rules that need no state: size, chain, fee floor, payload sanity. A heavy result is
    only ever part of a block (``in_block``), from its producer, at no fee."""
    size = len(tx.raw)
    payload = tx.payload
    if isinstance(payload, txmod.HeavyResult):
        if not in_block:
            raise TxRejected(Reason.MALFORMED, "a heavy result is written by a block's producer "
                                               "into its block, never sent")
        if tx.fee or tx.chain_id != chain_id or size > params.max_tx_bytes:
            raise TxRejected(Reason.MALFORMED, "a heavy result pays no fee and fits a transaction")
        return
    limit = params.max_tx_bytes + (params.max_code_bytes if isinstance(payload, txmod.Deploy)
                                   else 0)
    if size > limit:
        raise TxRejected(Reason.OVERSIZE, f"transaction is {size} bytes, the limit is {limit}")
    if tx.chain_id != chain_id:
        raise TxRejected(Reason.WRONG_CHAIN, f"transaction is for chain {tx.chain_id!r}, "
                                             f"this is {chain_id!r}")
    if isinstance(payload, (txmod.Deploy, txmod.Call)):
        calls.check_contract_tx(payload, params)
        if heavy.is_heavy(tx, params) and payload.value:
            raise TxRejected(Reason.INVALID_AMOUNT, f"a heavy call (gas limit of at least "
                                                    f"{params.heavy_gas}) carries no value")
    floor = params.min_fee_for(size, getattr(payload, "gas_limit", 0))
    if tx.fee < floor:
        raise TxRejected(Reason.FEE_TOO_LOW, f"fee {tx.fee} is below the minimum {floor} for "
                                             f"{size} bytes")
    payload = tx.payload
    if isinstance(payload, (txmod.Transfer, txmod.Stake, txmod.Unstake)) and payload.amount <= 0:
        raise TxRejected(Reason.INVALID_AMOUNT, "amount must be positive")
    if isinstance(payload, txmod.Vote) and len(payload.candidates) > params.max_votes:
        raise TxRejected(Reason.TOO_MANY_VOTES, f"{len(payload.candidates)} candidates, at most "
                                                f"{params.max_votes}")
    if isinstance(payload, txmod.RegisterAgent) and not _valid_name(payload.name):
        raise TxRejected(Reason.INVALID_NAME, "agent name must be 1-32 printable characters")


def _valid_name(name):
    return bool(name.strip()) and name.isprintable()


def spend_of(tx):
    """Base units the transaction takes from the sender's balance (fee included)."""
    payload = tx.payload
    if isinstance(payload, (txmod.Transfer, txmod.Stake)):
        return tx.fee + payload.amount
    if isinstance(payload, txmod.Call):
        return tx.fee + payload.value
    return tx.fee


def apply_tx(view, tx, params, height, time_ms=0, result=None):
    """Apply one statically valid, correctly signed transaction; returns its receipt (a
    contract transaction's receipt may say it failed: it still paid its fee). A voter's
    rewards, and (before a contract transaction) a participant's rewards of closed epochs, are
    settled into its balance first (all of it or none, with the transaction). ``result`` is the producer's result of a heavy
    call in an agent-verified block, and the producer's key: ``(HeavyResult, pubkey)``."""
    sender = tx.sender_address
    # Performance note: only contract transactions look for participation rewards (a transfer
    # pays no extra state read).
    if not view.account(sender).votes and not (isinstance(tx.payload, _CONTRACT_TXS)
                                               and participation.due(view, sender) is not None):
        return _apply_tx(view, tx, params, height, time_ms, result)
    scratch = view.child()
    settle_rewards(scratch, sender)
    if isinstance(tx.payload, _CONTRACT_TXS):
        participation.settle(scratch, sender)
    receipt = _apply_tx(scratch, tx, params, height, time_ms, result)
    view.merge(scratch)
    return receipt


def settle_rewards(view, address):
    """Credit what ``address`` earned as a voter since it last settled with each candidate
    (its stake times each accumulator's growth) and move its checkpoints to now."""
    account = view.account(address)
    earned = 0
    for candidate in account.votes:
        agent = view.agent(candidate)
        then = view.reward_checkpoint(address, candidate)
        if agent is None or then == agent.reward_per_vote:
            continue
        amount = owed(account.stake, agent.reward_per_vote, then or 0)
        if amount:
            view.set_agent(candidate, agent._replace(voter_pool=agent.voter_pool - amount))
            earned += amount
        view.set_reward_checkpoint(address, candidate, agent.reward_per_vote)
    if earned:
        view.set_account(address, account._replace(balance=account.balance + earned))


def pending_rewards(view, address):
    """What ``address`` would receive if it settled now."""
    account = view.account(address)
    total = 0
    for candidate in account.votes:
        agent = view.agent(candidate)
        if agent is not None:
            then = view.reward_checkpoint(address, candidate) or 0
            total += owed(account.stake, agent.reward_per_vote, min(then, agent.reward_per_vote))
    return total


def _apply_tx(view, tx, params, height, time_ms, result=None):
    account = view.account(tx.sender_address)
    if tx.nonce != account.nonce:
        raise TxRejected(Reason.BAD_NONCE, f"nonce {tx.nonce}, expected {account.nonce}")
    need = spend_of(tx)
    if account.balance < need:
        raise TxRejected(Reason.INSUFFICIENT_BALANCE, f"needs {need} base units, balance is "
                                                      f"{account.balance}")
    # Performance note: positional construction, not _replace (this runs for every transaction).
    paid = Account(account.balance - tx.fee, account.nonce + 1, account.stake, account.votes,
                   account.unbonding)
    if heavy.is_heavy(tx, params):
        view.set_account(tx.sender_address, paid)
        if result is None:
            payload = heavy.run(StateView(view.base), tx, (height, time_ms), params)
        else:
            payload, producer = result
            heavy.record(view, tx, payload, producer, height, time_ms)
        return heavy.receipt_of(tx, payload)
    if is_heavy_evidence(tx):
        return _heavy_evidence(view, tx, paid, params, height)
    if isinstance(tx.payload, (txmod.Deploy, txmod.Call)):
        scratch = view.child()    # a backstop (TxRejected vm_limit) leaves nothing behind
        scratch.set_account(tx.sender_address, paid)
        run = calls.deploy if isinstance(tx.payload, txmod.Deploy) else calls.call
        receipt = run(scratch, tx, (height, time_ms), params)
        participation.count_settlements(scratch, tx, receipt, params)
        view.merge(scratch)
        return receipt
    _HANDLERS[type(tx.payload)](view, tx, paid, params, height)
    return Receipt(tx.id, STATUS_OK, tx.fee)


def _transfer(view, tx, sender, params, height):
    amount, to = tx.payload.amount, tx.payload.to
    view.set_account(tx.sender_address, Account(sender.balance - amount, sender.nonce,
                                                sender.stake, sender.votes, sender.unbonding))
    r = view.account(to)
    view.set_account(to, Account(r.balance + amount, r.nonce, r.stake, r.votes, r.unbonding))


def _stake(view, tx, sender, params, height):
    amount = tx.payload.amount
    view.set_account(tx.sender_address, sender._replace(balance=sender.balance - amount,
                                                        stake=sender.stake + amount))
    _shift_votes(view, sender.votes, amount)


def _unstake(view, tx, sender, params, height):
    amount = tx.payload.amount
    if amount > sender.stake:
        raise TxRejected(Reason.INSUFFICIENT_STAKE, f"unstaking {amount}, stake is {sender.stake}")
    if len(sender.unbonding) >= params.max_unbonding_entries:
        raise TxRejected(Reason.TOO_MANY_UNBONDING, f"already {len(sender.unbonding)} unbonding "
                                                    "entries; wait for one to finish")
    release = height + params.unbonding_blocks
    view.set_account(tx.sender_address, sender._replace(
        stake=sender.stake - amount, unbonding=sender.unbonding + ((amount, release),)))
    queue = view.unbond_queue(release)
    if tx.sender_address not in queue:
        view.set_unbond_queue(release, queue + (tx.sender_address,))
    _shift_votes(view, sender.votes, -amount)


def _vote(view, tx, sender, params, height):
    candidates = tx.payload.candidates
    if sender.stake == 0:
        raise TxRejected(Reason.INSUFFICIENT_STAKE, "votes are weighted by stake: stake SSP first")
    for candidate in candidates:
        agent = view.agent(candidate)
        if agent is None or not agent.active:
            raise TxRejected(Reason.UNKNOWN_CANDIDATE,
                             f"{encode_address(candidate)} is not a registered agent")
    _shift_votes(view, sender.votes, -sender.stake)
    _shift_votes(view, candidates, sender.stake)
    for old in set(sender.votes) - set(candidates):
        view.set_reward_checkpoint(tx.sender_address, old, None)
    for new in sorted(set(candidates) - set(sender.votes)):
        view.set_reward_checkpoint(tx.sender_address, new, view.agent(new).reward_per_vote)
    view.set_account(tx.sender_address, sender._replace(votes=tuple(candidates)))


def _register_agent(view, tx, sender, params, height):
    existing = view.agent(tx.sender_address)
    if existing is not None and existing.active:
        raise TxRejected(Reason.ALREADY_AGENT, "this account is already a registered agent")
    if sender.stake < params.agent_min_stake:
        raise TxRejected(Reason.INSUFFICIENT_STAKE, f"an agent needs a stake of "
                                                    f"{params.agent_min_stake}, "
                                                    f"this account has {sender.stake}")
    payload = tx.payload
    _bind_producer(view, tx, payload)
    tally = existing.votes if existing is not None else 0
    view.set_agent(tx.sender_address, Agent(payload.producer, payload.name, payload.endpoint,
                                            True, height, tally))
    agents = view.agent_addresses()
    if tx.sender_address not in agents:
        view.set_agent_addresses(agents + (tx.sender_address,))
    view.set_account(tx.sender_address, sender)


def _rotate_producer(view, tx, sender, params, height):
    agent = view.agent(tx.sender_address)
    if agent is None:
        raise TxRejected(Reason.NOT_AN_AGENT, "this account is not a registered agent")
    _bind_producer(view, tx, tx.payload)
    view.set_agent(tx.sender_address, agent._replace(pubkey=tx.payload.producer))
    view.set_account(tx.sender_address, sender)


def _bind_producer(view, tx, payload):
    """Record ``payload.producer`` as a block-signing key of the sender (checked first: it may
    sign for no other agent, and its binding signature must verify). A key the sender already
    uses gets its new reveal chain from the next round, when that round's reveals are still
    unknown to whoever chose it."""
    owner = tx.sender_address
    current = view.producer(payload.producer)
    if current is not None and current.owner != owner:
        raise TxRejected(Reason.PRODUCER_IN_USE, "that producer key already signs for another "
                                                 "agent")
    if not crypto.verify(payload.producer, tx.chain_id,
                         binding_hash(owner, payload.epoch, payload.commit), payload.binding):
        raise TxRejected(Reason.BAD_BINDING, "the producer key's binding signature does not "
                                             "verify for this owner, epoch and commitment")
    if current is None:
        view.set_producer(payload.producer, Producer(owner, payload.epoch, payload.commit))
    else:
        view.set_producer(payload.producer, current._replace(
            next_epoch=payload.epoch, next_commit=payload.commit,
            next_from_round=view.schedule().round + 1))


def _unregister_agent(view, tx, sender, params, height):
    agent = view.agent(tx.sender_address)
    if agent is None or not agent.active:
        raise TxRejected(Reason.NOT_AN_AGENT, "this account is not a registered agent")
    view.set_agent(tx.sender_address, agent._replace(active=False))
    view.set_account(tx.sender_address, sender)


def _unjail(view, tx, sender, params, height):
    agent = view.agent(tx.sender_address)
    if agent is None or not agent.jailed:
        raise TxRejected(Reason.NOT_JAILED, "this account is not a jailed agent")
    if height < agent.jailed_until:
        raise TxRejected(Reason.STILL_JAILED, f"jailed until height {agent.jailed_until}")
    view.set_agent(tx.sender_address, agent._replace(jailed_until=0, missed_in_a_row=0))
    view.set_account(tx.sender_address, sender)


def _evidence(view, tx, sender, params, height):
    producer, keys = check_evidence(view, tx.payload, tx.chain_id, params, height)
    view.set_account(tx.sender_address, sender)
    _punish(view, tx, producer, keys, params, height)


def is_heavy_evidence(tx):
    return isinstance(tx.payload, txmod.Evidence) and tx.payload.against_heavy


def _heavy_evidence(view, tx, sender, params, height):
    """Evidence against a heavy result: it pays for the re-run; a right result makes it a
    failed transaction (its fee kept), a wrong one punishes the producer."""
    found, key = heavy.claim_of(view, tx, params, height)
    view.set_account(tx.sender_address, sender)
    if not heavy.wrong(view, found, params):
        return Receipt(tx.id, STATUS_FAILED, tx.fee, 0, "the heavy result is right")
    _punish(view, tx, found.producer, [key], params, height)
    return Receipt(tx.id, STATUS_OK, tx.fee)


def _punish(view, tx, producer, keys, params, height):
    """Slash and jail the agent of ``producer``; the sender of ``tx`` reports it."""
    address = view.owner_of(producer)
    settle_rewards(view, address)  # its stake, and so its weight as a voter, is about to fall
    offender = view.account(address)
    slashed_stake = slash(offender.stake, params.slash_permille, 0)[0]
    kept = ((amount - slash(amount, params.slash_permille, 0)[0], release)
            for amount, release in offender.unbonding)
    unbonding = tuple((amount, release) for amount, release in kept if amount)
    slashed = slashed_stake + offender.unbonding_total - sum(a for a, _ in unbonding)
    to_reporter = slashed * params.reporter_permille // 1000
    view.set_account(address, offender._replace(stake=offender.stake - slashed_stake,
                                                unbonding=unbonding))
    _shift_votes(view, offender.votes, -slashed_stake)
    reporter = view.account(tx.sender_address)
    view.set_account(tx.sender_address, reporter._replace(balance=reporter.balance + to_reporter))
    view.set_pool(view.pool() + slashed - to_reporter)
    agent = view.agent(address)
    view.set_agent(address, agent._replace(jailed_until=max(agent.jailed_until,
                                                            height + params.jail_blocks)))
    for key in keys:
        view.put(key, b"\x01")


def check_evidence(view, evidence, chain_id, params, height):
    """``(producer key, evidence keys)`` of valid, unpunished evidence, else TxRejected.

    Two different objects signed by one producer prove an offence: two block headers for one
    slot (double production), or two finality votes for one target round (double vote) or one
    of which surrounds the other (surround vote); docs/protocol.md §13. Headers must lie within
    the evidence window; votes within as many rounds of the current one."""
    first, second = _evidence_object(evidence.first), _evidence_object(evidence.second)
    if type(first) is not type(second) or first.producer != second.producer \
            or first.hash == second.hash:
        raise TxRejected(Reason.INVALID_EVIDENCE, "the evidence must be two different headers, "
                                                  "or two different votes, of one producer")
    if not (first.signature_valid(chain_id) and second.signature_valid(chain_id)):
        raise TxRejected(Reason.INVALID_EVIDENCE, "a signature does not verify")
    if isinstance(first, Header):
        recent = min(first.height, second.height) + params.evidence_window >= height
        keys = ([evidence_key(first.producer, DOUBLE_PRODUCTION, first.slot)]
                if first.slot == second.slot else [])
    else:
        rounds = max(1, params.evidence_window // params.round_length())
        recent = min(first.target_round, second.target_round) + rounds >= view.schedule().round
        offence = vote_offence(first.link, second.link)
        number = (first.target_round if offence == DOUBLE_VOTE
                  else min(first.target_round, second.target_round))
        keys = [evidence_key(first.producer, offence, number)] if offence is not None else []
    if not recent:
        raise TxRejected(Reason.INVALID_EVIDENCE, f"evidence older than the window of "
                                                  f"{params.evidence_window} is not accepted")
    if view.owner_of(first.producer) is None:
        raise TxRejected(Reason.INVALID_EVIDENCE, "the producer is not an agent's key")
    if not keys:
        raise TxRejected(Reason.INVALID_EVIDENCE, "these show no offence (two blocks for one "
                                                  "slot, or conflicting votes)")
    if view.get(keys[0]) is not None:
        raise TxRejected(Reason.DUPLICATE_EVIDENCE, "this offence was already punished")
    return first.producer, keys


def _evidence_object(raw):
    """A header or a finality vote, by its tag."""
    try:
        return FinalityVote.decode(raw) if raw[:1] == bytes((TAG_VOTE,)) else Header.decode(raw)
    except DecodeError as exc:
        raise TxRejected(Reason.INVALID_EVIDENCE, f"evidence does not decode: {exc}") from None


def _shift_votes(view, candidates, delta):
    """Add ``delta`` stake-weighted votes to each candidate's tally."""
    if delta == 0:
        return
    for candidate in candidates:
        agent = view.agent(candidate)
        if agent is not None:
            view.set_agent(candidate, agent._replace(votes=agent.votes + delta))


_CONTRACT_TXS = (txmod.Deploy, txmod.Call)

_HANDLERS = {
    txmod.Transfer: _transfer, txmod.Stake: _stake, txmod.Unstake: _unstake,
    txmod.Vote: _vote, txmod.RegisterAgent: _register_agent,
    txmod.UnregisterAgent: _unregister_agent, txmod.Unjail: _unjail,
    txmod.Evidence: _evidence, txmod.RotateProducer: _rotate_producer,
}


def begin_block(view, params, header, parent):
    """Before the transactions: round change, missed slots and jail, reveal and vote, matured
    unbonding, the end of a participation epoch, heavy claims past their window (``parent`` is
    the parent block's header)."""
    begin_round_and_slot(view, params, header, parent)
    release_unbonding(view, header.height)
    participation.close_epoch(view, params, header.height)
    heavy.expire(view, params, header.height)


def release_unbonding(view, height):
    """Return matured unbonding stake to balances."""
    queue = view.unbond_queue(height)
    if not queue:
        return
    for address in queue:
        account = view.account(address)
        matured = sum(amount for amount, release in account.unbonding if release <= height)
        view.set_account(address, account._replace(
            balance=account.balance + matured,
            unbonding=tuple(e for e in account.unbonding if e[1] > height)))
    view.set_unbond_queue(height, ())


def execute_block(view, block, parent, params, chain_id):
    """Apply a block: its begin step, its finality votes, its transactions, its end step. The
    first invalid transaction raises TxRejected, a broken consensus rule BlockRejected."""
    header, txs = block.header, block.txs
    begin_block(view, params, header, parent)
    apply_votes(view, block.votes, chain_id, header.height)
    agent = heavy.mode(view, params) == heavy.AGENT
    receipts, i = [], 0
    while i < len(txs):
        tx = txs[i]
        if agent and heavy.is_heavy(tx, params):
            receipts += apply_heavy(view, tx, txs[i + 1] if i + 1 < len(txs) else None, params,
                                    header)
            i += 2
            continue
        if isinstance(tx.payload, txmod.HeavyResult):
            raise BlockRejected("a heavy result must follow its heavy call, in a block whose "
                                "heavy calls only the producer runs")
        receipts.append(apply_tx(view, tx, params, header.height, header.timestamp_ms))
        i += 1
    end_block(view, params, header.producer, txs, receipts)
    return receipts


def end_block(view, params, producer, txs, receipts):
    """After the transactions: the producer's pay, and the network load of this block."""
    pay_producer(view, params, producer, sum(r.fee for r in receipts))
    load = heavy.block_load(txs)
    if load != view.load():
        view.set_load(load)


def apply_heavy(view, tx, result_tx, params, header):
    """A heavy call of an agent-verified block and the producer's result right after it:
    ``[call receipt, result receipt]``. The result must be the block producer's, at no fee and
    nonce 0 (it answers one call, which appears once: it needs no nonce of its own)."""
    result = getattr(result_tx, "payload", None)
    if not isinstance(result, txmod.HeavyResult) or result.call != tx.id:
        raise BlockRejected("a heavy call must be followed by the producer's result of it")
    if result_tx.sender != header.producer or result.status > 1 or result_tx.nonce:
        raise BlockRejected("a heavy result must come from the block's producer key, with "
                            "nonce 0 and a status of 0 or 1")
    receipt = apply_tx(view, tx, params, header.height, header.timestamp_ms,
                       (result, header.producer))
    return [receipt, Receipt(result_tx.id, STATUS_OK, 0)]
