"""A device's frames not yet covered by a receipt (docs/protocol.md §15.4), kept in a file.

The node's receipt ``{"seq": n, "from": s, "refused": [...]}`` is its word that frames ``s..n``
were taken (stored, or refused with an error reply); until then a device keeps each frame and
sends it again when the receipts show it missing. The outbox is an append-only file of
``u16be(length) || frame`` records (appended before the frame is published, so a device killed
at any moment still holds it) and ``u16be(0) || u64be(mark) || u64be(start)`` records (a
receipt settled them), truncated when every frame is covered and rewritten whole when it holds
mostly covered ones. A torn last record (a crash mid-append) is ignored.
"""

import os
import struct

from edge.mqtt.frames import Frame

_LEN = struct.Struct(">H")
_SETTLED = struct.Struct(">QQ")
MAX_KEPT = 10_000   # a device stops producing beyond this many unreceipted frames


class Outbox:
    """``seq -> frame`` of the unreceipted frames, mirrored in ``path`` (mode 0600)."""

    def __init__(self, path):
        self.path = path
        self.frames = {}
        self._dead = 0      # records in the file that are no longer kept
        self._load()
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def _load(self):
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return
        offset = 0
        while offset + _LEN.size <= len(data):
            (size,) = _LEN.unpack_from(data, offset)
            raw = data[offset + _LEN.size:offset + _LEN.size + (size or _SETTLED.size)]
            if len(raw) < (size or _SETTLED.size):
                break                  # torn by a crash mid-append
            offset += _LEN.size + len(raw)
            try:
                if size:
                    self.frames[Frame.decode(raw).seq] = raw
                else:
                    self._forget(*_SETTLED.unpack(raw))
            except ValueError:
                break
        if offset < len(data):
            self._rewrite()

    def __len__(self):
        return len(self.frames)

    @property
    def last_seq(self):
        return max(self.frames, default=0)

    def keep(self, seq, raw):
        """Hold a frame (on disk before it returns)."""
        self.frames[seq] = raw
        os.write(self._fd, _LEN.pack(len(raw)) + raw)

    def since(self, seq):
        """The kept frames from ``seq`` on, in seq order."""
        return [(s, self.frames[s]) for s in sorted(self.frames) if s >= seq]

    def settle(self, mark, start):
        """Forget the frames a receipt covers (``start..mark``) and those below ``start``, which
        the node will never take (a new run began there); returns the seqs given up that way."""
        before = len(self.frames)
        lost = self._forget(mark, start)
        if len(self.frames) == before:
            return lost
        if not self.frames:
            os.ftruncate(self._fd, 0)
            self._dead = 0
        elif self._dead > 2 * len(self.frames) + 100:
            self._rewrite()
        else:
            os.write(self._fd, _LEN.pack(0) + _SETTLED.pack(mark, start))
        return lost

    def clear(self):
        """Forget every kept frame (signed for a chain the device has left: no gateway of its
        new chain can take them); returns how many."""
        dropped = len(self.frames)
        self.frames = {}
        os.ftruncate(self._fd, 0)
        self._dead = 0
        return dropped

    def _forget(self, mark, start):
        covered = [s for s in self.frames if s <= mark]
        for seq in covered:
            del self.frames[seq]
        self._dead += len(covered)
        return sorted(s for s in covered if s < start)

    def _rewrite(self):
        fresh = self.path + ".new"
        fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"".join(_LEN.pack(len(raw)) + raw
                                  for _, raw in sorted(self.frames.items())))
            os.fsync(fd)
        finally:
            os.close(fd)
        old = getattr(self, "_fd", None)
        os.replace(fresh, self.path)
        if old is not None:
            os.close(old)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND, 0o600)
        self._dead = 0

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
