"""The light node's local API: the full node's routes that a light node can answer, from verified
data only (docs/api.md, "On a light node").

Accounts, agents and contracts are read with state proofs against the last irreversible block;
each answer carries the height, state root and proof it was checked against, so the caller can
check it again. Transactions go out through the peers; their inclusion is proven against the
followed headers. Routes a light node cannot serve answer ``400 light_node``.
"""

from chain.address import AddressError, decode_address, encode_address
from chain.state import records
from chain.state.consensus import Producer
from chain.state.records import Account, Agent, decode_contract
from edge import _fast
from edge.api_access import SMALL_BODY, TXS_BODY, Access, allowed_hosts, exposed_warning
from edge.api_json import (VERSION, QueryBodyError, account_json, agent_json, finality_json,
                           proof_json, query_call, query_json, receipt_json)
from edge.api_tokens import TokenStore
from edge.config import is_loopback
from edge.httpserver import HttpError, HttpServer, Response, Router, json_response

MAX_BATCH = 10_000


async def start_light_api(node, host, port):
    """Serve ``node`` (an edge.light_node.LightNode) on ``host:port`` behind the same access
    guard as the full node's API (Host, Origin, bearer tokens, body limits); returns the
    server."""
    config = node.config
    access = Access(TokenStore(config.home),
                    allowed_hosts(config.api_host, config.api_allowed_hosts),
                    config.api_port, config.api_allowed_origins)
    handlers = _Handlers(node)
    router = Router()
    for method, path, handler in handlers.routes():
        router.add(method, path, handler)
    server = HttpServer(router, body_limit=lambda path: TXS_BODY if path == "/v1/txs" else
                        SMALL_BODY, check=access.check, log=node.log)
    await server.start(host, port)
    if not is_loopback(host):
        for line in exposed_warning(host, port):
            node.log(line)
    return server


class _Handlers:
    def __init__(self, node):
        self.node, self.chain, self.sync = node, node.chain, node.sync

    def routes(self):
        return [("GET", "/v1/status", self.status), ("GET", "/v1/peers", self.peers),
                ("GET", "/v1/schedule", self.schedule), ("POST", "/v1/txs", self.submit),
                ("GET", "/v1/txs/{tx_id}", self.tx), ("GET", "/v1/accounts/{address}",
                                                      self.account),
                ("GET", "/v1/accounts/{address}/txs", self.history),
                ("GET", "/v1/contracts/{address}", self.contract),
                ("POST", "/v1/contracts/{address}/query", self.query),
                ("GET", "/v1/state/{key}", self.state), ("GET", "/v1/finality", self.finality),
                ("GET", "/metrics", self.metrics)]

    def _ready(self):
        if not self.chain.ready or self.chain.tip is None:
            raise HttpError(503, "syncing", "the light node has not found its checkpoint yet "
                                            "(it needs peers)")

    async def status(self, request):
        node, chain = self.node, self.chain
        params = node.params
        doc = {"chain_id": node.chain_id, "genesis_hash": node.genesis.hash.hex(), "role": "light",
               "peers": len(self.sync.peers), "p2p_port": 0, "mempool": len(node.sent),
               "node_address": node.key.address_text, "node_pubkey": node.key.pubkey.hex(),
               "implementation": _fast.IMPLEMENTATION, "version": VERSION,
               "decimals": node.genesis.decimals, "target_height": node.target_height(),
               "params": {"min_fee": str(params.min_fee), "fee_per_byte": str(params.fee_per_byte),
                          "gas_price": str(params.gas_price),
                          "max_gas_per_tx": params.max_gas_per_tx, "slot_ms": params.slot_ms,
                          "max_tx_bytes": params.max_tx_bytes}}
        if not chain.ready or chain.tip is None:
            return json_response({**doc, "syncing": True, "height": 0, "lib_height": 0, "lag": 0,
                                  "head_hash": None, "slot": 0})
        tip = chain.tip.header
        latest = chain.tracker.latest
        doc.update(height=tip.height, head_hash=tip.hash.hex(), state_root=tip.state_root.hex(),
                   slot=tip.slot, timestamp_ms=tip.timestamp_ms, lib_height=chain.lib.height,
                   lib_hash=chain.lib.hash.hex(), lib_state_root=chain.lib.state_root.hex(),
                   lag=max(0, node.target_height() - tip.height),
                   syncing=node.target_height() > tip.height + 1,
                   finality=finality_json(latest.record),
                   window={"from": chain.base_height(), "to": tip.height},
                   bootstrap_s=self.sync.bootstrap_s)
        return json_response(doc)

    async def peers(self, request):
        return json_response({"peers": [dict(p, head_height=self.sync.heads.get(
            bytes.fromhex(p["pubkey"]), 0)) for p in self.sync.status()], "p2p_port": 0})

    async def schedule(self, request):
        self._ready()
        schedule = self.chain.tip.state.schedule
        return json_response({"round": schedule.round, "start_slot": schedule.start_slot,
                              "producers": [{"pubkey": p.hex()} for p in schedule.producers],
                              "finality": finality_json(self.chain.tracker.latest.record)})

    async def submit(self, request):
        body = request.json()
        raw_list = body.get("txs") if isinstance(body, dict) else None
        if not isinstance(raw_list, list) or not 0 < len(raw_list) <= MAX_BATCH:
            raise HttpError(400, "bad_request", f"body must be {{\"txs\": [hex, ...]}} with "
                                                f"1..{MAX_BATCH} transactions")
        try:
            raws = [bytes.fromhex(item) for item in raw_list]
        except (TypeError, ValueError):
            raise HttpError(400, "bad_request", "every transaction must be a hex string") \
                from None
        return json_response({"results": self.node.submit(raws)})

    async def tx(self, request):
        tx_id = _hex32(request.params["tx_id"], "transaction id")
        self._ready()
        found = await self.node.tx_status(tx_id)
        if found is None:
            raise HttpError(404, "not_found", f"no transaction {tx_id.hex()} (no peer proves it "
                                              "and this node did not send it)")
        found = dict(found, tx=found["tx"].to_json())
        if "receipt" in found:
            found["receipt"] = receipt_json(found["receipt"])
        return json_response(found)

    async def account(self, request):
        address = _address(request)
        self._ready()
        keys = [records.account_key(address), records.agent_key(address)]
        values, header, proofs = await self._read(keys)
        raw_account, raw_agent = values[keys[0]], values[keys[1]]
        account = Account.decode(raw_account) if raw_account is not None else Account()
        agent = Agent.decode(raw_agent) if raw_agent is not None else None
        self.node.settle_sent({address: account.nonce})
        return json_response({
            "address": encode_address(address), **account_json(account),
            "next_nonce": self.node.pending_nonces(address, account.nonce),
            "agent": await self._agent_json(agent) if agent is not None else None,
            "height": header.height, "block_hash": header.hash.hex(),
            "state_root": header.state_root.hex(), "proof": proofs[keys[0]], "verified": True})

    async def _agent_json(self, agent):
        key = records.producer_key(agent.pubkey)
        values, _, _ = await self._read([key])
        producer = Producer.decode(values[key]) if values[key] is not None else None
        return agent_json(agent, producer)

    async def history(self, request):
        address = _address(request)
        mine = [tx for _, tx in sorted(self.node.sent.values(), key=lambda v: v[0])
                if tx.sender_address == address]
        return json_response({"address": encode_address(address), "light_node": True,
                              "txs": [dict(tx.to_json(), status="pending") for tx in mine]})

    async def contract(self, request):
        address = _address(request)
        self._ready()
        keys = [records.contract_key(address), records.account_key(address)]
        values, header, proofs = await self._read(keys)
        if values[keys[0]] is None:
            raise HttpError(404, "not_found", f"no contract at {encode_address(address)} "
                                              f"(proven absent at height {header.height})")
        info = decode_contract(values[keys[0]])
        balance = Account.decode(values[keys[1]]).balance if values[keys[1]] else 0
        return json_response({
            "address": encode_address(address), "creator": encode_address(info.creator),
            "code_size": info.code_size, "code_hash": info.code_hash.hex(),
            "created_height": info.created_height, "balance": str(balance),
            "height": header.height, "state_root": header.state_root.hex(),
            "proof": proofs[keys[0]]})

    async def query(self, request):
        """A read-only call on the state of the last irreversible block, run here on proven
        values: ``{"method", "args": [...]}``; the answer names the block it ran at."""
        from chain.light import LightError
        from chain.light.sync import NoPeer
        address = _address(request)
        try:
            method, args = query_call(request.json())
        except QueryBodyError as exc:
            raise HttpError(400, "bad_request", str(exc)) from None
        self._ready()
        try:
            result, header = await self.node.query(address, method, args)
        except LookupError as exc:
            raise HttpError(404, "not_found", str(exc)) from None
        except NoPeer:
            raise HttpError(503, "no_peer", "no peer can prove that state right now; try again "
                                            "shortly") from None
        except LightError as exc:
            raise HttpError(503, exc.reason, str(exc)) from None
        return json_response({**query_json(result), "height": header.height,
                              "block_hash": header.hash.hex(), "verified": True})

    async def state(self, request):
        """Any state key, proven at the last irreversible block (the only height a light
        node serves: ``?height=`` with another is an explicit error)."""
        key = _hex32(request.params["key"], "state key")
        self._ready()
        lib = self.chain.lib
        wanted = request.query.get("height")
        if wanted is not None and wanted != str(lib.height):
            raise HttpError(404, "height_unavailable", f"a light node proves state at its last "
                                                       f"irreversible block only ({lib.height})")
        values, header, proofs = await self._read([key])
        return json_response(proof_json(key, values[key], header, proofs[key]))

    async def finality(self, request):
        self._ready()
        tracker = self.chain.tracker
        return json_response({"finalized": _checkpoint(tracker.finalized),
                              "justified": [_checkpoint(j.checkpoint) for _, j in
                                            sorted(tracker.justified.items())],
                              "rule": finality_json(tracker.latest.record)})

    async def metrics(self, request):
        chain = self.chain
        ready = chain.ready and chain.tip is not None
        lines = [("smartshare_height", chain.tip.height if ready else 0),
                 ("smartshare_lib_height", chain.lib.height if ready else 0),
                 ("smartshare_light_lag", max(0, self.node.target_height() - chain.tip.height)
                  if ready else 0),
                 ("smartshare_p2p_peers", len(self.sync.peers)),
                 ("smartshare_light_disk_bytes", self.node.store.disk_bytes())]
        text = "".join(f"# TYPE {name} gauge\n{name} {value}\n" for name, value in lines)
        return Response(200, text.encode(), "text/plain; version=0.0.4; charset=utf-8")

    async def _read(self, keys):
        """``(values, lib header, proofs as hex)`` of ``keys`` at the last irreversible block."""
        from chain.light.sync import NoPeer
        try:
            values, header, proofs = await self.sync.read(keys)
        except NoPeer:
            raise HttpError(503, "no_peer", "no peer can prove that state right now; try again "
                                            "shortly") from None
        return values, header, {key: raw.hex() for key, raw in proofs.items()}


def _checkpoint(c):
    return {"round": c.round, "hash": c.hash.hex(), "height": c.height}


def _hex32(text, what):
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise HttpError(400, "bad_request", f"{what} must be 64 hex characters")
    return raw


def _address(request):
    try:
        return decode_address(request.params["address"])
    except AddressError as exc:
        raise HttpError(400, "bad_address", str(exc)) from None
