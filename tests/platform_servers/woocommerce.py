"""A loopback imitation of the WooCommerce REST API v3 orders, customers and order refunds.

It speaks what the REST API docs document and the adapter relies on: ``GET /wp-json/wc/v3/orders``
and ``/customers`` with ``include``, ``page``, ``per_page`` (at most 100, default 10) and ``role``
(customers; default ``customer``); for orders ``modified_after`` / ``after`` (exclusive),
``dates_are_gmt``, ``orderby`` (``modified`` and ``date`` with WooCommerce's ``ID`` tie-break) and
``order``; HTTP Basic auth with the consumer key and secret; ``X-WP-Total``, ``X-WP-TotalPages`` and
``Link`` (rel next/prev) headers; errors as ``{"code", "message", "data": {"status"}}``. Trashed orders are
not listed (the default ``status=any`` leaves them out). Tests fill ``orders``/``customers`` with
:func:`make_order`/:func:`make_customer`, may make the next N requests fail (429, 503), cap the page
size below ``per_page`` to force pagination, or delay answers to provoke read timeouts.

Order refunds (developer.woocommerce.com/docs/apis/rest-api/v3/order-refunds/ and WooCommerce's
``WC_REST_Order_Refunds_Controller::prepare_object_for_database`` / ``wc_create_refund``):
``GET /orders/<id>`` (404 ``woocommerce_rest_shop_order_invalid_id``), ``GET /orders/<id>/refunds``
and ``POST /orders/<id>/refunds`` with ``amount`` (a string, taking precedence over the line totals),
``reason``, ``line_items [{id, quantity, refund_total, refund_tax}]``, ``meta_data``, ``api_refund``
and ``api_restock`` (both default true). As WooCommerce does: an unknown order is 404
``woocommerce_rest_invalid_order_id``; a negative amount 400 ``woocommerce_rest_invalid_order_refund``;
an amount above the order total less its refunds, or ``api_refund`` on a gateway without automatic
refunds, **500** ``woocommerce_rest_cannot_create_order_refund`` with ``wc_create_refund``'s message;
a created refund is 201, is listed in the order's ``refunds`` ``{id, reason, total}`` (negative total),
restocks its lines' products when ``api_restock`` (``restocked``) and marks a fully refunded order
``refunded``.

For the order actions: ``PUT /orders/<id>`` (``status``, ``meta_data`` merged by key; moving to
``cancelled`` puts the lines back in stock), ``POST /orders`` (``line_items``, ``parent_id``,
``status``, ``set_paid``, ``billing``, ``shipping``, ``meta_data``), ``GET /orders?parent=<id>``
and ``GET``/``POST /orders/<id>/notes`` (``note``, ``customer_note``).

The key-generation flow (``includes/class-wc-auth.php``): ``GET /wc-auth/v1/authorize`` checks the
five required parameters, the scope and that ``callback_url`` is https (``wp_die`` with 401
otherwise) and shows the grant page of a logged-in shop manager, whose Approve link is
``/wc-auth/v1/access_granted?…&wc_auth_nonce=…``; that creates the keys, POSTs
``{key_id, user_id, consumer_key, consumer_secret, key_permissions}`` as JSON to the callback (through
``callback_transport``, so a test can deliver it to a Flask test client), deletes the keys unless
the answer is 200, and redirects to ``return_url`` with ``success=1&user_id=…``. Keys issued this way
authenticate the REST API with their permissions (``read`` keys cannot write). Webhooks
(``WC_REST_Webhooks_Controller``): ``GET/POST /webhooks``, ``GET/PUT/DELETE /webhooks/<id>``
(``force=true`` required to delete), a topic must be ``<resource>.<event>`` of a known resource and
the ``delivery_url`` an http(s) URL; the ``secret`` is never shown back.
"""

from __future__ import annotations

import bisect
import hashlib
import html
import json
import math
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from urllib.parse import urlencode, urlsplit

import requests as http
from flask import Flask, Response, jsonify, redirect, request
from werkzeug.serving import make_server

API = "/wp-json/wc/v3"
DEFAULT_PER_PAGE = 10
MAX_PER_PAGE = 100


@dataclass
class FakeWooCommerce:
    """One site's state: its keys, its resources, the requests it saw and the failures to inject."""

    consumer_key: str = "ck_test_0123456789"
    consumer_secret: str = "cs_test_9876543210"
    orders: dict[int, dict[str, Any]] = field(default_factory=dict)
    customers: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: products ({"id", "name", "categories": [{"id", "name", "slug"}]}) and product categories
    #: ({"id", "name", "slug", "parent", "count"}) by id
    products: dict[int, dict[str, Any]] = field(default_factory=dict)
    categories: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: answer this status to the next ``fail_times`` requests (429 or 503 in the tests)
    fail_status: int = 503
    fail_times: int = 0
    retry_after: str | None = None
    #: imitate a site whose plugins lower the page size below the requested per_page
    page_size_cap: int | None = None
    #: seconds to wait before answering (read-timeout tests)
    delay: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    #: refunds by order id, in creation order (``GET /orders/<id>/refunds`` lists newest first)
    refunds: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    next_refund_id: int = 700
    #: units put back in stock per product id by refunds with ``api_restock``, and by orders
    #: moved to ``cancelled`` (``wc_maybe_increase_stock_levels``)
    restocked: dict[int, int] = field(default_factory=dict)
    #: order notes by order id, and the orders created through the API (replacements)
    notes: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    next_note_id: int = 300
    created_orders: list[int] = field(default_factory=list)
    #: WooCommerce > Settings > General > Number of decimals (0 for KRW or JPY stores)
    price_decimals: int = 2
    #: False imitates a gateway without automatic refunds (cash on delivery, bank transfer)
    gateway_refunds: bool = True
    #: keys issued by the auth flow: consumer key → {"secret", "permissions", "key_id"}
    api_keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    next_key_id: int = 40
    #: grant-page nonces issued
    nonces: set[str] = field(default_factory=set)
    #: how the site POSTs the keys to a callback URL: (url, body, headers) → HTTP status
    callback_transport: Callable[[str, bytes, dict[str, str]], int] | None = None
    #: every key post: {"url", "json", "status"}
    key_posts: list[dict[str, Any]] = field(default_factory=list)
    #: webhooks by id
    webhooks: dict[int, dict[str, Any]] = field(default_factory=dict)
    next_webhook_id: int = 100
    lock: threading.Lock = field(default_factory=threading.Lock)
    _by_modified: tuple[int, list[tuple[str, int, dict[str, Any]]]] | None = None

    def add_orders(self, *orders: dict[str, Any]) -> None:
        self.orders.update((order["id"], order) for order in orders)
        self._by_modified = None

    def by_modified(self) -> list[tuple[str, int, dict[str, Any]]]:
        """``(date_modified_gmt, id, order)`` of the listed orders, sorted (WooCommerce's
        ``orderby=modified`` with its ``ID`` tie-break); rebuilt when orders are added."""
        if self._by_modified is None or self._by_modified[0] != len(self.orders):
            rows = sorted((o.get("date_modified_gmt") or "", o["id"], o)
                          for o in self.orders.values())
            self._by_modified = (len(self.orders), rows)
        return self._by_modified[1]

    def add_customers(self, *customers: dict[str, Any]) -> None:
        self.customers.update((customer["id"], customer) for customer in customers)

    def fail_next(self, status: int, times: int, retry_after: str | None = None) -> None:
        self.fail_status, self.fail_times, self.retry_after = status, times, retry_after

    def add_category(self, category_id: int, name: str, product_ids: list[int], *,
                     parent: int = 0) -> None:
        """A product category and its products (created as needed), as wp-admin would file them."""
        category = {"id": category_id, "name": name, "slug": name.lower().replace(" ", "-"),
                    "parent": parent, "count": len(product_ids)}
        self.categories[category_id] = category
        for product_id in product_ids:
            product = self.products.setdefault(product_id, {"id": product_id,
                                                            "name": f"Product {product_id}",
                                                            "categories": []})
            product["categories"].append({k: category[k] for k in ("id", "name", "slug")})


def create_app(site: FakeWooCommerce) -> Flask:
    app = Flask(__name__)

    @app.before_request
    def _check() -> Response | tuple[Response, int] | None:
        site.requests.append({"method": request.method, "path": request.path,
                              "args": request.args.to_dict(),
                              "json": request.get_json(silent=True)})
        if request.path.startswith("/wc-auth/"):
            return None  # the browser's pages, not the REST API
        time.sleep(site.delay)
        if site.fail_times > 0:
            site.fail_times -= 1
            response = _error("woocommerce_test_failure", "Injected failure.", site.fail_status)
            if site.retry_after is not None:
                response[0].headers["Retry-After"] = site.retry_after
            return response
        auth = request.authorization
        if auth is None or auth.type != "basic":
            return _error("woocommerce_rest_cannot_view", "Sorry, you cannot list resources.", 401)
        if auth.username == site.consumer_key and auth.password == site.consumer_secret:
            return None
        key = site.api_keys.get(auth.username or "")
        if key is None or key["secret"] != auth.password:
            return _error("woocommerce_rest_cannot_view", "Sorry, you cannot list resources.", 401)
        if request.method != "GET" and key["permissions"] == "read":
            return _error("woocommerce_rest_cannot_create", "Sorry, you are not allowed to "
                          "create resources.", 401)
        return None

    @app.get(f"{API}/orders")
    def list_orders() -> Response | tuple[Response, int]:
        args = request.args
        if (args.get("orderby") == "modified" and args.get("order") == "asc"
                and args.get("dates_are_gmt") == "true" and not args.get("include")):
            return _modified_listing(site)
        orders = [o for o in site.orders.values() if o.get("status") != "trash"]
        if args.get("parent"):
            parents = {int(p) for p in args["parent"].split(",") if p.strip().isdigit()}
            orders = [o for o in orders if o.get("parent_id") in parents]
        return _collection(site, orders, dated=True)

    @app.get(f"{API}/products")
    def list_products() -> Response | tuple[Response, int]:
        """``category`` filters by a category and its subcategories (a ``product_cat`` tax
        query includes children); ``_fields`` keeps only the named fields (the WP REST API's
        global parameter)."""
        products = list(site.products.values())
        if request.args.get("category"):
            try:
                wanted = _with_subcategories(site, int(request.args["category"]))
            except ValueError:
                return _error("rest_invalid_param", "Invalid parameter(s): category", 400)
            products = [p for p in products
                        if any(c["id"] in wanted for c in p.get("categories") or ())]
        if request.args.get("_fields"):
            keep = {f.strip() for f in request.args["_fields"].split(",")}
            products = [{k: v for k, v in p.items() if k in keep} | {"id": p["id"]}
                        for p in products]
        return _collection(site, products)

    @app.get(f"{API}/products/categories/<int:category_id>")
    def get_category(category_id: int) -> Response | tuple[Response, int]:
        category = site.categories.get(category_id)
        if category is None:
            return _error("woocommerce_rest_term_invalid", "Resource does not exist.", 404)
        return jsonify(category)

    @app.post(f"{API}/orders")
    def create_order() -> Response | tuple[Response, int]:
        with site.lock:
            return _create_order(site, request.get_json(silent=True) or {})

    @app.put(f"{API}/orders/<int:order_id>")
    def update_order(order_id: int) -> Response | tuple[Response, int]:
        with site.lock:
            return _update_order(site, order_id, request.get_json(silent=True) or {})

    @app.route(f"{API}/orders/<int:order_id>/notes", methods=["GET", "POST"])
    def order_notes(order_id: int) -> Response | tuple[Response, int]:
        if order_id not in site.orders:
            return _error("woocommerce_rest_order_invalid_id", "Invalid order ID.", 404)
        if request.method == "GET":
            return jsonify(list(reversed(site.notes.get(order_id, []))))
        data = request.get_json(silent=True) or {}
        if not isinstance(data.get("note"), str) or not data["note"].strip():
            return _error("woocommerce_rest_missing_callback_param",
                          "Missing parameter(s): note", 400)
        with site.lock:
            site.next_note_id += 1
            now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
            note = {"id": site.next_note_id, "author": "ccms", "date_created": now,
                    "date_created_gmt": now, "note": data["note"],
                    "customer_note": bool(data.get("customer_note", False))}
            site.notes.setdefault(order_id, []).append(note)
        return jsonify(note), 201

    @app.get(f"{API}/customers")
    def list_customers() -> Response | tuple[Response, int]:
        role = request.args.get("role", "customer")
        customers = [c for c in site.customers.values() if role == "all" or c.get("role") == role]
        return _collection(site, customers)

    @app.get(f"{API}/orders/<int:order_id>")
    def get_order(order_id: int) -> Response | tuple[Response, int]:
        order = site.orders.get(order_id)
        if order is None or order.get("status") == "trash":
            return _error("woocommerce_rest_shop_order_invalid_id", "Invalid ID.", 404)
        return jsonify(order)

    @app.get(f"{API}/orders/<int:order_id>/refunds")
    def list_refunds(order_id: int) -> Response | tuple[Response, int]:
        if order_id not in site.orders:
            return _error("woocommerce_rest_invalid_order_id", "Invalid order ID.", 404)
        refunds = list(reversed(site.refunds.get(order_id, [])))
        response = jsonify(refunds)
        response.headers["X-WP-Total"] = str(len(refunds))
        response.headers["X-WP-TotalPages"] = "1"
        return response

    @app.post(f"{API}/orders/<int:order_id>/refunds")
    def create_refund(order_id: int) -> Response | tuple[Response, int]:
        with site.lock:
            return _create_refund(site, order_id, request.get_json(silent=True) or {})

    # -- webhooks ----------------------------------------------------------------------------------

    @app.get(f"{API}/webhooks")
    def list_webhooks() -> Response | tuple[Response, int]:
        return _collection(site, [_public_webhook(w) for w in site.webhooks.values()])

    @app.post(f"{API}/webhooks")
    def create_webhook() -> Response | tuple[Response, int]:
        data = request.get_json(silent=True) or {}
        problem = _webhook_problem(data, creating=True)
        if problem:
            return problem
        with site.lock:
            site.next_webhook_id += 1
            now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
            webhook = {"id": site.next_webhook_id, "name": data.get("name") or "Webhook",
                       "status": data.get("status") or "active", "topic": data["topic"],
                       "resource": data["topic"].split(".")[0],
                       "event": data["topic"].split(".")[1], "hooks": [],
                       "delivery_url": data["delivery_url"], "secret": data.get("secret") or "",
                       "date_created": now, "date_created_gmt": now, "date_modified": now,
                       "date_modified_gmt": now, "api_version": "wp_api_v3"}
            site.webhooks[webhook["id"]] = webhook
        return jsonify(_public_webhook(webhook)), 201

    @app.route(f"{API}/webhooks/<int:webhook_id>", methods=["GET", "PUT", "DELETE"])
    def webhook(webhook_id: int) -> Response | tuple[Response, int]:
        found = site.webhooks.get(webhook_id)
        if found is None:
            return _error("woocommerce_rest_webhook_invalid_id", "Invalid ID.", 404)
        if request.method == "GET":
            return jsonify(_public_webhook(found))
        if request.method == "DELETE":
            if request.args.get("force") not in ("true", "1"):
                return _error("woocommerce_rest_trash_not_supported",
                              "Webhooks do not support trashing.", 501)
            with site.lock:
                del site.webhooks[webhook_id]
            return jsonify(_public_webhook(found))
        data = request.get_json(silent=True) or {}
        problem = _webhook_problem(data, creating=False)
        if problem:
            return problem
        with site.lock:
            found.update({k: data[k] for k in ("name", "status", "delivery_url", "secret")
                          if k in data})
            if "topic" in data:
                found.update(topic=data["topic"], resource=data["topic"].split(".")[0],
                             event=data["topic"].split(".")[1])
        return jsonify(_public_webhook(found))

    # -- the key-generation flow (browser pages) ---------------------------------------------------

    @app.get("/wc-auth/v1/authorize")
    def wc_authorize() -> Response | tuple[Response, int]:
        problem = _auth_problem(request.args)
        if problem:
            return problem
        nonce = secrets.token_hex(5)
        site.nonces.add(nonce)
        params = {k: request.args[k] for k in AUTH_PARAMS}
        granted = "/wc-auth/v1/access_granted?" + urlencode({**params, "wc_auth_nonce": nonce})
        declined = _add_query(params["return_url"], success="0", user_id=params["user_id"])
        page = (f"<p>{html.escape(params['app_name'])} would like to connect to your store.</p>"
                f"<a id=\"approve\" href=\"{html.escape(granted)}\">Approve</a> "
                f"<a id=\"deny\" href=\"{html.escape(declined)}\">Deny</a>")
        return Response(page, 200, mimetype="text/html")

    @app.get("/wc-auth/v1/access_granted")
    def wc_access_granted() -> Response | tuple[Response, int]:
        problem = _auth_problem(request.args)
        if problem:
            return problem
        nonce = request.args.get("wc_auth_nonce", "")
        if nonce not in site.nonces:
            return _wp_die("Invalid nonce verification")
        site.nonces.discard(nonce)
        args = request.args
        with site.lock:
            site.next_key_id += 1
            data = {"key_id": site.next_key_id, "user_id": args["user_id"],
                    "consumer_key": "ck_" + hashlib.sha1(secrets.token_bytes(16)).hexdigest(),
                    "consumer_secret": "cs_" + hashlib.sha1(secrets.token_bytes(16)).hexdigest(),
                    "key_permissions": args["scope"]}
            site.api_keys[data["consumer_key"]] = {"secret": data["consumer_secret"],
                                                   "permissions": args["scope"],
                                                   "key_id": data["key_id"]}
        body = json.dumps(data).encode()
        transport = site.callback_transport or _post_over_http
        try:
            status = transport(args["callback_url"], body,
                               {"Content-Type": "application/json;charset=UTF-8"})
        except Exception:  # noqa: BLE001 — wp_safe_remote_post's WP_Error
            status = 0
        site.key_posts.append({"url": args["callback_url"], "json": data, "status": status})
        if status != 200:
            with site.lock:
                site.api_keys.pop(data["consumer_key"], None)  # maybe_delete_key
            return _wp_die("An error occurred in the request and at the time were unable to "
                           "send the consumer data")
        return redirect(_add_query(args["return_url"], success="1", user_id=args["user_id"]), 302)

    return app


AUTH_PARAMS = ("app_name", "user_id", "return_url", "callback_url", "scope")
WEBHOOK_RESOURCES = ("order", "customer", "product", "coupon", "action")


def _with_subcategories(site: FakeWooCommerce, category_id: int) -> set[int]:
    found, frontier = {category_id}, [category_id]
    while frontier:
        parent = frontier.pop()
        children = [c["id"] for c in site.categories.values()
                    if c.get("parent") == parent and c["id"] not in found]
        found.update(children)
        frontier.extend(children)
    return found


def _wp_die(message: str) -> tuple[Response, int]:
    return Response(f"<p>Error: {html.escape(message)}.</p>", mimetype="text/html"), 401


def _auth_problem(args: Any) -> tuple[Response, int] | None:
    """``WC_Auth::make_validation``."""
    for name in AUTH_PARAMS:
        if not args.get(name):
            return _wp_die(f"Missing parameter {name}")
    if args["scope"] not in ("read", "write", "read_write"):
        return _wp_die(f"Invalid scope {args['scope']}")
    for name in ("return_url", "callback_url"):
        parts = urlsplit(args[name] if "://" in args[name] else "https://" + args[name])
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return _wp_die(f"The {args[name]} is not a valid URL")
    if not args["callback_url"].lower().startswith("https://"):
        return _wp_die("The callback_url needs to be over SSL")
    return None


def _add_query(url: str, **params: str) -> str:
    return url + ("&" if "?" in url else "?") + urlencode(params)


def _post_over_http(url: str, body: bytes, headers: dict[str, str]) -> int:
    return http.post(url, data=body, headers=headers, timeout=60).status_code


def _public_webhook(webhook: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in webhook.items() if k != "secret"}


def _webhook_problem(data: Any, *, creating: bool) -> tuple[Response, int] | None:
    if not isinstance(data, dict):
        return _error("rest_invalid_json", "Invalid JSON body passed.", 400)
    if creating or "topic" in data:
        topic = data.get("topic")
        if not isinstance(topic, str) or not re.fullmatch(r"[a-z_]+\.[a-z_]+", topic) \
                or topic.split(".")[0] not in WEBHOOK_RESOURCES:
            return _error("woocommerce_rest_webhook_invalid_topic", "Webhook topic is required "
                          "and must be valid.", 400)
    if creating or "delivery_url" in data:
        url = data.get("delivery_url")
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            return _error("rest_invalid_param", "Invalid parameter(s): delivery_url", 400)
    if "status" in data and data["status"] not in ("active", "paused", "disabled"):
        return _error("rest_invalid_param", "Invalid parameter(s): status", 400)
    return None


def _fmt(site: FakeWooCommerce, value: Decimal) -> str:
    """``wc_format_decimal`` with the store's price decimals (0 for a KRW or JPY store)."""
    return f"{value:.{site.price_decimals}f}"


def _decimal(value: Any) -> Decimal:
    return Decimal(str(value if value not in (None, "") else 0))


def _create_refund(site: FakeWooCommerce, order_id: int,
                   data: dict[str, Any]) -> Response | tuple[Response, int]:
    """``prepare_object_for_database`` then ``wc_create_refund``, as far as their checks go."""
    order = site.orders.get(order_id)
    if order is None:
        return _error("woocommerce_rest_invalid_order_id", "Invalid order ID.", 404)
    try:
        amount = _decimal(data.get("amount"))
        lines = {int(line["id"]): line for line in order.get("line_items", [])}
        items = []
        for item in data.get("line_items") or []:
            line = lines.get(int(item["id"]))
            if line is None:
                continue  # wc_create_refund skips an item that is not in the order
            total = _decimal(item.get("refund_total"))
            tax = sum((_decimal(t.get("refund_total")) for t in item.get("refund_tax") or []),
                      Decimal(0))
            items.append((line, int(item.get("quantity") or 0), total, tax))
    except (InvalidOperation, KeyError, TypeError, ValueError):
        return _error("rest_invalid_param", "Invalid parameter(s): line_items", 400)
    if amount < 0:
        return _error("woocommerce_rest_invalid_order_refund",
                      "Refund amount must be greater than zero.", 400)
    if data.get("amount") in (None, ""):
        amount = sum((total + tax for _, _, total, tax in items), Decimal(0))
    refunded = sum((abs(_decimal(r["total"])) for r in order.get("refunds", [])), Decimal(0))
    remaining = _decimal(order.get("total")) - refunded
    if amount > remaining or amount <= 0:
        return _error("woocommerce_rest_cannot_create_order_refund", "Invalid refund amount.", 500)
    api_refund = data.get("api_refund", True) is not False
    if api_refund and not site.gateway_refunds:
        return _error("woocommerce_rest_cannot_create_order_refund",
                      "The payment gateway for this order does not support automatic refunds.", 500)
    site.next_refund_id += 1
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    refund = {
        "id": site.next_refund_id, "date_created": now, "date_created_gmt": now,
        "amount": _fmt(site, amount), "reason": data.get("reason") or "",
        "refunded_by": 1, "refunded_payment": api_refund,
        "meta_data": [{"id": 9000 + site.next_refund_id + i, "key": m.get("key"),
                       "value": m.get("value")}
                      for i, m in enumerate(data.get("meta_data") or []) if isinstance(m, dict)],
        "line_items": [{"id": 8000 + site.next_refund_id + i, "name": line.get("name"),
                        "product_id": line.get("product_id"),
                        "variation_id": line.get("variation_id"), "quantity": -quantity,
                        "subtotal": _fmt(site, -total), "total": _fmt(site, -total),
                        "total_tax": _fmt(site, -tax), "sku": line.get("sku"),
                        "price": line.get("price"), "refund_total": float(total)}
                       for i, (line, quantity, total, tax) in enumerate(items)],
        "tax_lines": [], "shipping_lines": [], "fee_lines": [],
    }
    site.refunds.setdefault(order_id, []).append(refund)
    order.setdefault("refunds", []).append(
        {"id": refund["id"], "reason": refund["reason"], "total": _fmt(site, -amount)})
    if data.get("api_restock", True) is not False:
        for line, quantity, _, _ in items:
            product = int(line.get("variation_id") or line.get("product_id") or 0)
            site.restocked[product] = site.restocked.get(product, 0) + quantity
    if amount == remaining:
        order["status"] = "refunded"
    return jsonify(refund), 201


#: the order statuses ``PUT /orders/<id>`` accepts (``wc_get_order_statuses`` without ``wc-``)
ORDER_STATUSES = frozenset({"pending", "processing", "on-hold", "completed", "cancelled",
                            "refunded", "failed", "checkout-draft"})


def _merge_meta(current: list[dict[str, Any]], given: Any) -> list[dict[str, Any]]:
    """``meta_data`` entries update the entry with the same key, else are added."""
    merged = [dict(m) for m in current]
    for entry in given or []:
        if not isinstance(entry, dict) or "key" not in entry:
            continue
        found = next((m for m in merged if m.get("key") == entry["key"]), None)
        if found is not None:
            found["value"] = entry.get("value")
        else:
            merged.append({"id": 9500 + len(merged), "key": entry["key"],
                           "value": entry.get("value")})
    return merged


def _update_order(site: FakeWooCommerce, order_id: int,
                  data: dict[str, Any]) -> Response | tuple[Response, int]:
    """``PUT /orders/<id>``: ``status`` and ``meta_data`` (what the order actions write); moving
    to ``cancelled`` puts the lines back in stock, as WooCommerce does."""
    order = site.orders.get(order_id)
    if order is None or order.get("status") == "trash":
        return _error("woocommerce_rest_shop_order_invalid_id", "Invalid ID.", 404)
    status = data.get("status")
    if status is not None and status not in ORDER_STATUSES:
        return _error("rest_invalid_param", "Invalid parameter(s): status", 400)
    if status == "cancelled" and order.get("status") != "cancelled":
        for line in order.get("line_items", []):
            product = int(line.get("variation_id") or line.get("product_id") or 0)
            site.restocked[product] = site.restocked.get(product, 0) + int(line["quantity"])
    if status is not None:
        order["status"] = status
    if "meta_data" in data:
        order["meta_data"] = _merge_meta(order.get("meta_data") or [], data["meta_data"])
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    order["date_modified"] = order["date_modified_gmt"] = now
    site._by_modified = None
    return jsonify(order)


def _create_order(site: FakeWooCommerce, data: dict[str, Any]) -> Response | tuple[Response, int]:
    """``POST /orders``: an order from ``line_items`` (``product_id``, ``variation_id``,
    ``quantity``, ``subtotal``, ``total``), ``parent_id``, ``status``, ``set_paid``, ``billing``,
    ``shipping``, ``customer_id``, ``customer_note``, ``meta_data``."""
    lines = data.get("line_items")
    if not isinstance(lines, list) or not lines:
        return _error("woocommerce_rest_required_product_reference", "Product ID or SKU is "
                      "required.", 400)
    status = data.get("status", "pending")
    if status not in ORDER_STATUSES:
        return _error("rest_invalid_param", "Invalid parameter(s): status", 400)
    parent = int(data.get("parent_id") or 0)
    if parent and parent not in site.orders:
        return _error("woocommerce_rest_invalid_order_id", "Invalid parent order ID.", 400)
    order_id = max(site.orders, default=100) + 1
    items, total = [], Decimal(0)
    for i, line in enumerate(lines):
        try:
            product, quantity = int(line["product_id"]), int(line.get("quantity") or 1)
            line_total = _decimal(line.get("total", "0"))
        except (InvalidOperation, KeyError, TypeError, ValueError):
            return _error("woocommerce_rest_required_product_reference",
                          "Product ID or SKU is required.", 400)
        items.append({"id": order_id * 10 + i + 1, "name": f"Product {product}",
                      "product_id": product, "variation_id": int(line.get("variation_id") or 0),
                      "quantity": quantity, "subtotal": _fmt(site, _decimal(line.get("subtotal",
                                                                                         "0"))),
                      "total": _fmt(site, line_total), "taxes": [], "meta_data": []})
        total += line_total
    order = make_order(order_id, status=status, total=_fmt(site, total),
                       customer_id=int(data.get("customer_id") or 0),
                       modified=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
                       parent_id=parent, currency=data.get("currency") or "EUR",
                       shipping_total=_fmt(site, Decimal(0)), line_items=items,
                       customer_note=data.get("customer_note") or "",
                       meta_data=_merge_meta([], data.get("meta_data")),
                       date_paid=None, date_paid_gmt=None, created_via="rest-api")
    for part in ("billing", "shipping"):
        if isinstance(data.get(part), dict):
            order[part] = dict(order[part], **data[part])
    if data.get("set_paid"):
        order["date_paid"] = order["date_paid_gmt"] = order["date_modified_gmt"]
    site.add_orders(order)
    site.created_orders.append(order_id)
    return jsonify(order), 201


#: ``orderby`` values of ``WC_REST_CRUD_Controller::get_collection_params``
ORDERBY = ("date", "id", "include", "title", "slug", "modified")


def _collection(site: FakeWooCommerce, items: list[dict[str, Any]],
                dated: bool = False) -> Response | tuple[Response, int]:
    """Filter by ``include`` (and, for a dated resource, ``modified_after``/``after``), sort by
    ``orderby``/``order`` (``ID`` appended to a date sort, as WooCommerce does) and paginate the
    way the WP REST API does: ``X-WP-Total``, ``X-WP-TotalPages`` and ``Link`` rel next/prev."""
    args = request.args
    try:
        per_page = int(args.get("per_page", DEFAULT_PER_PAGE))
        page = int(args.get("page", 1))
        include = {int(i) for i in args.get("include", "").split(",") if i.strip()}
    except ValueError:
        return _error("rest_invalid_param", "Invalid parameter(s).", 400)
    if not 1 <= per_page <= MAX_PER_PAGE or page < 1:
        return _error("rest_invalid_param", "Invalid parameter(s): per_page, page", 400)
    orderby, order = args.get("orderby", "date"), args.get("order", "desc")
    if orderby not in ORDERBY or order not in ("asc", "desc"):
        return _error("rest_invalid_param", "Invalid parameter(s): orderby, order", 400)
    per_page = min(per_page, site.page_size_cap or per_page)
    if include:
        items = [item for item in items if item["id"] in include]
    gmt = args.get("dates_are_gmt", "false").lower() in ("1", "true")
    if dated:
        for name, column in (("modified_after", "date_modified"), ("after", "date_created")):
            if args.get(name):
                try:
                    bound = _wp_date(args[name])
                except ValueError:
                    return _error("rest_invalid_param", f"Invalid parameter(s): {name}", 400)
                key = f"{column}_gmt" if gmt else column
                items = [item for item in items if item.get(key) and _wp_date(item[key]) > bound]
    if dated and "orderby" in args and orderby in ("modified", "date"):
        key = "date_modified_gmt" if orderby == "modified" else "date_created_gmt"
        items = sorted(items, key=lambda item: (item.get(key) or "", item["id"]),
                       reverse=order == "desc")
    else:
        items = sorted(items, key=lambda item: item["id"], reverse=order == "desc")
    total_pages = math.ceil(len(items) / per_page)
    response = jsonify(items[(page - 1) * per_page:page * per_page])
    response.headers["X-WP-Total"] = str(len(items))
    response.headers["X-WP-TotalPages"] = str(total_pages)
    links = []
    if page > 1:
        links.append(f'<{_page_url(min(page - 1, max(total_pages, 1)))}>; rel="prev"')
    if total_pages > page:
        links.append(f'<{_page_url(page + 1)}>; rel="next"')
    if links:
        response.headers["Link"] = ", ".join(links)
    return response


def _modified_listing(site: FakeWooCommerce) -> Response | tuple[Response, int]:
    """``orderby=modified&order=asc&dates_are_gmt=true[&modified_after=…]`` from the sorted
    index (what a database index does for WooCommerce): the same answer as :func:`_collection`."""
    args = request.args
    try:
        per_page = int(args.get("per_page", DEFAULT_PER_PAGE))
        page = int(args.get("page", 1))
        bound = _wp_date(args["modified_after"]).strftime("%Y-%m-%dT%H:%M:%S") \
            if args.get("modified_after") else ""
    except ValueError:
        return _error("rest_invalid_param", "Invalid parameter(s).", 400)
    if not 1 <= per_page <= MAX_PER_PAGE or page < 1:
        return _error("rest_invalid_param", "Invalid parameter(s): per_page, page", 400)
    per_page = min(per_page, site.page_size_cap or per_page)
    rows = site.by_modified()
    start = bisect.bisect_right(rows, (bound, float("inf"))) if bound else 0
    items = [o for _, _, o in rows[start:] if o.get("status") != "trash"]
    total_pages = math.ceil(len(items) / per_page)
    response = jsonify(items[(page - 1) * per_page:page * per_page])
    response.headers["X-WP-Total"] = str(len(items))
    response.headers["X-WP-TotalPages"] = str(total_pages)
    if total_pages > page:
        response.headers["Link"] = f'<{_page_url(page + 1)}>; rel="next"'
    return response


def _wp_date(value: str) -> datetime:
    """A date WordPress accepts (``2024-05-02T08:30:00``, with or without an offset)."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed.replace(tzinfo=None) if parsed.tzinfo is None else \
        parsed.astimezone(timezone.utc).replace(tzinfo=None)


def _page_url(page: int) -> str:
    query = request.args.to_dict()
    query["page"] = str(page)
    return f"{request.base_url}?{urlencode(query)}"


def _error(code: str, message: str, status: int) -> tuple[Response, int]:
    return jsonify({"code": code, "message": message, "data": {"status": status}}), status


@contextmanager
def serve(site: FakeWooCommerce) -> Iterator[str]:
    """Run the imitation on 127.0.0.1 on a free port in a thread; yields its base URL (the site URL)."""
    server = make_server("127.0.0.1", 0, create_app(site), threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)
        server.server_close()


# -- fixtures in the documented REST API v3 shapes (the project's own values) --------------------


def make_order(order_id: int, *, status: str = "processing", customer_id: int = 0,
               total: str = "57.50", modified: str = "2024-05-02T08:30:00",
               refunds: list[dict[str, Any]] | None = None, **overrides: Any) -> dict[str, Any]:
    """An order as ``GET /orders/<id>`` returns it (trimmed to documented fields)."""
    order = {
        "id": order_id, "parent_id": 0, "number": str(order_id), "order_key": f"wc_order_t{order_id}",
        "created_via": "checkout", "version": "8.9.1", "status": status, "currency": "EUR",
        "date_created": "2024-05-02T10:15:00", "date_created_gmt": "2024-05-02T08:15:00",
        "date_modified": modified, "date_modified_gmt": modified,
        "discount_total": "0.00", "discount_tax": "0.00", "shipping_total": "7.50",
        "shipping_tax": "0.00", "cart_tax": "0.00", "total": total, "total_tax": "0.00",
        "prices_include_tax": True, "customer_id": customer_id, "customer_note": "",
        "billing": {"first_name": "Ana", "last_name": "Lima", "company": "", "address_1": "Rua 1",
                    "address_2": "", "city": "Porto", "state": "", "postcode": "4000-001",
                    "country": "PT", "email": "ana.lima@example.org", "phone": "+351 220 000 000"},
        "shipping": {"first_name": "Ana", "last_name": "Lima", "company": "", "address_1": "Rua 1",
                     "address_2": "", "city": "Porto", "state": "", "postcode": "4000-001",
                     "country": "PT"},
        "payment_method": "stripe", "payment_method_title": "Card", "transaction_id": "",
        "date_paid": "2024-05-02T10:16:00", "date_paid_gmt": "2024-05-02T08:16:00",
        "date_completed": None, "date_completed_gmt": None, "meta_data": [],
        "line_items": [
            {"id": order_id * 10 + 1, "name": "Linen Shirt &ndash; Blue", "product_id": 501,
             "variation_id": 502, "quantity": 2, "tax_class": "", "subtotal": "50.00",
             "subtotal_tax": "0.00", "total": "50.00", "total_tax": "0.00", "taxes": [],
             "meta_data": [], "sku": "LS-BLUE", "price": 25},
        ],
        "tax_lines": [], "shipping_lines": [], "fee_lines": [], "coupon_lines": [],
        "refunds": refunds or [],
    }
    order.update(overrides)
    return order


def make_customer(customer_id: int, *, role: str = "customer",
                  modified: str = "2024-04-01T12:00:00", **overrides: Any) -> dict[str, Any]:
    """A customer as ``GET /customers/<id>`` returns it."""
    customer = {
        "id": customer_id, "date_created": "2024-03-01T09:00:00",
        "date_created_gmt": "2024-03-01T09:00:00", "date_modified": modified,
        "date_modified_gmt": modified, "email": f"buyer{customer_id}@example.org",
        "first_name": "Rui", "last_name": "Costa", "role": role, "username": f"buyer{customer_id}",
        "billing": {"first_name": "Rui", "last_name": "Costa", "company": "", "address_1": "",
                    "address_2": "", "city": "", "state": "", "postcode": "", "country": "PT",
                    "email": f"buyer{customer_id}@example.org", "phone": "+351 910 000 000"},
        "shipping": {"first_name": "", "last_name": "", "company": "", "address_1": "",
                     "address_2": "", "city": "", "state": "", "postcode": "", "country": ""},
        "is_paying_customer": True, "avatar_url": "", "meta_data": [],
    }
    customer.update(overrides)
    return customer
