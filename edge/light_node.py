"""The light node process: a LightChain kept up by LightSync, its local API, systemd readiness.

It keeps no state, only checked headers and finality (docs/protocol.md §13.7): balances,
agents and contracts are read from full nodes with state proofs against its last irreversible
block, transactions go out through its peers, and their inclusion is proven against the
headers it follows. Kept small on purpose: no aiohttp, no contract VM unless a query needs it.
"""

import asyncio
import os
import signal
import time

from chain import crypto
from chain.genesis import Genesis, GenesisError
from chain.keys import KeyFileError, KeyPair
from chain.light.chain import LightChain
from chain.light.follow import HeaderRules
from chain.light.genesis import genesis_anchor
from chain.light.store import LightStore
from chain.light.sync import BOOTSTRAP_KEYS, CheckpointError, LightSync
from chain.p2p.peers import PeerLimits
from chain.tx import Tx
from edge import sdnotify
from edge._fast import DecodeError
from chain.secretfile import SecretFileError
from edge.runtime import (NodeError, check_secret_files, lock_data_dir, now_ms, print_line,
                          run_foreground)

PENDING_LIMIT = 10_000


class LightNode:
    """One light node on a home folder's config (``[node] role = "light"``)."""

    role = "light"

    def __init__(self, config, log=None):
        self.config = config
        self.log = log or print_line
        check_secret_files(config)
        self.genesis = Genesis.load(config.path(config.genesis_file))
        self.key = KeyPair.load(config.path(config.key_file))
        self.chain_id = self.genesis.chain_id
        self.params = self.genesis.params
        data_dir = config.path(config.light_dir)
        self._lock = lock_data_dir(data_dir)
        self.store = LightStore(data_dir)
        rules = HeaderRules(self.chain_id, self.params, self.genesis.genesis_time_ms)
        self.chain = LightChain(self.store, rules, window=config.light_window)
        self.sync = self._make_sync()
        self.sent = self._load_sent()  # tx id -> (first sent ms, Tx): what this node relayed
        self._stopping = asyncio.Event()
        self._queries = None  # chain.light.query.ProvenQueries, made on the first query

    def _make_sync(self):
        config = self.config
        limits = PeerLimits(config.max_peers, config.max_outbound, config.handshakes_per_minute,
                            config.peers_per_address, config.exempt_loopback)
        checkpoint = anchor = None
        if config.light_checkpoint == "genesis":
            anchor = genesis_anchor(self.genesis, BOOTSTRAP_KEYS)
        elif config.light_checkpoint:
            height, _, block_hash = config.light_checkpoint.partition(":")
            checkpoint = (int(height), bytes.fromhex(block_hash))
        return LightSync(self.chain, self.key, self.genesis, host=config.p2p_host,
                         port=config.p2p_port, seeds=config.seeds, limits=limits, log=self.log,
                         now_ms=now_ms, checkpoint=checkpoint, agree=config.light_agree,
                         anchor_genesis=anchor)

    # -- transactions ---------------------------------------------------------------------------

    def _load_sent(self):
        with self.store.read() as txn:
            return {tx_id: (sent, Tx.decode(raw)) for tx_id, sent, raw in self.store.sent(txn)}

    def submit(self, raws):
        """Check what needs no state (decoding, chain, fee floor, signature) and send the rest
        to every peer; one result per input, like the full node's."""
        results, accepted = [], []
        for raw in raws:
            try:
                tx = self._checked(raw)
            except ValueError as exc:
                reason, _, detail = str(exc).partition(": ")
                results.append({"accepted": False, "reason": reason, "detail": detail})
                continue
            accepted.append(tx)
            results.append({"accepted": True, "id": tx.id.hex()})
        if accepted:
            stamp = now_ms()

            def work(txn):
                for tx in accepted:
                    self.store.put_sent(txn, tx.id, stamp, tx.raw)
            self.store.write(work)
            for tx in accepted:
                self.sent.setdefault(tx.id, (stamp, tx))
            self.sync.send_txs([tx.raw for tx in accepted])
        return results

    def _checked(self, raw):
        try:
            tx = Tx.decode(raw)
        except DecodeError as exc:
            raise ValueError(f"malformed: {exc}") from None
        size = len(tx.raw)
        if size > self.params.max_tx_bytes + (self.params.max_code_bytes if
                                              tx.kind_name == "deploy" else 0):
            raise ValueError(f"oversize: transaction is {size} bytes")
        if tx.chain_id != self.chain_id:
            raise ValueError(f"wrong_chain: transaction is for chain {tx.chain_id!r}")
        floor = self.params.min_fee_for(size, getattr(tx.payload, "gas_limit", 0))
        if tx.fee < floor:
            raise ValueError(f"fee_too_low: fee {tx.fee} is below the minimum {floor}")
        if not crypto.verify(tx.sender, self.chain_id, tx.id, tx.signature):
            raise ValueError("bad_signature: signature does not match the sender's key")
        if len(self.sent) >= PENDING_LIMIT:
            raise ValueError("mempool_full: this light node watches too many transactions")
        return tx

    def pending_nonces(self, address, verified_nonce):
        """The next nonce of ``address``: after its proven one and what this node sent."""
        nonces = [tx.nonce for _, tx in self.sent.values()
                  if tx.sender_address == address and tx.nonce >= verified_nonce]
        return max(nonces) + 1 if nonces else verified_nonce

    async def query(self, contract, method, args):
        """``(Result, header)``: a read-only call of ``contract`` on the state of the last
        irreversible block, every value it reads proven (chain/light/query.py)."""
        if self._queries is None:
            from chain.light.query import ProvenQueries  # loads the Lua VM: only when used
            from edge.api_json import QUERY_MAX_GAS
            gas = min(QUERY_MAX_GAS, self.params.max_gas_per_tx)
            self._queries = ProvenQueries(self._read_values, self.chain_id, gas)
        header = self.chain.lib
        return await self._queries.call(header, contract, method, args), header

    async def _read_values(self, header, keys):
        values, _, _ = await self.sync.read(keys, header)
        return values

    async def tx_status(self, tx_id):
        """``{"status": "committed", ...}`` with proofs, ``{"status": "pending"}`` for what
        this node sent and no peer proves yet, or None."""
        found = await self.sync.tx_status(tx_id)
        if found is not None:
            tx, receipt, header = found
            irreversible = header.height <= self.chain.lib.height
            if irreversible and tx_id in self.sent:
                self._forget(tx_id)
            return {"status": "committed", "height": header.height, "receipt": receipt,
                    "tx": tx, "block_hash": header.hash.hex(), "irreversible": irreversible}
        if tx_id in self.sent:
            return {"status": "pending", "tx": self.sent[tx_id][1]}
        return None

    def _forget(self, tx_id):
        self.sent.pop(tx_id, None)
        self.store.write(lambda txn: self.store.delete_sent(txn, tx_id))

    def settle_sent(self, verified_nonces):
        """Forget sent transactions whose nonce the irreversible state has passed."""
        for tx_id, (_, tx) in list(self.sent.items()):
            nonce = verified_nonces.get(tx.sender_address)
            if nonce is not None and tx.nonce < nonce:
                self._forget(tx_id)

    # -- status ---------------------------------------------------------------------------------

    def target_height(self):
        """The highest head a peer has shown (or this node's own tip)."""
        tip = self.chain.tip.height if self.chain.tip else 0
        return max([tip] + list(self.sync.heads.values()))

    def status_line(self):
        if not self.chain.ready or self.chain.tip is None:
            return f"light: starting ({len(self.sync.peers)} peer(s))"
        return (f"light: height {self.chain.tip.height} (LIB {self.chain.lib.height}), "
                f"{len(self.sync.peers)} peer(s)")

    # -- running --------------------------------------------------------------------------------

    async def run(self):
        """Serve the API and follow the chain until SIGINT/SIGTERM (or a fatal checkpoint)."""
        from edge.light_api import start_light_api
        loop = asyncio.get_running_loop()
        notifier = sdnotify.Notifier()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stopping.set)
        api = await start_light_api(self, self.config.api_host, self.config.api_port)
        await self.sync.start()
        finder = self._find_peers(loop) if self.config.advertise else None
        self.log(f"SmartShare light node {self.key.address_text} on chain {self.chain_id}: "
                 f"API {self.config.api_url}, pid {os.getpid()}")
        notifier.ready(self.status_line())
        pinging = asyncio.ensure_future(sdnotify.heartbeat(notifier, self.status_line,
                                                           self._stopping))
        watching = asyncio.ensure_future(self._log_progress())
        try:
            while not self._stopping.is_set() and not self.sync.stopping.is_set():
                try:
                    await asyncio.wait_for(self._stopping.wait(), 0.5)
                except asyncio.TimeoutError:
                    pass
        finally:
            notifier.stopping()
            pinging.cancel()
            watching.cancel()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            if finder is not None:
                await loop.run_in_executor(None, finder.stop)
            await self.sync.stop()
            await api.close()
            self.store.close()
            self.log("light node stopped")
        if self.sync.fatal is not None:
            raise NodeError(str(self.sync.fatal))

    def _find_peers(self, loop):
        """Full nodes of this chain found on the LAN by mDNS become seeds (a light node looks,
        it does not announce itself: it serves no blocks)."""
        from edge import discovery  # zeroconf only when used

        def found(entry):
            loop.call_soon_threadsafe(self.sync.manager.add_seed,
                                      f"{entry['host']}:{entry['port']}")
        try:
            return discovery.PeerFinder(self.chain_id, self.key.pubkey.hex(), found,
                                        self.config.discovery_interfaces or None,
                                        log=self.log).start()
        except Exception as exc:  # noqa: BLE001 - no multicast here: run on the seeds
            self.log(f"discovery: not looking for peers: {exc}")
            return None

    async def _log_progress(self):
        """One line per new irreversible block or every 10 s of headers."""
        last, said = None, 0.0
        while True:
            await asyncio.sleep(1)
            if not self.chain.ready or self.chain.tip is None:
                continue
            now = (self.chain.tip.height, self.chain.lib.height)
            if now != last and (now[1] != (last or (0, -1))[1] or time.monotonic() - said > 10):
                tip = self.chain.tip.header
                self.log(f"light {tip.height:>7}  slot {tip.slot:>8}  lib {self.chain.lib.height:>7}"
                         f"  peers {len(self.sync.peers)}  hash {tip.hash.hex()[:12]}")
                last, said = now, time.monotonic()


def run_light_node(config):
    """Run a light node in the foreground (``smartshare node run`` with role light)."""
    run_foreground(LightNode, config, (GenesisError, KeyFileError, CheckpointError,
                                       SecretFileError, ValueError))
