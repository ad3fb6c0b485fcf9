"""The WooCommerce platform adapter: webhooks in, REST API v3 out (fetches, and an approved claim's
refund: :mod:`.settlement`).

Facts this relies on (WooCommerce ``includes/class-wc-webhook.php`` and the REST API v3 docs):

* A delivery is a POST whose JSON body is the REST API v3 representation of the resource (built by
  GETting ``/wc/v3/<resource>s/<id>`` when the delivery runs). A ``*.deleted`` topic sends only
  ``{"id": N}``. Headers: ``X-WC-Webhook-Source`` (``home_url('/')``), ``-Topic``, ``-Resource``,
  ``-Event``, ``-Signature`` (base64 HMAC-SHA256 of the body with the webhook secret), ``-ID`` and
  ``-Delivery-ID``, which is a hash of the webhook id and the time, new on every attempt.
* Right after a webhook is created WooCommerce POSTs a ping, form-encoded ``webhook_id=N`` without any
  ``X-WC-Webhook-*`` header, and keeps the webhook pending until it gets a 200.
* ``*_gmt`` dates are UTC without an offset; money is a decimal string except ``line_items[].price``,
  which is a number; refunds inside an order have negative totals.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from secrets import token_hex
from typing import Any
from urllib.parse import urlsplit

from marshmallow import Schema, ValidationError

from ccms_addon.platforms import (CanonicalEvent, CustomerChanged, CustomerRecord,
                                  CustomerRedactRequested, DeliveryIdentity, FinancialStatus,
                                  FulfillmentStatus, OrderCancelled, OrderChanged, OrderLineRecord,
                                  OrderPage, OrderRecord,
                                  PayloadInvalidError, PlatformAuthError, RefundRecord,
                                  SettlementRequest, SettlementResult, ShopContext,
                                  UnknownTopicError, WebhookRequest, WidgetInjection, load_json)
from ccms_addon.platforms import (InstallRequest, InstallResult, SessionTokenUnsupportedError,
                                  WebhookRegistration)
from ccms_addon.platforms import CollectionPage, OrderActionRequest, OrderActionResult

from . import collections, install, order_actions, settlement, sync, widget
from .client import MAX_PER_PAGE, WooCommerceClient
from .schemas import (WooCommerceCustomerPayloadSchema, WooCommerceDeletedPayloadSchema,
                      WooCommerceDeliverySchema, WooCommerceOrderPayloadSchema)

SOURCE_HEADER = "X-WC-Webhook-Source"
TOPIC_HEADER = "X-WC-Webhook-Topic"
SIGNATURE_HEADER = "X-WC-Webhook-Signature"

ORDER_TOPICS = frozenset({"order.created", "order.updated", "order.restored"})
CUSTOMER_TOPICS = frozenset({"customer.created", "customer.updated"})
#: statuses that undo an order: WooCommerce cancels an unpaid order and refunds a paid one; it
#: records no reason for either
UNDONE_STATUSES = frozenset({"cancelled", "refunded"})
#: Topics whose body is a REST resource (or ``{"id": N}``): a delivery without an id is malformed.
RESOURCE_PREFIXES = ("order.", "customer.", "product.", "coupon.")

#: What :meth:`WooCommerceAdapter.delivery_headers` sends where WooCommerce names itself and the webhook.
REPLAY_USER_AGENT = "WooCommerce/replay Hookshot (ccms-addon)"
REPLAY_WEBHOOK_ID = "0"

_PING_BODY = re.compile(rb"\s*webhook_id=\d+\s*")
_DEFAULT_PORTS = {"http": 80, "https": 443}

#: WooCommerce order status -> (financial, fulfillment). ``on-hold`` awaits payment confirmation and a
#: ``failed`` order can still be paid (WooCommerce's needs_payment), so both count as pending;
#: ``trash`` says nothing about money or goods. Statuses added by plugins map to UNKNOWN.
STATUS_MAP: dict[str, tuple[FinancialStatus, FulfillmentStatus]] = {
    "pending": (FinancialStatus.PENDING, FulfillmentStatus.UNFULFILLED),
    "checkout-draft": (FinancialStatus.PENDING, FulfillmentStatus.UNFULFILLED),
    "on-hold": (FinancialStatus.PENDING, FulfillmentStatus.UNFULFILLED),
    "failed": (FinancialStatus.PENDING, FulfillmentStatus.UNFULFILLED),
    "processing": (FinancialStatus.PAID, FulfillmentStatus.UNFULFILLED),
    "completed": (FinancialStatus.PAID, FulfillmentStatus.FULFILLED),
    "cancelled": (FinancialStatus.VOIDED, FulfillmentStatus.UNFULFILLED),
    "refunded": (FinancialStatus.REFUNDED, FulfillmentStatus.UNKNOWN),
    "trash": (FinancialStatus.UNKNOWN, FulfillmentStatus.UNKNOWN),
}


def canonical_site_url(url: str) -> str:
    """A WooCommerce site's identity: scheme, lower-cased host, non-default port, path without "/".

    ``X-WC-Webhook-Source`` is ``home_url('/')`` (``https://Shop.Example/``); shops are registered
    through this function too, so both spell a site the same way (``https://shop.example``).
    ``ValueError`` says what is wrong with a URL that is not an http(s) site address.
    """
    if not isinstance(url, str):
        raise ValueError("a WooCommerce site URL must be a string")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
        host = (parts.hostname or "").encode("idna").decode("ascii").lower()
    except (ValueError, UnicodeError) as exc:
        raise ValueError(f"invalid WooCommerce site URL {url!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not host:
        raise ValueError(f"invalid WooCommerce site URL {url!r}: expected https://host[/path], "
                         "the site address from WordPress > Settings > General")
    if parts.username is not None or parts.query or parts.fragment:
        raise ValueError(f"invalid WooCommerce site URL {url!r}: drop credentials, query and fragment")
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc += f":{port}"
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"


class WooCommerceAdapter:
    """Implements :class:`ccms_addon.platforms.PlatformAdapter` for WooCommerce (REST API v3)."""

    name = "woocommerce"

    def __init__(self, *, sleep: Callable[[float], None] = time.sleep) -> None:
        #: how the REST API client waits out a 429 (tests make it instant)
        self._sleep = sleep

    # -- webhook ingress ---------------------------------------------------------------------------

    def canonical_shop_domain(self, value: str) -> str:
        """A WooCommerce shop is its site URL: see :func:`canonical_site_url`."""
        return canonical_site_url(value)

    def delivery_headers(self, body: bytes, *, shop_domain: str, topic: str | None,
                         secret: str) -> dict[str, str]:
        """What ``WC_Webhook::deliver()`` sends with ``body``; a fresh Delivery-ID per call, as there."""
        if not topic:
            raise ValueError("a WooCommerce delivery needs a topic such as 'order.updated'")
        resource, _, event = topic.partition(".")
        return {
            "Content-Type": "application/json",
            "User-Agent": REPLAY_USER_AGENT,
            SOURCE_HEADER: shop_domain.rstrip("/") + "/",  # home_url('/')
            TOPIC_HEADER: topic,
            "X-WC-Webhook-Resource": resource,
            "X-WC-Webhook-Event": event,
            SIGNATURE_HEADER: _sign(secret.encode("utf-8"), body).decode("ascii"),
            "X-WC-Webhook-ID": REPLAY_WEBHOOK_ID,
            "X-WC-Webhook-Delivery-ID": token_hex(16),
        }

    def is_ping(self, request: WebhookRequest) -> bool:
        """The activation ping: form-encoded ``webhook_id=N``, no topic header; WooCommerce wants 200."""
        return (TOPIC_HEADER not in request.headers
                and _PING_BODY.fullmatch(request.body) is not None)

    def sender_allowed(self, request: WebhookRequest, settings: Mapping[str, str]) -> bool:
        """A WooCommerce site sends from wherever it is hosted: the HMAC is the proof."""
        return True

    def shop_domain(self, request: WebhookRequest) -> str:
        source = request.headers.get(SOURCE_HEADER)
        if not source:
            raise PayloadInvalidError(f"missing {SOURCE_HEADER} header")
        try:
            return canonical_site_url(source)
        except ValueError as exc:
            raise PayloadInvalidError(f"{SOURCE_HEADER}: {exc}") from None

    def webhook_secrets(self, settings: Mapping[str, str], shop_secret: str | None) -> list[str]:
        """WooCommerce signs with the secret of each webhook, stored with the shop; no app secret."""
        return [shop_secret] if shop_secret else []

    def verify(self, request: WebhookRequest, secrets: Sequence[str]) -> bool:
        try:
            signature = request.headers.get(SIGNATURE_HEADER, "").strip().encode("ascii")
            if not signature:
                return False
            return any(hmac.compare_digest(_sign(key, request.body), signature)
                       for secret in secrets if secret for key in _signing_keys(secret))
        except Exception:  # a hostile header or secret must never turn into a 500
            return False

    def delivery(self, request: WebhookRequest) -> DeliveryIdentity:
        """Identity of a delivery; the dedupe id is built from the resource version, not the header.

        WooCommerce's ``X-WC-Webhook-Delivery-ID`` changes on every attempt, so the id is
        ``topic:resource id:date_modified_gmt`` (the sha256 of the body for a body without that date,
        such as a deleted resource's ``{"id": N}``): two attempts of one version collapse into one.
        """
        topic = (request.headers.get(TOPIC_HEADER) or "").strip()
        if not topic:
            raise PayloadInvalidError(f"missing {TOPIC_HEADER} header")
        data = _load(WooCommerceDeliverySchema(), load_json(request.body), topic)
        resource_id, modified = data["id"], data["date_modified_gmt"]
        if resource_id is None and topic.startswith(RESOURCE_PREFIXES):
            raise PayloadInvalidError(f"{topic}: the body has no resource id")
        version = modified.isoformat() if modified else hashlib.sha256(request.body).hexdigest()
        return DeliveryIdentity(shop_domain=self.shop_domain(request), topic=topic,
                                delivery_id=f"{topic}:{resource_id or '-'}:{version}",
                                occurred_at=modified)

    # -- worker ------------------------------------------------------------------------------------

    def normalize(self, topic: str, body: bytes) -> list[CanonicalEvent]:
        """Canonical events of a stored delivery.

        ``order.deleted`` raises ``UnknownTopicError`` on purpose: WooCommerce fires it when an order is
        moved to the trash (it can come back with ``order.restored``) and sends only the id. A trashed
        order is neither cancelled nor refunded, and the REST API no longer lists it, so the honest
        answer is to keep the last known state and store the delivery as ignored.
        """
        if topic in ORDER_TOPICS:
            order = _load(WooCommerceOrderPayloadSchema(), load_json(body), topic)
            record = order_record(order)
            if order["status"] not in UNDONE_STATUSES:
                return [OrderChanged(record)]
            # who undid it is not recorded; the shopper's checkout note is their only words on it
            return [OrderChanged(record), OrderCancelled(
                record.platform_order_id, reason_code=order["status"],
                reason=_text(order["customer_note"]), occurred_at=record.updated_at)]
        if topic in CUSTOMER_TOPICS:
            customer = _load(WooCommerceCustomerPayloadSchema(), load_json(body), topic)
            return [CustomerChanged(customer_record(customer))]
        if topic == "customer.deleted":
            deleted = _load(WooCommerceDeletedPayloadSchema(), load_json(body), topic)
            return [CustomerRedactRequested(platform_customer_ids=(str(deleted["id"]),))]
        raise UnknownTopicError(f"WooCommerce topic {topic!r} is not handled")

    def fetch_orders(self, shop: ShopContext, platform_order_ids: Sequence[str]) -> list[OrderRecord]:
        schema = WooCommerceOrderPayloadSchema()
        return [order_record(_load(schema, item, "GET orders"))
                for item in self._fetch(shop, "orders", platform_order_ids, {})]

    def fetch_customers(self, shop: ShopContext,
                        platform_customer_ids: Sequence[str]) -> list[CustomerRecord]:
        # The customers endpoint lists only the "customer" role unless asked for all users.
        schema = WooCommerceCustomerPayloadSchema()
        return [customer_record(_load(schema, item, "GET customers"))
                for item in self._fetch(shop, "customers", platform_customer_ids, {"role": "all"})]

    def list_orders(self, shop: ShopContext, *, updated_since: datetime | None,
                    cursor: str | None) -> OrderPage:
        """``GET /wp-json/wc/v3/orders?orderby=modified&order=asc&modified_after=…&per_page=100``,
        keyed by modification time rather than page numbers; see :mod:`.sync`."""
        with self._client(shop) as client:
            return sync.list_orders(shop, client, updated_since=updated_since, cursor=cursor)

    def list_collection_products(self, shop: ShopContext, collection_id: str, *,
                                 cursor: str | None) -> CollectionPage:
        """A product category's products (WooCommerce has no collections); see
        :mod:`.collections`."""
        with self._client(shop) as client:
            return collections.list_collection_products(client, collection_id, cursor)

    def inject_widget(self, shop: ShopContext, loader_url: str, widget_key: str) -> WidgetInjection:
        """WooCommerce cannot take the widget remotely: the WordPress plugin's zip and the
        merchant's steps (``method="wordpress_plugin"``); see :mod:`.widget`."""
        return widget.inject_widget(shop, loader_url, widget_key)

    def settle_claim(self, shop: ShopContext, request: SettlementRequest) -> SettlementResult:
        """``POST /wp-json/wc/v3/orders/{id}/refunds`` after looking for a refund that already
        carries ``request.reference``; a ``return`` is a refund of the lines with ``api_restock``
        (WooCommerce core has no returns). The shop setting ``woocommerce_api_refund=false`` records
        manual refunds (``api_refund: false``) for gateways that cannot refund; see
        :mod:`.settlement`."""
        api_refund = str(shop.settings.get("woocommerce_api_refund", "true")).strip().lower() not in (
            "false", "0", "no", "off")
        with self._client(shop) as client:
            return settlement.settle_claim(client, request, api_refund=api_refund)

    def order_action(self, shop: ShopContext, request: OrderActionRequest) -> OrderActionResult:
        """A cancel (``PUT /wp-json/wc/v3/orders/{id}`` to ``cancelled`` with the reference in
        its meta data, after refunding what is left when asked) or a resend (a zero-priced
        replacement order, ``POST /wp-json/wc/v3/orders`` with ``parent_id``, after looking
        among the order's children for the reference); see :mod:`.order_actions`."""
        api_refund = str(shop.settings.get("woocommerce_api_refund", "true")).strip().lower() \
            not in ("false", "0", "no", "off")
        with self._client(shop) as client:
            return order_actions.order_action(client, request, api_refund=api_refund)

    # -- install, webhooks and the admin (see :mod:`.install`) -------------------------------------

    def install_shop(self, request: InstallRequest, settings: Mapping[str, str]) -> str:
        """The canonical https site URL of ``?site=``."""
        return install.install_shop(request, settings)

    def install_url(self, shop_domain: str, *, state: str, callback_url: str,
                    settings: Mapping[str, str]) -> str:
        """``{site}/wc-auth/v1/authorize?app_name&scope=read_write&user_id={state}&return_url&
        callback_url`` (both URLs the core's callback)."""
        return install.install_url(shop_domain, state=state, callback_url=callback_url,
                                   settings=settings)

    def install_state(self, request: InstallRequest) -> str | None:
        """``user_id``, echoed in the posted keys and in the browser's return."""
        return install.install_state(request)

    def complete_install(self, shop_domain: str, request: InstallRequest, *, callback_url: str,
                         settings: Mapping[str, str]) -> InstallResult | None:
        """The site's POST of ``{key_id, user_id, consumer_key, consumer_secret,
        key_permissions}``: read_write keys the site accepts, and a new webhook secret. The
        browser's return (``success=1``) carries nothing: None."""
        return install.complete_install(shop_domain, request, settings=settings)

    def register_webhooks(self, shop: ShopContext, webhook_url: str,
                          webhook_secret: str | None) -> WebhookRegistration:
        """``POST /wp-json/wc/v3/webhooks`` per topic (or ``PUT`` the one that exists), each with
        the shop's ``webhook_secret``."""
        with self._client(shop) as client:
            return install.register_webhooks(client, webhook_url, webhook_secret)

    def verify_session_token(self, token: str, settings: Mapping[str, str]) -> str:
        """WooCommerce has no embedded admin session tokens."""
        raise SessionTokenUnsupportedError("WooCommerce has no embedded admin session tokens")

    def frame_ancestors(self, shop_domain: str) -> list[str]:
        """The admin is never framed for a WooCommerce site."""
        return []

    def _client(self, shop: ShopContext) -> WooCommerceClient:
        key, secret = shop.credentials.get("consumer_key"), shop.credentials.get("consumer_secret")
        if not key or not secret:
            raise PlatformAuthError(f"shop {shop.shop_id} has no WooCommerce consumer key/secret")
        base = shop.settings.get("api_base_url", "{domain}").replace("{domain}", shop.domain)
        return WooCommerceClient(base, key, secret, sleep=getattr(self, "_sleep", time.sleep))

    def _fetch(self, shop: ShopContext, resource: str, ids: Sequence[str],
               params: Mapping[str, str]) -> list[dict[str, Any]]:
        """Resources by id, ``include`` chunks of one page each (pagination followed regardless)."""
        wanted = sorted({int(i) for i in map(str, ids) if i.isascii() and i.isdigit() and int(i) > 0})
        if not wanted:
            return []
        items: list[dict[str, Any]] = []
        with self._client(shop) as client:
            for start in range(0, len(wanted), MAX_PER_PAGE):
                chunk = ",".join(str(i) for i in wanted[start:start + MAX_PER_PAGE])
                items += client.list_all(resource, {**params, "include": chunk})
        return items


# -- payload -> canonical records -----------------------------------------------------------------


def order_record(order: Mapping[str, Any]) -> OrderRecord:
    """An :class:`OrderRecord` from a loaded :class:`WooCommerceOrderPayloadSchema`."""
    order_id = str(order["id"])
    currency = order["currency"].strip().upper()
    updated_at: datetime = order["date_modified_gmt"] or order["date_created_gmt"]
    financial, fulfillment = STATUS_MAP.get(order["status"],
                                            (FinancialStatus.UNKNOWN, FulfillmentStatus.UNKNOWN))
    refunds = tuple(RefundRecord(platform_refund_id=str(r["id"]), platform_order_id=order_id,
                                 amount=abs(r["total"]), currency=currency, note=_text(r["reason"]))
                    for r in order["refunds"])
    if financial is FinancialStatus.PAID and sum(r.amount for r in refunds):
        financial = FinancialStatus.PARTIALLY_REFUNDED
    billing = order["billing"] or {}
    name = _full_name(billing) or _full_name(order["shipping"] or {})
    email, phone = _text(billing.get("email")), _text(billing.get("phone"))
    customer_id = order["customer_id"] or 0  # 0 is a guest checkout
    return OrderRecord(
        platform_order_id=order_id,
        number=_text(order["number"]) or order_id,
        currency=currency,
        total=order["total"],
        updated_at=updated_at,
        placed_at=order["date_created_gmt"],
        financial_status=financial,
        fulfillment_status=fulfillment,
        # WooCommerce records no cancellation time; the save that cancelled it is the best we know.
        cancelled_at=updated_at if order["status"] == "cancelled" else None,
        email=email,
        phone=phone,
        customer_name=name,
        customer=CustomerRecord(platform_customer_id=str(customer_id), email=email, name=name,
                                phone=phone) if customer_id > 0 else None,
        lines=tuple(_line_record(line) for line in order["line_items"]),
        refunds=refunds,
    )


def customer_record(customer: Mapping[str, Any]) -> CustomerRecord:
    """A :class:`CustomerRecord` from a loaded :class:`WooCommerceCustomerPayloadSchema`."""
    billing = customer["billing"] or {}
    return CustomerRecord(
        platform_customer_id=str(customer["id"]),
        email=_text(customer["email"]) or _text(billing.get("email")),
        name=_full_name(customer) or _full_name(billing) or _text(customer["username"]),
        phone=_text(billing.get("phone")),
        updated_at=customer["date_modified_gmt"],
    )


def _line_record(line: Mapping[str, Any]) -> OrderLineRecord:
    quantity: int = line["quantity"]
    price: Decimal | None = line["price"]
    if price is None:  # older or filtered payloads: derive it from the pre-discount subtotal
        subtotal = line["subtotal"] or Decimal(0)
        price = subtotal / quantity if quantity else subtotal
    return OrderLineRecord(
        platform_line_id=str(line["id"]),
        title=html.unescape(line["name"] or ""),  # names carry HTML entities ("&ndash;")
        quantity=quantity,
        unit_price=price,
        sku=_text(line["sku"]),
        product_id=str(line["product_id"]) if line["product_id"] else None,
        variant_id=str(line["variation_id"]) if line["variation_id"] else None,
    )


def _load(schema: Schema, data: Any, what: str) -> dict[str, Any]:
    """``schema.load`` with shape errors turned into ``PayloadInvalidError`` naming the fields."""
    if not isinstance(data, dict):
        raise PayloadInvalidError(f"{what}: expected a JSON object, got {type(data).__name__}")
    try:
        return schema.load(data)
    except ValidationError as exc:
        raise PayloadInvalidError(f"{what}: {exc.normalized_messages()}") from None


def _sign(key: bytes, body: bytes) -> bytes:
    return base64.b64encode(hmac.new(key, body, hashlib.sha256).digest())


def _signing_keys(secret: str) -> list[bytes]:
    """The secret as stored, and as WooCommerce uses it: ``wp_specialchars_decode(secret)``."""
    keys = [secret.encode("utf-8")]
    decoded = html.unescape(secret).encode("utf-8")
    return keys if decoded == keys[0] else keys + [decoded]


def _text(value: str | None) -> str | None:
    """WooCommerce sends blanks as ``""``; the canonical records use None."""
    value = (value or "").strip()
    return value or None


def _full_name(person: Mapping[str, Any]) -> str | None:
    return _text(" ".join(filter(None, (_text(person.get("first_name")),
                                        _text(person.get("last_name"))))))
