"""systemd's notify protocol (sd_notify(3)), for ``Type=notify`` units with a watchdog.

A ``Notifier`` sends ``READY=1``, ``STATUS=...``, ``WATCHDOG=1`` and ``STOPPING=1`` as datagrams
to ``$NOTIFY_SOCKET``; outside systemd (no such variable) every call does nothing. ``heartbeat``
runs on the event loop and pings the watchdog at half of ``WatchdogSec``: a loop that hangs stops
the pings, and systemd restarts the service.
"""

import asyncio
import os
import socket

ENVIRONMENT = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
STATUS_EVERY_S = 10.0  # how often STATUS= is refreshed when there is no watchdog


class Notifier:
    """The service manager's notification socket, read once from the environment."""

    def __init__(self, environ=None):
        if environ is None:  # like sd_notify's unset_environment: children must not ping
            environ = {name: os.environ.pop(name) for name in ENVIRONMENT if name in os.environ}
        path = environ.get("NOTIFY_SOCKET", "")
        # "@name" is an abstract socket: its address starts with a NUL byte.
        self.address = "\0" + path[1:] if path.startswith("@") else path
        self.watchdog_s = _watchdog_seconds(environ)
        self._socket = None

    @property
    def enabled(self):
        return bool(self.address)

    @property
    def ping_interval_s(self):
        """Half of WatchdogSec (sd_watchdog_enabled(3) advises pinging at least that often)."""
        return self.watchdog_s / 2 if self.watchdog_s else None

    def notify(self, **fields):
        """Send ``KEY=value`` lines (``ready=1`` becomes ``READY=1``); False when not sent."""
        if not self.enabled:
            return False
        text = "\n".join(f"{key.upper()}={_one_line(value)}" for key, value in fields.items())
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._socket.sendto(text.encode(), self.address)
        except OSError:
            return False  # the manager went away: nothing to tell
        return True

    def ready(self, status=""):
        return self.notify(ready=1, status=status) if status else self.notify(ready=1)

    def status(self, text):
        return self.notify(status=text)

    def watchdog(self, status=None):
        if status is None:
            return self.notify(watchdog=1)
        return self.notify(watchdog=1, status=status)

    def stopping(self, status="stopping"):
        return self.notify(stopping=1, status=status)

    def close(self):
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _watchdog_seconds(environ):
    """WatchdogSec from ``WATCHDOG_USEC``, if it is meant for this process."""
    try:
        usec = int(environ.get("WATCHDOG_USEC", "0"))
        pid = int(environ.get("WATCHDOG_PID", "0"))
    except ValueError:
        return None
    if usec <= 0 or (pid and pid != os.getpid()):
        return None
    return usec / 1_000_000


def _one_line(value):
    return str(value).replace("\n", " ")


async def heartbeat(notifier, describe, stopping):
    """Until ``stopping`` (an asyncio.Event) is set: ``WATCHDOG=1`` at half of WatchdogSec and
    ``STATUS=describe()`` with it (every STATUS_EVERY_S without a watchdog). It runs on the
    event loop, so a blocked loop sends nothing."""
    if not notifier.enabled:
        return
    interval = notifier.ping_interval_s or STATUS_EVERY_S
    while not stopping.is_set():
        if notifier.watchdog_s:
            notifier.watchdog(describe())
        else:
            notifier.status(describe())
        try:
            await asyncio.wait_for(stopping.wait(), timeout=interval)
        except asyncio.TimeoutError:
            pass
