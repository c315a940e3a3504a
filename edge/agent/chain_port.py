"""The chain as the agent sees it: the node's HTTP API (docs/api.md), possibly a remote one.

``api`` is any client with ``get(path)`` and ``post(path, body)`` returning JSON and raising an
exception whose ``code`` says why (``edge.client.ApiClient``: ``no_node`` when nobody answers,
``not_found`` for 404). The agent imports nothing of ``edge``: the node hands the client in.
Settlement decisions rely only on what this port reports, above all ``lib_height``.
"""

from chain.address import encode_address

UNREACHABLE = ("no_node", "api_error", "busy")   # nobody answered (sensibly), or not now


class ChainUnavailable(Exception):
    """No node answers (or not sensibly): try again later."""


class ChainRefused(Exception):
    """The node answered with an error; ``code`` is its machine-readable reason."""

    def __init__(self, message, code):
        super().__init__(message)
        self.code = code


def to_json_value(value):
    """A contract value in the API's JSON form (bytes as ``{"bytes": hex}``)."""
    if isinstance(value, (bytes, bytearray)):
        return {"bytes": bytes(value).hex()}
    if isinstance(value, list):
        return [to_json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json_value(v) for k, v in value.items()}
    return value


def from_json_value(doc):
    """The contract value of the API's JSON form."""
    if isinstance(doc, list):
        return [from_json_value(v) for v in doc]
    if isinstance(doc, dict):
        if set(doc) == {"bytes"}:
            return bytes.fromhex(doc["bytes"])
        return {k: from_json_value(v) for k, v in doc.items()}
    return doc


class ChainPort:
    """Typed calls on the node API; ChainUnavailable when it does not answer."""

    def __init__(self, api):
        self.api = api

    def _call(self, method, path, *body, missing_ok=False):
        try:
            return getattr(self.api, method)(path, *body)
        except Exception as exc:  # the client's own error class, told apart by its code
            code = getattr(exc, "code", None)
            if code is None or code in UNREACHABLE:
                raise ChainUnavailable(str(exc)) from None
            if missing_ok and code == "not_found":
                return None
            raise ChainRefused(str(exc), code) from None

    def status(self):
        """chain_id, height, lib_height, decimals, params{min_fee, fee_per_byte, gas_price...}."""
        return self._call("get", "/v1/status")

    def account(self, address):
        return self._call("get", f"/v1/accounts/{encode_address(address)}")

    def submit(self, raw):
        """The node's verdict on one encoded transaction: ``{"accepted": True, "id"}`` or
        ``{"accepted": False, "reason", "detail"}``."""
        return self._call("post", "/v1/txs", {"txs": [raw.hex()]})["results"][0]

    def tx(self, tx_id):
        """``{"status": "pending"}``, ``{"status": "committed", "height", "receipt"}`` or None."""
        return self._call("get", f"/v1/txs/{tx_id.hex()}", missing_ok=True)

    def contract(self, address):
        return self._call("get", f"/v1/contracts/{encode_address(address)}", missing_ok=True)

    def query(self, contract, method, *args):
        """A read-only contract call on the head's state; its decoded return value, or
        ChainRefused(code "query_failed") when the call fails."""
        result = self._call("post", f"/v1/contracts/{encode_address(contract)}/query",
                            {"method": method, "args": [to_json_value(a) for a in args]})
        if not result["ok"]:
            raise ChainRefused(f"{method} failed: {result['error']}", "query_failed")
        return from_json_value(result["return"])
