"""A light node's view of the chain: the finality it has checked and the headers it follows
(docs/protocol.md §13.7). No I/O but its store: the network side (``chain.light.sync``) feeds it
what peers send and asks it what to fetch next.

- ``tracker``: the justified checkpoints above the last finalized one (``chain.light.tracker``);
- ``lib``: the header of the last irreversible block this node knows (the anchor it started
  from, or the newest finalized checkpoint) — every value it serves is proven against its state;
- the **window**: recent headers, each checked against its parent and the round schedule, from a
  trusted base (the anchor, or a justified checkpoint whose schedule records were proven) up to
  the tip. New headers are added through a ``Branch``: from the tip (extending) or from an
  older header of the window (a fork, adopted when the fork-choice rule prefers it).
"""

from chain.block import Header
from chain.dpos.finality import fork_choice_key
from chain.light import LightError
from chain.light.follow import (FollowState, check_round_info, decode_header, follow,
                                state_from_records)
from chain.light.tracker import FinalityTracker
from chain.state.consensus import Finality, RoundInfo
from chain.state.records import FINALITY_KEY, Schedule
from edge._fast import DecodeError

DEFAULT_WINDOW = 2048


class Link:
    """One header of the window and the follow state after it."""

    __slots__ = ("header", "state")

    def __init__(self, header, state):
        self.header, self.state = header, state

    @property
    def height(self):
        return self.header.height


class LightChain:
    """The checked finality and the followed headers of one light node, on its LightStore."""

    def __init__(self, store, rules, window=DEFAULT_WINDOW):
        self.store, self.rules, self.window = store, rules, window
        self.tracker = self.lib = self.anchor = self.tip = None
        self._load()

    @property
    def ready(self):
        return self.tracker is not None

    @property
    def chain_id(self):
        return self.rules.chain_id

    # -- starting -------------------------------------------------------------------------------

    def bootstrap(self, anchor, values):
        """Start (over) from the trusted block ``anchor`` (a Header) and the finality,
        schedule, round and round-votes records proven in its state (raw, by key)."""
        try:
            record = Finality.decode(values[FINALITY_KEY])
        except (KeyError, TypeError, DecodeError) as exc:
            raise LightError("bad_state", f"the finality record does not decode ({exc})") from None
        state = state_from_records(values)
        tracker = FinalityTracker(self.chain_id, record)

        def work(txn):
            self.store.clear(txn)
            self.store.put_meta(txn, b"anchor", anchor.encode())
            self.store.put_meta(txn, b"lib", anchor.encode())
            self.store.put_meta(txn, b"tracker", tracker.encode())
            self._write_base(txn, anchor, state)
        self.store.write(work)
        self.tracker, self.anchor, self.lib = tracker, anchor, anchor
        self.tip = Link(anchor, state)

    def rebase(self, header, values):
        """Restart the window at ``header``, a justified checkpoint this node holds, from the
        schedule records proven in its state (when the window fell behind finality)."""
        if self.tracker.justified.get(_round_of(self, header)) is None and header != self.lib:
            raise LightError("bad_state", "a window starts only at a trusted checkpoint")
        state = state_from_records(values)

        def work(txn):
            self.store.clear(txn, ("light_headers", "light_rounds"))
            self._write_base(txn, header, state)
        self.store.write(work)
        self.tip = Link(header, state)

    def _write_base(self, txn, header, state):
        self.store.put_round(txn, state.schedule.round, state.schedule, state.info)
        self.store.put_link(txn, header.height, state.schedule.round, state.seed, header.encode())

    # -- finality -------------------------------------------------------------------------------

    def accept_entry(self, entry):
        """Check a finality entry (LightError when it does not verify); returns the newly
        finalized checkpoint or None. A window that disagrees with a justified checkpoint is
        cut back below it."""
        header = decode_header(entry.header)
        _, newly = self.tracker.accept(entry, header)
        lib = self.lib
        if newly is not None and newly.height > lib.height:
            raw = self._justified_header(newly.round)
            lib = Header.decode(raw) if raw is not None else lib
        conflict = self.header_at(header.height)

        def work(txn):
            self.store.put_justified(txn, header_round(entry), entry.header,
                                     min(self.tracker.justified))  # what the tracker keeps
            self.store.put_meta(txn, b"tracker", self.tracker.encode())
            self.store.put_meta(txn, b"lib", lib.encode())
            if conflict is not None and conflict.hash != header.hash:
                self._cut(txn, header.height - 1)
        self.store.write(work)
        self.lib = lib
        if conflict is not None and conflict.hash != header.hash:
            self.tip = self.link_at(min(self.tip.height, header.height - 1))
        self._prune()
        return newly

    def _justified_header(self, round_number):
        with self.store.read() as txn:
            return self.store.justified_header(txn, round_number)

    def justified_header(self, round_number):
        """The header of the justified checkpoint of ``round_number``, or None."""
        raw = self._justified_header(round_number)
        return Header.decode(raw) if raw is not None else None

    # -- the window -----------------------------------------------------------------------------

    def link_at(self, height):
        """The Link of the window at ``height``, or None."""
        if self.tip is not None and height == self.tip.height:
            return self.tip
        with self.store.read() as txn:
            found = self.store.link(txn, height)
            if found is None:
                return None
            round_number, seed, raw = found
            schedule, info = self.store.round(txn, round_number)
        return Link(Header.decode(raw), FollowState(Schedule.decode(schedule),
                                                    RoundInfo.decode(info) if info else None,
                                                    seed))

    def header_at(self, height):
        link = self.link_at(height)
        return link.header if link is not None else None

    def base_height(self):
        with self.store.read() as txn:
            bounds = self.store.window_bounds(txn)
        return bounds[0] if bounds else None

    def branch(self, from_height=None):
        """A Branch growing from the window's header at ``from_height`` (default: the tip)."""
        start = self.tip if from_height is None else self.link_at(from_height)
        if start is None:
            raise LightError("fork_below_lib", f"height {from_height} is not in the window")
        return Branch(self, start)

    def commit(self, branch):
        """Adopt a checked branch: it extends the tip, or replaces the window above its start
        when the fork-choice rule prefers its tip (returns False when it does not)."""
        if not branch.links:
            return False
        start, tip = branch.start, branch.links[-1].header
        if start.height != self.tip.height:
            ours, theirs = self.tip.header, tip
            if (fork_choice_key(theirs.justified_round, theirs.height, theirs.slot, theirs.hash)
                    <= fork_choice_key(ours.justified_round, ours.height, ours.slot, ours.hash)):
                return False
            if start.height < self.lib.height:
                raise LightError("fork_below_lib", "the branch leaves the chain below the last "
                                 "irreversible block")

        def work(txn):
            self._cut(txn, start.height)
            written = set()
            for link in branch.links:
                state = link.state
                if state.schedule.round not in written:
                    self.store.put_round(txn, state.schedule.round, state.schedule, state.info)
                    written.add(state.schedule.round)
                self.store.put_link(txn, link.height, state.schedule.round, state.seed,
                                    link.header.encode())
        self.store.write(work)
        self.tip = branch.links[-1]
        self._prune()
        return True

    def _cut(self, txn, height):
        """Forget the window above ``height`` (and the rounds that only it held)."""
        self.store.delete_links(txn, above=height)
        kept = self.store.link(txn, height)
        if kept is not None:
            self.store.delete_rounds(txn, above=kept[0])

    def _prune(self):
        """Keep at most ``window`` headers (never the base of an empty window)."""
        with self.store.read() as txn:
            bounds = self.store.window_bounds(txn)
        if bounds is None or bounds[1] - bounds[0] < self.window:
            return
        keep_from = bounds[1] - self.window + 1

        def work(txn):
            self.store.delete_links(txn, below=keep_from)
            oldest = self.store.link(txn, keep_from)
            if oldest is not None:
                self.store.delete_rounds(txn, below=oldest[0])
        self.store.write(work)

    def pending_round(self):
        """The first header of a round whose record is not proven yet, or None."""
        state = self.tip.state
        if state.info is not None:
            return None
        height = self.tip.height
        while True:
            previous = self.link_at(height - 1)
            if previous is None or previous.state.schedule.round != state.schedule.round:
                return self.header_at(height)
            height -= 1

    def set_round_info(self, first, info):
        """Record the proven ``round`` record of the round that ``first`` (a window header)
        began, once it checks out against the tracker (LightError)."""
        parent = self.header_at(first.height - 1)
        if parent is None or self.header_at(first.height) != first:
            raise LightError("bad_state", "that round's first block is not in the window")
        check_against_tracker(self.tracker, info, first, parent)
        round_number = self.link_at(first.height).state.schedule.round
        schedule = self.link_at(first.height).state.schedule

        def work(txn):
            self.store.put_round(txn, round_number, schedule, info)
        self.store.write(work)
        if self.tip.state.schedule.round == round_number:
            self.tip = Link(self.tip.header, self.tip.state._replace(info=info))

    # -- loading --------------------------------------------------------------------------------

    def _load(self):
        with self.store.read() as txn:
            tracker, lib, anchor = (self.store.meta(txn, k) for k in (b"tracker", b"lib",
                                                                        b"anchor"))
            bounds = self.store.window_bounds(txn)
        if tracker is None or lib is None or bounds is None:
            return
        self.tracker = FinalityTracker.decode(self.chain_id, tracker)
        self.lib, self.anchor = Header.decode(lib), Header.decode(anchor)
        self.tip = None
        self.tip = self.link_at(bounds[1])


class Branch:
    """Headers checked one by one from a Link of the window, not yet adopted."""

    def __init__(self, chain, start):
        self.chain, self.start, self.links = chain, start, []

    @property
    def tip(self):
        return self.links[-1] if self.links else self.start

    def add(self, header, now_ms=None):
        """Check ``header`` on the branch's tip (LightError: ``round_pending`` means the tip's
        round record must be proven first, with ``set_round_info``)."""
        tip = self.tip
        state = follow(tip.state, self.chain.rules, tip.header, header, now_ms)
        self.links.append(Link(header, state))

    def pending_round(self):
        """The first header of the branch's last round when its record is not proven yet."""
        if self.tip.state.info is not None:
            return None
        round_number = self.tip.state.schedule.round
        first = None
        for link in reversed([self.start] + self.links):
            if link.state.schedule.round != round_number:
                break
            first = link
        return first.header

    def set_round_info(self, info):
        first = self.pending_round()
        index = next(i for i, link in enumerate(self.links) if link.header == first)
        parent = (self.links[index - 1] if index else self.start).header
        check_against_tracker(self.chain.tracker, info, first, parent)
        for link in self.links[index:]:
            link.state = link.state._replace(info=info)


def check_against_tracker(tracker, info, first, parent):
    """The round record proven at ``first`` must link from the justified checkpoint the chain
    had at ``parent`` and count the sets the tracker derived for it."""
    source = tracker.rule_after(parent.justified_round)
    if info.round != info.target.round:
        raise LightError("bad_state", "a round record whose round is not its target's")
    check_round_info(info, first, source.checkpoint, source.record.quorum_sets())


def header_round(entry):
    return entry.proof.target_round


def _round_of(chain, header):
    for round_number, found in chain.tracker.justified.items():
        if found.checkpoint.hash == header.hash:
            return round_number
    return None
