"""Run the MQTT bridge on its own until SIGTERM/SIGINT (the crash test and the bench use it; the
node embeds ``Bridge`` itself).

    python -m edge.mqtt.bridge_main --data DIR --broker HOST:PORT --password-file FILE \\
        --client-id ID --chain-id C [--username U] [--batch-size N] [--commit-ms MS]
        [--rate-per-s R] [--burst B] [--future-ms MS]

Prints ``bridge ready`` on stdout once subscribed, and the counters as one JSON line on exit.
SIGHUP re-reads the approved devices.
"""

import argparse
import json
import signal
import sys
import threading

from chain.secretfile import SecretFileError, read_secret
from chain.store import Store
from edge.mqtt.bridge import BATCH_SIZE, COMMIT_MS, Bridge
from edge.mqtt.broker import BRIDGE_USER
from edge.mqtt.devices import DeviceRegistry


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m edge.mqtt.bridge_main",
                                description="SmartShare MQTT bridge: device frames into LMDB")
    p.add_argument("--data", required=True, help="the node's LMDB directory")
    p.add_argument("--broker", required=True, help="HOST:PORT of Mosquitto")
    p.add_argument("--password-file", required=True,
                   help="file (mode 0600) holding the bridge user's password")
    p.add_argument("--username", default=BRIDGE_USER)
    p.add_argument("--client-id", required=True, help="stable MQTT client id (persistent session)")
    p.add_argument("--chain-id", required=True)
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    p.add_argument("--commit-ms", type=float, default=COMMIT_MS,
                   help="a message waits at most this long for its batch's commit")
    p.add_argument("--rate-per-s", type=float, default=200)
    p.add_argument("--burst", type=float, default=1000)
    p.add_argument("--future-ms", type=int, default=300_000)
    args = p.parse_args(argv)
    host, sep, port = args.broker.rpartition(":")
    if not sep or not port.isdigit():
        p.error(f"--broker {args.broker!r} must be HOST:PORT")
    args.host, args.port = host or "127.0.0.1", int(port)
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)

    def log(text):
        print(text, file=sys.stderr, flush=True)

    try:
        password = read_secret(args.password_file)
    except SecretFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    store = Store(args.data)
    registry = DeviceRegistry(store)
    bridge = Bridge(store, registry, host=args.host, port=args.port, username=args.username,
                    password=password, client_id=args.client_id, chain_id=args.chain_id,
                    log=log, batch_size=args.batch_size, commit_ms=args.commit_ms,
                    rate_per_s=args.rate_per_s, burst=args.burst, future_ms=args.future_ms)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    signal.signal(signal.SIGHUP, lambda *_: bridge.refresh_devices())
    bridge.start()
    while not done.is_set():
        if bridge.wait_ready(0.1):
            print("bridge ready", flush=True)
            break
    done.wait()
    bridge.stop()
    print(json.dumps(bridge.stats(), sort_keys=True), flush=True)
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
