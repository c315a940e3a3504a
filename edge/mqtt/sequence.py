"""Where each device's frames stand, and which frame may come next (docs/protocol.md §15.4).

A device's position is ``(mark, start, refused)``: every frame of seq ``start..mark`` has been
taken, in seq order: stored, or refused for good with an error reply (the latest refusals are
listed in ``refused``, so a receipt says which). Frames are taken strictly in seq order, so the
schema's stateful rules (§15.6) see them in that order and nothing is ever skipped unseen. The
next frame must be ``mark + 1``; a frame above it waits for the ones below (``out_of_order``, a
temporary refusal: the device sends those and this one again). Only a ``hello`` may skip ahead:
it starts a new run at its own seq, the device's signed word that it gave up the frames in
between (e.g. the gateway's data was wiped, or the device lost them).
"""

import struct
from typing import NamedTuple

MAX_SKIP = 1_000_000   # a hello may start a new run at most this far above the mark
MAX_REFUSED = 32       # refused seqs remembered per device (and listed in receipts)
_U64 = struct.Struct(">Q")

NEXT, RESTART, BEHIND, AHEAD, TOO_FAR = "next", "restart", "behind", "ahead", "too_far"


class Position(NamedTuple):
    """Every frame of seq ``start..mark`` of a device is stored, except the ``refused`` ones."""
    mark: int = 0
    start: int = 1
    refused: tuple = ()

    def encode(self):
        return b"".join(_U64.pack(n) for n in (self.mark, self.start, *self.refused))

    @classmethod
    def decode(cls, raw):
        if raw is None:
            return cls()
        numbers = [n for (n,) in _U64.iter_unpack(raw)]
        if len(numbers) == 1:   # stores written before runs existed: the last stored seq
            return cls(numbers[0], 1)
        return cls(numbers[0], numbers[1], tuple(numbers[2:]))

    def place(self, seq, hello):
        """Where a frame of ``seq`` falls: NEXT (take it), RESTART (a hello starting a new run),
        BEHIND (at or below the mark: a duplicate or a replay), AHEAD (frames below it are
        missing) or TOO_FAR (a hello beyond MAX_SKIP)."""
        if seq <= self.mark:
            return BEHIND
        if seq == self.mark + 1:
            return NEXT
        if not hello:
            return AHEAD
        return RESTART if seq - self.mark <= MAX_SKIP else TOO_FAR

    def stored(self, seq):
        """The position once the frame ``seq`` (NEXT or RESTART) is stored."""
        if seq == self.mark + 1:
            return self._replace(mark=seq)
        return Position(seq, seq, ())

    def refuse(self, seq):
        """The position once the frame ``seq`` (NEXT or RESTART) is refused for good."""
        moved = self.stored(seq)
        return moved._replace(refused=(moved.refused + (seq,))[-MAX_REFUSED:])

    def receipt(self):
        """The receipt's JSON fields."""
        return {"seq": self.mark, "from": self.start, "refused": list(self.refused)}
