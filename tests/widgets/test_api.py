"""The public widget API (docs/widget-api.md) on the real store, the real Redis (rate limits and
the notification queue) and a real SMTP server on loopback."""

from __future__ import annotations

import itertools
import json
import statistics
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from urllib.parse import urlsplit

import pytest
import redis as redis_lib
from redis.backoff import NoBackoff
from redis.retry import Retry
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st
from sqlalchemy import select, update

from ccms_addon import hookimpl
from ccms_addon.app import create_app
from ccms_addon.jobs.notify import sweep_unnotified
from ccms_addon.platforms import (CustomerRecord, FinancialStatus, FulfillmentStatus,
                                  OrderLineRecord, OrderRecord)
from ccms_addon.runtime import build_runtime
from ccms_addon.store import repository
from ccms_addon.voc.business_hours import BusinessHours
from ccms_addon.store.models import (Merchant, OutboundMessage, OutboundStatus, Shop, ShopStatus,
                                     VocChannel, VocEvent, VocItem, VocStatus, utcnow)
from ccms_addon.widgets import ratelimit
from ccms_addon.widgets.assets import STATIC
from ccms_addon.widgets.schemas import SHOPPER_KINDS
from ccms_addon.widgets.shops import SHOPS_EXTENSION, platform_origins
from ccms_addon.widgets.tokens import form_token, form_token_problem
from ccms_addon.widgets.views import MAX_WRITE_BODY
from tests.jobs.test_notify import MERCHANT_EMAIL, run_worker, settings  # noqa: F401
from tests.loopback import free_port

DOMAIN = "acme.myshopify.com"
ORIGIN = f"https://{DOMAIN}"
CUSTOM_ORIGIN = "https://www.acme-shop.com"
WIDGET_SETTINGS = {
    "categories": [{"key": "delivery", "labels": {"en": "Delivery", "ko": "배송"}},
                   {"key": "product", "labels": {"en": "Product"}}],
    "consent_text": {"en": "I agree that the shop keeps my message to answer it."},
    "storefront_origins": [CUSTOM_ORIGIN],
    "ack_promise_hours": 12,
    "phone": "+82 2-1234-5678",
    "email": "help@acme.test",
    "links": [{"label": "Instagram", "url": "https://instagram.com/acme"}],
    "hours": {"timezone": "Asia/Seoul", "weekly": {"mon": [["09:00", "18:00"]]},
              "holidays": ["2026-01-01"]},
}
CONFIG_KEYS = {"shop", "position", "offset_bottom", "color", "text_color", "top_bar", "contact",
               "hours", "ack_promise_hours", "consent_text", "categories", "programs",
               "strings_url"}
_ips = itertools.count(1)


def fresh_ip() -> str:
    n = next(_ips)
    return f"10.{n // 65025 % 250}.{n // 255 % 255}.{n % 255 + 1}"


class Widget:
    """A shopper's browser on the shop's storefront (a new IP per call unless one is given)."""

    def __init__(self, client, shop, secret):
        self.client, self.shop, self.secret = client, shop, secret
        self.base = f"/widget/v1/{shop.widget_key}"

    def token(self, age: float = 10, shop_id: int | None = None) -> str:
        return form_token(self.secret, shop_id or self.shop.id, issued_at=time.time() - age)

    def get(self, path, *, origin=ORIGIN, ip=None, headers=None):
        headers = {**({"Origin": origin} if origin else {}), **(headers or {})}
        return self.client.get(f"{self.base}/{path}", headers=headers,
                               environ_base={"REMOTE_ADDR": ip or fresh_ip()})

    def post(self, path, body=None, *, raw=None, origin=ORIGIN, ip=None, headers=None,
             widget_header=True, content_type="application/json"):
        headers = {**({"Origin": origin} if origin else {}),
                   **({"X-CCMS-Widget": "1"} if widget_header else {}), **(headers or {})}
        data = raw if raw is not None else json.dumps(body)
        return self.client.post(f"{self.base}/{path}", data=data, headers=headers,
                                content_type=content_type,
                                environ_base={"REMOTE_ADDR": ip or fresh_ip()})

    def voc(self, origin=ORIGIN, **fields):
        body = {"kind": "complaint", "message": "My parcel never arrived.",
                "email": "Shopper@Example.com", "consent": True, "token": self.token(), **fields}
        return self.post("voc", {k: v for k, v in body.items() if v is not ...}, origin=origin)


@pytest.fixture
def widget_app(app):
    return app


@pytest.fixture
def shop(make_shop):
    return make_shop("shopify", DOMAIN, name="Acme", settings={"widget": WIDGET_SETTINGS},
                     merchant=Merchant(name="Acme", email=MERCHANT_EMAIL)).shop


@pytest.fixture
def widget(widget_app, shop):
    return Widget(widget_app.test_client(), shop, widget_app.config["SECRET_KEY"])


@pytest.fixture
def orders(runtime, shop):
    placed = datetime(2026, 3, 1, 9, 30, tzinfo=timezone.utc)
    records = [
        OrderRecord(platform_order_id="5001", number="#1001", currency="KRW",
                    total=Decimal("15000.0000"), updated_at=placed, placed_at=placed,
                    financial_status=FinancialStatus.PAID,
                    fulfillment_status=FulfillmentStatus.FULFILLED,
                    email="Buyer@Example.com", phone="010-1234-5678", customer_name="Kim Buyer",
                    customer=CustomerRecord("c1", email="buyer@example.com", name="Kim Buyer"),
                    lines=(OrderLineRecord("l1", "Green tea", 2, Decimal("5000")),
                           OrderLineRecord("l2", "Tea cup", 1, Decimal("5000")))),
        OrderRecord(platform_order_id="5002", number="#1002", currency="USD",
                    total=Decimal("404.9500"), updated_at=placed, placed_at=placed,
                    email="other@example.com"),
    ]
    with runtime.db.session() as session:
        repository.upsert_orders(session, shop.id, records)


def items(runtime) -> list[VocItem]:
    with runtime.db.session() as s:
        return s.scalars(select(VocItem).order_by(VocItem.id)).all()


def error(response) -> dict:
    assert response.mimetype == "application/json"
    return response.get_json()["error"]


# --------------------------------------------------------------------------------------------------
# config and token
# --------------------------------------------------------------------------------------------------


def test_config_shape_etag_and_caching(widget, shop):
    response = widget.get("config")
    assert response.status_code == 200 and response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == CONFIG_KEYS
    assert body["shop"] == {"name": "Acme", "default_locale": "en"}
    assert set(body["contact"]) == {"phone", "email", "kakao_channel_url", "chat_url", "links"}
    assert body["contact"]["links"] == [{"label": "Instagram", "url": "https://instagram.com/acme"}]
    assert body["hours"] == {"timezone": "Asia/Seoul", "weekly": {"mon": [["09:00", "18:00"]]},
                             "holidays": ["2026-01-01"]}
    assert body["ack_promise_hours"] == 12 and body["categories"][0]["key"] == "delivery"
    assert "storefront_origins" not in json.dumps(body)
    strings = urlsplit(body["strings_url"])
    assert strings.path.startswith("/widget/v1/assets/en.") and strings.path.endswith(".json")
    if (STATIC / "manifest.json").exists():  # the built assets serve it
        assert widget.client.get(strings.path).status_code == 200
    etag = response.headers["ETag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    assert response.headers["Cache-Control"] == "public, max-age=300"
    assert "Origin" in response.headers["Vary"]
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN

    again = widget.get("config", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""
    assert again.headers["ETag"] == etag and again.headers["Cache-Control"] == "public, max-age=300"
    assert widget.get("config", headers={"If-None-Match": '"other"'}).status_code == 200


def test_config_etag_follows_the_content(widget, widget_app, runtime, shop):
    etag = widget.get("config").headers["ETag"]
    with runtime.db.session() as s:
        s.get(Shop, shop.id).settings = {"widget": {**WIDGET_SETTINGS, "top_bar": True}}
    widget_app.extensions[SHOPS_EXTENSION].forget(shop.widget_key)
    response = widget.get("config", headers={"If-None-Match": etag})
    assert response.status_code == 200 and response.get_json()["top_bar"] is True
    assert response.headers["ETag"] != etag


def test_config_defaults_to_the_shops_locale_and_time_zone(widget_app, make_shop, runtime):
    cafe24 = make_shop("cafe24", "teashop").shop
    with runtime.db.session() as s:
        row = s.get(Shop, cafe24.id)
        row.locale, row.timezone = "ko_KR", "Asia/Seoul"
    body = Widget(widget_app.test_client(), cafe24, "x").get("config", origin=None).get_json()
    assert body["shop"]["default_locale"] == "ko" and body["hours"]["timezone"] == "Asia/Seoul"
    assert body["consent_text"] == {} and body["categories"] == []


def test_token_endpoint(widget, shop, widget_app):
    response = widget.get("token")
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    token = response.get_json()["token"]
    secret = widget_app.config["SECRET_KEY"]
    assert form_token_problem(secret, shop.id, token).startswith("Sent too quickly")
    assert form_token_problem(secret, shop.id + 1, token) is not None


def test_unknown_or_uninstalled_widget_key_is_404(widget, widget_app, runtime, shop):
    for path in ("config", "token"):
        response = widget.client.get(f"/widget/v1/wk_nosuchkey/{path}")
        assert response.status_code == 404 and error(response)["code"] == "unknown_widget"
    response = widget.client.post("/widget/v1/wk_nosuchkey/voc", json={},
                                  headers={"X-CCMS-Widget": "1"})
    assert response.status_code == 404
    assert widget.get("config").status_code == 200
    with runtime.db.session() as s:
        s.get(Shop, shop.id).status = ShopStatus.UNINSTALLED
    widget_app.extensions[SHOPS_EXTENSION].forget()
    assert widget.get("config").status_code == 404
    assert widget.voc().status_code == 404 and items(runtime) == []


# --------------------------------------------------------------------------------------------------
# CORS, the custom header, size and type
# --------------------------------------------------------------------------------------------------


def test_platform_default_origins():
    assert platform_origins("shopify", "acme.myshopify.com") == {"https://acme.myshopify.com"}
    assert platform_origins("cafe24", "teashop") == {
        "https://teashop.cafe24.com", "https://teashop.cafe24shop.com",
        "https://m.teashop.cafe24.com"}
    assert platform_origins("woocommerce", "https://Woo.Example.com/shop") == {
        "https://woo.example.com"}
    assert platform_origins("woocommerce", "http://localhost:8080") == {"http://localhost:8080"}
    assert platform_origins("magento", "x") == set()


@pytest.mark.parametrize("platform, domain, origin", [
    ("shopify", DOMAIN, ORIGIN),
    ("shopify", DOMAIN, CUSTOM_ORIGIN),
    ("cafe24", "teashop", "https://teashop.cafe24.com"),
    ("cafe24", "teashop", "https://teashop.cafe24shop.com"),
    ("woocommerce", "https://woo.example.com/shop", "https://woo.example.com"),
])
def test_storefront_origins_are_allowed(widget_app, make_shop, runtime, platform, domain, origin):
    shop = make_shop(platform, domain, settings={"widget": {"storefront_origins": [CUSTOM_ORIGIN]}})
    w = Widget(widget_app.test_client(), shop.shop, widget_app.config["SECRET_KEY"])
    response = w.get("config", origin=origin)
    assert response.headers["Access-Control-Allow-Origin"] == origin
    assert "ETag" in response.headers["Access-Control-Expose-Headers"]
    assert w.voc(consent=..., origin=origin).status_code == 201  # no consent text on this shop


@pytest.mark.parametrize("origin", ["https://evil.example", "http://acme.myshopify.com",
                                   "https://acme.myshopify.com.evil.example", "null"])
def test_other_origins_get_no_cors_and_cannot_write(widget, runtime, origin):
    response = widget.get("config", origin=origin)
    assert response.status_code == 200 and "Access-Control-Allow-Origin" not in response.headers
    assert "Origin" in response.headers["Vary"]
    response = widget.post("voc", {"kind": "complaint"}, origin=origin)
    assert response.status_code == 403 and error(response)["code"] == "origin_not_allowed"
    assert "Access-Control-Allow-Origin" not in response.headers
    assert items(runtime) == []


def test_preflight(widget):
    headers = {"Access-Control-Request-Method": "POST",
               "Access-Control-Request-Headers": "content-type, x-ccms-widget"}
    response = widget.client.options(f"{widget.base}/voc", headers={"Origin": ORIGIN, **headers})
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert set(response.headers["Access-Control-Allow-Methods"].replace(" ", "").split(",")) == {
        "GET", "POST"}
    assert response.headers["Access-Control-Allow-Headers"] == "Content-Type, X-CCMS-Widget"
    assert response.headers["Access-Control-Max-Age"] == "600"
    assert "Origin" in response.headers["Vary"]
    for path in ("orders/lookup", "requests/lookup", "config"):
        response = widget.client.options(f"{widget.base}/{path}",
                                         headers={"Origin": CUSTOM_ORIGIN, **headers})
        assert response.status_code == 204

    denied = widget.client.options(f"{widget.base}/voc",
                                   headers={"Origin": "https://evil.example", **headers})
    assert denied.status_code == 403 and "Access-Control-Allow-Origin" not in denied.headers
    for bad in ({"Access-Control-Request-Method": "PUT"},
                {"Access-Control-Request-Headers": "content-type, authorization"}):
        response = widget.client.options(f"{widget.base}/voc",
                                         headers={"Origin": ORIGIN, **headers, **bad})
        assert response.status_code == 403 and error(response)["code"] == "preflight_refused"


def test_writes_need_the_widget_header(widget, runtime):
    response = widget.post("voc", {"kind": "complaint"}, widget_header=False)
    assert response.status_code == 400 and error(response)["code"] == "widget_header_required"
    response = widget.post("voc", {}, headers={"X-CCMS-Widget": "yes"})
    assert response.status_code == 400
    assert items(runtime) == []


def test_writes_need_json(widget, runtime):
    response = widget.post("voc", raw="kind=complaint&message=hi",
                           content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415 and error(response)["code"] == "unsupported_media_type"
    response = widget.post("voc", raw="{not json")
    assert response.status_code == 400 and error(response)["code"] == "invalid_json"
    deep = "[" * 8000 + "]" * 8000  # under 16 KB, deeper than the parser's recursion
    response = widget.post("voc", raw=deep)
    assert response.status_code == 400 and error(response)["code"] == "invalid_json"


def test_bodies_over_16_kb_are_413_but_webhooks_keep_1_mib(widget, widget_app, runtime):
    response = widget.voc(message="x" * (MAX_WRITE_BODY + 1))
    assert response.status_code == 413 and error(response)["code"] == "body_too_large"
    for path in ("orders/lookup", "requests/lookup"):
        assert widget.post(path, {"contact": "x" * MAX_WRITE_BODY}).status_code == 413
    assert items(runtime) == []
    assert widget_app.config["MAX_CONTENT_LENGTH"] == 1024 * 1024
    webhook = widget.client.post("/webhooks/shopify", data=b"{" + b" " * 200_000 + b"}",
                                 content_type="application/json")
    assert webhook.status_code != 413


# --------------------------------------------------------------------------------------------------
# Validation, honeypot, form token
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fields, bad", [
    ({"kind": "refund"}, {"kind"}),
    ({"kind": 5}, {"kind"}),
    ({"kind": ...}, {"kind"}),
    ({"message": ""}, {"message"}),
    ({"message": "   \n "}, {"message"}),
    ({"message": "x" * 5001}, {"message"}),
    ({"message": ["a"]}, {"message"}),
    ({"message": "nul \x00 inside"}, {"message"}),
    ({"message": ...}, {"message"}),
    ({"category": "nope"}, {"category"}),
    ({"email": "not-an-email"}, {"email"}),
    ({"phone": "call me", "email": ...}, {"phone"}),
    ({"phone": "12", "email": ...}, {"phone"}),
    ({"email": ..., "phone": ...}, {"email", "phone"}),
    ({"email": "", "phone": ""}, {"email", "phone"}),
    ({"locale": "fr"}, {"locale"}),
    ({"consent": False}, {"consent"}),
    ({"consent": ...}, {"consent"}),
    ({"consent": "yes"}, {"consent"}),
    ({"order_number": "1" * 65}, {"order_number"}),
    ({"name": "n" * 201}, {"name"}),
    ({"token": ...}, {"token"}),
    ({"token": 12}, {"token"}),
    ({"admin": True}, {"admin"}),
])
def test_invalid_fields_are_422_with_field_errors(widget, runtime, fields, bad):
    response = widget.voc(**fields)
    assert response.status_code == 422, response.get_json()
    err = error(response)
    assert err["code"] == "validation_error" and set(err["fields"]["json"]) == bad
    assert items(runtime) == []


def test_lone_surrogates_are_422(widget, runtime):
    body = json.dumps({"kind": "complaint", "message": "x", "email": "a@b.co", "consent": True,
                       "token": widget.token()}).replace('"x"', '"\\ud800"')
    response = widget.post("voc", raw=body)
    assert response.status_code == 422 and set(error(response)["fields"]["json"]) == {"message"}


@pytest.mark.parametrize("body, bad", [
    ({"order_number": "", "contact": "a@b.co"}, {"order_number"}),
    ({"order_number": "1001"}, {"contact"}),
    ({"order_number": "1001", "contact": "a@b.co", "token": "t"}, {"token"}),
    ({"order_number": "9" * 65, "contact": "a@b.co"}, {"order_number"}),
])
def test_order_lookup_field_errors(widget, body, bad):
    response = widget.post("orders/lookup", body)
    assert response.status_code == 422 and set(error(response)["fields"]["json"]) == bad


def test_requests_lookup_field_errors(widget):
    response = widget.post("requests/lookup", {"reference": "", "contact": "ab"})
    assert response.status_code == 422
    assert set(error(response)["fields"]["json"]) == {"reference", "contact"}


def test_a_filled_honeypot_is_rejected_without_detail(widget, runtime):
    response = widget.voc(website="http://spam.example")
    assert response.status_code == 400
    assert error(response) == {"code": "rejected", "message": "The submission was rejected."}
    assert widget.voc(website=["x"]).status_code == 400
    assert items(runtime) == []
    assert widget.voc(website="").status_code == 201
    assert widget.voc(website=None).status_code == 201


@pytest.mark.parametrize("case", ["too_young", "expired", "other_shop", "garbage", "wrong_secret"])
def test_bad_form_tokens_are_422_on_token(widget, runtime, case):
    token = {"too_young": widget.token(age=0.5),
             "expired": widget.token(age=25 * 3600),
             "other_shop": widget.token(shop_id=widget.shop.id + 1000),
             "garbage": "not.a.token",
             "wrong_secret": form_token("another-secret", widget.shop.id,
                                        issued_at=time.time() - 10)}[case]
    response = widget.voc(token=token)
    assert response.status_code == 422
    assert set(error(response)["fields"]["json"]) == {"token"}
    assert items(runtime) == []


# --------------------------------------------------------------------------------------------------
# Rate limits
# --------------------------------------------------------------------------------------------------


def test_writes_are_limited_per_ip(widget):
    for _ in range(10):
        assert widget.post("voc", {}, ip="192.0.2.7").status_code == 422
    response = widget.post("voc", {}, ip="192.0.2.7")
    assert response.status_code == 429
    assert error(response)["code"] == "rate_limited"
    assert 1 <= int(response.headers["Retry-After"]) <= 61
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN  # the widget can read it
    assert widget.post("voc", {}, ip="192.0.2.8").status_code == 422  # another shopper


def test_lookups_are_limited_per_ip(widget):
    for _ in range(20):
        assert widget.post("orders/lookup", {"order_number": "1", "contact": "a@b.co"},
                           ip="192.0.2.9").status_code == 404
    response = widget.post("orders/lookup", {"order_number": "1", "contact": "a@b.co"},
                           ip="192.0.2.9")
    assert response.status_code == 429 and "Retry-After" in response.headers


def test_writes_are_limited_per_shop(runtime, shop, make_shop):
    app = create_app(runtime=runtime, widget_limits={
        "widgets.submit_voc": [("100/minute", ratelimit.PER_IP), ("3/minute", ratelimit.PER_SHOP)]})
    widget = Widget(app.test_client(), shop, app.config["SECRET_KEY"])
    assert [widget.post("voc", {}).status_code for _ in range(4)] == [422, 422, 422, 429]
    other = Widget(app.test_client(), make_shop("shopify", "b.myshopify.com").shop, "x")
    assert other.post("voc", {}, origin=None).status_code == 422


def test_rate_limiting_survives_a_redis_outage(settings, runtime, shop):
    """Redis down: the limiter falls back to process memory, the complaint is stored, the
    notification is left to the sweep."""
    dead = redis_lib.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.2,
                           retry=Retry(NoBackoff(), 0))
    rt = build_runtime(settings, redis_connection=dead)
    app = create_app(runtime=rt)
    widget = Widget(app.test_client(), shop, app.config["SECRET_KEY"])
    response = widget.voc()
    assert response.status_code == 201
    [item] = items(runtime)
    assert item.reference == response.get_json()["reference"]
    rt.close()
    with runtime.db.engine.begin() as conn:
        conn.execute(update(VocItem).values(created_at=utcnow() - timedelta(minutes=5)))
    assert sweep_unnotified(runtime) == 1


def test_a_refused_request_counts_under_no_limit(runtime, shop, redis_conn):
    """All of a request's rules are checked at once: the 429 of one rule leaves the others'
    counters alone (a shopper refused per IP does not use up the shop's allowance)."""
    app = create_app(runtime=runtime, widget_limits={
        "widgets.lookup_order": [("2/minute", ratelimit.PER_IP), ("3/minute", ratelimit.PER_SHOP)]})
    widget = Widget(app.test_client(), shop, app.config["SECRET_KEY"])
    body = {"order_number": "1", "contact": "a@b.co"}
    statuses = [widget.post("orders/lookup", body, ip="192.0.2.20").status_code for _ in range(4)]
    assert statuses == [404, 404, 429, 429]
    assert widget.post("orders/lookup", body, ip="192.0.2.21").status_code == 404  # shop: 3rd
    refused = widget.post("orders/lookup", body, ip="192.0.2.22")
    assert refused.status_code == 429  # the shop's 3/minute is used up
    assert 1 <= int(refused.headers["Retry-After"]) <= 60


def test_several_windows_of_one_ip_share_one_counter(runtime, shop, redis_conn):
    app = create_app(runtime=runtime, widget_limits={
        "widgets.lookup_order": [("3/hour;2/minute", ratelimit.PER_IP)]})
    widget = Widget(app.test_client(), shop, app.config["SECRET_KEY"])
    body = {"order_number": "1", "contact": "a@b.co"}
    assert [widget.post("orders/lookup", body, ip="192.0.2.30").status_code
            for _ in range(3)] == [404, 404, 429]
    retry_after = int(widget.post("orders/lookup", body, ip="192.0.2.30").headers["Retry-After"])
    assert 1 <= retry_after <= 60  # the minute window blocks, not the hour's
    limiter = app.extensions[ratelimit.EXTENSION]
    keys = [k.decode() for k in redis_conn.keys(f"{limiter.prefix}*")]
    assert keys == [f"{limiter.prefix}widgets.lookup_order:ip:192.0.2.30"]
    assert redis_conn.llen(keys[0]) == 2 and 3500 < redis_conn.pttl(keys[0]) / 1000 <= 3600


def test_config_is_not_rate_limited_and_touches_no_redis(widget, widget_app, redis_conn):
    for _ in range(30):
        assert widget.get("config", ip="192.0.2.40").status_code == 200
    prefix = widget_app.extensions[ratelimit.EXTENSION].prefix
    assert redis_conn.keys(f"{prefix}*") == []


@pytest.mark.parametrize("value, expected", [
    ("20/minute;200/day", [(20, 60), (200, 86400)]),
    ("5 per 2 hours", [(5, 7200)]),
    ("1/second, 10/hour", [(1, 1), (10, 3600)]),
])
def test_limit_notation(value, expected):
    assert [(r.amount, r.seconds) for r in ratelimit.parse_limits(value, ratelimit.PER_IP)] \
        == expected


@pytest.mark.parametrize("value", ["", "0/minute", "ten/minute", "5/fortnight"])
def test_limit_notation_errors(value):
    with pytest.raises(ValueError):
        rules = ratelimit.parse_limits(value, ratelimit.PER_IP)
        if not rules:
            raise ValueError("no rule")


# --------------------------------------------------------------------------------------------------
# A complaint end to end
# --------------------------------------------------------------------------------------------------


class Listener:
    def __init__(self):
        self.calls = []

    @hookimpl
    def voc_item_created(self, shop_id, voc_item_id, kind, channel):
        self.calls.append((shop_id, voc_item_id, kind, channel))


def test_a_complaint_becomes_a_voc_item_and_one_email(widget, runtime, shop, orders, smtp_server):
    listener = Listener()
    runtime.pm.register(listener)
    before = utcnow()
    response = widget.voc(order_number="1001", category="delivery", locale="ko",
                          name="Kim", phone="010 1234 5678")
    assert response.status_code == 201
    body = response.get_json()
    assert set(body) == {"reference", "status", "ack_due_at", "ack_promise_hours"}
    assert body["reference"].startswith(f"VOC-{before.year}-") and body["status"] == "received"
    assert body["ack_promise_hours"] == 12
    ack_due_at = datetime.fromisoformat(body["ack_due_at"])

    [item] = items(runtime)
    # 12 business hours of a shop open on Mondays 09:00–18:00 in Seoul
    clock = BusinessHours.from_settings(WIDGET_SETTINGS["hours"])
    assert ack_due_at == clock.add(item.created_at, 12)
    assert clock.between(item.created_at, ack_due_at) == timedelta(hours=12)
    assert (item.channel, item.kind, item.status) == (VocChannel.WIDGET, "complaint",
                                                      VocStatus.RECEIVED)
    assert item.reference == body["reference"] and item.category == "delivery"
    assert item.locale == "ko" and item.contact_name == "Kim"
    assert item.contact_email == "Shopper@Example.com" and item.contact_phone == "010 1234 5678"
    assert item.acknowledge_due_at == ack_due_at
    assert item.order_id is not None  # phone matched the order's, digits only
    with runtime.db.session() as s:
        [event] = s.scalars(select(VocEvent).where(VocEvent.voc_item_id == item.id)).all()
    assert event.type == "received" and event.actor == "shopper"
    assert event.data == {"channel": "widget", "order_number": "1001"}
    assert listener.calls == [(shop.id, item.id, "complaint", "widget")]

    run_worker(runtime)
    run_worker(runtime)
    # the merchant hears of it once, and the shopper gets the acknowledgement once
    recipients = [envelope.rcpt_tos[0] for envelope, _ in smtp_server.messages]
    assert len(recipients) == len(set(recipients)) == 2
    with runtime.db.session() as s:
        sent = {m.idempotency_key.split(":")[0]: m for m in s.scalars(select(OutboundMessage))}
    assert set(sent) == {"voc-created", "voc-ack"}
    assert all(m.status is OutboundStatus.SENT for m in sent.values())
    assert "Order:       #1001" in sent["voc-created"].body
    assert sent["voc-ack"].recipient == item.contact_email and item.reference in sent["voc-ack"].body


def test_an_order_is_linked_only_when_the_contact_matches(widget, runtime, orders):
    mismatch = widget.voc(order_number="#1001", email="someone@else.com")
    match = widget.voc(order_number="#1001", email="BUYER@example.com")
    assert mismatch.status_code == match.status_code == 201
    assert set(mismatch.get_json()) == set(match.get_json())
    linked = {i.reference: i.order_id for i in items(runtime)}
    assert linked[mismatch.get_json()["reference"]] is None
    assert linked[match.get_json()["reference"]] is not None


def test_the_locale_defaults_to_the_shops(widget, runtime):
    assert widget.voc().status_code == 201
    assert items(runtime)[0].locale == "en"


def test_shopper_text_is_stored_verbatim_and_only_ever_answered_as_json(widget, runtime,
                                                                       smtp_server):
    text = '<script>alert("x")</script><img src=x onerror=alert(1)> &amp; \u202e'
    response = widget.voc(message=text, name="<b>Kim</b>")
    assert response.status_code == 201 and response.mimetype == "application/json"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    [item] = items(runtime)
    assert item.body == text and item.contact_name == "<b>Kim</b>"
    lookup = widget.post("requests/lookup", {"reference": item.reference,
                                             "contact": "shopper@example.com"})
    assert lookup.mimetype == "application/json" and b"<script>" not in lookup.data
    run_worker(runtime)
    assert len(smtp_server.messages) == 2  # the merchant's notice and the acknowledgement
    for mail, _ in smtp_server.messages:
        assert b"text/html" not in mail.original_content and b"Content-Type: text/plain" in \
            mail.original_content


# --------------------------------------------------------------------------------------------------
# Where is my order
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("number, contact", [
    ("#1001", "buyer@example.com"), ("1001", "BUYER@EXAMPLE.COM "), (" #1001", "01012345678"),
    ("1001", "010-1234-5678"),
])
def test_order_lookup_found(widget, orders, number, contact):
    response = widget.post("orders/lookup", {"order_number": number, "contact": contact})
    assert response.status_code == 200
    order = response.get_json()["order"]
    assert order == {
        "number": "#1001", "placed_at": "2026-03-01T09:30:00+00:00",
        "financial_status": "paid", "fulfillment_status": "fulfilled",
        "lines": [{"title": "Green tea", "quantity": 2}, {"title": "Tea cup", "quantity": 1}],
        "total": "15000", "currency": "KRW"}
    assert b"Kim" not in response.data and b"example.com" not in response.data


def test_order_total_has_the_currencys_minor_digits(widget, orders):
    response = widget.post("orders/lookup",
                           {"order_number": "1002", "contact": "other@example.com"})
    assert response.get_json()["order"]["total"] == "404.95"


def test_order_lookup_misses_are_indistinguishable(widget, orders, make_shop, runtime):
    other = make_shop("shopify", "b.myshopify.com").shop
    with runtime.db.session() as s:
        repository.upsert_orders(s, other.id, [OrderRecord(
            platform_order_id="9", number="#7777", currency="USD", total=Decimal(1),
            updated_at=utcnow(), email="buyer@example.com")])
    cases = {
        "no_order": {"order_number": "9999", "contact": "buyer@example.com"},
        "wrong_contact": {"order_number": "1001", "contact": "buyer@example.org"},
        "wrong_phone": {"order_number": "1001", "contact": "010-9999-9999"},
        "other_shop": {"order_number": "7777", "contact": "buyer@example.com"},
    }
    answers = {name: widget.post("orders/lookup", body) for name, body in cases.items()}
    assert {r.status_code for r in answers.values()} == {404}
    assert len({r.data for r in answers.values()}) == 1
    assert len({tuple(sorted(r.headers.items())) for r in answers.values()}) == 1

    timings = {"no_order": [], "wrong_contact": []}
    for _ in range(15):
        for name in timings:
            start = time.perf_counter()
            widget.post("orders/lookup", cases[name])
            timings[name].append(time.perf_counter() - start)
    a, b = (statistics.median(t) for t in timings.values())
    assert max(a, b) / min(a, b) < 1.5, timings


def test_order_lookup_runs_one_query_for_every_miss_and_two_for_a_match(widget, orders,
                                                                         runtime, monkeypatch):
    """"No such order" and "wrong contact" run the same single statement; only a match reads
    its lines."""
    ran = []
    real_run = runtime.db.run
    monkeypatch.setattr(runtime.db, "run",
                        lambda name, build, values: ran.append(name) or real_run(name, build, values))
    for body, status, queries in (
            ({"order_number": "9999", "contact": "buyer@example.com"}, 404,
             ["widget.lookup_candidates"]),
            ({"order_number": "#1001", "contact": "buyer@example.org"}, 404,
             ["widget.lookup_candidates"]),
            ({"order_number": "#1001", "contact": "buyer@example.com"}, 200,
             ["widget.lookup_candidates", "widget.lookup_lines"])):
        ran.clear()
        assert widget.post("orders/lookup", body).status_code == status
        assert ran == queries


def test_order_lookup_answers_503_when_the_store_is_down(widget, orders, runtime):
    from ccms_addon.store.db import make_engine
    live = runtime.db.engine
    runtime.db.engine = make_engine("postgresql://nobody@127.0.0.1:9/none",
                                    connect_args={"connect_timeout": 1})
    try:
        response = widget.post("orders/lookup", {"order_number": "1001",
                                                 "contact": "buyer@example.com"})
    finally:
        runtime.db.engine.dispose()
        runtime.db.engine = live
    assert response.status_code == 503 and response.headers["Retry-After"]
    assert widget.post("orders/lookup", {"order_number": "1001",
                                         "contact": "buyer@example.com"}).status_code == 200


# --------------------------------------------------------------------------------------------------
# My requests
# --------------------------------------------------------------------------------------------------


def test_requests_lookup(widget, runtime, shop, make_shop):
    reference = widget.voc(phone="+82 10-1234-5678").get_json()["reference"]
    [item] = items(runtime)
    with runtime.db.session() as s:
        s.get(VocItem, item.id).status = VocStatus.ACKNOWLEDGED
        s.add(VocEvent(shop_id=shop.id, voc_item_id=item.id, type="status_changed",
                       from_status="received", to_status="acknowledged", actor="staff:lee",
                       note="INTERNAL: refund without asking"))
        s.add(VocEvent(shop_id=shop.id, voc_item_id=item.id, type="note", actor="staff:lee",
                       note="INTERNAL: second note"))
    for contact in ("shopper@example.com", "821012345678"):
        response = widget.post("requests/lookup", {"reference": reference.lower(),
                                                   "contact": contact})
        assert response.status_code == 200
        request = response.get_json()["request"]
        assert request["reference"] == reference and request["kind"] == "complaint"
        assert request["status"] == "acknowledged"
        assert [e["status"] for e in request["timeline"]] == ["received", "acknowledged"]
        assert set(request["timeline"][0]) == {"status", "at"}
        assert b"INTERNAL" not in response.data and b"staff" not in response.data

    misses = [widget.post("requests/lookup", body) for body in (
        {"reference": reference, "contact": "shopper@example.org"},
        {"reference": "VOC-2000-000001", "contact": "shopper@example.com"})]
    other = make_shop("shopify", "b.myshopify.com").shop
    misses.append(Widget(widget.client, other, "x").post(
        "requests/lookup", {"reference": reference, "contact": "shopper@example.com"}, origin=None))
    assert {r.status_code for r in misses} == {404} and len({r.data for r in misses}) == 1


# --------------------------------------------------------------------------------------------------
# Fuzz: whatever the body, never a 5xx
# --------------------------------------------------------------------------------------------------

_json_scalars = (st.none() | st.booleans() | st.integers() | st.floats()
                 | st.text(max_size=30) | st.sampled_from(["", " ", "\x00", "\ud800", "a@b.co"]))
_json = st.recursive(_json_scalars, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
_VOC_FIELDS = ("kind", "category", "message", "order_number", "name", "email", "phone", "locale",
               "consent", "token", "website")


_FUZZ_APPS: dict = {}


def _fuzz_app(runtime):
    """One app per test runtime, with limits no fuzz run can reach."""
    if id(runtime) not in _FUZZ_APPS:
        _FUZZ_APPS.clear()
        _FUZZ_APPS[id(runtime)] = create_app(runtime=runtime, widget_limits={
            "widgets.submit_voc": [("100000/minute", ratelimit.PER_IP),
                                   ("100000/minute", ratelimit.PER_SHOP)]})
    return _FUZZ_APPS[id(runtime)]


@hypothesis_settings(max_examples=150, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture,
                                            HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_voc_never_answers_5xx(runtime, shop, orders, data):
    app = _fuzz_app(runtime)
    widget = Widget(app.test_client(), shop, app.config["SECRET_KEY"])
    fields = {
        "kind": st.sampled_from(SHOPPER_KINDS) | _json,
        "category": st.sampled_from(["delivery", "product"]) | _json,
        "message": st.text(min_size=1, max_size=200) | _json,
        "email": st.emails() | _json,
        "phone": st.from_regex(r"\+?[0-9 -]{6,20}", fullmatch=True) | _json,
        "order_number": st.sampled_from(["1001", "#1001", "x" * 64]) | _json,
        "consent": st.just(True) | _json, "token": st.just(widget.token()) | _json,
        "locale": st.sampled_from(["ko", "en", "ja"]) | _json,
        "name": st.text(max_size=50) | _json, "website": st.just("") | _json,
    }
    body = data.draw(_json | st.fixed_dictionaries({}, optional=fields)
                     | st.dictionaries(st.sampled_from(_VOC_FIELDS) | st.text(max_size=5), _json))
    response = widget.post("voc", body)
    assert response.status_code < 500, response.get_data(as_text=True)
    assert response.status_code in (201, 400, 422)
    raw = data.draw(st.binary(max_size=300))
    assert widget.post("voc", raw=raw).status_code in (400, 422)


def test_config_is_served_gzipped_to_browsers_that_accept_it(widget_app, shop):
    import gzip
    client = widget_app.test_client()
    url = f"/widget/v1/{shop.widget_key}/config"
    plain = client.get(url)
    zipped = client.get(url, headers={"Accept-Encoding": "gzip, br"})
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in zipped.headers["Vary"]
    assert gzip.decompress(zipped.data) == plain.data
    assert zipped.headers["ETag"] == plain.headers["ETag"]
    assert len(zipped.data) < len(plain.data)
