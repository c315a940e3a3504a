"""What happened to the root slots, kept on the data partition (/data/update/log.jsonl), which
both slots share and no update touches: so a slot that was rolled back leaves its story to the
slot that took over. One JSON object per line, oldest first, at most KEEP of them:

  {"event": "primary", "slot": "B", "at": ...}            RAUC made B the next boot (an install)
  {"event": "health", "slot": "B", "ok": false, "detail": "...", "boot": "...", "at": ...}
  {"event": "rollback", "from": "B", "to": "A", "reason": "...", "at": ...}
  {"event": "install", "slot": "B", "version": "...", "bundle": "...", "at": ...}

``at`` is wall-clock milliseconds: for people reading the story, never for a decision.
"""

import json
import os
import time

KEEP = 500
LOG_NAME = "log.jsonl"


class UpdateLog:
    """The records in ``directory``; appends are whole lines, synced."""

    def __init__(self, directory):
        self.directory = directory
        self.path = os.path.join(directory, LOG_NAME)

    def append(self, event, **fields):
        record = {"event": event, **fields, "at": time.time_ns() // 1_000_000}
        os.makedirs(self.directory, mode=0o755, exist_ok=True)
        records = self.read()
        if len(records) >= KEEP:
            self._rewrite(records[-(KEEP - 1):] + [record])
            return record
        line = json.dumps(record, sort_keys=True).encode() + b"\n"
        with open(self.path, "a+b") as f:
            if f.tell() > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":  # a line a power cut left unfinished is closed
                    line = b"\n" + line  # first, so that it costs only itself
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        return record

    def read(self):
        """Every record; a line cut short by a crash is skipped."""
        try:
            with open(self.path) as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return []
        records = []
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and "event" in record:
                records.append(record)
        return records

    def _rewrite(self, records):
        aside = self.path + ".new"
        with open(aside, "w") as f:
            f.writelines(json.dumps(r, sort_keys=True) + "\n" for r in records)
            f.flush()
            os.fsync(f.fileno())
        os.replace(aside, self.path)

    def last(self, event, **match):
        """The newest record of ``event`` whose fields equal ``match``, else None."""
        for record in reversed(self.read()):
            if record["event"] == event and all(record.get(k) == v for k, v in match.items()):
                return record
        return None

    def since(self, record):
        """The records after ``record`` (all of them when it is None)."""
        records = self.read()
        if record is None:
            return records
        for i in range(len(records) - 1, -1, -1):
            if records[i] == record:
                return records[i + 1:]
        return records
