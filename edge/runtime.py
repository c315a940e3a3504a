"""What every node process shares, whatever its role: its fatal error, clock, log line and the
lock on its data folder (kept apart from edge/node.py so a light node imports none of the full
node's machinery)."""

import asyncio
import fcntl
import os
import sys
import time

from chain.secretfile import check_private
from edge.api_tokens import CLIENTS_FILE, TOKEN_FILE, ensure_cli_token


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


def check_secret_files(config):
    """Refuse to start when a file holding secrets is open to other users (or not ours): the
    config (broker passwords), the node key, the API tokens, the broker's password file, the
    TLS keys. Makes the home's CLI token on first start."""
    ensure_cli_token(config.home)
    paths = [config.file, config.path(config.key_file), config.path(TOKEN_FILE)]
    paths += [p for p in (config.path(CLIENTS_FILE),
                          os.path.join(config.path(config.mqtt_dir), "passwd"),
                          os.path.join(config.home, "tls", "ca.key"),
                          os.path.join(config.home, "tls", "server.key"))
              if os.path.exists(p)]
    for path in paths:
        check_private(path)


def run_foreground(make_node, config, startup_errors):
    """Make a node (``make_node(config)``) and run it until it stops; a failure to start
    (``startup_errors``) or to serve the API becomes a NodeError saying what to do."""
    try:
        node = make_node(config)
    except startup_errors as exc:
        raise NodeError(str(exc)) from None
    try:
        asyncio.run(node.run())
    except OSError as exc:
        raise NodeError(f"cannot serve the API on {config.api_url} ({exc.strerror or exc}); "
                        "is another node running? Change [api] port in config.toml") from None
    sys.stdout.flush()
