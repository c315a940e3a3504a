"""The light node's process: ``smartshare node run`` on a light home replaces itself with
``python -m edge.light_main CONFIG_FILE`` (same pid, same stdout, same systemd unit).

Performance note: a light node's budget is 30 MB of RSS (docs/protocol.md §13.7), and a fresh
interpreter that loads only what a light node needs stays well inside it: no TLS library (the
node speaks TLS to no one: sys.modules["ssl"] = None, so asyncio goes without), and the
pure-Python twins of edge/_fast (it checks a few headers a second; the compiled twins' loader
alone costs about 4 MB). ``SMARTSHARE_PURE=0`` in the environment keeps the compiled twins.
"""

import os
import sys

sys.modules.setdefault("ssl", None)
os.environ.setdefault("SMARTSHARE_PURE", "1")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    from edge import config as config_mod
    from edge.config import ConfigError
    from edge.light_node import run_light_node
    from edge.runtime import NodeError
    try:
        run_light_node(config_mod.load_file(argv[0]))
    except (ConfigError, NodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
