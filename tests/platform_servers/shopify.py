"""A loopback imitation of Shopify's REST Admin API: ``orders.json`` and ``customers.json`` by ``ids``.

It speaks the documented protocol as far as the adapter uses it: ``/admin/api/{version}/...`` paths, the
``X-Shopify-Access-Token`` header (401 with Shopify's error body without it), ``status=open`` as the
default order filter (so a client must ask for ``status=any`` to see a cancelled order), at most 250
results, the ``X-Shopify-Shop-Api-Call-Limit`` bucket header on every answer and ``429`` with
``Retry-After`` when throttled. Resources are served byte for byte as given (the tests feed it the real
sample order), so big ids and decimal strings reach the client exactly as Shopify writes them.

Use :class:`ShopifyAdminServer` as a context manager (or through a pytest fixture): it runs the app on
127.0.0.1 on a free port in a thread.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from flask import Flask, Response, request
from werkzeug.serving import make_server

#: Shopify's REST bucket on a standard plan: 40 requests, leaking 2 per second
BUCKET_SIZE = 40
LEAK_PER_SECOND = 2.0
MAX_LIMIT = 250
API_VERSION_RE = re.compile(r"^\d{4}-\d{2}$")
INVALID_TOKEN = {"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}
THROTTLED = {"errors": "Exceeded 2 calls per second for api client. "
                       "Reduce request rates to resume uninterrupted service."}


@dataclass
class _Resource:
    """One served resource: its raw JSON text and what the filters look at."""

    raw: bytes
    id: str
    is_open: bool


@dataclass
class ShopifyAdminState:
    """What the fake shop holds and how it should misbehave; tests read ``requests`` afterwards."""

    access_token: str
    orders: dict[str, _Resource] = field(default_factory=dict)
    customers: dict[str, _Resource] = field(default_factory=dict)
    #: answers given before any real one: (status, Retry-After or None)
    failures: deque[tuple[int, str | None]] = field(default_factory=deque)
    #: seconds to wait before answering (to provoke client read timeouts)
    delay: float = 0.0
    #: every request received: {"path", "args", "headers"}
    requests: list[dict[str, Any]] = field(default_factory=list)
    #: the leaky bucket: requests in it and when it last leaked
    bucket: float = 0.0
    leaked_at: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def pour(self) -> int:
        """Count one request into the bucket; returns how full it is."""
        now = time.monotonic()
        self.bucket = max(0.0, self.bucket - (now - self.leaked_at) * LEAK_PER_SECOND)
        self.leaked_at = now
        self.bucket = min(self.bucket + 1, BUCKET_SIZE)
        return max(1, int(self.bucket))


def _resource(raw: bytes) -> _Resource:
    data = json.loads(raw, parse_float=Decimal)
    is_open = data.get("cancelled_at") is None and data.get("closed_at") is None
    return _Resource(raw=raw, id=str(data["id"]), is_open=is_open)


def create_app(state: ShopifyAdminState) -> Flask:
    """The Flask app serving ``state``."""
    app = Flask(__name__)

    @app.get("/admin/api/<version>/<resource>.json")
    def listing(version: str, resource: str) -> Response:
        with state.lock:
            used = state.pour()
            state.requests.append({"path": request.path, "args": request.args.to_dict(),
                                   "headers": dict(request.headers)})
            failure = state.failures.popleft() if state.failures else None
        if state.delay:
            time.sleep(state.delay)

        def answer(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
            payload = body if isinstance(body, bytes) else json.dumps(body).encode()
            response = Response(payload, status=status, mimetype="application/json")
            response.headers["X-Shopify-Shop-Api-Call-Limit"] = f"{used}/{BUCKET_SIZE}"
            response.headers.update(headers or {})
            return response

        if not API_VERSION_RE.match(version) or resource not in ("orders", "customers"):
            return answer({"errors": "Not Found"}, 404)
        if request.headers.get("X-Shopify-Access-Token") != state.access_token:
            return answer(INVALID_TOKEN, 401)
        if failure is not None:
            status, retry_after = failure
            if status == 429:
                used = BUCKET_SIZE  # throttled: the bucket is full
                return answer(THROTTLED, 429, {"Retry-After": retry_after} if retry_after else None)
            return answer({"errors": "Service Unavailable"}, status)
        limit = request.args.get("limit", "50")
        if not limit.isdigit() or not 1 <= int(limit) <= MAX_LIMIT:
            return answer({"errors": {"limit": ["must be between 1 and 250"]}}, 400)
        return answer(_listing(state, resource, int(limit)))

    return app


def _listing(state: ShopifyAdminState, resource: str, limit: int) -> bytes:
    items = state.orders if resource == "orders" else state.customers
    ids = [i for i in request.args.get("ids", "").split(",") if i]
    selected = [items[i] for i in dict.fromkeys(ids) if i in items] if ids else list(items.values())
    if resource == "orders" and request.args.get("status", "open") == "open":
        selected = [item for item in selected if item.is_open]
    return b'{"' + resource.encode() + b'":[' + b",".join(r.raw for r in selected[:limit]) + b"]}"


class ShopifyAdminServer:
    """The fake Admin API on a free loopback port, in a thread. ``base_url`` is ``http://127.0.0.1:N``."""

    def __init__(self, access_token: str, orders: Iterable[bytes] = (),
                 customers: Iterable[bytes] = ()) -> None:
        self.state = ShopifyAdminState(access_token)
        for raw in orders:
            self.add_order(raw)
        for raw in customers:
            self.add_customer(raw)
        self._server = make_server("127.0.0.1", 0, create_app(self.state), threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="shopify-admin-server")
        self.base_url = f"http://127.0.0.1:{self._server.server_port}"

    def add_order(self, raw: bytes) -> None:
        resource = _resource(raw)
        self.state.orders[resource.id] = resource

    def add_customer(self, raw: bytes) -> None:
        resource = _resource(raw)
        self.state.customers[resource.id] = resource

    def fail_next(self, count: int, status: int = 429, retry_after: str | None = "2.0") -> None:
        """Answer the next ``count`` requests with ``status`` (429 carries ``Retry-After``)."""
        self.state.failures.extend([(status, retry_after)] * count)

    @property
    def requests(self) -> list[dict[str, Any]]:
        return self.state.requests

    def __enter__(self) -> "ShopifyAdminServer":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
