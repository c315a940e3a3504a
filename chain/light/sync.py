"""A light node on the network: it starts from a checkpoint, checks finality entries, follows the
head and asks full nodes for proofs, trusting none of them (docs/protocol.md §12.8, §13.7).

Links are kept by ``chain.p2p.peers.PeerManager`` (admission, scores, bans, dialling). Every
answer is checked before it is used; a peer whose answer fails a check, who announces what it
cannot serve or who withholds what its own headers prove exists, loses score and is banned at
-100 like any misbehaving peer, and the node goes on with the others. One task does the
syncing, step by step; requests to one peer of one message type never overlap, so an answer is
matched by its peer and type (and checked against what was asked).
"""

import asyncio
import time
from collections import Counter, deque

from chain.block import Block, Header
from chain.light import LightError
from chain.light.finality import FinalityEntry
from chain.light.follow import FOLLOW_KEYS, decode_header
from chain.light.merkle import merkle_path_root
from chain.p2p.light import (FinalityMsg, GetFinality, GetSnapshot, GetState, GetTx, SnapshotMsg,
                             StateMsg, Subscribe, TxProofMsg)
from chain.p2p.messages import Blocks, BlockMsg, GetBlocks, GetHeaders, Headers, Hello, Txs
from chain.p2p.peers import PeerManager
from chain.state.consensus import RoundInfo
from chain.state.proof import Proof, verify_proof
from chain.state.records import FINALITY_KEY, ROUND_KEY
from edge._fast import DecodeError

REQUEST_S = 5.0
HEADER_BATCH = 500
FINALITY_BATCH = 16
FINALITY_EVERY_S = 1.0
IDLE_S = 0.25
BOOTSTRAP_KEYS = (FINALITY_KEY,) + FOLLOW_KEYS
# Points a peer loses per fault; -100 bans it (chain/p2p/peers.py). A wrong answer is a lie:
# no honest node sends one. Nor does it withhold: a full node writes a round's finality entry
# in the transaction that adds the block justifying it, before it shows that block to anyone,
# and fork choice never moves it to a chain that justified less. Announcing a head it then
# does not serve could be a node that just restarted, so that costs a third of a ban.
BAN = 100
POINTS = {"bad_finality": BAN, "bad_proof": BAN, "bad_header": BAN, "unscheduled": BAN,
          "bad_state": BAN, "fork_below_lib": BAN, "malformed": BAN, "withheld": BAN,
          "stale": 34, "timeout": 25, "unknown_source": 10, "round_pending": 0}
REPLY_KINDS = {Headers: "headers", FinalityMsg: "finality", StateMsg: "state",
               TxProofMsg: "tx", SnapshotMsg: "snapshot", Blocks: "blocks"}


class FromPeer(Exception):
    """A LightError ``error`` caused by ``peer``."""

    def __init__(self, peer, error):
        super().__init__(str(error))
        self.peer, self.error = peer, error


class NoPeer(Exception):
    """No connected peer can answer now."""


class PastTheWindow(Exception):
    """Peers serve finality entries that start past this node's newest justified round while
    its last irreversible block is older than the evidence window: they no longer keep the
    entries that lead on from it (a node that was off too long). No peer is at fault."""


class CheckpointError(Exception):
    """The configured or learned checkpoint cannot be used; the message says what to do."""


class LightSync:
    """Keeps a LightChain up with the network; answers the local API's reads with proofs."""

    def __init__(self, chain, keypair, genesis, *, host, port, seeds, limits, log, now_ms,
                 checkpoint=None, agree=2, anchor_genesis=None):
        self.chain, self.genesis, self.log, self.now_ms = chain, genesis, log, now_ms
        self.checkpoint, self.agree = checkpoint, agree
        self.anchor_genesis = anchor_genesis  # (header, values) when starting from genesis
        self.manager = PeerManager(keypair, genesis.chain_id, genesis.hash, host=host, port=port,
                                   seeds=seeds, limits=limits, hello=self._hello,
                                   dispatch=self._dispatch, log=log)
        self.peers = self.manager.peers
        self.heads = {}          # peer pubkey -> the highest header height it showed us
        self.justified_seen = {}  # peer pubkey -> highest justified round its headers claim
        self.libs = {}           # peer pubkey -> highest LIB its Hello or headers claim
        self.pushed = deque(maxlen=256)
        self.waiting = {}
        self.asked_from = {}
        self._said = {}       # log line -> when it was last said  # peer -> the first height of our outstanding GetHeaders
        self.locks = {}
        self.wake = asyncio.Event()
        self.stopping = asyncio.Event()
        self.turns = Counter()
        self.last_finality = 0.0
        self.fatal = None        # a CheckpointError that stops the node
        self.bootstrap_s = None
        self.started = time.monotonic()

    # -- life cycle -----------------------------------------------------------------------------

    async def start(self):
        await self.manager.start()
        self.manager.spawn(self._run())

    async def stop(self):
        self.stopping.set()
        await self.manager.stop()

    @property
    def port(self):
        return self.manager.port

    def _hello(self):
        """A light node serves no blocks: it announces height 0 and no listening port."""
        return Hello(0, bytes(32), 0, 0, "light")

    # -- messages -------------------------------------------------------------------------------

    async def _dispatch(self, peer, message):
        if isinstance(message, Hello):
            self.heads[peer.pubkey] = max(self.heads.get(peer.pubkey, 0), message.head_height)
            self.libs[peer.pubkey] = max(self.libs.get(peer.pubkey, 0), message.lib_height)
            await self._send(peer, Subscribe(True))
            self.wake.set()
            return
        kind = REPLY_KINDS.get(type(message))
        waiter = self.waiting.get((peer.pubkey, kind)) if kind else None
        if waiter is not None and kind == "headers" and not self._answers(peer, message):
            waiter = None  # a pushed header that crossed our request: not its answer (§12.8)
        if waiter is not None and not waiter.done():
            waiter.set_result(message)
        elif isinstance(message, Headers):
            self._take_push(peer, message.headers)
        elif isinstance(message, BlockMsg):  # before our Subscribe arrived: its header only
            try:
                self._take_push(peer, [Block.decode(message.raw).header.encode()])
            except DecodeError:
                self.penalise(peer, "malformed", "a block that does not decode")
        # Txs, TxMsg and requests for blocks: a light node has nothing to do with them.

    def _answers(self, peer, headers):
        """Whether ``headers`` can be the answer to our GetHeaders to ``peer``: empty, or
        starting at the height asked for. Anything else is a push (a new block's header)."""
        if not headers.headers:
            return True
        try:
            first = Header.decode(headers.headers[0]).height
        except DecodeError:
            return True  # the answer is malformed: its check says so
        return first == self.asked_from.get(peer.pubkey)

    def _take_push(self, peer, raws):
        for raw in raws[-8:]:
            try:
                header = Header.decode(raw)
            except DecodeError:
                self.penalise(peer, "malformed", "a header that does not decode")
                return
            self.heads[peer.pubkey] = max(self.heads.get(peer.pubkey, 0), header.height)
            self.libs[peer.pubkey] = max(self.libs.get(peer.pubkey, 0), header.lib_height)
            self.pushed.append((peer.pubkey, header))
        self.wake.set()

    async def _send(self, peer, message):
        try:
            await peer.conn.send(message)
        except Exception:  # noqa: BLE001 - a dead link is the peer manager's business
            await peer.conn.close()

    async def ask(self, peer, message, kind, timeout=REQUEST_S):
        """Send ``message`` to ``peer`` and wait for its answer of ``kind``; a peer that does
        not answer in time loses points (``FromPeer``)."""
        key = (peer.pubkey, kind)
        lock = self.locks.setdefault(key, asyncio.Lock())
        async with lock:
            future = asyncio.get_running_loop().create_future()
            self.waiting[key] = future
            try:
                await peer.conn.send(message)
                return await asyncio.wait_for(future, timeout)
            except asyncio.TimeoutError:
                raise FromPeer(peer, LightError("timeout", f"no answer to "
                                                f"{type(message).__name__}")) from None
            except Exception as exc:  # a closed link
                if isinstance(exc, FromPeer):
                    raise
                raise FromPeer(peer, LightError("timeout", f"link lost: {exc}")) from None
            finally:
                self.waiting.pop(key, None)

    def penalise(self, peer, reason, detail):
        points = POINTS.get(reason, 25)
        if points:
            self.manager.penalise(peer, reason, detail, points)

    def _peer(self, pubkey):
        return self.peers.get(pubkey)

    def candidates(self, kind, min_head=0):
        """Connected peers whose Hello came and that showed a head of at least ``min_head``,
        each ``kind`` of request taking turns among them (so every peer gets asked
        everything)."""
        found = [p for p in self.peers.values() if not p.conn.closed
                 and self.heads.get(p.pubkey, -1) >= min_head]
        found.sort(key=lambda p: p.pubkey)
        if not found:
            return []
        turn = self.turns[kind] = (self.turns[kind] + 1) % len(found)
        return found[turn:] + found[:turn]

    # -- the sync loop --------------------------------------------------------------------------

    async def _run(self):
        while not self.stopping.is_set():
            self.wake.clear()
            try:
                await self.step()
            except FromPeer as exc:
                self.penalise(exc.peer, exc.error.reason, str(exc.error))
                continue
            except NoPeer:
                pass
            except CheckpointError as exc:
                self.fatal = exc
                self.log(f"light: {exc}")
                self.stopping.set()
                return
            except Exception as exc:  # noqa: BLE001 - log and keep the node alive
                self.log(f"light: sync step failed: {type(exc).__name__}: {exc}")
            try:
                await asyncio.wait_for(self.wake.wait(), IDLE_S)
            except asyncio.TimeoutError:
                pass

    async def step(self):
        """One round of work: start, then finality, then headers."""
        chain = self.chain
        if not chain.ready:
            await self.bootstrap()
            self.bootstrap_s = time.monotonic() - self.started
            return
        try:
            await self.catch_up_finality()
            if chain.tip is None or chain.tip.height < chain.tracker.latest.checkpoint.height:
                await self.rebase()
            await self.take_pushed()
            await self.catch_up_headers()
        except PastTheWindow:
            await self.start_again()

    # -- starting -------------------------------------------------------------------------------

    async def bootstrap(self):
        if self.anchor_genesis is not None:
            header, values = self.anchor_genesis
            self._check_age(header, "the genesis")
            self.chain.bootstrap(header, values)
            self.log(f"light: started from genesis {header.hash.hex()[:16]}")
            return
        if self.checkpoint is not None:
            height, block_hash = self.checkpoint
            header = await self._header_with_hash(height, block_hash)
            self._check_age(header, f"checkpoint {height}:{block_hash.hex()[:16]}")
        else:
            header = await self._agreed_checkpoint()
        values = await self.state_values(header, BOOTSTRAP_KEYS)
        self.chain.bootstrap(header, values)
        self.log(f"light: started from block {header.height} {header.hash.hex()[:16]}")

    async def start_again(self):
        """Start from a new checkpoint as the config says: learned again from agreeing peers;
        the configured one if the operator gave a new one; else stop and say what to do."""
        lib, window = self.chain.lib, self.genesis.params.evidence_window
        configured = self.checkpoint is not None and \
            self.checkpoint != (self.chain.anchor.height, self.chain.anchor.hash)
        learned = self.checkpoint is None and self.anchor_genesis is None
        if learned or configured:
            self.log(f"light: the last irreversible block {lib.height} is {self._age(lib)} "
                     f"slots old, past the evidence window ({window} blocks): starting again "
                     "from the checkpoint the config gives")
            await self.bootstrap()
            return
        raise CheckpointError(
            f"this node's last irreversible block ({lib.height}) is {self._age(lib)} slots old, "
            f"older than the evidence window ({window} blocks): its peers no longer keep the "
            "finality proofs that lead on from it. Take a recent checkpoint from a node you "
            "trust (`smartshare status` there shows lib_height and lib_hash) and set "
            "[light] checkpoint = \"HEIGHT:HASH\", or set it to \"\" to learn one from "
            "several peers, then start the node again")

    def _age(self, header):
        """Slots from ``header`` to now."""
        now_slot = (self.now_ms() - self.genesis.genesis_time_ms) // self.genesis.params.slot_ms
        return now_slot - header.slot

    def _check_age(self, header, what):
        window = self.genesis.params.evidence_window
        if self._age(header) > window:
            raise CheckpointError(
                f"{what} (block {header.height}) is {self._age(header)} slots old, older "
                f"than the evidence window ({window} blocks): past it, stake that signed it may "
                "be gone and a history signed since cannot be punished. Take a recent "
                "checkpoint from a node you trust (`smartshare status` there shows lib_height "
                "and lib_hash) and set [light] checkpoint = \"HEIGHT:HASH\", or remove it to "
                "learn one from several peers")

    async def _header_with_hash(self, height, block_hash):
        for peer in self.candidates("headers"):
            answer = await self._ask_headers(peer, height, 1)
            if answer and answer[0].hash == block_hash:
                return answer[0]
        raise NoPeer()

    async def _agreed_checkpoint(self):
        """The last irreversible block as ``agree`` peers or more see it, all alike."""
        peers = [p for p in self.peers.values() if self.libs.get(p.pubkey, 0) > 0]
        if len(peers) < self.agree:
            self._say_once_a_minute(
                f"light: {len(peers)} peer(s) with a checkpoint, {self.agree} must agree on "
                "one; add [p2p] seeds (or [discovery] on a LAN with full nodes), or set "
                "[light] checkpoint (a trusted HEIGHT:HASH, or \"genesis\" on a young chain)")
            raise NoPeer()
        height = min(self.libs[p.pubkey] for p in peers)
        seen = {}
        for peer in peers:
            try:
                answer = await self._ask_headers(peer, height, 1)
            except FromPeer as exc:
                self.penalise(exc.peer, exc.error.reason, str(exc.error))
                continue
            if answer:
                seen.setdefault(answer[0].hash, []).append((peer, answer[0]))
        if len(seen) > 1:
            self.log(f"light: peers disagree on block {height} "
                     f"({', '.join(h.hex()[:12] for h in seen)}); waiting for more peers")
            raise NoPeer()
        agreeing = next(iter(seen.values()), [])
        if len(agreeing) < self.agree:
            raise NoPeer()
        header = agreeing[0][1]
        self._check_age(header, f"the block all {len(agreeing)} peers call irreversible")
        return header

    def _say_once_a_minute(self, line):
        now = time.monotonic()
        if now - self._said.get(line, -60.0) >= 60.0:
            self._said[line] = now
            self.log(line)

    async def rebase(self):
        """Restart the window at the newest justified checkpoint (its schedule records
        proven in its state)."""
        latest = self.chain.tracker.latest.checkpoint
        header = self.chain.justified_header(latest.round)
        if header is None:
            header = self.chain.lib
        if self.chain.tip is not None and self.chain.tip.height >= header.height:
            return
        values = await self.state_values(header, FOLLOW_KEYS)
        self.chain.rebase(header, values)

    # -- finality -------------------------------------------------------------------------------

    async def catch_up_finality(self, force=False):
        """Ask a peer (each in turn) for the entries of the rounds justified after the newest
        one this node knows: now and then, or at once when headers claim more."""
        chain = self.chain
        claimed = max([chain.tip.header.justified_round if chain.tip else 0]
                      + list(self.justified_seen.values()))
        due = time.monotonic() - self.last_finality > FINALITY_EVERY_S
        if not (force or due or claimed > chain.tracker.latest.checkpoint.round):
            return
        self.last_finality = time.monotonic()
        for peer in self.candidates("finality")[:1]:
            await self.finality_from(peer)

    async def finality_from(self, peer):
        """Every entry ``peer`` has past the newest justified round this node knows. A peer
        whose own headers claimed a later justified round and serves none is withholding."""
        tracker = self.chain.tracker
        while True:
            latest = tracker.latest.checkpoint.round
            answer = await self.ask(peer, GetFinality(latest + 1, FINALITY_BATCH), "finality")
            if answer.from_round != latest + 1:
                raise FromPeer(peer, LightError("bad_finality", "an answer to another request"))
            if not answer.entries:
                if self.justified_seen.get(peer.pubkey, 0) > latest:
                    raise FromPeer(peer, LightError(
                        "withheld", f"its headers justify round "
                        f"{self.justified_seen[peer.pubkey]}, it serves no entry past {latest}"))
                return
            for raw in answer.entries:
                self._accept_entry(peer, raw)
            if len(answer.entries) < FINALITY_BATCH:
                return

    def _accept_entry(self, peer, raw):
        try:
            entry = FinalityEntry.decode(raw)
            newly = self.chain.accept_entry(entry)
        except DecodeError as exc:
            raise FromPeer(peer, LightError("malformed", f"a finality entry: {exc}")) from None
        except LightError as exc:
            if exc.reason == "unknown_source" and \
                    self._age(self.chain.lib) > self.genesis.params.evidence_window:
                raise PastTheWindow() from None
            raise FromPeer(peer, exc) from None
        return newly

    # -- headers --------------------------------------------------------------------------------

    async def take_pushed(self):
        """Headers peers pushed: the ones that extend the tip are checked and added."""
        while self.pushed:
            pubkey, header = self.pushed.popleft()
            peer = self._peer(pubkey)
            if peer is None:
                continue
            self.justified_seen[pubkey] = max(self.justified_seen.get(pubkey, 0),
                                              header.justified_round)
            tip = self.chain.tip
            if header.prev_hash == tip.header.hash:
                await self._extend(peer, [header])

    async def catch_up_headers(self):
        tip = self.chain.tip
        for peer in self.candidates("headers", tip.height + 1):
            headers = await self._ask_headers(peer, tip.height + 1, HEADER_BATCH)
            if not headers:
                raise FromPeer(peer, LightError(
                    "stale", f"announced height {self.heads.get(peer.pubkey)}, serves nothing "
                    f"above {tip.height}"))
            if headers[0].prev_hash == tip.header.hash:
                await self._extend(peer, headers)
            else:
                await self._fork(peer, headers)
            return

    async def _ask_headers(self, peer, height, count):
        self.asked_from[peer.pubkey] = height
        answer = await self.ask(peer, GetHeaders(height, count), "headers")
        try:
            headers = [decode_header(raw) for raw in answer.headers]
        except LightError as exc:
            raise FromPeer(peer, exc) from None
        for i, header in enumerate(headers):
            if header.height != height + i:
                raise FromPeer(peer, LightError("bad_header", "headers out of order"))
        if headers:
            self.heads[peer.pubkey] = max(self.heads.get(peer.pubkey, 0), headers[-1].height)
            self.justified_seen[peer.pubkey] = max(self.justified_seen.get(peer.pubkey, 0),
                                                   headers[-1].justified_round)
        return headers

    async def _extend(self, peer, headers, branch=None):
        """Check ``headers`` one by one onto ``branch`` (default: from the tip) and adopt it."""
        branch = branch or self.chain.branch()
        for header in headers:
            try:
                branch.add(header, self.now_ms())
            except LightError as exc:
                if exc.reason != "round_pending":
                    self.chain.commit(branch)
                    raise FromPeer(peer, exc) from None
                await self._prove_round(peer, branch)
                try:
                    branch.add(header, self.now_ms())
                except LightError as again:
                    self.chain.commit(branch)
                    raise FromPeer(peer, again) from None
        if branch.pending_round() is not None:
            await self._prove_round(peer, branch)
        if self.chain.header_at(branch.start.height) == branch.start.header:
            self.chain.commit(branch)

    async def _prove_round(self, peer, branch):
        """Prove the round record in the state of the branch's last round's first block."""
        first = branch.pending_round()
        values = await self.state_values(first, (ROUND_KEY,), prefer=peer)
        try:
            info = RoundInfo.decode(values[ROUND_KEY])
        except (DecodeError, TypeError) as exc:
            raise FromPeer(peer, LightError("bad_state", f"round record: {exc}")) from None
        if first.justified_round > self.chain.tracker.latest.checkpoint.round:
            self.justified_seen[peer.pubkey] = max(self.justified_seen.get(peer.pubkey, 0),
                                                   first.justified_round)
            await self.finality_from(peer)  # its own headers say it has those entries
        try:
            branch.set_round_info(info)
        except LightError as exc:
            raise FromPeer(peer, exc) from None

    async def _fork(self, peer, headers):
        """The peer's chain leaves ours: find where, and adopt its branch when it is preferred.
        A chain that leaves ours at or below the last irreversible block is refused."""
        chain = self.chain
        lib = chain.lib
        at_lib = await self._ask_headers(peer, lib.height, 1)
        if at_lib and at_lib[0].hash != lib.hash:
            raise FromPeer(peer, LightError("fork_below_lib", f"its block {lib.height} is not "
                                            "our last irreversible block"))
        start = max(chain.base_height(), lib.height)
        count = min(headers[0].height - start + len(headers), 2000)
        theirs = await self._ask_headers(peer, start, count)
        common = None
        for header in theirs:
            if chain.header_at(header.height) == header:
                common = header.height
        if common is None:
            raise FromPeer(peer, LightError("stale", "its chain shares no header with ours"))
        branch = chain.branch(common)
        await self._extend(peer, [h for h in theirs if h.height > common], branch)

    # -- proofs for the API ---------------------------------------------------------------------

    async def state_values(self, header, keys, prefer=None, proofs=None):
        """The values of ``keys`` (None: absent) in the state of ``header``, each proven
        against its state root, from the first peer that can serve that state (the raw
        proofs go into ``proofs``, a dict, when given)."""
        peers = self.candidates("state")
        if prefer is not None and prefer in peers:
            peers.remove(prefer)
            peers.insert(0, prefer)
        for peer in peers:
            answer = await self.ask(peer, GetState(header.height, header.hash, tuple(keys)),
                                    "state")
            if (answer.height, answer.block_hash) != (header.height, header.hash):
                raise FromPeer(peer, LightError("bad_proof", "an answer for another state"))
            if answer.proofs is None:
                continue
            values = self._check_values(peer, header, keys, answer.proofs)
            if proofs is not None:
                proofs.update((key, raw) for key, (_, raw) in zip(keys, answer.proofs))
            return values
        raise NoPeer()

    def _check_values(self, peer, header, keys, proofs):
        if len(proofs) != len(keys):
            raise FromPeer(peer, LightError("bad_proof", "not one proof per key"))
        values = {}
        for key, (value, raw) in zip(keys, proofs):
            try:
                proof = Proof.decode(raw)
            except DecodeError as exc:
                raise FromPeer(peer, LightError("bad_proof", str(exc))) from None
            if not verify_proof(header.state_root, key, value, proof):
                raise FromPeer(peer, LightError("bad_proof", f"the proof of {key.hex()[:16]} "
                                                "does not verify"))
            values[key] = value
        return values

    async def read(self, keys, header=None):
        """``(values by key, header, raw proofs by key)``: ``keys`` proven in the state of
        ``header`` (default: the last irreversible block). Peers that fail are penalised and
        the next one asked."""
        for _ in range(4):
            at, proofs = header or self.chain.lib, {}
            try:
                return await self.state_values(at, keys, proofs=proofs), at, proofs
            except FromPeer as exc:
                self.penalise(exc.peer, exc.error.reason, str(exc.error))
        raise NoPeer()

    async def tx_status(self, tx_id):
        """``(found, height, index, raw tx, raw receipt)`` proven against a header of the
        window or a justified checkpoint, or None when no peer knows it (or can prove it)."""
        for peer in self.candidates("tx"):
            try:
                answer = await self.ask(peer, GetTx(tx_id), "tx")
                if answer.tx_id != tx_id:
                    raise FromPeer(peer, LightError("bad_proof", "an answer about another tx"))
                if not answer.found:
                    continue
                header = self.chain.header_at(answer.height)
                if header is None or header.hash != answer.block_hash:
                    continue  # not on our window's chain (yet): ask another
                return self._check_tx(peer, header, answer)
            except FromPeer as exc:
                self.penalise(exc.peer, exc.error.reason, str(exc.error))
        return None

    def _check_tx(self, peer, header, answer):
        from chain.block import Receipt
        from chain.tx import Tx
        try:
            tx, receipt = Tx.decode(answer.tx), Receipt.decode(answer.receipt)
        except DecodeError as exc:
            raise FromPeer(peer, LightError("bad_proof", str(exc))) from None
        if tx.id != answer.tx_id or receipt.tx_id != answer.tx_id:
            raise FromPeer(peer, LightError("bad_proof", "the transaction or receipt is "
                                            "another one"))
        if merkle_path_root(tx.id, answer.index, answer.count, answer.tx_path) != header.tx_root:
            raise FromPeer(peer, LightError("bad_proof", "the transaction's path does not lead "
                                            "to the header's tx_root"))
        if merkle_path_root(answer.receipt, answer.index, answer.count,
                            answer.receipt_path) != header.receipts_root:
            raise FromPeer(peer, LightError("bad_proof", "the receipt's path does not lead to "
                                            "the header's receipts_root"))
        return tx, receipt, header

    def send_txs(self, raws):
        """Send transactions to every peer (they check and gossip them)."""
        sent = 0
        for peer in list(self.peers.values()):
            self.manager.spawn(self._send(peer, Txs(tuple(raws))))
            sent += 1
        return sent

    # -- snapshots and blocks (promotion) -------------------------------------------------------

    async def snapshot_chunk(self, peer, header, after):
        answer = await self.ask(peer, GetSnapshot(header.height, header.hash, after), "snapshot",
                                timeout=30)
        if (answer.height, answer.block_hash, answer.after) != (header.height, header.hash,
                                                                after):
            raise FromPeer(peer, LightError("bad_proof", "a snapshot of another state"))
        return answer

    async def block_at(self, peer, height):
        answer = await self.ask(peer, GetBlocks(height, 1), "blocks", timeout=30)
        return answer.blocks[0] if answer.blocks else None

    def status(self):
        return [peer.describe() for peer in self.peers.values()]

