"""What the demo puts in its shops so there is something to look at: a merchant who owns the three
demo shops and can sign in to the dashboard, a few orders that reach the add-on the way real ones
do (signed webhooks through ``/webhooks/<platform>``, processed by the worker), and a shopper's
first complaint about one of them.

The order payloads are written by this module in each platform's documented shape (Shopify's REST
Order, WooCommerce's order resource) and kept under ``var/demo-payloads/`` so the welcome's
``ccms-addon webhooks replay`` line works on any machine. Cafe24 webhooks carry only an order's
summary and the worker reads the rest from Cafe24's admin API, which the demo has none of: the
Cafe24 demo shop starts without orders.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import requests
from sqlalchemy import func, select

from ccms_addon.runtime import Runtime
from ccms_addon.staff import add_staff, normalise_email, set_password
from ccms_addon.store.models import Merchant, Order, Shop, Staff, StaffRole, VocItem

#: who signs in to the demo's dashboard (the password is made once and kept in demo-secrets.json)
OWNER_EMAIL = "owner@ccms-demo.test"
OWNER_NAME = "Demo owner"
#: the folder under the var dir where the demo's order payloads are written
PAYLOADS = "demo-payloads"
#: the shopper of the demo orders: what "Where is my order?" asks for
SHOPPER_EMAIL = "jordan.lee@shopper.test"


@dataclass(frozen=True)
class DemoDelivery:
    """One webhook the demo sends itself."""

    platform: str
    topic: str
    number: str        # the order number a shopper types
    body: bytes

    @property
    def filename(self) -> str:
        return f"{self.platform}-order-{self.number.lstrip('#')}.json"


def owner_account(runtime: Runtime, shops: dict[str, dict], password: str) -> str:
    """One merchant owns every demo shop (one inbox across them), with an owner who signs in with
    ``OWNER_EMAIL`` and ``password``. Returns the email."""
    with runtime.db.session() as session:
        shop_rows = session.scalars(select(Shop).where(
            Shop.id.in_([s["shop_id"] for s in shops.values()])).order_by(Shop.id)).all()
        merchant = session.scalar(select(Merchant).join(Staff, Staff.merchant_id == Merchant.id)
                                  .where(Staff.email == OWNER_EMAIL).limit(1))
        if merchant is None:
            merchant = shop_rows[0].merchant
        merchant.name, merchant.email = "Demo merchant", OWNER_EMAIL
        for shop in shop_rows:
            shop.merchant = merchant
        session.flush()
        owner = session.scalar(select(Staff).where(Staff.merchant_id == merchant.id,
                                                   Staff.email == normalise_email(OWNER_EMAIL)))
        if owner is None:
            owner = add_staff(session, merchant.id, OWNER_EMAIL, OWNER_NAME, StaffRole.OWNER)
        owner.role, owner.active = StaffRole.OWNER, True
        set_password(owner, password)
    return OWNER_EMAIL


def demo_deliveries(now: datetime | None = None) -> list[DemoDelivery]:
    """Two Shopify orders (one delivered a few days ago, one paid and waiting) and a WooCommerce
    order in yen, dated relative to ``now`` so follow-ups and the board have a recent past."""
    now = (now or datetime.now(timezone.utc)).replace(microsecond=0)

    def stamp(days: float) -> str:
        return (now - timedelta(days=days)).isoformat().replace("+00:00", "Z")

    customer = {"id": 7300001, "email": SHOPPER_EMAIL, "first_name": "Jordan", "last_name": "Lee",
                "phone": "+15550100123", "updated_at": stamp(6)}

    def shopify_order(order_id: int, number: str, days_ago: float, fulfilled: bool,
                      lines: list[tuple[int, str, str, str, int]]) -> bytes:
        total = sum(float(price) * qty for _, _, _, price, qty in lines)
        return json.dumps({
            "id": order_id, "name": number, "currency": "USD", "email": SHOPPER_EMAIL,
            "created_at": stamp(days_ago), "processed_at": stamp(days_ago),
            "updated_at": stamp(days_ago - 2 if fulfilled else days_ago),
            "financial_status": "paid", "fulfillment_status": "fulfilled" if fulfilled else None,
            "total_price": f"{total:.2f}", "current_total_price": f"{total:.2f}",
            "customer_locale": "en", "customer": customer,
            "billing_address": {"name": "Jordan Lee", "phone": customer["phone"]},
            "line_items": [{"id": order_id * 10 + i, "title": title, "name": title, "sku": sku,
                            "price": price, "quantity": qty, "product_id": product,
                            "variant_id": product * 10}
                           for i, (product, title, sku, price, qty) in enumerate(lines, 1)],
            "refunds": [],
        }, indent=2).encode()

    woo_order = json.dumps({
        "id": 2001, "number": "2001", "status": "completed", "currency": "JPY", "total": "5980",
        "customer_id": 41, "customer_note": "",
        "date_created_gmt": stamp(9)[:-1], "date_modified_gmt": stamp(7)[:-1],
        "billing": {"first_name": "Yui", "last_name": "Sato", "email": "yui.sato@shopper.test",
                    "phone": "090-0000-0000"},
        "line_items": [{"id": 20011, "name": "Linen apron", "product_id": 311, "variation_id": 0,
                        "quantity": 2, "sku": "APR-LIN", "price": 2990, "subtotal": "5980"}],
        "refunds": [],
    }, indent=2, ensure_ascii=False).encode()

    return [
        DemoDelivery("shopify", "orders/updated", "#1001", shopify_order(
            5800001001, "#1001", 6, True,
            [(8801, "Trail running shoes", "TRS-42", "129.00", 1),
             (8802, "Merino socks (3 pairs)", "SOX-M3", "24.00", 1)])),
        DemoDelivery("shopify", "orders/updated", "#1002", shopify_order(
            5800001002, "#1002", 1, False, [(8803, "Rain shell jacket", "RSJ-M", "189.00", 1)])),
        DemoDelivery("woocommerce", "order.updated", "2001", woo_order),
    ]


def write_payloads(var_dir: Path, deliveries: list[DemoDelivery]) -> dict[str, Path]:
    """The payloads as files (for the welcome's replay line); order number → path."""
    folder = var_dir / PAYLOADS
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for delivery in deliveries:
        path = folder / delivery.filename
        path.write_bytes(delivery.body)
        paths[delivery.number] = path
    return paths


def send_deliveries(runtime: Runtime, base_url: str, shops: dict[str, dict],
                    secrets: dict[str, str], deliveries: list[DemoDelivery]) -> list[str]:
    """POST each payload, signed as its platform signs, to the running add-on; problems, if any."""
    problems = []
    with requests.Session() as http:
        for delivery in deliveries:
            shop = shops.get(delivery.platform)
            adapter = runtime.platforms.get(delivery.platform)
            if shop is None or adapter is None:
                continue
            headers = adapter.delivery_headers(delivery.body, shop_domain=shop["domain"],
                                               topic=delivery.topic,
                                               secret=secrets[delivery.platform])
            try:
                answer = http.post(f"{base_url}/webhooks/{delivery.platform}", data=delivery.body,
                                   headers=headers, timeout=10)
            except requests.RequestException as exc:
                problems.append(f"{delivery.filename}: {exc}")
                continue
            if answer.status_code != 200:
                problems.append(f"{delivery.filename}: {answer.status_code} {answer.text.strip()}")
    return problems


def wait_for_order(runtime: Runtime, shop_id: int, number: str, timeout: float = 30.0) -> int | None:
    """The order's id once the worker has stored it (None after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        with runtime.db.session() as session:
            order_id = session.scalar(select(Order.id).where(Order.shop_id == shop_id,
                                                             Order.number == number))
        if order_id is not None or time.monotonic() > deadline:
            return order_id
        time.sleep(0.3)


def first_complaint(runtime: Runtime, shop_id: int, order_id: int) -> str | None:
    """On the demo's first run only (the shop has no VOC item yet): Jordan writes through the
    widget that one shoe of #1001 is damaged. The acknowledgement and the merchant's notification
    go out as they would for any widget complaint. Returns the reference number."""
    from ccms_addon.jobs.notify import enqueue_merchant_notification
    from ccms_addon.store.models import VocChannel, VocKind
    from ccms_addon.voc.intake import NewVocItem, record_voc_item
    with runtime.db.session() as session:
        if session.scalar(select(func.count(VocItem.id)).where(VocItem.shop_id == shop_id)):
            return None
    item = record_voc_item(runtime, shop_id, NewVocItem(
        kind=VocKind.COMPLAINT, channel=VocChannel.WIDGET, actor="shopper", locale="en",
        body="The left shoe of my order arrived with a torn seam at the heel. "
             "Can you send a replacement pair before my race on Saturday?",
        contact_name="Jordan Lee", contact_email=SHOPPER_EMAIL, order_id=order_id,
        category="product", event_data={"order_number": "#1001"}))
    enqueue_merchant_notification(runtime, item.id, shop_id=shop_id)
    return item.reference
