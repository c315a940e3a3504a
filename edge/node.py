"""The node process: ledger, durable mempool, slot-clock block production and the local API.

Admitted transactions are written to LMDB before the API acknowledges them, so neither a crash
nor ``kill -9`` loses a transaction the node accepted (DESIGN rule 4).
"""

import asyncio
import os
import signal
import struct
import time

from chain import calls, crypto, heavy
from chain.dryrun import Busy, DryRunner
from chain.errors import Reason, TxRejected
from chain.execute import apply_tx, check_static, is_heavy_evidence
from chain.genesis import Genesis, GenesisError
from chain.keys import KeyFileError, KeyPair
from chain.ledger import Ledger, LedgerError
from chain.state.smt import StateError
from chain.dropped import EVICTED, INVALID, DroppedTxs
from chain.mempool import Mempool
from chain.secretfile import SecretFileError
from chain.store import Store
from chain.block import STATUS_OK, Block, Header
from chain.network import PeerNetwork
from chain.producer import BlockSigner, ProducerError, watermark_path
from chain.votes import VotePool
from chain.p2p.addressbook import AddressBook
from chain.p2p.peers import PeerLimits
from chain.tx import Call, Deploy, Evidence, Transfer, Tx
from edge import sdnotify
from edge._fast import DecodeError
from edge.api import VERSION, start_api
from edge.metrics import NodeMetrics
from edge.runtime import NodeError, check_secret_files, now_ms, print_line, run_foreground  # noqa: F401
from edge.runtime import lock_data_dir as _lock_data_dir

SEQ = struct.Struct(">Q")


class Node:
    """One SmartShare node on a home folder's config."""

    def __init__(self, config, log=None):
        self.config = config
        self.log = log or print_line
        check_secret_files(config)
        self.genesis = Genesis.load(config.path(config.genesis_file))
        if self.genesis.vm_problem():
            raise GenesisError(self.genesis.vm_problem())
        self.key = KeyPair.load(config.path(config.key_file))
        self.signers = self._load_signers()
        self.vote_pool = VotePool(self.genesis.chain_id)
        data_dir = config.path(config.data_dir)
        self._lock = _lock_data_dir(data_dir)
        self.store = Store(data_dir, map_size=config.map_size_mb << 20)
        self.ledger = Ledger(self.store, self.genesis, prune_depth=config.prune_depth)
        self._audited = self.ledger.lib_height   # heavy results re-run up to here
        self.mempool = Mempool(limit=config.mempool_limit)
        # Contract work of this node (admission, production) may take a quarter slot at most.
        self.backstop_s = self.ledger.params.slot_ms / 4000
        self.dry_runs = DryRunner(wall_clock_s=self.backstop_s)
        self.metrics = NodeMetrics()
        self._mempool_db = self.store.db("mempool")
        self.dropped = DroppedTxs(self.store)
        self._seq = 0
        self._stopping = asyncio.Event()
        self._load_mempool()
        self.metrics.height.set(self.ledger.head.height)
        self.network = self._make_network() if config.p2p_port else None
        if self.network is not None:
            self.metrics.watch_peers(self.network.manager)
        self.devices = None  # the DeviceService, when [mqtt] port is set (started by run)
        self.agent = None    # the NodeAgent, when devices run and [agent] enabled (started by run)
        self.advertiser = None  # mDNS, when [discovery] advertise is set (started by run)

    def _make_network(self):
        config = self.config
        limits = PeerLimits(config.max_peers, config.max_outbound, config.handshakes_per_minute,
                            config.peers_per_address, config.exempt_loopback)
        return PeerNetwork(self.ledger, self.key, host=config.p2p_host, port=config.p2p_port,
                           seeds=config.seeds, limits=limits, submit=self.admit,
                           on_chain_change=self._on_network_block,
                           on_double_production=self._on_double_production,
                           on_block_seen=self.block_seen, now_ms=now_ms,
                           log=self.log, agent_name=self._agent_name(),
                           book=AddressBook(self.store))

    def _load_signers(self):
        """The producer keys this node signs blocks with, by public key: the node key, and
        the key a rotation will move it to (``<key_file>.next``, once it is scheduled)."""
        config = self.config
        keys = [self.key]
        upcoming = config.path(config.key_file) + ".next"
        if os.path.exists(upcoming):
            keys.append(KeyPair.load(upcoming))
        votes_dir = config.path(config.votes_dir)
        signers = {}
        for key in keys:
            signers[key.pubkey] = BlockSigner(key, watermark_path(votes_dir, key.pubkey))
            if signers[key.pubkey].recovering:
                self.log(f"producer {key.address_text}: no vote watermark in {votes_dir}; it "
                         "will not vote until it sees its own latest vote on the chain or the "
                         f"evidence window ({self.genesis.params.evidence_window} blocks) passes")
        return signers

    def _pick_up_rotated_key(self):
        """After ``smartshare agent rotate-key`` the new key waits beside the node key."""
        if os.path.exists(self.config.path(self.config.key_file) + ".next"):
            for pubkey, signer in self._load_signers().items():
                self.signers.setdefault(pubkey, signer)

    def _agent_name(self):
        with self.store.read() as txn:
            view = self.ledger.view(txn)
            owner = view.owner_of(self.key.pubkey)
            agent = view.agent(owner) if owner is not None else None
        return agent.name if agent is not None else ""

    # -- transactions ---------------------------------------------------------------------------

    # Admission (docs/protocol.md §9): cheap checks first (decode, size, chain, fee, duplicate,
    # signature, nonce, balance >= fee); then contract transactions are dry-run off the event
    # loop (chain/dryrun.py, bounded per peer and per sender); then the mempool's nonce and
    # balance rules, in the order given, and one durable commit.

    def submit(self, raw_txs):
        """Admit encoded transactions now, dry runs in this thread (internal callers, tests);
        returns one result dict per input, in order. Accepted ones are durable in LMDB before
        this returns. The API and the peers use ``admit``."""
        results, checked = self._check(raw_txs)
        for i, tx in checked:
            if _is_contract(tx):
                try:
                    with calls.backstop(self.dry_runs.wall_clock_s):
                        results[i] = _dry_run_result(self._contract_dry_run(tx))
                except TxRejected as exc:
                    results[i] = self._refused(exc)
        return self._enter(checked, results)

    async def admit(self, raw_txs, peers=None):
        """Like ``submit``, with contract dry runs on the dry-run thread. ``peers`` (one per
        transaction) are who relayed them: beyond a peer's or a sender's share of dry runs, a
        relayed transaction is admitted without one (its fee pays for its run in a block);
        without ``peers`` (the node's API) the call waits for room."""
        results, checked = self._check(raw_txs)
        jobs = [(i, asyncio.ensure_future(self._dry_run_job(tx, peers[i] if peers else None,
                                                            wait=not peers)))
                for i, tx in checked if _is_contract(tx)]
        for i, job in jobs:
            try:
                results[i] = await job
            except TxRejected as exc:
                results[i] = self._refused(exc)
        return self._enter(checked, results)

    async def _dry_run_job(self, tx, peer, wait):
        keys = [peer and ("peer", peer), ("sender", tx.sender_address)]
        try:
            receipt = await self.dry_runs.run(keys, self._contract_dry_run, tx, wait=wait)
        except Busy:
            return {}
        return _dry_run_result(receipt)

    def _check(self, raw_txs):
        """The cheap checks: (results with refusals filled in, [(index, tx)] that passed)."""
        results = [None] * len(raw_txs)
        candidates, checked = [], []
        with self.store.read() as txn:  # one snapshot for the whole batch
            for i, raw in enumerate(raw_txs):
                try:
                    candidates.append((i, self._decode_and_check(raw, txn)))
                except TxRejected as exc:
                    results[i] = self._refused(exc)
            valid = crypto.verify_many(self.ledger.chain_id, [(tx.sender, tx.id, tx.signature)
                                                              for _, tx in candidates])
            self.ledger.verified.add(tx for (_, tx), ok in zip(candidates, valid) if ok)
            view = self.ledger.view(txn)
            for (i, tx), signature_ok in zip(candidates, valid):
                try:
                    if not signature_ok:
                        raise TxRejected(Reason.BAD_SIGNATURE,
                                         "signature does not match the sender's key")
                    _check_account(tx, view.account(tx.sender_address))
                except TxRejected as exc:
                    results[i] = self._refused(exc)
                    continue
                checked.append((i, tx))
        return results, checked

    def _enter(self, checked, results):
        """Put the checked transactions whose dry run passed into the mempool, in order."""
        accepted, evicted = [], []
        with self.store.read() as txn:
            view = self.ledger.view(txn)
            for i, tx in checked:
                if results[i] is not None and not results[i].get("accepted", True):
                    continue          # refused by its dry run
                try:
                    account = view.account(tx.sender_address)
                    self._dry_run(tx, account, txn)
                    evicted += self.mempool.add(tx, account)
                except TxRejected as exc:
                    results[i] = self._refused(exc)
                    continue
                accepted.append(tx)
                results[i] = {"accepted": True, "id": tx.id.hex(), **(results[i] or {})}
        accepted = [tx for tx in accepted if tx.id in self.mempool]  # minus any evicted again
        if accepted or evicted:
            self._persist(accepted, evicted)
        if accepted and self.network is not None:
            self.network.broadcast_txs([tx.raw for tx in accepted])
        self.metrics.mempool_size.set(len(self.mempool))
        return results

    def _contract_dry_run(self, tx):
        """The contract transaction against the head's state (thrown away), its nonce aside."""
        head = self.ledger.head
        with self.store.read() as txn:
            return calls.dry_run(self.ledger.view(txn), tx, (head.height + 1, head.timestamp_ms),
                                 self.ledger.params)

    def _dry_run(self, tx, account, txn):
        """Run a staking, voting or agent transaction against the head's state, so that a
        refusal (already an agent, unknown candidate...) reaches the sender now rather than
        when a block drops it. Transfers need only the mempool's nonce and balance rules,
        contract transactions get their own dry run (``admit``); a transaction behind pending
        ones of its sender is judged when it is built in."""
        if isinstance(tx.payload, Transfer) or _is_contract(tx) or tx.nonce != account.nonce \
                or is_heavy_evidence(tx):   # re-running a heavy call is paid work in a block
            return
        apply_tx(self.ledger.view(txn), tx, self.ledger.params, self.ledger.head.height + 1)

    def _refused(self, exc):
        self.metrics.txs_rejected.labels(exc.reason.value).inc()
        return {"accepted": False, "reason": exc.reason.value, "detail": exc.detail}

    def _decode_and_check(self, raw, txn):
        """Everything but the signature and the mempool's nonce and balance rules."""
        try:
            tx = Tx.decode(raw)
        except DecodeError as exc:
            raise TxRejected(Reason.MALFORMED, str(exc)) from None
        check_static(tx, self.ledger.chain_id, self.ledger.params)
        if tx.id in self.mempool or txn.get(tx.id, db=self.ledger.db["txs"]) is not None:
            raise TxRejected(Reason.DUPLICATE, "transaction is already pending or committed")
        return tx

    def _persist(self, accepted, evicted):
        first = self._seq + 1
        self._seq += len(accepted)
        drops = [(tx, EVICTED, TxRejected(Reason.MEMPOOL_FULL, "the mempool was full and a "
                                          "transaction paying a higher fee took its place"))
                 for tx in evicted]

        def work(txn):
            self._record_drops(txn, drops)
            for seq, tx in enumerate(accepted, start=first):
                txn.put(tx.id, SEQ.pack(seq) + tx.raw, db=self._mempool_db)
        try:
            self.store.write(work)
        except Exception:
            self.mempool.remove(accepted)
            raise
        self._count_drops(drops)

    def _load_mempool(self):
        entries = []
        with self.store.read() as txn:
            for tx_id, value in txn.cursor(db=self._mempool_db):
                entries.append((SEQ.unpack(value[:SEQ.size])[0], value[SEQ.size:]))
        entries.sort()
        for seq, raw in entries:
            self._seq = max(self._seq, seq)
            self.mempool.restore(Tx.decode(raw))
        self._forget(self.mempool.revalidate(self.ledger.account))
        self.metrics.mempool_size.set(len(self.mempool))

    def _forget(self, invalid):
        """Drop ``[(tx, TxRejected)]`` from the durable mempool, recording why."""
        drops = [(tx, INVALID, exc) for tx, exc in invalid]
        if drops:
            self.store.write(lambda txn: self._record_drops(txn, drops))
            self._count_drops(drops)

    def _record_drops(self, txn, drops):
        for tx, _, _ in drops:
            txn.delete(tx.id, db=self._mempool_db)
        self.dropped.record(txn, drops, self.ledger.head.height)

    def _count_drops(self, drops):
        for _, status, exc in drops:
            self.metrics.txs_dropped.labels(status, exc.reason.value).inc()

    def tx_status(self, tx_id):
        """What became of a transaction: ``{"status": "pending", "tx"}``, ``{"status":
        "committed", height, index, receipt, tx}``, ``{"status": "evicted" or "invalid", reason,
        detail, height}`` or None (unknown)."""
        pending = self.mempool.get(tx_id)
        if pending is not None:
            return {"status": "pending", "tx": pending}
        found = self.ledger.committed_tx(tx_id)
        if found is not None:
            tx, height, index, receipt = found
            return {"status": "committed", "height": height, "index": index, "receipt": receipt,
                    "tx": tx}
        return self.dropped.get(tx_id)

    # -- blocks ---------------------------------------------------------------------------------

    def produce(self, slot, signer=None):
        """Build, validate and commit this node's block for ``slot`` (signed by ``signer``,
        by default the node key's), and announce it."""
        signer = signer or self.signers[self.key.pubkey]
        candidates = self.mempool.select(self.ledger.params.max_block_txs)
        twin = (self._equivocating_twin(slot, candidates, signer) if self.config.equivocate
                else None)
        started = time.perf_counter()
        votes = self.vote_pool.for_round(self.ledger.schedule_for(slot).round)
        with calls.backstop(self.backstop_s):   # a contract over it is left out, never receipted
            block, rejected = self.ledger.produce_block(signer, slot, candidates, votes)
        self.metrics.apply_seconds.observe(time.perf_counter() - started)
        self.chain_changed(block, included=block.txs, dropped=rejected)
        if self.network is not None:
            if twin is None:
                self.network.broadcast_block(block)
            else:
                self.network.split_broadcast(block, twin)
        return block

    def _equivocating_twin(self, slot, candidates, signer):
        """A second, different block for the same slot (testing only: it is punishable)."""
        account = self.ledger.account(self.key.address)
        nonce = self.mempool.next_nonce(self.key.address, account)
        payload = Transfer(self.key.address, 1)
        fee = self.ledger.params.min_fee_for(len(Tx(self.ledger.chain_id, self.key.pubkey, nonce,
                                                    0, payload).raw) + 4)
        extra = Tx(self.ledger.chain_id, self.key.pubkey, nonce, fee, payload).signed_by(self.key)
        return self.ledger.build_block(signer, slot, candidates + [extra])[0]

    def chain_changed(self, block, included, dropped=(), undone=()):
        """After the head moved: settle the mempool (transactions of blocks a reorganisation
        took back return to it, ahead of the ones that follow them: the ledger already put them
        back in the durable mempool, in the reorganisation's own transaction), metrics and the
        log. ``dropped``: ``[(tx, TxRejected)]`` a block left out as invalid."""
        self.mempool.remove(included)
        for tx in undone:
            if self.ledger.tx_location(tx.id) is None:
                self.mempool.restore(tx)
        dropped = list(dropped) + self.mempool.revalidate(self.ledger.account)
        self.mempool.remove([tx for tx, _ in dropped])
        self._forget(dropped)
        self.metrics.height.set(self.ledger.head.height)
        self.metrics.lib_height.set(self.ledger.lib_height)
        self.metrics.blocks_applied.inc()
        self.metrics.txs_applied.inc(len(block.txs))
        self.metrics.mempool_size.set(len(self.mempool))
        self._audit_heavy()
        h = block.header
        self.log(f"block {h.height:>7}  slot {h.slot:>8}  txs {len(block.txs):>5}  "
                 f"lib {self.ledger.lib_height:>7}  state {h.state_root.hex()[:12]}  "
                 f"hash {h.hash.hex()[:12]}")

    def _on_network_block(self, block, result):
        included = [tx for applied in result.applied for tx in applied.txs]
        self.chain_changed(block, included=included, undone=result.undone)

    def block_seen(self, block):
        """Any block from a peer, on any fork: keep its finality votes for our blocks to carry;
        a vote of one of our keys that this process did not sign (from before a restart)
        raises that key's watermark (docs/protocol.md §13)."""
        for vote in self.vote_pool.add(block.votes):
            signer = self.signers.get(vote.producer)
            if signer is not None:
                signer.observe(vote, self.ledger.head.height,
                               self.ledger.params.evidence_window)
                self._log_recovery_end(signer)

    def _log_recovery_end(self, signer):
        if signer.recovery_end is not None:
            self.log(f"producer {signer.keypair.address_text}: votes again: {signer.recovery_end}")
            signer.recovery_end = None

    def known_head_height(self):
        """The network's head height as this node knows it: its own, or the height that more
        than half of its peers have announced, if higher (a few peers overstating theirs can
        neither stall a wiped producer nor, understating, shorten its wait)."""
        heights = sorted((peer.head_height for peer in self.network.peers.values()),
                         reverse=True) if self.network is not None else []
        majority = heights[len(heights) // 2] if heights else 0
        return max(self.ledger.head.height, majority)

    def caught_up(self, schedule):
        """True once this node holds the network's chain, so a wiped producer's evidence window
        can start (docs/protocol.md §13): its head is from this round or the one before, it
        has a peer whenever it has seeds, and its LIB has reached the LIB that more than half
        of its peers announced (so a few peers overstating theirs cannot hold it back). A node
        still syncing, or alone on blocks of its own, is not caught up."""
        ledger = self.ledger
        if ledger.head.slot < schedule.start_slot - len(schedule.producers):
            return False
        if self.network is None:
            return True
        peers = list(self.network.peers.values())
        if not peers:
            return not self.network.manager.seeds
        reached = sum(peer.lib_height <= ledger.lib_height for peer in peers)
        return 2 * reached > len(peers)

    def _on_double_production(self, first, second):
        """Report double production seen on the network with an evidence transaction."""
        self._send_evidence(Evidence(first, second),
                            f"double production seen at slot {Header.decode(first).slot}")

    def _audit_heavy(self):
        """The lazy check (docs/protocol.md §9): re-run the heavy results of blocks that became
        irreversible, off the event loop on the dry-run thread, and prove a wrong one with
        evidence."""
        ledger = self.ledger
        if not ledger.params.heavy_gas or ledger.lib_height <= self._audited:
            return
        heights = range(self._audited + 1, ledger.lib_height + 1)
        self._audited = ledger.lib_height
        asyncio.get_running_loop().create_task(self._audit_blocks(heights))

    async def _audit_blocks(self, heights):
        for height in heights:
            try:
                wrong = await self.dry_runs.run(["heavy-audit"], heavy.audit, self.ledger,
                                                height, wait=True)
            except (TxRejected, StateError) as exc:   # the backstop fired; a version pruned
                self.log(f"heavy results of block {height} not checked: {exc}")
                continue
            for tx_id, gas in wrong:
                self._send_evidence(heavy.evidence_for(tx_id),
                                    f"wrong heavy result of {tx_id.hex()[:16]} at {height}", gas)

    def _send_evidence(self, payload, what, gas=0):
        """Evidence from the node key; ``gas``: what checking it re-runs (heavy results)."""
        account = self.ledger.account(self.key.address)
        nonce = self.mempool.next_nonce(self.key.address, account)
        size = len(Tx(self.ledger.chain_id, self.key.pubkey, nonce, 0, payload).raw) + 4
        tx = Tx(self.ledger.chain_id, self.key.pubkey, nonce,
                self.ledger.params.min_fee_for(size, gas), payload).signed_by(self.key)
        result = self.submit([tx.raw])[0]
        self.log(f"{what}: evidence "
                 f"{'submitted ' + result['id'][:16] if result['accepted'] else result['reason']}")

    async def produce_forever(self):
        """Produce a block in every slot this node is scheduled for, until stopped."""
        ledger = self.ledger
        while not self._stopping.is_set():
            slot = ledger.slot_at(now_ms())
            schedule = ledger.schedule_for(slot) if slot > ledger.head.slot else None
            scheduled = schedule.producer_for(slot) if schedule else None
            if scheduled is not None and scheduled not in self.signers:
                self._pick_up_rotated_key()
            signer = self.signers.get(scheduled)
            if signer is not None:
                if signer.recovering and self.caught_up(schedule):
                    signer.check_recovery(self.known_head_height(),
                                          ledger.params.evidence_window, schedule.round)
                    self._log_recovery_end(signer)
                try:
                    self.produce(slot, signer)
                except ProducerError as exc:
                    self.log(f"cannot produce slot {slot}: {exc}")
            wait_ms = ledger.slot_time_ms(slot + 1) - now_ms()
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=max(wait_ms, 1) / 1000)
            except asyncio.TimeoutError:
                pass

    def _observe_stored_own_blocks(self):
        """At start, blocks of our keys already in the store raise their watermarks."""
        ledger = self.ledger
        for height in range(max(1, ledger.lib_height), ledger.head.height + 1):
            for vote in Block.decode(ledger.block_bytes_at(height)).votes:
                signer = self.signers.get(vote.producer)
                if signer is not None:
                    signer.last_source = max(signer.last_source, vote.source_round)
                    signer.last_target = max(signer.last_target, vote.target_round)

    # -- discovery ------------------------------------------------------------------------------

    def _make_advertiser(self):
        """The mDNS advertiser of this node's broker and p2p port (docs/protocol.md §16.1)."""
        from edge import discovery  # zeroconf only when used
        config = self.config
        # Devices connect with TLS; a plaintext broker (loopback only) is announced only when
        # there is no TLS listener (development on one machine).
        tls = config.mqtt_tls_port > 0
        mqtt_port, mqtt_host = ((config.mqtt_tls_port, config.mqtt_tls_host) if tls
                                else (config.mqtt_port, config.mqtt_host))
        hosts = [config.p2p_host if config.p2p_port else None, mqtt_host if mqtt_port else None]
        return discovery.Advertiser(
            node_name=f"smartshare-{self.key.address_text[-10:]}",
            host_ip=discovery.advertised_addresses(hosts, config.discovery_interfaces),
            api_port=config.api_port, p2p_port=config.p2p_port, mqtt_port=mqtt_port,
            chain_id=self.ledger.chain_id, node_id=self.key.pubkey, role="agent",
            version=VERSION, provision_password=config.mqtt_provision_password,
            interfaces=config.discovery_interfaces or None,
            ca_sha256=self.devices.ca_fingerprint() if tls and self.devices else "")

    def _advertise(self):
        """Register the mDNS services (blocking ~2 s of probing; run off the event loop). A
        failure is logged: the node runs on without discovery."""
        try:
            advertiser = self._make_advertiser()
            advertiser.start()
        except Exception as exc:  # DiscoveryError, a bad address in [discovery] interfaces...
            self.log(f"discovery: not advertising: {exc}")
            return None
        self.advertiser = advertiser
        self.log(f"discovery: advertising {', '.join(advertiser.names)} on "
                 f"{', '.join(advertiser.host_ips)}")
        return advertiser

    async def _stop_advertising(self, task):
        """Wait for the registration in progress, then send the goodbyes."""
        if task is None:
            return
        advertiser = await task
        if advertiser is not None:
            await asyncio.get_running_loop().run_in_executor(None, advertiser.stop)

    def _find_peers(self, loop):
        """Browse ``_smartshare._tcp`` for nodes of this chain and dial them (a node that
        advertises also looks); None when there is no peer network or mDNS fails."""
        from edge import discovery
        if self.network is None:
            return None

        def found(entry):
            loop.call_soon_threadsafe(self._peer_found, f"{entry['host']}:{entry['port']}")

        try:
            return discovery.PeerFinder(self.ledger.chain_id, self.key.pubkey.hex(), found,
                                        self.config.discovery_interfaces or None,
                                        log=self.log).start()
        except Exception as exc:
            self.log(f"discovery: not looking for peers: {exc}")
            return None

    def _peer_found(self, seed):
        if self.network is not None and self.network.add_seed(seed):
            self.log(f"discovery: found peer {seed}")

    def status_line(self):
        """One line for systemd's STATUS= (``systemctl status``)."""
        peers = len(self.network.peers) if self.network is not None else 0
        return f"height {self.ledger.head.height} (LIB {self.ledger.lib_height}), {peers} peer(s)"

    # -- running --------------------------------------------------------------------------------

    async def run(self):
        """Serve the API and produce blocks until SIGINT/SIGTERM."""
        loop = asyncio.get_running_loop()
        notifier = sdnotify.Notifier()  # first: no child process (Mosquitto) inherits it
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stopping.set)
        self._observe_stored_own_blocks()
        runner = await start_api(self, self.config.api_host, self.config.api_port)
        if self.network is not None:
            await self.network.start()
        if self.config.mqtt_enabled:
            from edge.mqtt.service import DeviceService  # paho and Mosquitto only when used
            self.devices = DeviceService(self.config, self.store, self.ledger.chain_id,
                                         self.key.pubkey, log=self.log,
                                         metrics_registry=self.metrics.registry)
            self.devices.start()
            if self.config.agent_enabled:
                from edge.agent_node import NodeAgent
                self.agent = NodeAgent(self.config, self.store, self.ledger.chain_id,
                                       self.key.pubkey, self.devices, log=self.log)
                self.agent.start()
        advertising = finder = None
        if self.config.advertise:
            advertising = loop.run_in_executor(None, self._advertise)
            finder = self._find_peers(loop)
        self.log(f"SmartShare node {self.key.address_text} on chain {self.ledger.chain_id}: "
                 f"height {self.ledger.head.height}, API {self.config.api_url}, "
                 f"pid {os.getpid()}")
        notifier.ready(self.status_line())  # systemd: the store is open and the API listens
        pinging = asyncio.ensure_future(sdnotify.heartbeat(notifier, self.status_line,
                                                           self._stopping))
        try:
            await self.produce_forever()
        finally:
            notifier.stopping()
            pinging.cancel()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            await self._stop_advertising(advertising)
            if finder is not None:
                await loop.run_in_executor(None, finder.stop)
            if self.network is not None:
                await self.network.stop()
            if self.agent is not None:   # off the loop: the agent may be calling the API
                await loop.run_in_executor(None, self.agent.stop)
            if self.devices is not None:
                self.devices.stop()
            await runner.cleanup()
            self.dry_runs.close()
            self.store.close()
            self.log("node stopped")


def _is_contract(tx):
    return isinstance(tx.payload, (Deploy, Call))


def _check_account(tx, account):
    """The account-level cheap checks: a nonce not already used, a balance that covers the fee
    (the mempool judges the sender's whole pending chain later)."""
    if tx.nonce < account.nonce:
        raise TxRejected(Reason.BAD_NONCE, f"nonce {tx.nonce} is already used (next is "
                                           f"{account.nonce})")
    if account.balance < tx.fee:
        raise TxRejected(Reason.INSUFFICIENT_BALANCE, f"balance {account.balance} does not "
                                                      f"cover the fee {tx.fee}")


def _dry_run_result(receipt):
    """What the API reports of a contract transaction's dry run (None: it could not run now,
    e.g. its value waits for pending transactions)."""
    if receipt is None:
        return {}
    return {"dry_run": {"ok": receipt.status == STATUS_OK, "gas_used": receipt.gas_used,
                        "error": receipt.error}}


def run_node(config):
    """Run a node in the foreground (``smartshare node run``)."""
    run_foreground(Node, config, (GenesisError, KeyFileError, LedgerError, SecretFileError))
