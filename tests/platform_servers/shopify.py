"""A loopback imitation of Shopify's Admin API: ``orders.json`` and ``customers.json`` by ``ids``;
the ScriptTag resource (``script_tags.json``, ``script_tags/{id}.json``), ``themes.json`` and a theme's
``assets.json?asset[key]=…`` for the widget injection; and, on ``graphql.json``, the two GraphQL
operations the adapter sends (``currentAppInstallation`` with its app-data metafields, and
``metafieldsSet``), recognised by name rather than parsed.

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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
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
    #: every request received: {"method", "path", "args", "headers", "json"}
    requests: list[dict[str, Any]] = field(default_factory=list)
    #: the app's script tags by id (Shopify scopes them to the app that created them)
    script_tags: dict[int, dict[str, Any]] = field(default_factory=dict)
    next_script_tag_id: int = 880000000000
    #: the shop's themes ({"id", "name", "role"}) and their assets by (theme id, key)
    themes: list[dict[str, Any]] = field(default_factory=lambda: [
        {"id": 828155753, "name": "Dawn", "role": "main"}])
    assets: dict[tuple[int, str], str] = field(default_factory=dict)
    #: the app installation's GraphQL id and its app-data metafields by (namespace, key)
    app_installation_id: str = "gid://shopify/AppInstallation/7441234567"
    metafields: dict[tuple[str, str], str] = field(default_factory=dict)
    #: GraphQL answers to give as THROTTLED before real ones
    graphql_throttled: int = 0
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

    def gate(version: str) -> tuple[Callable[..., Response], Response | None]:
        """Count, record, stall, check the version and the token, play a scripted failure: the
        ``answer`` function for this request and the early answer, if any."""
        with state.lock:
            used = state.pour()
            state.requests.append({"method": request.method, "path": request.path,
                                   "args": request.args.to_dict(), "headers": dict(request.headers),
                                   "json": request.get_json(silent=True)})
            failure = state.failures.popleft() if state.failures else None
        if state.delay:
            time.sleep(state.delay)
        bucket = {"used": used}

        def answer(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
            payload = body if isinstance(body, bytes) else json.dumps(body).encode()
            response = Response(payload, status=status, mimetype="application/json")
            response.headers["X-Shopify-Shop-Api-Call-Limit"] = f"{bucket['used']}/{BUCKET_SIZE}"
            response.headers.update(headers or {})
            return response

        if not API_VERSION_RE.match(version):
            return answer, answer({"errors": "Not Found"}, 404)
        if request.headers.get("X-Shopify-Access-Token") != state.access_token:
            return answer, answer(INVALID_TOKEN, 401)
        if failure is not None:
            status, retry_after = failure
            if status == 429:
                bucket["used"] = BUCKET_SIZE  # throttled: the bucket is full
                return answer, answer(THROTTLED, 429,
                                      {"Retry-After": retry_after} if retry_after else None)
            return answer, answer({"errors": "Service Unavailable"}, status)
        return answer, None

    @app.get("/admin/api/<version>/<resource>.json")
    def listing(version: str, resource: str) -> Response:
        answer, early = gate(version)
        if early is not None:
            return early
        if resource not in ("orders", "customers"):
            return answer({"errors": "Not Found"}, 404)
        limit = request.args.get("limit", "50")
        if not limit.isdigit() or not 1 <= int(limit) <= MAX_LIMIT:
            return answer({"errors": {"limit": ["must be between 1 and 250"]}}, 400)
        return answer(_listing(state, resource, int(limit)))

    # -- ScriptTag: GET/POST script_tags.json, GET/PUT/DELETE script_tags/{id}.json ---------------

    @app.route("/admin/api/<version>/script_tags.json", methods=["GET", "POST"])
    def script_tags(version: str) -> Response:
        answer, early = gate(version)
        if early is not None:
            return early
        if request.method == "GET":
            tags = list(state.script_tags.values())
            if request.args.get("src"):
                tags = [t for t in tags if t["src"] == request.args["src"]]
            return answer({"script_tags": tags[:int(request.args.get("limit", "50"))]})
        fields = (request.get_json(silent=True) or {}).get("script_tag")
        errors = _script_tag_errors(fields, creating=True)
        if errors:
            return answer({"errors": errors}, 422)
        with state.lock:
            state.next_script_tag_id += 1
            now = _now()
            tag = {"id": state.next_script_tag_id, "src": fields["src"], "event": fields["event"],
                   "created_at": now, "updated_at": now,
                   "display_scope": fields.get("display_scope", "all"), "cache": False}
            state.script_tags[tag["id"]] = tag
        return answer({"script_tag": tag}, 201)

    @app.route("/admin/api/<version>/script_tags/<int:tag_id>.json",
               methods=["GET", "PUT", "DELETE"])
    def script_tag(version: str, tag_id: int) -> Response:
        answer, early = gate(version)
        if early is not None:
            return early
        tag = state.script_tags.get(tag_id)
        if tag is None:
            return answer({"errors": "Not Found"}, 404)
        if request.method == "GET":
            return answer({"script_tag": tag})
        if request.method == "DELETE":
            del state.script_tags[tag_id]
            return answer({})
        fields = (request.get_json(silent=True) or {}).get("script_tag")
        errors = _script_tag_errors(fields, creating=False)
        if errors:
            return answer({"errors": errors}, 422)
        tag.update({k: fields[k] for k in ("src", "event", "display_scope") if k in fields},
                   updated_at=_now())
        return answer({"script_tag": tag})

    # -- Theme and Asset: the live theme and its config/settings_data.json --------------------------

    @app.get("/admin/api/<version>/themes.json")
    def themes(version: str) -> Response:
        answer, early = gate(version)
        if early is not None:
            return early
        return answer({"themes": [dict(t) for t in state.themes]})

    @app.get("/admin/api/<version>/themes/<int:theme_id>/assets.json")
    def asset(version: str, theme_id: int) -> Response:
        answer, early = gate(version)
        if early is not None:
            return early
        key = request.args.get("asset[key]", "")
        value = state.assets.get((theme_id, key))
        if value is None:
            return answer({"errors": "Not Found"}, 404)
        return answer({"asset": {"key": key, "value": value, "theme_id": theme_id,
                                 "content_type": "application/json"}})

    # -- GraphQL: currentAppInstallation and metafieldsSet, as far as the adapter asks -------------

    @app.post("/admin/api/<version>/graphql.json")
    def graphql(version: str) -> Response:
        answer, early = gate(version)
        if early is not None:
            return early
        body = request.get_json(silent=True) or {}
        query, variables = str(body.get("query", "")), body.get("variables") or {}
        if state.graphql_throttled:
            state.graphql_throttled -= 1
            return answer({"errors": [{"message": "Throttled",
                                       "extensions": {"code": "THROTTLED"}}]})
        if "metafieldsSet" in query:
            return answer({"data": {"metafieldsSet": _metafields_set(state, variables)}})
        if "currentAppInstallation" in query:
            namespace = variables.get("namespace")
            nodes = [{"key": k, "value": v} for (ns, k), v in sorted(state.metafields.items())
                     if ns == namespace]
            return answer({"data": {"currentAppInstallation": {
                "id": state.app_installation_id, "metafields": {"nodes": nodes}}}})
        return answer({"errors": [{"message": "this imitation does not know that operation"}]})

    return app


def _now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def _script_tag_errors(fields: Any, *, creating: bool) -> dict[str, list[str]]:
    """Shopify's validation of a ScriptTag: an https ``src``, ``event`` "onload", a known scope."""
    if not isinstance(fields, dict):
        return {"script_tag": ["Required parameter missing or invalid"]}
    errors: dict[str, list[str]] = {}
    if creating or "src" in fields:
        src = fields.get("src")
        if not isinstance(src, str) or not src.startswith("https://"):
            errors["src"] = ["is invalid"]
    if creating and fields.get("event") != "onload":
        errors["event"] = ["is not included in the list"]
    if fields.get("display_scope", "all") not in ("online_store", "order_status", "all"):
        errors["display_scope"] = ["is not included in the list"]
    return errors


def _metafields_set(state: "ShopifyAdminState", variables: dict[str, Any]) -> dict[str, Any]:
    written, user_errors = [], []
    for index, field_input in enumerate(variables.get("metafields") or []):
        if field_input.get("ownerId") != state.app_installation_id:
            user_errors.append({"field": ["metafields", str(index), "ownerId"],
                                "message": "Owner does not exist", "code": "INVALID"})
            continue
        state.metafields[(field_input["namespace"], field_input["key"])] = str(field_input["value"])
        written.append({"key": field_input["key"], "value": str(field_input["value"])})
    return {"metafields": written, "userErrors": user_errors}


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

    def set_app_embed(self, enabled: bool, *, handle: str = "ccms_widget",
                      comment: bool = True) -> None:
        """Write the live theme's ``config/settings_data.json`` as Shopify does once a merchant has
        saved the theme editor with our app embed on (or off): a ``current.blocks`` entry of type
        ``shopify://apps/<app>/blocks/<handle>/<uuid>``, under the comment Shopify puts on top."""
        theme_id = next(t["id"] for t in self.state.themes if t["role"] == "main")
        data = {"current": {"blocks": {"15683396631634586217": {
            "type": f"shopify://apps/ccms-addon/blocks/{handle}/0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9",
            "disabled": not enabled, "settings": {"widget_key": ""}}}}}
        header = ("/*\n * IMPORTANT: The contents of this file are auto-generated.\n */\n"
                  if comment else "")
        self.state.assets[(theme_id, "config/settings_data.json")] = header + json.dumps(data)

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
