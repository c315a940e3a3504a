"""A hostile p2p client for flood tests and the network bench: many connections from one source.

Run as its own process so its CPU is not the node's or the test's (SIGTERM ends it early, with
its figures):

    python -m tests.floodkit --target 127.0.0.1:PORT --source 127.0.0.2 --mode garbage \\
        --seconds 15 --rate 500 --chain-id ID --genesis HEX

``--target`` may be given several times (connections go round-robin), and ``--sources N`` spreads
them over N consecutive source addresses from ``--source`` (a distributed flood).

Modes: ``garbage`` (random bytes, a bad magic, an oversize length, a valid hello1 with a forged
auth, in turn), ``hello`` (a valid hello1, then hang up once answered), ``slow`` (a valid hello1,
then silence until the node gives up), ``sybil``
(``--keys`` fresh node keys complete real handshakes and hold their links, answering Ping).
Linux routes all of 127.0.0.0/8 to the loopback device, so ``--source 127.0.0.2`` makes the node
see a host other than the 127.0.0.1 its honest testnet peers share. Prints one JSON object:
attempts, how many got at least one byte back, completed handshakes, most links held at once.
"""

import argparse
import asyncio
import ipaddress
import json
import os
import signal
import struct
import time

from nacl import bindings

from chain.keys import KeyPair
from chain.p2p import Connection, FrameCipher, HandshakeError, Ping, Pong
from chain.p2p.frames import plain_frame
from chain.p2p.handshake import encode_auth, encode_hello1, handshake

CONNECT_TIMEOUT = 5.0


class Flood:
    """Counts of one flood run."""

    def __init__(self, args):
        self.args = args
        self.targets = [(t.rpartition(":")[0], int(t.rpartition(":")[2])) for t in args.target]
        first = ipaddress.ip_address(args.source)
        self.sources = [str(first + i) for i in range(args.sources)]
        self.genesis = bytes.fromhex(args.genesis)
        self.attempts = self.answered = self.handshakes = self.connect_errors = 0
        self.held = self.max_held = 0

    async def connect(self):
        i = self.attempts
        host, port = self.targets[i % len(self.targets)]
        source = self.sources[i // len(self.targets) % len(self.sources)]
        return await asyncio.wait_for(asyncio.open_connection(
            host, port, local_addr=(source, 0)), CONNECT_TIMEOUT)

    def hello1(self):
        kx = bindings.crypto_kx_keypair()[0]
        return plain_frame(encode_hello1(self.args.chain_id, self.genesis, kx, os.urandom(32)))

    def garbage(self, i):
        """Random bytes, a bad magic, an oversize length, a hello1 with a forged auth, in turn."""
        payloads = (os.urandom(64), plain_frame(b"HTTP" + os.urandom(100)),
                    struct.pack(">I", 1 << 30), self.hello1() + plain_frame(
                        encode_auth(os.urandom(32), os.urandom(64))))
        return payloads[i % len(payloads)]

    async def send_raw(self, payload, hold=False):
        """Connect, send ``payload``, note whether the node answers, then hang up (or with
        ``hold``, stay silent until the node does)."""
        self.attempts += 1
        try:
            reader, writer = await self.connect()
        except (OSError, asyncio.TimeoutError):
            self.connect_errors += 1
            return
        try:
            writer.write(payload)
            await writer.drain()
            if await asyncio.wait_for(reader.read(1), CONNECT_TIMEOUT):
                self.answered += 1
            if hold:
                await asyncio.wait_for(reader.read(), 30)
        except (OSError, asyncio.TimeoutError):
            pass
        finally:
            writer.transport.abort()

    async def sybil(self, i, stop):
        self.attempts += 1
        key = KeyPair.generate()
        try:
            reader, writer = await self.connect()
        except (OSError, asyncio.TimeoutError):
            self.connect_errors += 1
            return
        try:
            result = await handshake(reader, writer, key, self.args.chain_id, self.genesis, True)
        except HandshakeError:
            writer.transport.abort()
            return
        self.answered += 1
        self.handshakes += 1
        conn = Connection(reader, writer, FrameCipher(result.tx_key, result.rx_key),
                          result.peer_pubkey, True)
        self.held += 1
        self.max_held = max(self.max_held, self.held)
        try:
            while not stop.is_set():
                message = await conn.recv()
                if isinstance(message, Ping):
                    await conn.send(Pong(message.nonce))
        except Exception:  # noqa: BLE001 - the node hung up or refused: that ends the link
            pass
        finally:
            self.held -= 1
            await conn.close()

    async def run(self):
        args = self.args
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        started = time.monotonic()
        deadline = started + args.seconds
        tasks = set()
        interval = 1 / args.rate
        i = 0
        next_at = time.monotonic()
        while (time.monotonic() < deadline and not stop.is_set()
               and (args.mode != "sybil" or i < args.keys)):
            while len(tasks) >= args.concurrency:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            job = (self.sybil(i, stop) if args.mode == "sybil" else
                   self.send_raw(self.garbage(i)) if args.mode == "garbage" else
                   self.send_raw(self.hello1(), hold=args.mode == "slow"))
            task = asyncio.get_running_loop().create_task(job)
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        if args.mode == "sybil":  # hold the links until the time is up
            try:
                await asyncio.wait_for(stop.wait(), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                pass
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return {"mode": args.mode, "source": args.source, "sources": args.sources,
                "seconds": round(time.monotonic() - started, 2), "attempts": self.attempts,
                "answered": self.answered, "handshakes": self.handshakes,
                "max_held": self.max_held, "connect_errors": self.connect_errors}


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, action="append",
                        help="host:port of a node's p2p listener (repeat for several)")
    parser.add_argument("--source", default="127.0.0.2", help="local address to connect from")
    parser.add_argument("--sources", type=int, default=1,
                        help="use this many consecutive source addresses from --source")
    parser.add_argument("--mode", choices=("garbage", "hello", "slow", "sybil"), default="garbage")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rate", type=float, default=500, help="new connections per second")
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--keys", type=int, default=50, help="sybil node keys")
    parser.add_argument("--chain-id", required=True)
    parser.add_argument("--genesis", required=True, help="genesis hash, hex")
    return parser.parse_args(argv)


def main(argv=None):
    print(json.dumps(asyncio.run(Flood(parse(argv)).run())), flush=True)


if __name__ == "__main__":
    main()
