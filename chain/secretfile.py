"""Files that hold secrets (keys, passwords, API tokens): written whole with mode 0600, and
refused when group or others may read or write them, or when another user owns them."""

import os
import stat


class SecretFileError(Exception):
    """A secret file is missing, unreadable, or open to other users; the message says how to fix
    it."""


def check_private(path):
    """Raise SecretFileError unless ``path`` exists, is ours (or we are root) and only its owner
    may read it."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise SecretFileError(f"{path} does not exist") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretFileError(f"{path} holds secrets but is open to other users (mode "
                              f"{st.st_mode & 0o777:o}); fix it with: chmod 600 {path}")
    if st.st_uid != os.geteuid() and os.geteuid() != 0:   # root may read the node user's
        raise SecretFileError(f"{path} holds secrets but belongs to another user (uid "
                              f"{st.st_uid}); fix it with: chown {os.geteuid()} {path}")


def read_secret(path):
    """The text of a private file, stripped of surrounding whitespace."""
    check_private(path)
    try:
        with open(path) as f:
            return f.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretFileError(f"cannot read {path}: {exc}") from None


def write_secret(path, data):
    """Write ``data`` (text or bytes) to ``path`` with mode 0600: to a fresh file, synced, then
    renamed into place, so a reader sees the old or the new secret, never half of one."""
    fresh = f"{path}.{os.getpid()}.new"
    fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(fresh, path)
    except BaseException:
        if os.path.exists(fresh):
            os.unlink(fresh)
        raise
