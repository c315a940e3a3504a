"""The data market's part of the local API (docs/api.md "Data market", docs/protocol.md §18):
the gateway's datasets, a buyer's fetch of its purchase, and the deliveries made. Every handler
runs on the agent's worker (``runner.call``), like the market's (``api_market``)."""

from aiohttp import web

from chain.address import decode_address
from edge.api_market import _Market


def add_routes(app, node):
    handlers = _Data(node)
    for method, path, handler in (
            ("GET", "/v1/data/datasets", handlers.datasets),
            ("POST", "/v1/data/datasets", handlers.offer),
            ("POST", "/v1/data/fetch", handlers.fetch),
            ("GET", "/v1/data/deliveries", handlers.deliveries)):
        app.router.add_route(method, path, handlers.guard(handler))


class _Data(_Market):
    async def datasets(self, request, agent):
        desk = agent.seller.desk
        buyer = request.query.get("buyer")
        buyer = decode_address(buyer) if buyer else None
        everything = request.query.get("all") in ("1", "true")
        return web.json_response({"datasets": await self._call(agent, desk.listing, buyer,
                                                               everything)})

    async def offer(self, request, agent):
        body = await self._body(request)
        device, owner = body.get("device"), body.get("owner")
        if not isinstance(device, str) or len(device) != 16:
            raise ValueError("device must be a device id (16 hex characters)")
        if not isinstance(owner, str):
            raise ValueError("owner must be an address (ssp1...)")
        doc = await self._call(agent, agent.seller.desk.offer, body.get("id"),
                               bytes.fromhex(device), decode_address(owner))
        return web.json_response(doc)

    async def fetch(self, request, agent):
        body = await self._body(request)
        envelope = body.get("envelope")
        if not isinstance(envelope, str):
            raise ValueError("the body must be {\"envelope\": a signed data_fetch message}")
        state, payload = await self._call(agent, agent.seller.desk.fetch_envelope,
                                          envelope.encode())
        return web.json_response({"state": state.decode(),
                                  "payload": payload.hex() if payload is not None else None})

    async def deliveries(self, request, agent):
        return web.json_response({"deliveries": await self._call(agent,
                                                                 agent.seller.desk.deliveries)})

