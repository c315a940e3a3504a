"""The SmartAgent's part of the local API (docs/api.md "Market"): services, quotes, orders,
sessions and channels of the node's selling agent, and market messages for buyers without MQTT.

Every handler runs the agent's own code on the agent's worker (``runner.call``), off the event
loop: the agent itself calls this API for the chain, so the loop must stay free meanwhile.
"""

import asyncio

from aiohttp import web

from chain.address import encode_address
from edge.agent.services import PricePolicy, parse_service_id, service_type


def add_routes(app, node):
    handlers = _Market(node)
    for method, path, handler in (
            ("GET", "/v1/agent", handlers.agent), ("GET", "/v1/services", handlers.services),
            ("POST", "/v1/services", handlers.add_service),
            ("POST", "/v1/services/{service_id}/price", handlers.price),
            ("GET", "/v1/market/quotes", handlers.quotes),
            ("GET", "/v1/market/orders", handlers.orders),
            ("POST", "/v1/market/messages", handlers.message),
            ("GET", "/v1/market/sessions", handlers.sessions),
            ("GET", "/v1/market/sessions/{session_id}", handlers.session),
            ("GET", "/v1/market/channels", handlers.channels),
            ("POST", "/v1/market/channels/{session_id}/close", handlers.close)):
        app.router.add_route(method, path, handlers.guard(handler))


def _error(status, code, message):
    return web.json_response({"error": message, "code": code}, status=status)


class _Market:
    def __init__(self, node):
        self.node = node

    def guard(self, handler):
        async def run(request):
            agent = self.node.agent
            if agent is None:
                return _error(400, "no_agent", "this node runs no agent ([mqtt] port is 0 or "
                                               "[agent] enabled is false)")
            try:
                return await handler(request, agent)
            except ValueError as exc:
                return _error(400, "bad_request", str(exc))
        return run

    @staticmethod
    async def _call(agent, fn, *args):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, lambda: agent.runner.call(fn, *args))

    @staticmethod
    async def _body(request):
        try:
            body = await request.json()
        except ValueError:
            raise ValueError("the body must be a JSON object") from None
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        return body

    async def agent(self, request, agent):
        return web.json_response(await self._call(agent, agent.seller.status))

    async def services(self, request, agent):
        return web.json_response({"services": await self._call(agent, agent.seller.list_offers)})

    async def add_service(self, request, agent):
        body = await self._body(request)
        stype = service_type(body.get("type"))
        device = bytes.fromhex(_text(body, "device"))
        policy = _policy(body, PricePolicy.around(_int(body, "price", stype.default_price)))
        offer = await self._call(agent, agent.seller.add_offer, stype.name, device, policy,
                                 body.get("capacity"))
        return web.json_response(offer)

    async def price(self, request, agent):
        service_id = request.match_info["service_id"]
        parse_service_id(service_id)
        body = await self._body(request)
        offers = {o["id"]: o for o in await self._call(agent, agent.seller.list_offers)}
        if service_id not in offers:
            return _error(404, "not_found", f"no service {service_id}")
        current = PricePolicy(**offers[service_id]["policy"])
        base = _int(body, "price", current.base)
        policy = _policy(body, PricePolicy.around(base, current.adjust_permille)
                         if "price" in body else current)
        return web.json_response(await self._call(agent, agent.seller.set_price, service_id,
                                                  policy))

    async def quotes(self, request, agent):
        seller = agent.seller
        return web.json_response({"quotes": await self._call(agent, seller.quote_bodies),
                                  "seller": encode_address(seller.signer.address)})

    async def orders(self, request, agent):
        return web.json_response({"books": await self._call(agent, agent.seller.book_view)})

    async def message(self, request, agent):
        body = await self._body(request)
        envelope = body.get("envelope")
        if not isinstance(envelope, str):
            raise ValueError("the body must be {\"envelope\": the signed message as text}")
        replies = await self._call(agent, agent.seller.handle, envelope.encode(), None)
        return web.json_response({"replies": [r.decode() for r in replies]})

    async def sessions(self, request, agent):
        seller = agent.seller

        def listing():
            return [seller.summary(s) for s in seller.all_sessions()]
        return web.json_response({"sessions": await self._call(agent, listing)})

    async def session(self, request, agent):
        session_id = _session_id(request)
        found = await self._call(agent, agent.seller.detail, session_id)
        if found is None:
            return _error(404, "not_found", f"no session {session_id}")
        return web.json_response(found)

    async def channels(self, request, agent):
        seller = agent.seller

        def listing():
            contract = seller.contract
            return {"contract": encode_address(contract) if contract else None,
                    "channels": [dict(seller.summary(s), channel=s["id"], expiry=s.get("expiry"))
                                 for s in seller.all_sessions() if s["state"] != "matched"]}
        return web.json_response(await self._call(agent, listing))

    async def close(self, request, agent):
        session_id = _session_id(request)
        seller = agent.seller
        return web.json_response(await self._call(
            agent, lambda: seller.summary(seller.close_channel(session_id))))


def _text(body, name):
    value = body.get(name)
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text")
    return value


def _int(body, name, default):
    value = body.get(name, default)
    if type(value) is not int:
        raise ValueError(f"{name} must be an integer (base units)")
    return value


def _policy(body, default):
    fields = {k: _int(body, k, 0) for k in ("floor", "ceiling", "adjust_permille") if k in body}
    return default._replace(**fields)


def _session_id(request):
    text = request.match_info["session_id"]
    if len(text) != 16 or not all(c in "0123456789abcdef" for c in text):
        raise ValueError("a session id is 16 lower-case hex characters")
    return text
