"""A loopback imitation of the WooCommerce REST API v3 orders and customers collections.

It speaks what the REST API docs document and the adapter relies on: ``GET /wp-json/wc/v3/orders``
and ``/customers`` with ``include``, ``page``, ``per_page`` (at most 100, default 10) and ``role``
(customers; default ``customer``); HTTP Basic auth with the consumer key and secret; ``X-WP-Total`` and
``X-WP-TotalPages`` headers; errors as ``{"code", "message", "data": {"status"}}``. Trashed orders are
not listed (the default ``status=any`` leaves them out). Tests fill ``orders``/``customers`` with
:func:`make_order`/:func:`make_customer`, may make the next N requests fail (429, 503), cap the page
size below ``per_page`` to force pagination, or delay answers to provoke read timeouts.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, jsonify, request
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
    #: answer this status to the next ``fail_times`` requests (429 or 503 in the tests)
    fail_status: int = 503
    fail_times: int = 0
    retry_after: str | None = None
    #: imitate a site whose plugins lower the page size below the requested per_page
    page_size_cap: int | None = None
    #: seconds to wait before answering (read-timeout tests)
    delay: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)

    def add_orders(self, *orders: dict[str, Any]) -> None:
        self.orders.update((order["id"], order) for order in orders)

    def add_customers(self, *customers: dict[str, Any]) -> None:
        self.customers.update((customer["id"], customer) for customer in customers)

    def fail_next(self, status: int, times: int, retry_after: str | None = None) -> None:
        self.fail_status, self.fail_times, self.retry_after = status, times, retry_after


def create_app(site: FakeWooCommerce) -> Flask:
    app = Flask(__name__)

    @app.before_request
    def _check() -> Response | tuple[Response, int] | None:
        site.requests.append({"path": request.path, "args": request.args.to_dict()})
        time.sleep(site.delay)
        if site.fail_times > 0:
            site.fail_times -= 1
            response = _error("woocommerce_test_failure", "Injected failure.", site.fail_status)
            if site.retry_after is not None:
                response[0].headers["Retry-After"] = site.retry_after
            return response
        auth = request.authorization
        if (auth is None or auth.type != "basic" or auth.username != site.consumer_key
                or auth.password != site.consumer_secret):
            return _error("woocommerce_rest_cannot_view", "Sorry, you cannot list resources.", 401)
        return None

    @app.get(f"{API}/orders")
    def list_orders() -> Response | tuple[Response, int]:
        orders = [o for o in site.orders.values() if o.get("status") != "trash"]
        return _collection(site, orders)

    @app.get(f"{API}/customers")
    def list_customers() -> Response | tuple[Response, int]:
        role = request.args.get("role", "customer")
        customers = [c for c in site.customers.values() if role == "all" or c.get("role") == role]
        return _collection(site, customers)

    return app


def _collection(site: FakeWooCommerce,
                items: list[dict[str, Any]]) -> Response | tuple[Response, int]:
    """Filter by ``include`` and paginate the way the WP REST API does."""
    try:
        per_page = int(request.args.get("per_page", DEFAULT_PER_PAGE))
        page = int(request.args.get("page", 1))
        include = {int(i) for i in request.args.get("include", "").split(",") if i.strip()}
    except ValueError:
        return _error("rest_invalid_param", "Invalid parameter(s).", 400)
    if not 1 <= per_page <= MAX_PER_PAGE or page < 1:
        return _error("rest_invalid_param", "Invalid parameter(s): per_page, page", 400)
    per_page = min(per_page, site.page_size_cap or per_page)
    if include:
        items = [item for item in items if item["id"] in include]
    items = sorted(items, key=lambda item: item["id"], reverse=True)
    total_pages = math.ceil(len(items) / per_page)
    response = jsonify(items[(page - 1) * per_page:page * per_page])
    response.headers["X-WP-Total"] = str(len(items))
    response.headers["X-WP-TotalPages"] = str(total_pages)
    return response


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
