"""What every node process shares, whatever its role: its fatal error, clock, log line and the
lock on its data folder (kept apart from edge/node.py so a light node imports none of the full
node's machinery)."""

import fcntl
import os
import sys
import time


class NodeError(Exception):
    """The node cannot start: the message says why and what to do."""


def now_ms():
    return time.time_ns() // 1_000_000


def lock_data_dir(data_dir):
    """Hold an exclusive lock on the data folder for the life of the process."""
    os.makedirs(data_dir, exist_ok=True)
    handle = open(os.path.join(data_dir, "node.lock"), "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise NodeError(f"another node is already running on {data_dir}") from None
    return handle


def print_line(line):
    """One whole line per write: device threads and the event loop share stdout."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
