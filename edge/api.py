"""The node's local HTTP API on 127.0.0.1 (aiohttp), used by the CLI; JSON in and out.

Routes (docs/api.md): ``GET /v1/status``, ``POST /v1/txs``, ``GET /v1/txs/{id}``,
``GET /v1/accounts/{address}`` (with an SMT proof), ``GET /v1/accounts/{address}/txs``,
``GET /v1/blocks/{height|hash|head}``, ``GET /metrics``. Amounts are decimal strings.
"""

import asyncio
import json
import os
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from chain import calls, participation
from chain.address import AddressError, decode_address, encode_address
from chain.block import Block, Header
from chain.execute import pending_rewards
from chain.light.serve import state_proofs
from chain.state.records import Account, account_key, contract_key, decode_contract
from chain.supply import supply_report
from edge.mqtt.devices import DeviceError
from edge.mqtt.frames import Frame
from edge.mqtt.topics import parse_device_id
from edge.api_json import (QUERY_MAX_GAS, VERSION, account_json, agent_json,  # noqa: F401
                           finality_json, proof_json, query_call, query_json, receipt_json)
from edge import _fast, api_data, api_market
from edge.api_access import TXS_BODY, Access, allowed_hosts, exposed_warning
from edge.api_tokens import TokenStore
from edge.config import is_loopback

MAX_BATCH = 10_000
MAX_APPROVE = 1000   # devices approved by one request
# A read-only query runs at most QUERY_MAX_GAS (far below a transaction's max_gas_per_tx), one at
# a time on a thread of its own, with at most QUERIES_WAITING more waiting (then 503 busy).
QUERIES_WAITING = 8


def disk_use(path):
    """``{data_bytes, free_bytes}``: the LMDB data file's size and the file system's free space."""
    st = os.statvfs(path)
    return {"data_bytes": os.path.getsize(os.path.join(path, "data.mdb")),
            "free_bytes": st.f_bavail * st.f_frsize}


def _error(status, code, message):
    return web.json_response({"error": message, "code": code}, status=status)


@web.middleware
async def json_errors(request, handler):
    """Every error aiohttp itself answers (an unknown route, a wrong method, a bad request) in
    the API's JSON error shape."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        codes = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}
        message = f"no route {request.method} {request.path}" if exc.status in (404, 405) \
            else exc.reason
        return web.json_response({"error": message, "code": codes.get(exc.status,
                                                                       "bad_request")},
                                 status=exc.status, headers={k: v for k, v in exc.headers.items()
                                                             if k == "Allow"})


def build_app(node):
    """The aiohttp application serving ``node``, behind its access guard (api_access.py)."""
    config = node.config
    access = Access(TokenStore(config.home),
                    allowed_hosts(config.api_host, config.api_allowed_hosts),
                    config.api_port, config.api_allowed_origins)
    app = web.Application(client_max_size=TXS_BODY,
                          middlewares=[json_errors, access.middleware()])
    handlers = _Handlers(node)
    app.on_cleanup.append(handlers.close)
    app.router.add_get("/v1/status", handlers.status)
    app.router.add_post("/v1/txs", handlers.submit)
    app.router.add_get("/v1/txs/{tx_id}", handlers.tx)
    app.router.add_get("/v1/accounts/{address}", handlers.account)
    app.router.add_get("/v1/state/{key}", handlers.state)
    app.router.add_get("/v1/accounts/{address}/txs", handlers.history)
    app.router.add_get("/v1/blocks/{block_id}", handlers.block)
    app.router.add_get("/v1/contracts/{address}", handlers.contract)
    app.router.add_post("/v1/contracts/{address}/query", handlers.query)
    app.router.add_get("/v1/devices", handlers.devices)
    app.router.add_get("/v1/devices/{device_id}", handlers.device)
    app.router.add_post("/v1/devices/approve", handlers.approve_many)
    app.router.add_post("/v1/devices/{device_id}/approve", handlers.approve)
    app.router.add_post("/v1/devices/{device_id}/revoke", handlers.revoke)
    app.router.add_get("/v1/peers", handlers.peers)
    app.router.add_get("/v1/schedule", handlers.schedule)
    app.router.add_get("/v1/supply", handlers.supply)
    app.router.add_get("/metrics", handlers.metrics)
    api_market.add_routes(app, node)
    api_data.add_routes(app, node)
    if node.config.admin_api:
        app.router.add_post("/v1/admin/partition", handlers.partition)
    return app


async def start_api(node, host, port):
    """Start serving; returns the runner (call ``cleanup()`` to stop). Bound beyond loopback,
    the API's traffic (tokens included) crosses the network in clear: say so, loudly."""
    runner = web.AppRunner(build_app(node), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    if not is_loopback(host):
        for line in exposed_warning(host, port):
            node.log(line)
    return runner


class _Handlers:
    def __init__(self, node):
        self.node = node
        self.ledger = node.ledger
        self._queries = ThreadPoolExecutor(1, thread_name_prefix="api-query")
        self._waiting = 0

    async def close(self, app):
        self._queries.shutdown(wait=True, cancel_futures=True)

    async def status(self, request):
        head, ledger = self.ledger.head, self.ledger
        params = ledger.params
        return web.json_response({
            "chain_id": ledger.chain_id, "genesis_hash": ledger.genesis.hash.hex(),
            "height": head.height, "head_hash": head.hash.hex(),
            "state_root": head.state_root.hex(), "slot": head.slot,
            "timestamp_ms": head.timestamp_ms, "mempool": len(self.node.mempool),
            "lib_height": ledger.lib_height,
            "lib_hash": (ledger.block_hash_at(ledger.lib_height) or bytes(32)).hex(),
            "finality": finality_json(ledger.finality()),
            "peers": len(self.node.network.peers) if self.node.network else 0,
            "p2p_port": self.node.network.port if self.node.network else 0,
            "node_address": self.node.key.address_text, "node_pubkey": self.node.key.pubkey.hex(),
            "role": "agent", "implementation": _fast.IMPLEMENTATION, "version": VERSION,
            "decimals": ledger.genesis.decimals, "disk": disk_use(ledger.store.path),
            "params": {"min_fee": str(params.min_fee), "fee_per_byte": str(params.fee_per_byte),
                       "gas_price": str(params.gas_price), "max_gas_per_tx": params.max_gas_per_tx,
                       "slot_ms": params.slot_ms, "max_tx_bytes": params.max_tx_bytes},
        })

    async def submit(self, request):
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "bad_request", "body must be JSON: {\"txs\": [hex, ...]}")
        raw_list = body.get("txs") if isinstance(body, dict) else None
        if not isinstance(raw_list, list) or not 0 < len(raw_list) <= MAX_BATCH:
            return _error(400, "bad_request", f"body must be {{\"txs\": [hex, ...]}} with 1.."
                                              f"{MAX_BATCH} transactions")
        try:
            raws = [bytes.fromhex(item) for item in raw_list]
        except (TypeError, ValueError):
            return _error(400, "bad_request", "every transaction must be a hex string")
        return web.json_response({"results": await self.node.admit(raws)})

    async def tx(self, request):
        tx_id = _hex32(request.match_info["tx_id"])
        if tx_id is None:
            return _error(400, "bad_request", "transaction id must be 64 hex characters")
        found = self.node.tx_status(tx_id)
        if found is None:
            return _error(404, "not_found", f"no transaction {tx_id.hex()}")
        if "tx" in found:
            found["tx"] = found["tx"].to_json()
        if "receipt" in found:
            found["receipt"] = receipt_json(found["receipt"])
        return web.json_response(found)

    async def account(self, request):
        address = _address(request)
        if isinstance(address, web.Response):
            return address
        if "height" in request.query:
            return self._state_at(request, account_key(address), _account_at)
        account, proof, header = self.ledger.account_proof(address)
        agent = self._agent(address)
        return web.json_response({
            "address": encode_address(address), "balance": str(account.balance),
            "nonce": account.nonce, "next_nonce": self.node.mempool.next_nonce(address, account),
            "stake": str(account.stake),
            "unbonding": [{"amount": str(a), "release_height": h} for a, h in account.unbonding],
            "votes": [encode_address(v) for v in account.votes], "agent": agent,
            "pending_rewards": str(self._pending_rewards(address)),
            "participation": self._participation(address),
            "height": header.height, "state_root": header.state_root.hex(),
            "proof": proof.encode().hex(),
        })

    async def state(self, request):
        """Any state key with its proof, at the head or at ``?height=`` (docs/api.md)."""
        key = _hex32(request.match_info["key"])
        if key is None:
            return _error(400, "bad_request", "a state key is 64 hex characters")
        return self._state_at(request, key, lambda value: {})

    def _state_at(self, request, key, describe):
        """``key`` proven in the state after the main-chain block at ``?height=`` (default:
        the head), or ``404 height_unavailable`` when that state is not kept."""
        raw = request.query.get("height", str(self.ledger.head.height))
        if not raw.isdigit():
            return _error(400, "bad_request", "height must be a block height")
        height = int(raw)
        block_hash = self.ledger.block_hash_at(height)
        proved = state_proofs(self.ledger, height, block_hash, [key]) if block_hash else None
        if proved is None:
            oldest, head = self._kept_versions()
            return _error(404, "height_unavailable",
                          f"the state after block {height} is not kept here: this node proves "
                          f"heights {oldest}..{head} of its main chain")
        (value, proof), = proved
        header = Header.decode(self.ledger.header_bytes(block_hash))
        return web.json_response({**proof_json(key, value, header, proof), **describe(value)})

    def _kept_versions(self):
        with self.ledger.store.read() as txn:
            oldest, _ = self.ledger.smt.versions(txn)
        return oldest, self.ledger.head.height

    def _pending_rewards(self, address):
        with self.ledger.store.read() as txn:
            return pending_rewards(self.ledger.view(txn), address)

    def _participation(self, address):
        """This account's service weight not yet paid, and what it may take now."""
        with self.ledger.store.read() as txn:
            view = self.ledger.view(txn)
            record = view.participant(address)
            due = participation.due(view, address)
        if record is None:
            return None
        return {"epoch": record.epoch, "weight": str(record.weight),
                "due": str(due) if due is not None else "0"}

    def _agent(self, address):
        with self.ledger.store.read() as txn:
            agent = self.ledger.view(txn).agent(address)
        if agent is None:
            return None
        with self.ledger.store.read() as txn:
            producer = self.ledger.view(txn).producer(agent.pubkey)
        return agent_json(agent, producer)

    async def history(self, request):
        address = _address(request)
        if isinstance(address, web.Response):
            return address
        try:
            limit = min(int(request.query.get("limit", "50")), 1000)
        except ValueError:
            return _error(400, "bad_request", "limit must be an integer")
        items = []
        for (height, index), tx_id in self.ledger.history(address, limit):
            tx, _, _, receipt = self.ledger.committed_tx(tx_id)
            items.append({"height": height, "index": index, **tx.to_json(),
                          "status": receipt.status})
        return web.json_response({"address": encode_address(address), "txs": items})

    async def block(self, request):
        ident = request.match_info["block_id"]
        if ident == "head":
            height = self.ledger.head.height
        elif ident.isdigit():
            height = int(ident)
        else:
            block_hash = _hex32(ident)
            if block_hash is None:
                return _error(400, "bad_request", "block id must be a height, a hash or 'head'")
            height = self.ledger.height_of(block_hash)
            if height is not None and self.ledger.block_hash_at(height) != block_hash:
                height = None  # a fork block: not on the main chain
        raw = self.ledger.block_bytes_at(height) if height is not None else None
        if raw is None:
            return _error(404, "not_found", f"no block {ident} on the main chain (by hash, only "
                          "recent blocks are found: ask by height)")
        block = Block.decode(raw)
        return web.json_response({
            "header": block.header.to_json(), "raw": raw.hex(),
            "votes": [dict(vote.to_json(), raw=vote.encode().hex()) for vote in block.votes],
            "txs": [tx.to_json() for tx in block.txs],
            "receipts": [receipt_json(r) for r in self.ledger.receipts_at(height)],
            "size": len(raw)})

    async def contract(self, request):
        address = _address(request)
        if isinstance(address, web.Response):
            return address
        with self.ledger.store.read() as txn:
            view = self.ledger.view(txn)
            raw = view.get(contract_key(address))
            balance = view.account(address).balance
        if raw is None:
            return _error(404, "not_found", f"no contract at {encode_address(address)}")
        info = decode_contract(raw)
        return web.json_response({
            "address": encode_address(address), "creator": encode_address(info.creator),
            "code_size": info.code_size, "code_hash": info.code_hash.hex(),
            "created_height": info.created_height, "balance": str(balance)})

    async def query(self, request):
        """A read-only call against the head's state: ``{"method", "args": [...]}``."""
        address = _address(request)
        if isinstance(address, web.Response):
            return address
        try:
            method, args = query_call(await request.json())
        except ValueError as exc:  # not JSON, or not a query
            return _error(400, "bad_request", str(exc))
        if self._waiting > QUERIES_WAITING:
            return _error(503, "busy", f"{self._waiting} queries are waiting; try again soon")
        self._waiting += 1
        try:
            result = await asyncio.get_running_loop().run_in_executor(
                self._queries, self._query, address, method, args)
        except LookupError as exc:
            return _error(404, "not_found", str(exc))
        finally:
            self._waiting -= 1
        return web.json_response(query_json(result))

    def _query(self, address, method, args):
        """Off the event loop: the call on the head's state, within QUERY_MAX_GAS."""
        head = self.ledger.head
        with self.ledger.store.read() as txn:
            return calls.query(self.ledger.view(txn), self.ledger.chain_id, address, method,
                               args, head.height, head.timestamp_ms,
                               min(QUERY_MAX_GAS, self.ledger.params.max_gas_per_tx))

    async def devices(self, request):
        service = self.node.devices
        if service is None:
            return _error(400, "no_devices", "this node runs no MQTT broker ([mqtt] port is 0)")
        return web.json_response({**service.status(), "devices": service.registry.all()})

    def _device_id(self, request):
        try:
            return parse_device_id(request.match_info["device_id"])
        except ValueError as exc:
            raise web.HTTPBadRequest(text=json.dumps({"error": str(exc), "code": "bad_device"}),
                                     content_type="application/json") from None

    async def device(self, request):
        service = self.node.devices
        if service is None:
            return _error(400, "no_devices", "this node runs no MQTT broker ([mqtt] port is 0)")
        device_id = self._device_id(request)
        record = service.registry.get(device_id)
        if record is None:
            return _error(404, "not_found", f"no device {device_id.hex()}")
        frames = [_frame_json(seq, raw) for seq, raw in service.registry.frames_of(device_id, 20)]
        return web.json_response({**record, "frames": frames})

    async def approve(self, request):
        return await self._device_action(request, "approve")

    async def approve_many(self, request):
        """``{"ids": [hex, ...]}`` or ``{"pending": true}``: approve a fleet at once."""
        service = self.node.devices
        if service is None:
            return _error(400, "no_devices", "this node runs no MQTT broker ([mqtt] port is 0)")
        try:
            body = await request.json()
        except ValueError:
            body = None
        ids = body.get("ids") if isinstance(body, dict) else None
        if isinstance(body, dict) and body.get("pending") is True and ids is None:
            device_ids = service.pending()
        elif isinstance(ids, list) and 0 < len(ids) <= MAX_APPROVE \
                and all(isinstance(i, str) for i in ids):
            try:
                device_ids = [parse_device_id(i) for i in ids]
            except ValueError as exc:
                return _error(400, "bad_device", str(exc))
        else:
            return _error(400, "bad_request", "body must be {\"ids\": [16 hex characters, ...]} "
                                              f"(1..{MAX_APPROVE}) or {{\"pending\": true}}")
        try:
            records = service.approve_many(device_ids[:MAX_APPROVE])
        except DeviceError as exc:
            return _error(400, "device", str(exc))
        return web.json_response({"approved": records})

    async def revoke(self, request):
        return await self._device_action(request, "revoke")

    async def _device_action(self, request, action):
        service = self.node.devices
        if service is None:
            return _error(400, "no_devices", "this node runs no MQTT broker ([mqtt] port is 0)")
        device_id = self._device_id(request)
        try:
            record = getattr(service, action)(device_id)
        except DeviceError as exc:
            return _error(400, "device", str(exc))
        return web.json_response(record)

    async def peers(self, request):
        network = self.node.network
        if network is None:
            return web.json_response({"peers": [], "p2p_port": 0, "address_book": None})
        return web.json_response({"peers": network.status(), "p2p_port": network.port,
                                  "address_book": network.manager.book_summary()})

    async def schedule(self, request):
        with self.ledger.store.read() as txn:
            view = self.ledger.view(txn)
            schedule = view.schedule()
            producers = [{"address": encode_address(view.owner_of(p)), "pubkey": p.hex(),
                          "name": view.agent(view.owner_of(p)).name}
                         for p in schedule.producers]
            finality = view.finality()
        return web.json_response({"round": schedule.round, "start_slot": schedule.start_slot,
                                  "producers": producers, "finality": finality_json(finality)})

    async def supply(self, request):
        with self.ledger.store.read() as txn:
            height = self.ledger.head.height
            report = supply_report(self.ledger.view(txn), self.ledger.genesis, height)
        return web.json_response(supply_json(report))

    async def partition(self, request):
        """Testing: talk only to the listed node keys (``{"allow": null}`` heals)."""
        body = await request.json()
        allow = body.get("allow") if isinstance(body, dict) else None
        try:
            keys = None if allow is None else [bytes.fromhex(k) for k in allow]
        except (TypeError, ValueError):
            return _error(400, "bad_request", "allow must be null or a list of hex node keys")
        if self.node.network is None:
            return _error(400, "no_network", "this node runs without a peer network")
        self.node.network.set_allowed(keys)
        return web.json_response({"allow": allow})

    async def metrics(self, request):
        return web.Response(body=self.node.metrics.render(),
                            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


def _account_at(value):
    """The account fields of a proven account record (or of an absent one)."""
    return account_json(Account.decode(value) if value is not None else Account())


def supply_json(report):
    """The supply report with amounts as decimal strings and addresses as text."""
    def text(value):
        return encode_address(value) if isinstance(value, bytes) else (
            str(value) if isinstance(value, int) and not isinstance(value, bool) else value)
    doc = {k: (v if k == "height" else text(v)) for k, v in report.items() if k != "pools"}
    doc["pools"] = [{k: (v if k in ("cliff_height", "linear_blocks") else text(v))
                     for k, v in pool.items()} for pool in report["pools"]]
    return doc


def _hex32(text):
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        return None
    return raw if len(raw) == 32 else None


def _address(request):
    try:
        return decode_address(request.match_info["address"])
    except AddressError as exc:
        return _error(400, "bad_address", str(exc))


def _frame_json(seq, raw):
    """A stored device frame: its fields, its payload as JSON, and its bytes (hex)."""
    frame = Frame.decode(raw)
    return {"seq": seq, "kind": frame.kind_name, "timestamp_ms": frame.timestamp_ms,
            "payload": json.loads(frame.payload), "frame": raw.hex()}
