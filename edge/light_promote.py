"""``smartshare node promote``: a light node becomes an agent node (docs/protocol.md §13.7).

With the light node stopped, it catches up with finality once more, takes the state at its last
irreversible block from a peer (Snapshot messages, §12.8), checks it against that block's state
root, writes the full node's store from it and switches ``[node] role`` to ``agent``. The next
``smartshare node run`` is a full node that syncs blocks from there: nothing is replayed. A peer
whose snapshot does not check out is banned and the next one asked.
"""

import asyncio
import os
import shutil
import time

from chain.genesis import Genesis
from chain.keys import KeyPair
from chain.light import LightError
from chain.light.chain import LightChain
from chain.light.follow import HeaderRules
from chain.light.promote import check_snapshot, decode_block, install
from chain.light.store import LightStore
from chain.light.sync import FromPeer, LightSync, NoPeer
from chain.p2p.peers import PeerLimits
from chain.store import Store
from edge.runtime import NodeError, lock_data_dir, now_ms

PEERS_WAIT_S = 30.0
ATTEMPTS = 5


class Promotion:
    """One promotion of the light node of ``config``; ``progress(done, label)`` shows it."""

    def __init__(self, config, log, progress):
        self.config, self.log, self.progress = config, log, progress
        self.genesis = Genesis.load(config.path(config.genesis_file))

    def run(self):
        config = self.config
        if config.role != "light":
            raise NodeError(f"{config.home} is already an agent node ([node] role = "
                            f"{config.role!r})")
        data_dir = config.path(config.data_dir)
        if os.path.exists(os.path.join(data_dir, "data.mdb")):
            raise NodeError(f"{data_dir} already holds a chain; move it aside to promote again")
        lock = lock_data_dir(config.path(config.light_dir))  # refuses while the node runs
        try:
            header, block, receipts, items = asyncio.run(self._fetch())
        finally:
            lock.close()
        self.progress(len(items), "writing the full node's store")
        store = Store(data_dir, map_size=config.map_size_mb << 20)
        try:
            install(store, self.genesis, block, receipts, items)
        except Exception:
            store.close()
            shutil.rmtree(data_dir, ignore_errors=True)
            raise
        store.close()
        config.role = "agent"
        if not config.p2p_port:
            from edge.testnet import free_ports
            config.p2p_port = free_ports(1)[0]
        config.save()
        return {"height": header.height, "block_hash": header.hash.hex(),
                "state_root": header.state_root.hex(), "entries": len(items),
                "data_dir": data_dir}

    async def _fetch(self):
        config = self.config
        store = LightStore(config.path(config.light_dir))
        chain = LightChain(store, HeaderRules(self.genesis.chain_id, self.genesis.params,
                                              self.genesis.genesis_time_ms),
                           window=config.light_window)
        if not chain.ready:
            store.close()
            raise NodeError("this light node has no checkpoint yet: run it (smartshare node "
                            "run) until it follows the chain, then promote it")
        limits = PeerLimits(config.max_peers, config.max_outbound, config.handshakes_per_minute,
                            config.peers_per_address, config.exempt_loopback)
        sync = LightSync(chain, KeyPair.load(config.path(config.key_file)), self.genesis,
                         host=config.p2p_host, port=0, seeds=config.seeds, limits=limits,
                         log=self.log, now_ms=now_ms)
        await sync.manager.start()
        try:
            return await fetch_state(sync, chain, self.progress)
        finally:
            await sync.stop()
            store.close()


async def fetch_state(sync, chain, progress):
    """``(header, block, receipts, items)``: the last irreversible block of ``chain`` (after
    catching up with finality), its receipts and its whole state, checked, from the first peer
    that serves them."""
    deadline = time.monotonic() + PEERS_WAIT_S
    while not sync.peers and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    for _ in range(ATTEMPTS):
        try:
            await sync.catch_up_finality(force=True)
        except (FromPeer, NoPeer):
            pass
        header = chain.lib
        for peer in sync.candidates("snapshot"):
            try:
                items = await _items(sync, peer, header, progress)
                if items is None:
                    continue
                block = decode_block(await sync.block_at(peer, header.height), header)
                check_snapshot(header, items)
                receipts = await _receipts(sync, block)
                if receipts is not None:
                    return header, block, receipts, items
            except FromPeer as exc:
                sync.penalise(exc.peer, exc.error.reason, str(exc.error))
            except LightError as exc:
                sync.penalise(peer, exc.reason, str(exc))
        await asyncio.sleep(1)
    raise NodeError("no peer served a snapshot that checks out against the last "
                    "irreversible block; try again later, or with other peers")


async def _receipts(sync, block):
    """The receipts of ``block``, each proven against its header (tx proofs, §12.8), or None
    when some peer could not prove one."""
    receipts = []
    for tx in block.txs:
        proven = await sync.tx_status(tx.id)
        if proven is None or proven[2].hash != block.hash:
            return None
        receipts.append(proven[1])
    return receipts


async def _items(sync, peer, header, progress):
    items, after = {}, b""
    while True:
        chunk = await sync.snapshot_chunk(peer, header, after)
        if chunk.items is None:
            return None  # that state is not served (any more): another peer, or later
        items.update(chunk.items)
        progress(len(items), f"state at block {header.height}: {len(items)} entries")
        if chunk.done:
            return items
        if not chunk.items:
            raise FromPeer(peer, LightError("bad_proof", "an empty chunk that is not the "
                                            "last"))
        after = chunk.items[-1][0]
