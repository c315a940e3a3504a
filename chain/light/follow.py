"""Following headers: every header's producer checked against the round schedule, recomputed
the way a full node computes it (docs/protocol.md §13.3, §13.7).

A round's order depends on three records: the current ``schedule``, the ``round`` record (the
producer set and standby weights the round fixed when it began) and the round seed, which
every block mixes its reveal into. A light node proves the three in the state of a trusted
block, then keeps the seed itself from the headers' reveals and proves each new round's
``round`` record in the state of that round's first block. It checks that record against the
finality tracker (its link and sets must be those the tracker derived from trusted states),
so only the standby weights rest on the round's first producer until finality confirms the
block. The schedule itself is ``chain.dpos.rounds.schedule_at``, run on those records.
"""

from typing import NamedTuple, Optional

from chain.block import Header
from chain.dpos.reveal import mix_seed, round_seed_start
from chain.dpos.rounds import schedule_at
from chain.light import LightError
from chain.state import records
from chain.state.consensus import Checkpoint, RoundInfo, RoundVotes
from chain.state.records import Schedule
from chain.state.view import StateView
from edge._fast import DecodeError
from edge._fast.codec_py import HEADER_VERSION, Reader, encode_bytes, encode_fixed

FOLLOW_KEYS = (records.SCHEDULE_KEY, records.ROUND_KEY, records.ROUND_VOTES_KEY)


class FollowState(NamedTuple):
    """Where a chain of headers stands after its last header: the schedule of that header's
    round, the round's record (None until proven, for a round the light node saw begin) and
    the seed the round's reveals have made so far."""
    schedule: Schedule
    info: Optional[RoundInfo]
    seed: bytes

    def view(self):
        """A StateView holding just the records the schedule depends on."""
        values = {records.SCHEDULE_KEY: self.schedule.encode(),
                  records.ROUND_VOTES_KEY: RoundVotes(self.seed).encode()}
        if self.info is not None:
            values[records.ROUND_KEY] = self.info.encode()
        return StateView(values.get)

    def encode(self):
        info = b"" if self.info is None else self.info.encode()
        return b"".join((encode_bytes(self.schedule.encode(), 1 << 14, "follow.schedule"),
                         encode_bytes(info, 1 << 16, "follow.info"),
                         encode_fixed(self.seed, 32, "follow.seed")))

    @classmethod
    def decode(cls, data):
        r = Reader(data)
        schedule = Schedule.decode(r.var_bytes(1 << 14, "follow.schedule"))
        info = r.var_bytes(1 << 16, "follow.info")
        state = cls(schedule, RoundInfo.decode(info) if info else None, r.fixed(32, "follow.seed"))
        r.end("follow")
        return state


def state_from_records(values):
    """The follow state of a trusted block from its proven ``schedule``, ``round`` and
    ``round-votes`` records (raw values by key)."""
    try:
        schedule = Schedule.decode(values[records.SCHEDULE_KEY])
        info = RoundInfo.decode(values[records.ROUND_KEY])
        seed = RoundVotes.decode(values[records.ROUND_VOTES_KEY]).seed
    except (KeyError, TypeError, DecodeError) as exc:
        raise LightError("bad_state", f"the schedule records do not decode ({exc})") from None
    if info.round != schedule.round:
        raise LightError("bad_state", "the round record and the schedule disagree on the round")
    return FollowState(schedule, info, seed)


class HeaderRules(NamedTuple):
    """What a header is checked against besides its parent: the chain and its clock."""
    chain_id: str
    params: object
    genesis_time_ms: int

    def slot_time_ms(self, slot):
        return self.genesis_time_ms + slot * self.params.slot_ms


def follow(state, rules, parent, header, now_ms=None):
    """The follow state after ``header`` on ``parent`` (both Headers). Raises LightError:
    ``bad_header`` (it does not follow its parent, bad time or signature), ``unscheduled``
    (its producer does not own its slot), ``round_pending`` (a new round begins but the round
    before has no proven record yet: prove it first)."""
    if header.version != HEADER_VERSION:
        raise LightError("bad_header", f"unsupported header version {header.version}")
    if header.height != parent.height + 1 or header.prev_hash != parent.hash:
        raise LightError("bad_header", f"header {header.height} does not follow block "
                         f"{parent.height} {parent.hash.hex()[:12]}")
    if header.slot <= parent.slot:
        raise LightError("bad_header", f"slot {header.slot} is not after {parent.slot}")
    if header.timestamp_ms != rules.slot_time_ms(header.slot):
        raise LightError("bad_header", f"timestamp {header.timestamp_ms} is not slot "
                         f"{header.slot}'s start")
    if now_ms is not None and header.timestamp_ms > now_ms + rules.params.slot_ms:
        raise LightError("bad_header", f"header {header.height} is from the future")
    if header.slot >= state.schedule.end_slot and state.info is None:
        raise LightError("round_pending", f"round {state.schedule.round}'s record is not "
                         "proven yet")
    try:
        upcoming = schedule_at(state.view(), rules.params, header.slot)
    except (LookupError, ValueError) as exc:
        raise LightError("bad_state", f"cannot compute the schedule ({exc})") from None
    if header.producer != upcoming.producer_for(header.slot):
        raise LightError("unscheduled", f"slot {header.slot} of round {upcoming.round} belongs "
                         f"to {upcoming.producer_for(header.slot).hex()[:16]}, not "
                         f"{header.producer.hex()[:16]}")
    if not header.signature_valid(rules.chain_id):
        raise LightError("bad_header", f"header {header.height}: bad producer signature")
    if upcoming.round != state.schedule.round:
        seed, info = round_seed_start(state.seed, upcoming.round), None
    else:
        seed, info = state.seed, state.info
    return FollowState(upcoming, info, mix_seed(seed, header.reveal))


def check_round_info(info, first, source, quorum_sets):
    """Check the ``round`` record proven in the state of ``first``, the first header of its
    round: its link must leave ``source`` (the chain's justified checkpoint when the round
    began) for the block before ``first``, and count ``quorum_sets``. Raises LightError."""
    target = Checkpoint(info.round, first.prev_hash, first.height - 1)
    if info.target != target:
        raise LightError("bad_state", f"round {info.round}'s record names another checkpoint")
    if info.source != source:
        raise LightError("bad_state", f"round {info.round}'s record links from round "
                         f"{info.source.round}, the chain's justified checkpoint is round "
                         f"{source.round}")
    if info.quorum_sets() != tuple(quorum_sets):
        raise LightError("bad_state", f"round {info.round}'s record counts other producer sets "
                         "than the chain's finality rule")


def decode_header(raw):
    try:
        return Header.decode(raw)
    except DecodeError as exc:
        raise LightError("malformed", f"a header does not decode ({exc})") from None
