"""A loopback imitation of the Cafe24 Admin API, for the adapter's fetch tests.

It speaks what Cafe24 documents for the two endpoints the adapter uses:

* ``GET /api/v2/admin/orders?order_id=a,b&embed=items,buyer&shop_no=1&limit=n`` → ``{"orders": [...]}``
  (unknown ids are simply absent; ``items``/``buyer`` appear only when embedded);
* ``GET /api/v2/admin/customersprivacy/{member_id}?shop_no=1`` → ``{"customersprivacy": {...}}``, 404
  for an unknown member;

and, for the widget injection, the ScriptTags resource (``GET``/``POST /api/v2/admin/scripttags``,
``PUT``/``DELETE /api/v2/admin/scripttags/{script_no}``, bodies ``{"shop_no", "request": {...}}``,
answers ``{"scripttags": [...]}`` / ``{"scripttag": {...}}``, tags scoped to the app's ``client_id``);

with a bearer-token check (401 ``{"error": {...}}``), the ``X-Api-Call-Limit: used/max`` header of a
40-call bucket draining 2 calls a second, and scripted failures (429 with ``Retry-After``, 503) for
the first N calls. Fixtures are built from the documented field lists, not copied from samples.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from flask import Flask, jsonify, request
from werkzeug.serving import make_server

ACCESS_TOKEN = "cafe24-test-access-token"
KST = timezone(timedelta(hours=9))


@dataclass
class Cafe24ServerState:
    """What the server knows and how it misbehaves; tests fill and inspect it."""

    access_token: str = ACCESS_TOKEN
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: answer this status (429 or 5xx) to the next ``fail_times`` calls
    fail_status: int = 429
    fail_times: int = 0
    retry_after: str | None = "1"
    #: seconds to stall before answering (to provoke client timeouts)
    delay: float = 0.0
    bucket_max: int = 40
    bucket_level: float = 0.0
    bucket_drain_per_second: float = 2.0
    calls: list[dict[str, Any]] = field(default_factory=list)
    #: script tags by script_no, and the app (client_id) this server's token belongs to
    scripttags: dict[str, dict[str, Any]] = field(default_factory=dict)
    client_id: str = "AMj8UZhBC9zsyTlFGI6PzC"
    next_script_no: int = 1509432821494844
    _drained_at: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fill_bucket(self) -> int:
        """Drain the bucket for the time passed, add this call, return the calls in it."""
        with self._lock:
            now = time.monotonic()
            drained = (now - self._drained_at) * self.bucket_drain_per_second
            self.bucket_level = max(0.0, self.bucket_level - drained) + 1
            self._drained_at = now
            return min(self.bucket_max, math.ceil(self.bucket_level))


def make_order(order_id: str, *, items: list[dict[str, Any]] | None = None,
               **overrides: Any) -> dict[str, Any]:
    """An order as ``GET /api/v2/admin/orders?embed=items,buyer`` documents it (a useful subset)."""
    order: dict[str, Any] = {
        "shop_no": 1,
        "currency": "KRW",
        "order_id": order_id,
        "market_id": "self",
        "member_id": "hong123",
        "member_email": "hong@example.kr",
        "initial_order_amount": {"order_price_amount": "36000.00", "shipping_fee": "3000.00",
                                 "payment_amount": "39000.00"},
        "actual_order_amount": {"order_price_amount": "36000.00", "shipping_fee": "3000.00",
                                "payment_amount": "39000.00"},
        "billing_name": "홍길동",
        "payment_method": ["card"],
        "paid": "T",
        "canceled": "F",
        "order_date": "2024-03-02T10:15:00+09:00",
        "payment_date": "2024-03-02T10:16:30+09:00",
        "payment_amount": "39000.00",
        "cancel_date": None,
        "order_place_id": "cafe24",
        "shipping_type": "A",
        "shipping_status": "F",
        "wished_delivery_date": "",
        "return_confirmed_date": None,
        "items": items if items is not None else [
            make_item(order_id, 1, "N10"), make_item(order_id, 2, "N10", product_price="12000.00",
                                                     option_price="0.00", quantity=1)],
        "buyer": {"shop_no": 1, "member_id": "hong123", "member_group_no": 1, "name": "홍길동",
                  "email": "hong@example.kr", "phone": "02-123-4567", "cellphone": "010-1234-5678",
                  "updated_date": None, "order_id": order_id},
    }
    order.update(overrides)
    return order


def make_item(order_id: str, index: int, order_status: str, **overrides: Any) -> dict[str, Any]:
    """One ``items`` entry (a 품주) as documented under Orders items."""
    item: dict[str, Any] = {
        "shop_no": 1,
        "item_no": index,
        "order_item_code": f"{order_id}-{index:02d}",
        "variant_code": f"P0000BAA000{index}",
        "product_no": 10 + index,
        "product_code": f"P0000BA{index}",
        "custom_product_code": f"SKU-{index}",
        "custom_variant_code": "",
        "product_name": f"카페24 테스트 상품{index}",
        "option_value": "색상=빨강",
        "product_price": "10000.00",
        "option_price": "2000.00",
        "quantity": 2,
        "order_status": order_status,
        "status_code": "N1",
        "ordered_date": "2024-03-02T10:15:00+09:00",
        "shipped_date": None,
        "delivered_date": None,
    }
    item.update(overrides)
    return item


def make_customer(member_id: str, **overrides: Any) -> dict[str, Any]:
    """A member as ``GET /api/v2/admin/customersprivacy/{member_id}`` documents it (a subset)."""
    customer: dict[str, Any] = {
        "shop_no": 1,
        "member_id": member_id,
        "name": "김민지",
        "name_english": "Minji Kim",
        "phone": "02-000-0000",
        "cellphone": "010-9876-5432",
        "email": f"{member_id}@example.kr",
        "sms": "T",
        "news_mail": "F",
        "group_no": 1,
        "created_date": "2023-11-05T09:00:00+09:00",
        "member_authentication": "T",
        "last_login_date": "2024-03-01T20:00:00+09:00",
        "member_type": "p",
    }
    customer.update(overrides)
    return customer


def _error(status: int, message: str) -> tuple[Any, int]:
    return jsonify({"error": {"code": status, "message": message}}), status


def create_app(state: Cafe24ServerState) -> Flask:
    """The Flask app serving ``state``."""
    app = Flask(__name__)

    @app.before_request
    def _gate() -> Any:
        state.calls.append({"method": request.method, "path": request.path,
                            "args": request.args.to_dict(), "headers": dict(request.headers),
                            "json": request.get_json(silent=True)})
        if state.delay:
            time.sleep(state.delay)
        if request.headers.get("Authorization") != f"Bearer {state.access_token}":
            return _error(401, "Invalid access_token")
        if state.fail_times > 0:
            state.fail_times -= 1
            response, status = _error(state.fail_status, "scripted failure")
            if status == 429 and state.retry_after is not None:
                response.headers["Retry-After"] = state.retry_after
            return response, status
        return None

    @app.after_request
    def _call_limit(response: Any) -> Any:
        response.headers["X-Api-Call-Limit"] = f"{state.fill_bucket()}/{state.bucket_max}"
        return response

    @app.get("/api/v2/admin/orders")
    def orders() -> Any:
        ids = [i for i in request.args.get("order_id", "").split(",") if i]
        embed = set(request.args.get("embed", "").split(","))
        limit = int(request.args.get("limit", "10"))
        found = []
        for order_id in ids:
            if order_id in state.orders:
                order = dict(state.orders[order_id])
                for sub in ("items", "buyer"):
                    if sub not in embed:
                        order.pop(sub, None)
                found.append(order)
        return jsonify({"orders": found[:limit]})

    @app.get("/api/v2/admin/customersprivacy/<member_id>")
    def customer(member_id: str) -> Any:
        if member_id not in state.customers:
            return _error(404, "No customer found")
        return jsonify({"customersprivacy": state.customers[member_id]})

    @app.get("/api/v2/admin/scripttags")
    def scripttags() -> Any:
        shop_no = int(request.args.get("shop_no", "1"))
        return jsonify({"scripttags": [t for t in state.scripttags.values()
                                       if t["shop_no"] == shop_no and t["client_id"] == state.client_id]})

    @app.post("/api/v2/admin/scripttags")
    def create_scripttag() -> Any:
        body = request.get_json(silent=True) or {}
        fields = body.get("request")
        error = _scripttag_error(fields, creating=True)
        if error:
            return _error(422, error)
        now = datetime.now(KST).isoformat(timespec="seconds")
        state.next_script_no += 1
        tag = {"shop_no": int(body.get("shop_no", 1)), "script_no": str(state.next_script_no),
               "client_id": state.client_id, "src": fields["src"],
               "display_location": list(fields["display_location"]),
               "exclude_path": fields.get("exclude_path"), "skin_no": fields.get("skin_no"),
               "integrity": fields.get("integrity"), "created_date": now, "updated_date": now}
        state.scripttags[tag["script_no"]] = tag
        return jsonify({"scripttag": tag}), 201

    @app.route("/api/v2/admin/scripttags/<script_no>", methods=["GET", "PUT", "DELETE"])
    def scripttag(script_no: str) -> Any:
        tag = state.scripttags.get(script_no)
        if tag is None or tag["client_id"] != state.client_id:
            return _error(404, "No script found")
        if request.method == "GET":
            return jsonify({"scripttag": tag})
        if request.method == "DELETE":
            del state.scripttags[script_no]
            return jsonify({"scripttag": {"script_no": script_no}})
        fields = (request.get_json(silent=True) or {}).get("request")
        error = _scripttag_error(fields, creating=False)
        if error:
            return _error(422, error)
        tag.update({k: fields[k] for k in ("src", "display_location", "exclude_path", "skin_no",
                                           "integrity") if k in fields})
        tag["updated_date"] = datetime.now(KST).isoformat(timespec="seconds")
        return jsonify({"scripttag": tag})

    return app


def _scripttag_error(fields: Any, *, creating: bool) -> str | None:
    """Cafe24's checks: an absolute https ``src`` and a non-empty ``display_location`` list."""
    if not isinstance(fields, dict):
        return "request is required"
    if (creating or "src" in fields) and not str(fields.get("src", "")).startswith("https://"):
        return "src must be an absolute https URL"
    if creating or "display_location" in fields:
        locations = fields.get("display_location")
        if not isinstance(locations, list) or not locations:
            return "display_location is required"
    return None


@contextmanager
def running_server(state: Cafe24ServerState) -> Iterator[str]:
    """Serve ``state`` on 127.0.0.1 at a free port in a thread; yields the base URL."""
    server = make_server("127.0.0.1", 0, create_app(state), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)
        server.server_close()
