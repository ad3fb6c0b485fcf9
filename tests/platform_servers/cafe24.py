"""A loopback imitation of the Cafe24 Admin API, for the adapter's fetch tests.

It speaks what Cafe24 documents for the two endpoints the adapter uses:

* ``GET /api/v2/admin/orders?order_id=a,b&embed=items,buyer&shop_no=1&limit=n`` → ``{"orders": [...]}``
  (unknown ids are simply absent; ``items``/``buyer`` appear only when embedded);
* ``GET /api/v2/admin/customersprivacy/{member_id}?shop_no=1`` → ``{"customersprivacy": {...}}``, 404
  for an unknown member;

and, for the widget injection, the ScriptTags resource (``GET``/``POST /api/v2/admin/scripttags``,
``PUT``/``DELETE /api/v2/admin/scripttags/{script_no}``, bodies ``{"shop_no", "request": {...}}``,
answers ``{"scripttags": [...]}`` / ``{"scripttag": {...}}``, tags scoped to the app's ``client_id``);

and, for an order action (Order > Orders cancellation, "Create an order cancellation"; Orders
exchange, "Create an order exchange"; Orders memos): ``POST /api/v2/admin/orders/{order_id}/
cancellation`` (``status`` canceled/canceling, unshipped items only), ``POST …/exchange``
(``status`` accepted/exchanged, ``same_product``, shipped items only), ``GET``/``POST …/memos``
(``content`` ≤ 1000 characters), and ``embed=cancellation,exchange`` on the order;

and, for a claim's settlement (Order > Orders return, "Create an order return"; Order > Orders,
"Retrieve an order"):

* ``GET /api/v2/admin/orders/{order_id}?shop_no=1&embed=items,return`` → ``{"order": {...}}`` with the
  order's return claims embedded as ``return`` (``claim_code``, ``claim_reason``, ``status``, ``items``,
  ``undone``…); 404 ``{"error": {...}}`` for an unknown order;
* ``POST /api/v2/admin/orders/{order_id}/return`` with ``{"shop_no", "request": {"status",
  "items": [{"order_item_code", "quantity"}], "recover_inventory", "reason", "claim_reason_type",
  "payment_gateway_cancel", ...}}`` → 201 ``{"return": {"shop_no", "order_id", "status", "claim_code",
  "pickup_completed", "items"}}``. Refused as Cafe24 does, with 404 for an unknown order and 422 for a
  ``status`` outside accepted/processing/returned, a ``reason`` over 2000 characters, no items, an
  unknown ``order_item_code``, a quantity above what is still unclaimed, or an item not shipped yet.
  A claim sets its items' ``order_status`` (R10 accepted, R30 processing, R40 returned) and
  ``claim_code``; a ``returned`` claim records the refund Cafe24 would make (``refunds``), and
  ``recover_inventory: "T"`` the restock (``restocked``).

with a bearer-token check (401 ``{"error": {...}}``), the ``X-Api-Call-Limit: used/max`` header of a
40-call bucket draining 2 calls a second (enforced with ``enforce_bucket``: 429 with
``X-Cafe24-Call-Usage`` over 100 and ``X-Cafe24-Call-Remain`` seconds), and scripted failures (429
with ``Retry-After``, 503) for the first N calls. Fixtures are built from the documented field lists,
not copied from samples.

And the order search the backfill uses ("Retrieve a list of orders", "Retrieve a count of
orders"): ``GET /api/v2/admin/orders`` and ``/orders/count`` by ``start_date``/``end_date`` (days,
KST, used together, less than 3 months apart) of a documented ``date_type`` (each order's dates by
type: :meth:`Cafe24ServerState.add_order`, :meth:`~Cafe24ServerState.set_date`), ``limit`` 1–1000
and ``offset`` up to 15,000, refused with 422 otherwise.

And the app's install (Admin API "Authentication"): ``GET /api/v2/oauth/authorize`` plays the mall
operator who approves (``302 {redirect_uri}?code&state``); ``POST /api/v2/oauth/token`` with HTTP
Basic ``client_id:client_secret`` exchanges a code once, within a minute, for the documented answer
(``access_token``, ``expires_at``, ``refresh_token``, ``refresh_token_expires_at``, ``client_id``,
``mall_id``, ``user_id``, ``scopes``, ``issued_at``, ``shop_no`` — times in KST without an offset),
and takes ``grant_type=refresh_token``, which issues a new pair and voids the old refresh token; an
access token past its lifetime is answered 401. ``GET``/``PUT /api/v2/admin/webhooks/setting``
reads and switches the mall's webhook reception (``reception_status`` T/F).
"""

from __future__ import annotations

import base64
import bisect
import math
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from urllib.parse import urlencode

from flask import Flask, g, jsonify, redirect, request
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
    #: return claims by order id (what ``embed=return`` shows), and the refunds and restocks they made
    returns: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    next_claim_no: int = 0
    refunds: list[dict[str, Any]] = field(default_factory=list)
    restocked: dict[str, int] = field(default_factory=dict)
    #: order actions: cancellation and exchange claims by order id (``embed=cancellation`` /
    #: ``embed=exchange``), and the orders' admin memos
    cancellations: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    exchanges: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    memos: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    next_memo_no: int = 0
    #: categories by number: {"category_name", "product_nos"} (display group 1, in display order)
    categories: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: OAuth: the app's secret, the mall, the codes issued (code → (time, redirect_uri)), the
    #: current refresh token, when the current access token expires (time.time; None: never)
    client_secret: str = "cafe24-test-client-secret"
    mall_id: str = "ccmsmall"
    codes: dict[str, tuple[float, str]] = field(default_factory=dict)
    refresh_token: str | None = None
    token_expires_at: float | None = None
    access_token_lifetime: int = 7200
    oauth_calls: list[dict[str, Any]] = field(default_factory=list)
    #: the mall's webhook reception (``reception_status``)
    webhook_reception: str = "F"
    #: refuse calls that overflow the bucket with 429 (as Cafe24 does); off keeps the header only
    enforce_bucket: bool = False
    #: 429s answered because the bucket was full
    throttled: int = 0
    #: the dates each order has per ``date_type`` (ISO 8601, KST): see :meth:`add_order`
    order_dates: dict[str, dict[str, str]] = field(default_factory=dict)
    #: the time the bucket drains by (a test shares a fake clock with the client)
    clock: Callable[[], float] = time.monotonic
    _drained_at: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _index: dict[tuple[str, int], list[tuple[date, str, str]]] = field(default_factory=dict)

    def _drain(self) -> None:
        now = self.clock()
        if self._drained_at is None:
            self._drained_at = now
        drained = (now - self._drained_at) * self.bucket_drain_per_second
        self.bucket_level = max(0.0, self.bucket_level - drained)
        self._drained_at = now

    def fill_bucket(self) -> int:
        """Drain the bucket for the time passed, add this call, return the calls in it."""
        with self._lock:
            self._drain()
            self.bucket_level += 1
            return min(self.bucket_max, math.ceil(self.bucket_level))

    def take_call(self) -> tuple[bool, int, float]:
        """Count one call if the bucket has room: ``(accepted, calls in the bucket, seconds until
        one call fits)``."""
        with self._lock:
            self._drain()
            if self.bucket_level + 1 > self.bucket_max:
                wait = (self.bucket_level + 1 - self.bucket_max) / self.bucket_drain_per_second
                return False, self.bucket_max, wait
            self.bucket_level += 1
            return True, min(self.bucket_max, math.ceil(self.bucket_level)), 0.0

    def set_date(self, order_id: str, date_type: str, value: str) -> None:
        """Give an order a date of ``date_type`` (a payment, a delivery…) after the fact."""
        self.order_dates.setdefault(order_id, {})[date_type] = value
        self._index.clear()

    def dated(self, date_type: str) -> list[tuple[date, str, str]]:
        """``(KST day, the date, order id)`` of every order with a ``date_type`` date, sorted."""
        key = (date_type, len(self.order_dates))
        if key not in self._index:
            self._index.clear()
            self._index[key] = sorted(
                (datetime.fromisoformat(dates[date_type]).astimezone(KST).date(),
                 dates[date_type], order_id)
                for order_id, dates in self.order_dates.items() if dates.get(date_type))
        return self._index[key]

    def add_order(self, order: dict[str, Any], **dates: str) -> None:
        """Serve ``order``; ``dates`` are its dates by ``date_type`` (``pay_date="2024-03-02T…"``)
        besides those its fields carry (``order_date``, ``payment_date``, ``cancel_date``)."""
        self.orders[order["order_id"]] = order
        known = {"order_date": order.get("order_date"), "pay_date": order.get("payment_date"),
                 "cancel_date": order.get("cancel_date")}
        self.order_dates[order["order_id"]] = {k: v for k, v in {**known, **dates}.items() if v}
        self._index.clear()


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
        if request.path.startswith("/api/v2/oauth/"):
            return None  # the OAuth endpoints check their own credentials
        state.calls.append({"method": request.method, "path": request.path,
                            "args": request.args.to_dict(), "headers": dict(request.headers),
                            "json": request.get_json(silent=True)})
        if state.delay:
            time.sleep(state.delay)
        if state.enforce_bucket:
            accepted, level, wait = state.take_call()
            g.call_level = level
            if not accepted:
                state.throttled += 1
                response, status = _error(429, "Too Many Requests")
                response.headers["X-Cafe24-Call-Usage"] = f"{100 + 100 * wait / 20:.2f}"
                response.headers["X-Cafe24-Call-Remain"] = str(math.ceil(wait))
                return response, status
        if request.headers.get("Authorization") != f"Bearer {state.access_token}":
            return _error(401, "Invalid access_token")
        if state.token_expires_at is not None and time.time() >= state.token_expires_at:
            return _error(401, "access_token time expired. (invalid_token)")
        if state.fail_times > 0:
            state.fail_times -= 1
            response, status = _error(state.fail_status, "scripted failure")
            if status == 429 and state.retry_after is not None:
                response.headers["Retry-After"] = state.retry_after
            return response, status
        return None

    @app.after_request
    def _call_limit(response: Any) -> Any:
        if request.path.startswith("/api/v2/oauth/"):
            return response
        level = g.get("call_level") if state.enforce_bucket else state.fill_bucket()
        if level is not None:
            response.headers["X-Api-Call-Limit"] = f"{level}/{state.bucket_max}"
            response.headers.setdefault("X-Cafe24-Call-Usage",
                                        f"{100 * level / state.bucket_max:.2f}")
        return response

    @app.get("/api/v2/admin/categories/<category_no>")
    def category(category_no: str) -> Any:
        found = state.categories.get(category_no)
        if found is None:
            return _error(404, "No API found for the category number.")
        return {"category": {"shop_no": int(request.args.get("shop_no", 1)),
                             "category_no": int(category_no), "category_depth": 1,
                             "parent_category_no": 1, "category_name": found["category_name"],
                             "display_type": "A", "use_display": "T"}}

    @app.get("/api/v2/admin/categories/<category_no>/products")
    def category_products(category_no: str) -> Any:
        """``display_group`` is required (1 the ordinary list, 2 recommended, 3 new); ``limit``
        up to 50,000."""
        if request.args.get("display_group") not in ("1", "2", "3"):
            return _error(422, "display_group is a required parameter.")
        limit = int(request.args.get("limit", 50000))
        if not 1 <= limit <= 50000:
            return _error(422, "limit must be between 1 and 50000.")
        found = state.categories.get(category_no)
        if found is None:
            return _error(404, "No API found for the category number.")
        nos = found["product_nos"] if request.args["display_group"] == "1" else []
        return {"products": [{"shop_no": 1, "product_no": int(no), "sequence_no": i + 1,
                              "auto_sort": False, "fixed_sort": False, "not_for_sale": "F",
                              "display_group": 1}
                             for i, no in enumerate(nos[:limit])]}

    @app.get("/api/v2/admin/orders")
    def orders() -> Any:
        ids = [i for i in request.args.get("order_id", "").split(",") if i]
        embed = set(request.args.get("embed", "").split(","))
        if not ids:
            found, problem = _search(state, request.args)
            if problem:
                return _error(422, problem)
            offset = int(request.args.get("offset", "0"))
            limit = int(request.args.get("limit", "10"))
            return jsonify({"orders": [_embedded(state, state.orders[order_id], embed)
                                       for order_id in found[offset:offset + limit]]})
        limit = int(request.args.get("limit", "10"))
        found = [_embedded(state, state.orders[order_id], embed) for order_id in ids
                 if order_id in state.orders]
        return jsonify({"orders": found[:limit]})

    @app.get("/api/v2/admin/orders/count")
    def orders_count() -> Any:
        found, problem = _search(state, request.args)
        if problem:
            return _error(422, problem)
        return jsonify({"count": len(found)})

    @app.get("/api/v2/admin/orders/<order_id>")
    def order(order_id: str) -> Any:
        if order_id not in state.orders:
            return _error(404, "No API found or the requested resource does not exist.")
        embed = set(request.args.get("embed", "").split(","))
        return jsonify({"order": _embedded(state, state.orders[order_id], embed)})

    @app.post("/api/v2/admin/orders/<order_id>/return")
    def create_return(order_id: str) -> Any:
        with state._lock:
            return _create_return(state, order_id, request.get_json(silent=True) or {})

    @app.post("/api/v2/admin/orders/<order_id>/cancellation")
    def create_cancellation(order_id: str) -> Any:
        with state._lock:
            return _create_cancellation(state, order_id, request.get_json(silent=True) or {})

    @app.post("/api/v2/admin/orders/<order_id>/exchange")
    def create_exchange(order_id: str) -> Any:
        with state._lock:
            return _create_exchange(state, order_id, request.get_json(silent=True) or {})

    @app.route("/api/v2/admin/orders/<order_id>/memos", methods=["GET", "POST"])
    def memos(order_id: str) -> Any:
        if order_id not in state.orders:
            return _error(404, "No API found or the requested resource does not exist.")
        if request.method == "GET":
            return jsonify({"memos": [dict(m) for m in state.memos.get(order_id, [])]})
        fields = (request.get_json(silent=True) or {}).get("request")
        content = fields.get("content") if isinstance(fields, dict) else None
        if not isinstance(content, str) or not content.strip():
            return _error(422, "content : 필수 항목입니다.")
        if len(content) > 1000:
            return _error(422, "content : 최대 1000자까지 입력 가능합니다.")
        with state._lock:
            state.next_memo_no += 1
            memo = {"shop_no": 1, "memo_no": state.next_memo_no, "order_id": order_id,
                    "created_date": datetime.now(KST).isoformat(timespec="seconds"),
                    "author_id": "app", "use_customer_inquiry": "F", "attach_type": "O",
                    "content": content, "starred_memo": "F", "fixed": "F", "product_list": []}
            state.memos.setdefault(order_id, []).append(memo)
        return jsonify({"memo": memo}), 201

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

    @app.route("/api/v2/admin/webhooks/setting", methods=["GET", "PUT"])
    def webhooks_setting() -> Any:
        if request.method == "PUT":
            fields = (request.get_json(silent=True) or {}).get("request")
            status = fields.get("reception_status") if isinstance(fields, dict) else None
            if status not in ("T", "F"):
                return _error(422, "reception_status : T, F 중 하나를 입력하세요.")
            state.webhook_reception = status
        return jsonify({"webhook": {"scopes": ["mall.read_order", "mall.read_customer"],
                                    "reception_status": state.webhook_reception}})

    # -- OAuth 2.0 ---------------------------------------------------------------------------------

    @app.get("/api/v2/oauth/authorize")
    def authorize() -> Any:
        args = request.args
        state.oauth_calls.append({"method": "GET", "path": request.path, "args": args.to_dict()})
        if args.get("response_type") != "code" or args.get("client_id") != state.client_id:
            return _oauth_error(400, "invalid_request", "response_type or client_id is invalid")
        redirect_uri, nonce = args.get("redirect_uri"), args.get("state")
        if not redirect_uri or not nonce or not args.get("scope"):
            return _oauth_error(400, "invalid_request", "redirect_uri, state and scope are required")
        code = secrets.token_urlsafe(16)
        with state._lock:
            state.codes[code] = (time.time(), redirect_uri)
        return redirect(f"{redirect_uri}?{urlencode({'code': code, 'state': nonce})}", 302)

    @app.post("/api/v2/oauth/token")
    def token() -> Any:
        form = request.form.to_dict()
        state.oauth_calls.append({"method": "POST", "path": request.path, "form": dict(form),
                                  "authorization": request.headers.get("Authorization")})
        expected = "Basic " + base64.b64encode(
            f"{state.client_id}:{state.client_secret}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return _oauth_error(401, "invalid_client", "client authentication failed")
        with state._lock:
            if form.get("grant_type") == "authorization_code":
                issued = state.codes.pop(form.get("code", ""), None)
                if (issued is None or time.time() - issued[0] > 60
                        or issued[1] != form.get("redirect_uri")):
                    return _oauth_error(400, "invalid_grant", "Validation error: code")
            elif form.get("grant_type") == "refresh_token":
                if not state.refresh_token or form.get("refresh_token") != state.refresh_token:
                    return _oauth_error(400, "invalid_grant", "Validation error: refresh_token")
            else:
                return _oauth_error(400, "unsupported_grant_type", "grant_type is invalid")
            return jsonify(_issue_tokens(state))

    return app


#: ``date_type`` values of "Retrieve a list of orders"
DATE_TYPES = frozenset({
    "order_date", "pay_date", "shipbegin_date", "shipend_date", "cancel_date", "place_date",
    "cancel_request_date", "cancel_accept_date", "cancel_complete_date", "exchange_request_date",
    "exchange_accept_date", "exchange_complete_date", "return_request_date", "return_accept_date",
    "return_complete_date", "purchaseconfirmation_date"})
MAX_LIMIT = 1000
MAX_OFFSET = 15000


def _add_months(day: date, months: int) -> date:
    month = day.month - 1 + months
    year, month = day.year + month // 12, month % 12 + 1
    last = [31, 29 if year % 4 == 0 and (year % 100 or year % 400 == 0) else 28, 31, 30, 31, 30,
            31, 31, 30, 31, 30, 31][month - 1]
    return date(year, month, min(day.day, last))


def _search(state: Cafe24ServerState, args: Any) -> tuple[list[str], str | None]:
    """The order ids a date search selects, in a stable order, or the 422 message."""
    date_type = args.get("date_type", "order_date")
    if date_type not in DATE_TYPES:
        return [], f"date_type : {date_type} 은(는) 유효하지 않은 값입니다."
    try:
        limit = int(args.get("limit", "10"))
        offset = int(args.get("offset", "0"))
    except ValueError:
        return [], "limit, offset : 숫자만 입력 가능합니다."
    if not 1 <= limit <= MAX_LIMIT:
        return [], f"limit : 최소 1 ~ 최대 {MAX_LIMIT} 까지 입력 가능합니다."
    if not 0 <= offset <= MAX_OFFSET:
        return [], f"offset : 최대 {MAX_OFFSET} 까지 입력 가능합니다."
    start_text, end_text = args.get("start_date"), args.get("end_date")
    if bool(start_text) != bool(end_text):
        return [], "start_date, end_date : 검색 시작일과 종료일은 같이 사용해야 합니다."
    if not start_text:
        return [], "start_date : 필수 항목입니다."
    try:
        start, end = date.fromisoformat(start_text[:10]), date.fromisoformat(end_text[:10])
    except ValueError:
        return [], "start_date, end_date : 날짜 형식(YYYY-MM-DD)이 아닙니다."
    if end < start:
        return [], "end_date : 검색 종료일이 시작일보다 빠릅니다."
    if end >= _add_months(start, 3):
        return [], "검색기간은 한 호출에 3개월 이상 검색 불가합니다."
    dated = state.dated(date_type)
    low = bisect.bisect_left(dated, (start,))
    high = bisect.bisect_left(dated, (end + timedelta(days=1),))
    return [order_id for _, _, order_id in dated[low:high]], None


def _oauth_error(status: int, error: str, description: str) -> Any:
    return jsonify({"error": error, "error_description": description}), status


def _kst(moment: datetime) -> str:
    """Cafe24's token times: KST, milliseconds, no offset."""
    return moment.astimezone(KST).replace(tzinfo=None).isoformat(timespec="milliseconds")


def _issue_tokens(state: Cafe24ServerState) -> dict[str, Any]:
    now = datetime.now(timezone.utc)
    state.access_token = secrets.token_urlsafe(16)
    state.refresh_token = secrets.token_urlsafe(16)
    state.token_expires_at = time.time() + state.access_token_lifetime
    return {"access_token": state.access_token,
            "expires_at": _kst(now + timedelta(seconds=state.access_token_lifetime)),
            "refresh_token": state.refresh_token,
            "refresh_token_expires_at": _kst(now + timedelta(days=14)),
            "client_id": state.client_id, "mall_id": state.mall_id, "user_id": state.mall_id,
            "scopes": ["mall.read_application", "mall.write_application", "mall.read_order"],
            "issued_at": _kst(now), "shop_no": "1", "token_type": "Bearer"}


def _embedded(state: Cafe24ServerState, stored: dict[str, Any], embed: set[str]) -> dict[str, Any]:
    """The order with only the sub-resources asked for in ``embed``."""
    order = dict(stored)
    for sub in ("items", "buyer"):
        if sub not in embed:
            order.pop(sub, None)
    if "return" in embed:
        order["return"] = [dict(claim) for claim in state.returns.get(order["order_id"], [])]
    if "cancellation" in embed:
        order["cancellation"] = [dict(c) for c in state.cancellations.get(order["order_id"], [])]
    if "exchange" in embed:
        order["exchange"] = [dict(c) for c in state.exchanges.get(order["order_id"], [])]
    return order


#: the item ``order_status`` a return claim in each status leaves
RETURN_ITEM_STATUS = {"accepted": "R10", "processing": "R30", "returned": "R40"}
UNSHIPPED = frozenset({"N00", "N01", "N02", "N03", "N10", "N20", "N21", "N22"})


def _create_return(state: Cafe24ServerState, order_id: str, body: dict[str, Any]) -> Any:
    order = state.orders.get(order_id)
    if order is None:
        return _error(404, "No API found or the requested resource does not exist.")
    fields = body.get("request")
    if not isinstance(fields, dict):
        return _error(400, "request is required")
    status = fields.get("status")
    if status not in RETURN_ITEM_STATUS:
        return _error(422, "status : accepted, processing, returned 중 하나를 입력하세요.")
    if len(str(fields.get("reason") or "")) > 2000:
        return _error(422, "reason : 최대 2000자까지 입력 가능합니다.")
    wanted = fields.get("items")
    if not isinstance(wanted, list) or not wanted:
        return _error(422, "items : 필수 항목입니다.")
    items = {item["order_item_code"]: item for item in order.get("items", [])}
    for entry in wanted:
        item = items.get(str((entry or {}).get("order_item_code")))
        if item is None:
            return _error(422, f"order_item_code : {entry.get('order_item_code')} 품주를 찾을 수 없습니다.")
        quantity = entry.get("quantity")
        unclaimed = int(item["quantity"]) - int(item.get("claim_quantity") or 0)
        if not isinstance(quantity, int) or quantity < 1 or quantity > unclaimed:
            return _error(422, f"quantity : 반품 가능 수량({unclaimed})을 초과했습니다.")
        if item["order_status"] in UNSHIPPED:
            return _error(422, "배송 전 품주는 반품할 수 없습니다. 취소로 처리하세요.")
    state.next_claim_no += 1
    claim_code = f"C{datetime.now(KST):%Y%m%d}-{state.next_claim_no:07d}"
    claimed = [{"order_item_code": str(e["order_item_code"]), "quantity": e["quantity"]}
               for e in wanted]
    refund = Decimal(0)
    for entry in claimed:
        item = items[entry["order_item_code"]]
        item["claim_quantity"] = int(item.get("claim_quantity") or 0) + entry["quantity"]
        item["order_status"] = RETURN_ITEM_STATUS[status]
        item["claim_code"] = claim_code
        unit = (Decimal(str(item["payment_amount"])) / int(item["quantity"])
                if item.get("payment_amount") not in (None, "")
                else Decimal(str(item["product_price"])) + Decimal(str(item.get("option_price") or 0)))
        refund += unit * entry["quantity"]
        if fields.get("recover_inventory") == "T":
            variant = str(item.get("variant_code"))
            state.restocked[variant] = state.restocked.get(variant, 0) + entry["quantity"]
    claim = {
        "shop_no": int(body.get("shop_no", 1)), "order_id": order_id, "claim_code": claim_code,
        "claim_reason_type": fields.get("claim_reason_type"), "claim_reason": fields.get("reason"),
        "status": status, "pickup_completed": fields.get("pickup_completed", "F"),
        "recover_inventory": fields.get("recover_inventory", "F"),
        "add_memo_too": fields.get("add_memo_too", "F"), "undone": "F", "items": claimed,
    }
    state.returns.setdefault(order_id, []).append(claim)
    if status == "returned":
        state.refunds.append({"order_id": order_id, "refund_code": claim_code,
                              "refund_amount": f"{refund:.2f}", "currency": order.get("currency"),
                              "payment_gateway_cancel": fields.get("payment_gateway_cancel", "F")})
    return jsonify({"return": {"shop_no": claim["shop_no"], "order_id": order_id, "status": status,
                               "claim_code": claim_code, "pickup_completed": claim["pickup_completed"],
                               "items": claimed}}), 201


#: the item ``order_status`` a cancellation / exchange claim in each status leaves
CANCELLATION_ITEM_STATUS = {"canceling": "C34", "canceled": "C40"}
EXCHANGE_ITEM_STATUS = {"accepted": "E10", "exchanged": "E40"}


def _claimed_items(order: dict[str, Any], wanted: Any, *, shipped: bool
                   ) -> tuple[list[dict[str, Any]] | None, Any]:
    """Cafe24's checks of a claim's ``items``: the claimed entries, or None and the 422."""
    if not isinstance(wanted, list) or not wanted:
        return None, _error(422, "items : 필수 항목입니다.")
    items = {item["order_item_code"]: item for item in order.get("items", [])}
    for entry in wanted:
        item = items.get(str((entry or {}).get("order_item_code")))
        if item is None:
            return None, _error(422, f"order_item_code : {entry.get('order_item_code')} 품주를 찾을 "
                                     "수 없습니다.")
        quantity = entry.get("quantity")
        unclaimed = int(item["quantity"]) - int(item.get("claim_quantity") or 0)
        if not isinstance(quantity, int) or quantity < 1 or quantity > unclaimed:
            return None, _error(422, f"quantity : 처리 가능 수량({unclaimed})을 초과했습니다.")
        if shipped and item["order_status"] in UNSHIPPED:
            return None, _error(422, "배송 전 품주는 교환할 수 없습니다.")
        if not shipped and item["order_status"] not in UNSHIPPED:
            return None, _error(422, "배송 후 품주는 취소할 수 없습니다. 반품으로 처리하세요.")
    return [{"order_item_code": str(e["order_item_code"]), "quantity": e["quantity"]}
            for e in wanted], None


def _create_cancellation(state: Cafe24ServerState, order_id: str, body: dict[str, Any]) -> Any:
    """Create an order cancellation: ``canceled`` completes it (with the refund, and the PG
    cancel when ``payment_gateway_cancel`` is T), ``canceling`` leaves it being processed."""
    order = state.orders.get(order_id)
    if order is None:
        return _error(404, "No API found or the requested resource does not exist.")
    fields = body.get("request")
    if not isinstance(fields, dict):
        return _error(400, "request is required")
    status = fields.get("status")
    if status not in CANCELLATION_ITEM_STATUS:
        return _error(422, "status : canceled, canceling 중 하나를 입력하세요.")
    if len(str(fields.get("reason") or "")) > 2000:
        return _error(422, "reason : 최대 2000자까지 입력 가능합니다.")
    claimed, problem = _claimed_items(order, fields.get("items"), shipped=False)
    if problem:
        return problem
    state.next_claim_no += 1
    claim_code = f"C{datetime.now(KST):%Y%m%d}-{state.next_claim_no:07d}"
    items = {item["order_item_code"]: item for item in order.get("items", [])}
    refund = Decimal(0)
    for entry in claimed:
        item = items[entry["order_item_code"]]
        item["claim_quantity"] = int(item.get("claim_quantity") or 0) + entry["quantity"]
        item["order_status"] = CANCELLATION_ITEM_STATUS[status]
        item["claim_code"] = claim_code
        refund += (Decimal(str(item["product_price"])) + Decimal(str(item.get("option_price") or 0))
                   ) * entry["quantity"]
        if fields.get("recover_inventory") == "T":
            variant = str(item.get("variant_code"))
            state.restocked[variant] = state.restocked.get(variant, 0) + entry["quantity"]
    if all(item["order_status"].startswith("C") for item in order.get("items", [])):
        order["canceled"] = "T"
        order["cancel_date"] = datetime.now(KST).isoformat(timespec="seconds")
    claim = {"shop_no": int(body.get("shop_no", 1)), "order_id": order_id,
             "claim_code": claim_code, "claim_reason_type": fields.get("claim_reason_type"),
             "claim_reason": fields.get("reason"), "status": status,
             "recover_inventory": fields.get("recover_inventory", "F"), "undone": "F",
             "items": claimed}
    state.cancellations.setdefault(order_id, []).append(claim)
    if status == "canceled":
        state.refunds.append({"order_id": order_id, "refund_code": claim_code,
                              "refund_amount": f"{refund:.2f}", "currency": order.get("currency"),
                              "payment_gateway_cancel": fields.get("payment_gateway_cancel", "F")})
    return jsonify({"cancellation": {"shop_no": claim["shop_no"], "order_id": order_id,
                                     "status": status, "claim_code": claim_code,
                                     "items": claimed}}), 201


def _create_exchange(state: Cafe24ServerState, order_id: str, body: dict[str, Any]) -> Any:
    """Create an order exchange of shipped items (``same_product`` T: the same items again)."""
    order = state.orders.get(order_id)
    if order is None:
        return _error(404, "No API found or the requested resource does not exist.")
    fields = body.get("request")
    if not isinstance(fields, dict):
        return _error(400, "request is required")
    status = fields.get("status")
    if status not in EXCHANGE_ITEM_STATUS:
        return _error(422, "status : accepted, exchanged 중 하나를 입력하세요.")
    if fields.get("same_product") not in ("T", "F"):
        return _error(422, "same_product : 필수 항목입니다.")
    claimed, problem = _claimed_items(order, fields.get("items"), shipped=True)
    if problem:
        return problem
    state.next_claim_no += 1
    claim_code = f"B{datetime.now(KST):%Y%m%d}-{state.next_claim_no:07d}"
    items = {item["order_item_code"]: item for item in order.get("items", [])}
    for entry in claimed:
        item = items[entry["order_item_code"]]
        item["claim_quantity"] = int(item.get("claim_quantity") or 0) + entry["quantity"]
        item["order_status"] = EXCHANGE_ITEM_STATUS[status]
        item["claim_code"] = claim_code
    claim = {"shop_no": int(body.get("shop_no", 1)), "order_id": order_id,
             "claim_code": claim_code, "status": status,
             "same_product": fields.get("same_product"), "undone": "F",
             "items": [dict(e, exchange_variant_code=None) for e in claimed]}
    state.exchanges.setdefault(order_id, []).append(claim)
    return jsonify({"exchange": {"shop_no": claim["shop_no"], "order_id": order_id,
                                 "status": status, "claim_code": claim_code,
                                 "items": claim["items"],
                                 "exchanged_items": [{"order_item_code": e["order_item_code"]}
                                                     for e in claimed]}}), 201


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
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)
        server.server_close()
