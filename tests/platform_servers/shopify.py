"""A loopback imitation of Shopify's Admin API: the GraphQL order listing with its cost-based
throttling and bulk operations (:mod:`.shopify_orders`: ``orders`` sorted by ``UPDATED_AT``,
``bulkOperationRunQuery`` and the JSONL export at ``/bulk-export/<id>.jsonl``, served by byte
ranges without credentials); ``orders.json`` and ``customers.json`` by ``ids``;
the ScriptTag resource (``script_tags.json``, ``script_tags/{id}.json``), ``themes.json`` and a theme's
``assets.json?asset[key]=…`` for the widget injection; and, on ``graphql.json``, the GraphQL
operations the adapter sends (``currentAppInstallation`` with its app-data metafields, and
``metafieldsSet``; for a claim's settlement the ``order`` look-up, ``suggestedRefund``,
``refundCreate`` with ``@idempotent``, ``returnableFulfillments`` and ``returnCreate``, see
:mod:`tests.platform_servers.shopify_settlement`; for an order action ``orderCancel`` and the
replacement's ``draftOrders``, ``draftOrderCreate`` and ``draftOrderComplete``, see
:mod:`tests.platform_servers.shopify_order_actions`), recognised by their root field rather than
parsed.

It speaks the documented protocol as far as the adapter uses it: ``/admin/api/{version}/...`` paths, the
``X-Shopify-Access-Token`` header (401 with Shopify's error body without it), ``status=open`` as the
default order filter (so a client must ask for ``status=any`` to see a cancelled order), at most 250
results, the ``X-Shopify-Shop-Api-Call-Limit`` bucket header on every answer and ``429`` with
``Retry-After`` when throttled. Resources are served byte for byte as given (the tests feed it the real
sample order), so big ids and decimal strings reach the client exactly as Shopify writes them.

The app's side of an install is imitated too (shopify.dev, "Implement authorization code grant
manually", and the expiring offline tokens): ``GET /admin/oauth/authorize`` plays the merchant who
approves and redirects to the ``redirect_uri`` with ``code``, ``host``, ``shop``, ``state``,
``timestamp`` and their ``hmac`` (hex HMAC-SHA256 of the sorted, form-encoded query, keyed with the
app secret — computed here independently of the adapter); ``POST /admin/oauth/access_token``
exchanges a code once (``expiring=1`` adds ``expires_in``, ``refresh_token``,
``refresh_token_expires_in``) and takes ``grant_type=refresh_token`` (the refresh token is replaced
on every use); refused codes answer 400 ``invalid_request``. On ``graphql.json``, the app's webhook
subscriptions: ``webhookSubscriptions``, ``webhookSubscriptionCreate`` (https ``uri`` only, no
compliance topic, one subscription per topic and address) and ``webhookSubscriptionUpdate``.
:meth:`ShopifyAdminServer.uninstall` does what Shopify does when the app is removed: every token
of the app stops working and its webhook subscriptions and script tags are deleted.

Use :class:`ShopifyAdminServer` as a context manager (or through a pytest fixture): it runs the app on
127.0.0.1 on a free port in a thread.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from urllib.parse import quote, urlencode

from flask import Flask, Response, redirect, request
from werkzeug.serving import make_server

from tests.platform_servers import shopify_order_actions
from tests.platform_servers.shopify_orders import OrdersFake
from tests.platform_servers.shopify_settlement import FakeOrder, SettlementFake

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
    #: the orders, refunds and returns of the settlement operations (GraphQL)
    settlement: SettlementFake = field(default_factory=SettlementFake)
    #: OAuth: the app this shop knows (None: no OAuth), the shop, and what was issued
    api_key: str | None = None
    api_secret: str | None = None
    shop_domain: str = "my-shop.myshopify.com"
    #: the scopes a grant reports (None: those requested)
    granted_scope: str | None = None
    last_scope: str = ""
    #: code → (when issued, scopes requested); tokens issued → expiry (time.time) or None
    codes: dict[str, tuple[float, str]] = field(default_factory=dict)
    tokens: dict[str, float | None] = field(default_factory=dict)
    refresh_tokens: dict[str, float] = field(default_factory=dict)
    #: seconds an expiring access token lives (Shopify: 3600)
    token_lifetime: int = 3600
    #: every call of the OAuth endpoints: {"method", "path", "args", "form"}
    oauth_requests: list[dict[str, Any]] = field(default_factory=list)
    #: the app's webhook subscriptions by GraphQL id
    webhook_subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    next_subscription_id: int = 1190000000
    #: the leaky bucket: requests in it and when it last leaked
    bucket: float = 0.0
    leaked_at: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: the time the buckets drain by (a test shares a fake clock with the client)
    clock: Callable[[], float] = time.monotonic
    #: GraphQL ``orders`` with cost-based throttling, and bulk operations (:mod:`.shopify_orders`)
    graphql_orders: OrdersFake = field(default_factory=OrdersFake)
    #: collections by numeric id: {"title", "product_ids"} (GraphQL ``collection(id:)``)
    collections: dict[str, dict[str, Any]] = field(default_factory=dict)

    def token_valid(self, token: str | None) -> bool:
        """The initial token, or one the token endpoint issued that has not expired."""
        if not token:
            return False
        if self.access_token and token == self.access_token:
            return True
        if token not in self.tokens:
            return False
        expiry = self.tokens[token]
        return expiry is None or time.time() < expiry

    def pour(self) -> int:
        """Count one request into the bucket; returns how full it is."""
        now = self.clock()
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
        if not state.token_valid(request.headers.get("X-Shopify-Access-Token")):
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
        with state.lock:
            listed = state.graphql_orders.handle(query, variables)
        if listed is not None:
            return answer(listed)
        with state.lock:
            acted = shopify_order_actions.handle(state.settlement, version, query, variables)
        if acted is not None:
            return answer(acted)
        with state.lock:
            settled = state.settlement.handle(version, query, variables)
        if settled is not None:
            return answer(settled)
        if "collection(id:" in query:
            with state.lock:
                return answer(_collection_products(state, variables))
        if "webhookSubscriptionCreate" in query:
            with state.lock:
                return answer({"data": {"webhookSubscriptionCreate":
                                        _subscription_create(state, variables)}})
        if "webhookSubscriptionUpdate" in query:
            with state.lock:
                return answer({"data": {"webhookSubscriptionUpdate":
                                        _subscription_update(state, variables)}})
        if "webhookSubscriptions" in query:
            nodes = [dict(node) for node in state.webhook_subscriptions.values()]
            return answer({"data": {"webhookSubscriptions": {"nodes": nodes}}})
        if "metafieldsSet" in query:
            return answer({"data": {"metafieldsSet": _metafields_set(state, variables)}})
        if "currentAppInstallation" in query:
            namespace = variables.get("namespace")
            nodes = [{"key": k, "value": v} for (ns, k), v in sorted(state.metafields.items())
                     if ns == namespace]
            return answer({"data": {"currentAppInstallation": {
                "id": state.app_installation_id, "metafields": {"nodes": nodes}}}})
        return answer({"errors": [{"message": "this imitation does not know that operation"}]})

    # -- a bulk operation's JSONL: a signed URL, no credential, Range requests ------------------

    @app.get("/bulk-export/<number>.jsonl")
    def bulk_export(number: str) -> Response:
        body = state.graphql_orders.export(number)
        state.graphql_orders.downloads.append({"range": request.headers.get("Range"),
                                               "headers": dict(request.headers)})
        if body is None or not request.args.get("X-Goog-Signature"):
            return Response(b"<Error><Code>AccessDenied</Code></Error>", 403,
                            mimetype="application/xml")
        wanted = request.headers.get("Range", "")
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", wanted)
        if not match:
            return Response(body, 200, mimetype="application/jsonl")
        start = int(match.group(1))
        end = min(int(match.group(2)) if match.group(2) else len(body) - 1, len(body) - 1)
        if start >= len(body):
            return Response(b"", 416, headers={"Content-Range": f"bytes */{len(body)}"})
        return Response(body[start:end + 1], 206, mimetype="application/jsonl", headers={
            "Content-Range": f"bytes {start}-{end}/{len(body)}"})

    # -- OAuth: the merchant's approval and the token endpoint ------------------------------------

    @app.get("/admin/oauth/authorize")
    def authorize() -> Response:
        args = request.args
        state.oauth_requests.append({"method": "GET", "path": request.path,
                                     "args": args.to_dict(), "form": None})
        if not state.api_key or args.get("client_id") != state.api_key:
            return Response(b"Oauth error invalid_request: The client id is invalid", 400)
        redirect_uri, nonce = args.get("redirect_uri"), args.get("state")
        if not redirect_uri or not nonce:
            return Response(b"Oauth error invalid_request: redirect_uri and state are required",
                            400)
        code = secrets.token_hex(16)
        with state.lock:
            state.codes[code] = (time.time(), args.get("scope", ""))
        store = state.shop_domain.split(".", 1)[0]
        host = base64.b64encode(f"admin.shopify.com/store/{store}".encode()).decode()
        pairs = [("code", code), ("host", host), ("shop", state.shop_domain), ("state", nonce),
                 ("timestamp", str(int(time.time())))]
        query = urlencode(pairs + [("hmac", signed_query_hmac(pairs, state.api_secret or ""))])
        return redirect(f"{redirect_uri}?{query}", 302)

    @app.post("/admin/oauth/access_token")
    def access_token() -> Response:
        form = request.get_json(silent=True)
        if not isinstance(form, dict):
            form = request.form.to_dict()
        state.oauth_requests.append({"method": "POST", "path": request.path,
                                     "args": request.args.to_dict(), "form": dict(form)})
        if (not state.api_key or form.get("client_id") != state.api_key
                or form.get("client_secret") != state.api_secret):
            return _json({"error": "invalid_client",
                          "error_description": "Client credentials are invalid"}, 401)
        with state.lock:
            if form.get("grant_type") == "refresh_token":
                if state.refresh_tokens.pop(str(form.get("refresh_token")), 0) < time.time():
                    return _json({"error": "invalid_grant",
                                  "error_description": "The refresh token is invalid"}, 400)
                scope = state.granted_scope if state.granted_scope is not None else state.last_scope
                return _json(_issue(state, scope, expiring=True))
            issued = state.codes.pop(str(form.get("code")), None)
            if issued is None or time.time() - issued[0] > 600:
                return _json({"error": "invalid_request", "error_description":
                              "The authorization code was not found or was already used"}, 400)
            scope = state.granted_scope if state.granted_scope is not None else issued[1]
            return _json(_issue(state, scope, expiring=str(form.get("expiring")) == "1"))

    return app


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body).encode(), status=status, mimetype="application/json")


def signed_query_hmac(pairs: list[tuple[str, str]], secret: str) -> str:
    """Shopify's hmac of a query: sorted ``name=value`` pairs, form-encoded, joined with ``&``."""
    message = urlencode(sorted(pairs), quote_via=quote, safe="*")
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def _issue(state: "ShopifyAdminState", scope: str, *, expiring: bool) -> dict[str, Any]:
    token = "shpat_" + secrets.token_hex(16)
    state.last_scope = scope
    if not expiring:
        state.tokens[token] = None
        return {"access_token": token, "scope": scope}
    refresh = "shprt_" + secrets.token_hex(16)
    state.tokens[token] = time.time() + state.token_lifetime
    state.refresh_tokens[refresh] = time.time() + 90 * 86400
    return {"access_token": token, "scope": scope, "expires_in": state.token_lifetime,
            "refresh_token": refresh, "refresh_token_expires_in": 90 * 86400}


#: the GraphQL topics the imitation accepts, and the compliance topics it refuses
SUBSCRIBABLE_TOPICS = frozenset({
    "ORDERS_CREATE", "ORDERS_UPDATED", "ORDERS_PAID", "ORDERS_CANCELLED", "ORDERS_FULFILLED",
    "ORDERS_PARTIALLY_FULFILLED", "ORDERS_EDITED", "REFUNDS_CREATE", "CUSTOMERS_CREATE",
    "CUSTOMERS_UPDATE", "FULFILLMENTS_CREATE", "FULFILLMENTS_UPDATE", "APP_UNINSTALLED"})
COMPLIANCE_TOPICS = frozenset({"CUSTOMERS_DATA_REQUEST", "CUSTOMERS_REDACT", "SHOP_REDACT"})


def _subscription_create(state: "ShopifyAdminState", variables: dict[str, Any]) -> dict[str, Any]:
    topic = str(variables.get("topic"))
    fields_ = variables.get("webhookSubscription") or {}
    uri = str(fields_.get("uri") or "")
    errors = _subscription_errors(state, topic, uri, None)
    if errors:
        return {"webhookSubscription": None, "userErrors": errors}
    state.next_subscription_id += 1
    node = {"id": f"gid://shopify/WebhookSubscription/{state.next_subscription_id}",
            "topic": topic, "uri": uri, "format": fields_.get("format", "JSON")}
    state.webhook_subscriptions[node["id"]] = node
    return {"webhookSubscription": dict(node), "userErrors": []}


def _subscription_update(state: "ShopifyAdminState", variables: dict[str, Any]) -> dict[str, Any]:
    node = state.webhook_subscriptions.get(str(variables.get("id")))
    if node is None:
        return {"webhookSubscription": None,
                "userErrors": [{"field": ["id"], "message": "Webhook subscription does not exist"}]}
    uri = str((variables.get("webhookSubscription") or {}).get("uri") or node["uri"])
    errors = _subscription_errors(state, node["topic"], uri, node["id"])
    if errors:
        return {"webhookSubscription": None, "userErrors": errors}
    node["uri"] = uri
    return {"webhookSubscription": dict(node), "userErrors": []}


def _subscription_errors(state: "ShopifyAdminState", topic: str, uri: str,
                         own_id: str | None) -> list[dict[str, Any]]:
    if topic in COMPLIANCE_TOPICS:
        return [{"field": ["topic"], "message": "Compliance topics can only be set in the app "
                                                "configuration"}]
    if topic not in SUBSCRIBABLE_TOPICS:
        return [{"field": ["topic"], "message": "Topic is invalid"}]
    if not uri.startswith("https://"):
        return [{"field": ["webhookSubscription", "uri"], "message": "Address is invalid"}]
    if any(n["topic"] == topic and n["uri"] == uri and n["id"] != own_id
           for n in state.webhook_subscriptions.values()):
        return [{"field": ["webhookSubscription", "uri"],
                 "message": "Address for this topic has already been taken"}]
    return []


def _collection_products(state: "ShopifyAdminState", variables: dict[str, Any]) -> dict[str, Any]:
    """``collection(id:) { title products(first:, after:) { pageInfo nodes { legacyResourceId } } }``
    as the Admin API answers it: ``null`` for an unknown collection, an error for a malformed id,
    opaque cursors, at most 250 a page, the query's cost in ``extensions``."""
    gid, first = str(variables.get("id", "")), int(variables.get("first") or 0)
    match = re.fullmatch(r"gid://shopify/Collection/(\d+)", gid)
    if match is None:
        return {"errors": [{"message": f"Invalid global id '{gid}'",
                            "extensions": {"code": "argumentLiteralsIncompatible"}}]}
    if not 1 <= first <= 250:
        return {"errors": [{"message": "The first argument must be between 1 and 250",
                            "extensions": {"code": "BAD_USER_INPUT"}}]}
    cost = {"requestedQueryCost": first + 3, "actualQueryCost": first + 3,
            "throttleStatus": {"maximumAvailable": 2000.0, "currentlyAvailable": 1997,
                               "restoreRate": 100.0}}
    collection = state.collections.get(match.group(1))
    if collection is None:
        return {"data": {"collection": None}, "extensions": {"cost": cost}}
    after = variables.get("after")
    start = int(base64.b64decode(after).decode().split(":")[1]) if after else 0
    ids = collection["product_ids"][start:start + first]
    end = start + len(ids)
    more = end < len(collection["product_ids"])
    cursor = base64.b64encode(f"cursor:{end}".encode()).decode()
    return {"data": {"collection": {"title": collection["title"], "products": {
        "pageInfo": {"hasNextPage": more, "endCursor": cursor if ids else None},
        "nodes": [{"legacyResourceId": str(p)} for p in ids]}}},
        "extensions": {"cost": cost}}


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
                 customers: Iterable[bytes] = (), *, api_key: str | None = None,
                 api_secret: str | None = None, shop_domain: str = "my-shop.myshopify.com",
                 clock: Callable[[], float] = time.monotonic, plan: str = "standard"
                 ) -> None:
        self.state = ShopifyAdminState(access_token, api_key=api_key, api_secret=api_secret,
                                       shop_domain=shop_domain, clock=clock,
                                       graphql_orders=OrdersFake(clock=clock, plan=plan))
        self.state.leaked_at = clock()
        for raw in orders:
            self.add_order(raw)
        for raw in customers:
            self.add_customer(raw)
        self._server = make_server("127.0.0.1", 0, create_app(self.state), threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True,
                                        name="shopify-admin-server")
        self.base_url = f"http://127.0.0.1:{self._server.server_port}"
        self.state.graphql_orders.base_url = self.base_url

    def add_order(self, raw: bytes) -> None:
        resource = _resource(raw)
        self.state.orders[resource.id] = resource

    def add_customer(self, raw: bytes) -> None:
        resource = _resource(raw)
        self.state.customers[resource.id] = resource

    def add_settlement_order(self, order_id: int, **kwargs: Any) -> FakeOrder:
        """An order for the settlement operations; see :meth:`SettlementFake.add_order`."""
        return self.state.settlement.add_order(order_id, **kwargs)

    def fail_next(self, count: int, status: int = 429, retry_after: str | None = "2.0") -> None:
        """Answer the next ``count`` requests with ``status`` (429 carries ``Retry-After``)."""
        self.state.failures.extend([(status, retry_after)] * count)

    def add_collection(self, collection_id: int | str, title: str,
                       product_ids: Iterable[int | str]) -> None:
        """A collection (custom or smart: the API lists both alike) and its products, in order."""
        self.state.collections[str(collection_id)] = {"title": title,
                                                      "product_ids": [str(p) for p in product_ids]}

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

    def uninstall(self) -> None:
        """What Shopify does when the merchant removes the app: the app's tokens stop working,
        its webhook subscriptions, script tags and app-data metafields are deleted."""
        with self.state.lock:
            self.state.access_token = ""
            self.state.tokens.clear()
            self.state.refresh_tokens.clear()
            self.state.webhook_subscriptions.clear()
            self.state.script_tags.clear()
            self.state.metafields.clear()

    def expire_tokens(self) -> None:
        """Every expiring access token issued so far is past its hour."""
        with self.state.lock:
            for token, expiry in self.state.tokens.items():
                if expiry is not None:
                    self.state.tokens[token] = time.time() - 1

    def __enter__(self) -> "ShopifyAdminServer":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
