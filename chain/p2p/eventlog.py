"""A log that a flood cannot flood: per-event lines up to a budget, then one summary (§12.7).

``BoundedLog`` writes at most ``lines`` individual lines per ``interval`` seconds; further lines
are only counted. Refused connections and failed handshakes are never written one by one: they
are counted by kind, reason and source and reported in one summary line per interval. So however
hard a node is flooded, the p2p layer writes at most ``lines + 1`` lines per interval.
"""

import time
from collections import Counter

MAX_SOURCES_SHOWN = 3
MAX_SOURCES_COUNTED = 256  # distinct sources tallied per interval; the rest count as "other"


class BoundedLog:
    """Rate-bounded p2p log lines over ``write(text)``; call ``flush()`` now and then (it
    writes the summary once the interval is over)."""

    def __init__(self, write, interval=10.0, lines=20, clock=time.monotonic):
        self.write, self.interval, self.budget, self.clock = write, interval, lines, clock
        self._start = clock()
        self._lines = 0
        self._suppressed = 0
        self._events = {}          # kind -> Counter of reasons
        self._sources = Counter()

    def line(self, text):
        """Write ``text`` unless this interval's budget is spent (then it is only counted)."""
        self.flush()
        if self._lines < self.budget:
            self._lines += 1
            self.write(text)
        else:
            self._suppressed += 1

    def count(self, kind, reason, source):
        """Tally one event (``kind`` e.g. "refused", "failed handshakes") for the summary."""
        self.flush()
        self._events.setdefault(kind, Counter())[reason] += 1
        if source in self._sources or len(self._sources) < MAX_SOURCES_COUNTED:
            self._sources[source] += 1
        else:
            self._sources["other"] += 1

    def flush(self, force=False):
        """Write the summary of the interval that ended (or, with ``force``, of the one so far)
        and start a new one."""
        now = self.clock()
        if not force and now - self._start < self.interval:
            return
        summary = self.summary(now - self._start)
        self._start, self._lines, self._suppressed = now, 0, 0
        self._events, self._sources = {}, Counter()
        if summary:
            self.write(summary)

    def summary(self, seconds):
        """The summary line of what was counted, or "" when nothing was."""
        if not self._events and not self._suppressed:
            return ""
        parts = []
        for kind, reasons in self._events.items():
            detail = ", ".join(f"{reason} {n:,}" for reason, n in reasons.most_common())
            parts.append(f"{kind} {sum(reasons.values()):,} ({detail})")
        if self._sources:
            top = ", ".join(f"{s} {n:,}" for s, n in self._sources.most_common(MAX_SOURCES_SHOWN))
            parts.append(f"top sources {top}")
        if self._suppressed:
            parts.append(f"{self._suppressed:,} more lines not written")
        return f"p2p: last {seconds:.0f} s: " + "; ".join(parts)
