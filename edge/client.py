"""A small synchronous client of the node's local API, for the CLI and tests."""

import json
import urllib.error
import urllib.request


class ApiError(Exception):
    """The node answered with an error, or no node answered; ``code`` is machine-readable."""

    def __init__(self, message, code="api_error"):
        super().__init__(message)
        self.code = code


class ApiClient:
    """JSON over HTTP to ``base_url`` (e.g. http://127.0.0.1:8645), sending ``token`` as a
    bearer token (needed by every request that changes the node)."""

    def __init__(self, base_url, timeout=10.0, token=None):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.token = token

    @classmethod
    def for_home(cls, home, base_url, timeout=10.0):
        """A client with the home's CLI token (``<home>/api_token``), when it has one."""
        from edge.api_tokens import cli_token
        return cls(base_url, timeout, cli_token(home))

    def _headers(self, extra=()):
        headers = dict(extra)
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def get(self, path):
        return self._call(urllib.request.Request(self.base_url + path, headers=self._headers()))

    def post(self, path, body):
        data = json.dumps(body).encode()
        return self._call(urllib.request.Request(
            self.base_url + path, data=data, method="POST",
            headers=self._headers({"Content-Type": "application/json"})))

    def get_text(self, path):
        try:
            request = urllib.request.Request(self.base_url + path, headers=self._headers())
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                return resp.read().decode()
        except (urllib.error.URLError, OSError) as exc:
            raise self._unreachable(exc) from None

    def _call(self, request):
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            try:
                doc = json.loads(exc.read())
                raise ApiError(doc.get("error", str(exc)), doc.get("code", "api_error")) from None
            except ValueError:
                raise ApiError(f"node answered HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise self._unreachable(exc) from None

    def _unreachable(self, exc):
        return ApiError(f"no node is answering at {self.base_url} ({_reason(exc)}); "
                        "start it with: smartshare node run", "no_node")

    def submit(self, raw_txs):
        """Submit encoded transactions; returns the per-transaction results."""
        return self.post("/v1/txs", {"txs": [raw.hex() for raw in raw_txs]})["results"]


def _reason(exc):
    reason = getattr(exc, "reason", exc)
    return getattr(reason, "strerror", None) or str(reason)
