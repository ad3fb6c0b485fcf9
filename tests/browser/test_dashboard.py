"""The merchant dashboard in Debian's Chromium, inside an iframe of Shopify's admin origin: the
embedded launch, the inbox, an item's reply (received by a real SMTP server on loopback) and close,
the owner's board and the settings — and shopper text carrying XSS payloads that stays text.

Shopify's admin (``https://admin.shopify.com``) and a hostile site are pages Playwright serves for
those origins (``page.route``: nothing leaves the machine); the iframe loads the real app from the
live server, so Chromium applies the app's own ``frame-ancestors`` to the real parent origin and
keeps the app's cookie partitioned under that top-level site. A public page framing a loopback
address needs Chromium's local-network-access permission (granted to the test's context, as a
person would answer the prompt); the real add-on is on a public address and needs none.
"""

from __future__ import annotations

import dataclasses
import re
from decimal import Decimal

import pytest
from sqlalchemy import select

from ccms_addon.platforms import (CustomerRecord, FinancialStatus, FulfillmentStatus,
                                  OrderLineRecord, OrderRecord)
from ccms_addon.staff import add_staff
from ccms_addon.store import repository
from ccms_addon.store.models import Merchant, Order, Shop, StaffRole, VocItem, VocStatus
from tests.dashboard.conftest import SENDER, WIDGET, deliver_all, new_item
from tests.install.conftest import SHOPIFY_API_KEY, session_token

SHOP = "xss-shop.myshopify.com"
ADMIN = "https://admin.shopify.com/store/xss-shop/apps/ccms"
EVIL = "https://evil.example/phish"
#: what a shopper might type; none of it may run
PAYLOADS = {
    "subject": "<script>window.__xss = 'subject'; alert('subject')</script>",
    "body": ("<img src=x onerror=\"window.__xss='body';alert('body')\"> and "
             "<a href=\"javascript:window.__xss='link';alert('link')\">click me</a> and "
             "<svg onload=\"alert('svg')\"></svg> — the parcel is late"),
    "contact_name": "\"><script>alert('name')</script>",
    "line": "<img src=y onerror=\"alert('line')\">Cotton shirt",
}


@pytest.fixture
def settings(settings, smtp_server):
    return dataclasses.replace(settings, platforms={
        **settings.platforms, "smtp": {"url": smtp_server.url, "from": SENDER},
        "shopify": {**settings.platforms.get("shopify", {}), "api_key": SHOPIFY_API_KEY}})


@pytest.fixture
def shop(runtime, make_shop):
    made = make_shop("shopify", SHOP, name="XSS Shop", credentials={"access_token": "t"},
                     merchant=Merchant(name="XSS merchant", email="owner@xss.test")).shop
    with runtime.db.session() as s:
        row = s.get(Shop, made.id)
        row.timezone, row.settings = "Asia/Seoul", {"widget": WIDGET}
        add_staff(s, made.merchant_id, "owner@xss.test", "Owner Kim", StaffRole.OWNER)
    return made


@pytest.fixture
def hostile_item(runtime, shop):
    """A complaint on an order, every shopper-typed field carrying a payload."""
    from datetime import datetime, timezone
    placed = datetime(2026, 11, 1, tzinfo=timezone.utc)
    with runtime.db.session() as s:
        repository.upsert_orders(s, shop.id, [OrderRecord(
            platform_order_id="o-1", number="1001", currency="KRW", total=Decimal("39000"),
            updated_at=placed, placed_at=placed, financial_status=FinancialStatus.PAID,
            fulfillment_status=FulfillmentStatus.FULFILLED, email="shopper@example.com",
            customer_name=PAYLOADS["contact_name"],
            customer=CustomerRecord(platform_customer_id="c-1", email="shopper@example.com"),
            lines=(OrderLineRecord("l-1", PAYLOADS["line"], 1, Decimal("39000"),
                                   product_id="P-1"),))])
    with runtime.db.session() as s:
        order_id = s.scalar(select(Order.id).where(Order.shop_id == shop.id))
    return new_item(runtime, shop.id, subject=PAYLOADS["subject"], body=PAYLOADS["body"],
                    contact_name=PAYLOADS["contact_name"], order_id=order_id)


def _parent(url: str) -> str:
    """A page of the platform's admin (or of a hostile site) that frames the app at ``url``."""
    return ("<!doctype html><html><head><title>Admin</title></head><body><h1>Store admin</h1>"
            f'<iframe id="app" title="Customer care" src="{url}" width="1200" height="900">'
            "</iframe></body></html>")


def _serve(page, origin_url: str, frame_src: str) -> None:
    page.route(origin_url, lambda route: route.fulfill(status=200, content_type="text/html",
                                                       body=_parent(frame_src)))


@pytest.fixture
def app_url(page, live_server) -> str:
    """The live server's address, which the platform's pages may frame."""
    page.context.grant_permissions(["local-network-access"])
    return live_server.url


def _launch_url(app_url: str) -> str:
    """What Shopify's admin loads in its iframe: the app URL with the shop, host, hmac and the
    session token (``id_token``)."""
    token = session_token(shop=SHOP)
    return f"{app_url}/dashboard/?embedded=1&shop={SHOP}&host=YWRtaW4&hmac=x&id_token={token}"


def _app_frame(page):
    page.wait_for_function("() => document.querySelector('#app') !== null")
    for _ in range(100):
        frame = next((f for f in page.frames if f.url.startswith("http://127.0.0.1")), None)
        if frame is not None:
            return frame
        page.wait_for_timeout(100)
    raise AssertionError("the app's frame never loaded")


def _watch(page) -> list[str]:
    """Every dialog any frame opened (an XSS payload's alert would be one)."""
    dialogs: list[str] = []

    def seen(dialog):
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", seen)
    return dialogs


def _no_script_ran(frame) -> None:
    assert frame.evaluate("() => window.__xss === undefined")
    assert frame.locator('a[href^="javascript:"]').count() == 0
    assert frame.locator("img[src='x'], img[src='y'], svg[onload], [onerror]").count() == 0


def test_the_dashboard_in_shopifys_admin_iframe(page, app_url, runtime, shop, hostile_item,
                                                smtp_server):
    dialogs = _watch(page)
    _serve(page, ADMIN, _launch_url(app_url))
    page.goto(ADMIN)
    app = page.frame_locator("#app")

    # the inbox, framed by the shop's admin, with the shopper's words as text
    app.get_by_role("heading", name="Inbox").wait_for()
    frame = _app_frame(page)
    assert frame.url.endswith("/dashboard/inbox")
    assert app.get_by_text(PAYLOADS["subject"]).count() == 1
    _no_script_ran(frame)

    # the item: the customer's words verbatim, the order line, then a reply
    app.get_by_role("link", name=hostile_item.reference).click()
    app.get_by_role("heading", name="In the customer's own words").wait_for()
    words = app.locator(".words .body").inner_text()
    assert words == PAYLOADS["body"]
    assert app.locator("table.lines").get_by_text(PAYLOADS["line"]).count() == 1
    _no_script_ran(_app_frame(page))
    app.get_by_label("Message").fill("Sorry — it left the warehouse today.")
    app.get_by_role("button", name="Send the answer").click()
    app.get_by_text("Reply recorded").wait_for()
    deliver_all(runtime)
    [mail] = smtp_server.parsed()
    assert mail["To"] == "shopper@example.com"
    assert "Sorry — it left the warehouse today." in mail.get_content()

    # close it with the root cause and the prevention action
    app.get_by_label("Root cause").fill("The courier missed the pickup")
    app.get_by_label("Prevention action").fill("A second courier on Mondays")
    app.get_by_role("button", name="Close the item").click()
    app.get_by_text("Closed.", exact=True).wait_for()
    with runtime.db.session() as s:
        row = s.get(VocItem, hostile_item.id)
        assert row.status is VocStatus.CLOSED and row.root_cause == "The courier missed the pickup"
    assert app.locator(".timeline").get_by_text("A second courier on Mondays").count() >= 1

    # the owner's board: today's voice verbatim, charts drawn as SVG, nothing run
    app.get_by_role("link", name="Owner's board").click()
    app.get_by_role("heading", name="Today's voices, verbatim").wait_for()
    voice = app.locator(".voice-list blockquote").first.inner_text()
    assert PAYLOADS["subject"] in voice and "<img src=x onerror=" in voice
    assert app.locator("figure.chart svg").count() >= 3
    _no_script_ran(_app_frame(page))

    # the settings: a refused value is shown beside its field, a good one is saved
    app.get_by_role("link", name="Settings").click()
    app.get_by_role("link", name="Widget, contact and hours").click()
    promise = app.get_by_label("Acknowledgement promise (business hours)")
    promise.fill("0")
    app.get_by_role("button", name="Save").click()
    app.get_by_text("Nothing was saved").wait_for()
    assert app.locator("#error-ack_promise_hours").inner_text() == "The value is out of range."
    app.get_by_label("Acknowledgement promise (business hours)").fill("3")
    app.get_by_role("button", name="Save").click()
    app.get_by_text("Saved.", exact=True).wait_for()
    with runtime.db.session() as s:
        assert s.get(Shop, shop.id).settings["widget"]["ack_promise_hours"] == 3

    # the language switch works inside the frame (the page's own script submits it)
    app.get_by_label("Language", exact=True).select_option("ko")
    app.get_by_role("heading", name="위젯·연락처·운영 시간 · XSS Shop").wait_for()
    assert dialogs == []


def test_a_site_that_is_not_the_shops_admin_cannot_frame_it(page, app_url, shop):
    refused: list[str] = []
    page.on("console", lambda message: refused.append(message.text)
            if "frame-ancestors" in message.text else None)
    _serve(page, EVIL, _launch_url(app_url))
    page.goto(EVIL)
    page.wait_for_timeout(1500)
    assert any("frame-ancestors" in text for text in refused), refused
    assert page.frame_locator("#app").get_by_role("heading", name="Inbox").count() == 0


def test_the_standalone_dashboard_cannot_be_framed_by_the_shops_admin(page, app_url, shop,
                                                                      runtime):
    """Signed in with a password, the dashboard is framed by itself only."""
    from ccms_addon.staff import set_password
    from ccms_addon.store.models import Staff
    with runtime.db.session() as s:
        set_password(s.scalar(select(Staff).where(Staff.email == "owner@xss.test")),
                     "owner password 123")
    page.goto(f"{app_url}/dashboard/login")
    page.get_by_label("Email").fill("owner@xss.test")
    page.get_by_label("Password").fill("owner password 123")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Inbox").wait_for()
    refused: list[str] = []
    page.on("console", lambda message: refused.append(message.text)
            if "frame-ancestors" in message.text else None)
    _serve(page, ADMIN, f"{app_url}/dashboard/inbox")
    page.goto(ADMIN)
    page.wait_for_timeout(1500)
    assert any("frame-ancestors" in text for text in refused), refused


def test_xss_payloads_stay_text_in_the_standalone_inbox(page, live_server, runtime, shop,
                                                        hostile_item):
    from ccms_addon.staff import set_password
    from ccms_addon.store.models import Staff
    with runtime.db.session() as s:
        set_password(s.scalar(select(Staff).where(Staff.email == "owner@xss.test")),
                     "owner password 123")
    dialogs = _watch(page)
    page.goto(f"{live_server.url}/dashboard/login")
    page.get_by_label("Email").fill("owner@xss.test")
    page.get_by_label("Password").fill("owner password 123")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Inbox").wait_for()
    row = page.locator("tr.item-row").first
    assert PAYLOADS["subject"] in row.inner_text()
    assert re.search(r"<img src=x onerror=", row.inner_text())
    _no_script_ran(page.main_frame)
    page.get_by_role("link", name=hostile_item.reference).click()
    page.locator(".words .body").wait_for()
    _no_script_ran(page.main_frame)
    assert dialogs == []
