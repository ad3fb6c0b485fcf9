"""The Shopify platform adapter: webhook identity and signature, payload normalisation, admin API fetches,
and an approved claim's refund or return (:mod:`.settlement`).

Shopify facts this module relies on (shopify.dev, webhooks delivery structure and reference 2026-07):

* every delivery is signed with the app's client secret: ``X-Shopify-Hmac-Sha256`` is the base64 of
  HMAC-SHA256 over the raw body; there is no per-shop secret and no ping delivery;
* ``X-Shopify-Webhook-Id`` is unique per delivery and kept by Shopify's retries (the dedupe key),
  ``X-Shopify-Topic`` names the topic, ``X-Shopify-Shop-Domain`` the shop, ``X-Shopify-Triggered-At``
  when it fired; header names are case-insensitive (HTTP/2 lower-cases them);
* bodies are the REST resource of the topic, ids are integers beyond 2^53 and money is decimal strings.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from marshmallow import Schema, ValidationError

from ccms_addon.platforms import (
    AppUninstalled,
    InstallRequest,
    InstallResult,
    WebhookRegistration,
    CanonicalEvent,
    CustomerChanged,
    CustomerDataRequested,
    CustomerRecord,
    CustomerRedactRequested,
    DeliveryIdentity,
    FinancialStatus,
    FulfillmentStatus,
    OrderCancelled,
    OrderChanged,
    OrderLineRecord,
    CollectionPage,
    OrderPage,
    OrderActionRequest,
    OrderActionResult,
    OrderRecord,
    OrdersNeedFetch,
    PayloadInvalidError,
    PlatformUnavailableError,
    RefundCreated,
    RefundRecord,
    SettlementRequest,
    SettlementResult,
    ShopContext,
    ShopRedactRequested,
    UnknownTopicError,
    WebhookRequest,
    WidgetInjection,
    load_json,
)

from . import collections, install, order_actions, schemas, settlement, sync, widget
from .client import DEFAULT_API_VERSION, ShopifyAdminClient

HMAC_HEADER = "X-Shopify-Hmac-Sha256"
TOPIC_HEADER = "X-Shopify-Topic"
SHOP_DOMAIN_HEADER = "X-Shopify-Shop-Domain"
WEBHOOK_ID_HEADER = "X-Shopify-Webhook-Id"
TRIGGERED_AT_HEADER = "X-Shopify-Triggered-At"
API_VERSION_HEADER = "X-Shopify-API-Version"
EVENT_ID_HEADER = "X-Shopify-Event-Id"

SHOP_DOMAIN_RE = re.compile(r"^[a-z0-9][a-z0-9-]*\.myshopify\.com$")
TOPIC_RE = re.compile(r"^[a-z0-9_]+(?:/[a-z0-9_]+)+$")
#: the store's delivery id column is bounded; Shopify's ids are UUIDs
MAX_WEBHOOK_ID_LENGTH = 255

ORDER_TOPICS = frozenset({
    "orders/create", "orders/updated", "orders/paid", "orders/cancelled", "orders/fulfilled",
    "orders/partially_fulfilled",
})

#: who a ``cancel_reason`` says asked for the cancellation: the customer (True), the shop or its
#: payment provider (False); ``other`` and anything new say nothing (absent: None)
CANCELLED_BY_CUSTOMER = {"customer": True, "declined": False, "fraud": False, "inventory": False,
                         "staff": False}

FINANCIAL_STATUSES = {status.value: status for status in FinancialStatus}
FULFILLMENT_STATUSES = {
    None: FulfillmentStatus.UNFULFILLED,
    "unfulfilled": FulfillmentStatus.UNFULFILLED,
    "partial": FulfillmentStatus.PARTIAL,
    "fulfilled": FulfillmentStatus.FULFILLED,
    "restocked": FulfillmentStatus.RETURNED,
}

_ORDER = schemas.ShopifyOrderPayloadSchema()
_ORDER_EDIT = schemas.ShopifyOrderEditPayloadSchema()
_CUSTOMER = schemas.ShopifyCustomerPayloadSchema()
_REFUND = schemas.ShopifyRefundPayloadSchema()
_FULFILLMENT = schemas.ShopifyFulfillmentPayloadSchema()
_DATA_REQUEST = schemas.ShopifyDataRequestPayloadSchema()
_CUSTOMER_REDACT = schemas.ShopifyCustomerRedactPayloadSchema()


class ShopifyAdapter:
    """:class:`ccms_addon.platforms.PlatformAdapter` for Shopify."""

    name = "shopify"

    def __init__(self, *, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        #: how the admin-API calls of ``list_orders`` wait and read time (tests make both fake)
        self._sleep = sleep
        self._clock = clock
        self._normalizers: dict[str, Callable[[dict[str, Any]], list[CanonicalEvent]]] = {
            **{topic: self._order_changed for topic in ORDER_TOPICS},
            "orders/cancelled": self._order_cancelled,
            "orders/edited": self._order_edited,
            "refunds/create": self._refund_created,
            "customers/create": self._customer_changed,
            "customers/update": self._customer_changed,
            "fulfillments/create": self._fulfillment_changed,
            "fulfillments/update": self._fulfillment_changed,
            "app/uninstalled": lambda body: [AppUninstalled()],
            "customers/data_request": self._data_requested,
            "customers/redact": self._customer_redact,
            "shop/redact": lambda body: [ShopRedactRequested()],
        }

    # ---- shop registration and replay ----------------------------------------------------------

    def canonical_shop_domain(self, value: str) -> str:
        """``https://My-Shop.myshopify.com/`` → ``my-shop.myshopify.com``, the form webhooks name."""
        text = value.strip()
        host = (urlsplit(text).hostname or "") if "://" in text else text.split("/", 1)[0]
        domain = host.lower()
        if not SHOP_DOMAIN_RE.fullmatch(domain):
            raise ValueError(f"{value!r} is not a Shopify shop domain: give its permanent "
                             "myshopify.com domain, e.g. my-shop.myshopify.com")
        return domain

    def delivery_headers(self, body: bytes, *, shop_domain: str, topic: str | None,
                         secret: str) -> dict[str, str]:
        """The headers Shopify sends with ``body``; a fresh webhook and event id per call, as there."""
        if not topic:
            raise ValueError("a Shopify delivery needs a topic such as 'orders/updated'")
        signature = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
        return {
            "Content-Type": "application/json",
            TOPIC_HEADER: topic,
            HMAC_HEADER: base64.b64encode(signature).decode("ascii"),
            SHOP_DOMAIN_HEADER: self.canonical_shop_domain(shop_domain),
            API_VERSION_HEADER: DEFAULT_API_VERSION,
            WEBHOOK_ID_HEADER: str(uuid.uuid4()),
            TRIGGERED_AT_HEADER: datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
            EVENT_ID_HEADER: str(uuid.uuid4()),
        }

    # ---- the request path: is_ping → shop_domain → webhook_secrets → verify → delivery ----------

    def is_ping(self, request: WebhookRequest) -> bool:
        """Shopify sends no liveness probe."""
        return False

    def sender_allowed(self, request: WebhookRequest, settings: Mapping[str, str]) -> bool:
        """Shopify publishes no sender range: the HMAC is the proof."""
        return True

    def shop_domain(self, request: WebhookRequest) -> str:
        domain = (request.headers.get(SHOP_DOMAIN_HEADER) or "").strip().lower()
        if not SHOP_DOMAIN_RE.fullmatch(domain):
            raise PayloadInvalidError(f"{SHOP_DOMAIN_HEADER} is missing or not a myshopify.com domain")
        return domain

    def webhook_secrets(self, settings: Mapping[str, str], shop_secret: str | None) -> list[str]:
        """The app's client secret, then the previous one while it is being rotated.

        Shopify signs with the app secret only, so ``shop_secret`` is not used.
        """
        candidates = (settings.get("api_secret"), settings.get("api_secret_previous"))
        return [secret for secret in candidates if secret]

    def verify(self, request: WebhookRequest, secrets: Sequence[str]) -> bool:
        try:
            signature = base64.b64decode(request.headers.get(HMAC_HEADER) or "", validate=True)
        except (binascii.Error, ValueError):
            return False
        if not signature:
            return False
        body = request.body if isinstance(request.body, bytes) else b""
        valid = False
        for secret in secrets:
            if not isinstance(secret, str) or not secret:
                continue
            expected = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
            # every secret is tried so the time taken does not tell which one matched
            valid = hmac.compare_digest(expected, signature) or valid
        return valid

    def delivery(self, request: WebhookRequest) -> DeliveryIdentity:
        shop = self.shop_domain(request)
        topic = (request.headers.get(TOPIC_HEADER) or "").strip().lower()
        if not TOPIC_RE.fullmatch(topic):
            raise PayloadInvalidError(f"{TOPIC_HEADER} is missing or malformed")
        webhook_id = (request.headers.get(WEBHOOK_ID_HEADER) or "").strip()
        if not webhook_id or len(webhook_id) > MAX_WEBHOOK_ID_LENGTH or not webhook_id.isprintable():
            raise PayloadInvalidError(f"{WEBHOOK_ID_HEADER} is missing or malformed")
        if not isinstance(load_json(request.body), dict):
            raise PayloadInvalidError("body is not a JSON object")
        occurred_at = schemas.parse_utc_datetime(request.headers.get(TRIGGERED_AT_HEADER),
                                                 assume_utc=True)
        return DeliveryIdentity(shop, topic, webhook_id, occurred_at)

    # ---- the worker: normalize and fetch --------------------------------------------------------

    def normalize(self, topic: str, body: bytes) -> list[CanonicalEvent]:
        normalizer = self._normalizers.get(topic)
        if normalizer is None:
            raise UnknownTopicError(f"Shopify topic {topic!r} is not handled")
        data = load_json(body)
        if not isinstance(data, dict):
            raise PayloadInvalidError(f"{topic} body is not a JSON object")
        return normalizer(data)

    def fetch_orders(self, shop: ShopContext, platform_order_ids: Sequence[str]) -> list[OrderRecord]:
        with ShopifyAdminClient.for_shop(shop) as client:
            orders = client.orders(platform_order_ids)
        return [_fetched(_ORDER, order, order_record) for order in orders]

    def fetch_customers(self, shop: ShopContext,
                        platform_customer_ids: Sequence[str]) -> list[CustomerRecord]:
        with ShopifyAdminClient.for_shop(shop) as client:
            customers = client.customers(platform_customer_ids)
        return [_fetched(_CUSTOMER, customer, customer_record) for customer in customers]

    def list_orders(self, shop: ShopContext, *, updated_since: datetime | None,
                    cursor: str | None) -> OrderPage:
        """GraphQL ``orders`` sorted by ``UPDATED_AT``, paced by the query-cost bucket; history
        through a bulk operation; see :mod:`.sync`."""
        with ShopifyAdminClient.for_shop(shop, sleep=self._sleep) as client:
            return sync.list_orders(shop, client, updated_since=updated_since, cursor=cursor,
                                    sleep=self._sleep, clock=self._clock)

    def list_collection_products(self, shop: ShopContext, collection_id: str, *,
                                 cursor: str | None) -> CollectionPage:
        """GraphQL ``collection.products`` (custom and smart collections); see
        :mod:`.collections`."""
        return collections.list_collection_products(shop, collection_id, cursor,
                                                    sleep=self._sleep, clock=self._clock)

    # ---- the storefront widget ------------------------------------------------------------------

    def inject_widget(self, shop: ShopContext, loader_url: str, widget_key: str) -> WidgetInjection:
        """The theme app extension's app embed when the merchant has switched it on, else a
        ScriptTag (``loader_url?shop_key=…``) as the fallback; see :mod:`.widget`."""
        return widget.inject_widget(shop, loader_url, widget_key)

    # ---- an approved claim's refund or return ---------------------------------------------------

    def settle_claim(self, shop: ShopContext, request: SettlementRequest) -> SettlementResult:
        """A refund (GraphQL ``refundCreate`` with ``@idempotent``) or an open return
        (``returnCreate``), after looking for one that already carries ``request.reference`` in its
        note; see :mod:`.settlement`."""
        return settlement.settle_claim(shop, request)

    def order_action(self, shop: ShopContext, request: OrderActionRequest) -> OrderActionResult:
        """A cancel (GraphQL ``orderCancel``, unless the order is already cancelled) or a resend
        (a zero-priced replacement: ``draftOrderCreate`` + ``draftOrderComplete``, after looking
        for a draft tagged with ``request.reference``); see :mod:`.order_actions`."""
        return order_actions.order_action(shop, request)

    # ---- install, webhooks and the embedded admin (see :mod:`.install`) --------------------------

    def install_shop(self, request: InstallRequest, settings: Mapping[str, str]) -> str:
        """The ``*.myshopify.com`` shop of an install request whose ``hmac`` (hex HMAC-SHA256 of
        the sorted query, keyed with the client secret) and ``timestamp`` check out."""
        return install.install_shop(request, settings)

    def install_url(self, shop_domain: str, *, state: str, callback_url: str,
                    settings: Mapping[str, str]) -> str:
        """``https://{shop}/admin/oauth/authorize`` with the client id, ``CCMS_SHOPIFY_SCOPES``,
        the redirect URI and ``state`` (offline access)."""
        return install.install_url(shop_domain, state=state, callback_url=callback_url,
                                   settings=settings)

    def install_state(self, request: InstallRequest) -> str | None:
        """Shopify echoes ``state`` in the redirect's query."""
        return request.arg("state")

    def complete_install(self, shop_domain: str, request: InstallRequest, *, callback_url: str,
                         settings: Mapping[str, str]) -> InstallResult:
        """Check the redirect's ``hmac`` and shop, then ``POST https://{shop}/admin/oauth/access_token``
        for an (expiring) offline token; lands in the embedded admin."""
        return install.complete_install(shop_domain, request, callback_url=callback_url,
                                        settings=settings)

    def register_webhooks(self, shop: ShopContext, webhook_url: str,
                          webhook_secret: str | None) -> WebhookRegistration:
        """GraphQL ``webhookSubscriptionCreate`` for the order, refund, customer and
        ``app/uninstalled`` topics (deliveries are signed with the app secret: no per-shop
        secret); the privacy topics are the app configuration's."""
        return install.register_webhooks(shop, webhook_url)

    def verify_session_token(self, token: str, settings: Mapping[str, str]) -> str:
        """The shop of an App Bridge session token (HS256 with the client secret; ``exp``/``nbf``
        with 10 s leeway; ``aud`` the API key; ``dest`` a myshopify.com shop and ``iss`` its
        admin)."""
        return install.verify_session_token(token, settings)

    def frame_ancestors(self, shop_domain: str) -> list[str]:
        """The embedded admin is framed by ``https://{shop}`` and ``https://admin.shopify.com``."""
        return install.frame_ancestors(shop_domain)

    # ---- one normalizer per payload shape -------------------------------------------------------

    def _order_changed(self, data: dict[str, Any]) -> list[CanonicalEvent]:
        return [OrderChanged(order_record(_load(_ORDER, data, "order")))]

    def _order_cancelled(self, data: dict[str, Any]) -> list[CanonicalEvent]:
        """orders/cancelled: the order, and why (``cancel_reason``, the order's ``note``)."""
        loaded = _load(_ORDER, data, "order")
        order = order_record(loaded)
        reason_code = (loaded["cancel_reason"] or "").strip().lower() or None
        return [OrderChanged(order), OrderCancelled(
            order.platform_order_id, reason_code=reason_code,
            reason=(loaded["note"] or "").strip() or None,
            by_customer=CANCELLED_BY_CUSTOMER.get(reason_code or ""),
            occurred_at=order.cancelled_at or order.updated_at)]

    def _order_edited(self, data: dict[str, Any]) -> list[CanonicalEvent]:
        """orders/edited carries an OrderEdit, not the order: fetch the order (an Order body is used)."""
        if "order_edit" not in data and "line_items" in data:
            return self._order_changed(data)
        edit = _load(_ORDER_EDIT, data, "order edit")
        return [OrdersNeedFetch((edit["order_edit"]["order_id"],))]

    def _refund_created(self, data: dict[str, Any]) -> list[CanonicalEvent]:
        refund = _load(_REFUND, data, "refund")
        if refund["order_id"] is None:
            raise PayloadInvalidError("refund payload invalid: order_id: Missing data for required field.")
        return [RefundCreated(refund_record(refund, refund["order_id"], fallback_currency=None))]

    def _customer_changed(self, data: dict[str, Any]) -> list[CanonicalEvent]:
        return [CustomerChanged(customer_record(_load(_CUSTOMER, data, "customer")))]

    def _fulfillment_changed(self, data: dict[str, Any]) -> list[CanonicalEvent]:
        return [OrdersNeedFetch((_load(_FULFILLMENT, data, "fulfillment")["order_id"],))]

    def _data_requested(self, data: dict[str, Any]) -> list[CanonicalEvent]:
        request = _load(_DATA_REQUEST, data, "customers/data_request")
        customer = request["customer"]
        return [CustomerDataRequested(
            platform_request_id=(request["data_request"] or {}).get("id"),
            platform_customer_id=customer["id"],
            email=customer["email"] or None,
            platform_order_ids=tuple(request["orders_requested"]),
        )]

    def _customer_redact(self, data: dict[str, Any]) -> list[CanonicalEvent]:
        request = _load(_CUSTOMER_REDACT, data, "customers/redact")
        customer = request["customer"]
        if not (customer["id"] or customer["email"] or request["orders_to_redact"]):
            raise PayloadInvalidError("customers/redact names no customer id, email or order")
        return [CustomerRedactRequested(
            platform_customer_ids=(customer["id"],) if customer["id"] else (),
            emails=(customer["email"],) if customer["email"] else (),
            platform_order_ids=tuple(request["orders_to_redact"]),
        )]


def _fetched(schema: Schema, data: Any, build: Callable[[dict[str, Any]], Any]) -> Any:
    """A record from one admin API resource. One that does not load is reported as the platform being
    unavailable: the fetch contract has no other error, and the worker's retries are bounded."""
    try:
        return build(_load(schema, data, "admin API resource"))
    except PayloadInvalidError as exc:
        raise PlatformUnavailableError(f"Shopify answered an unexpected shape: {exc}") from None


def _load(schema: Schema, data: Any, what: str) -> dict[str, Any]:
    """Load with ``schema``; a malformed payload becomes ``PayloadInvalidError`` naming the fields."""
    try:
        return schemas.load_payload(schema, data)
    except ValidationError as exc:
        raise PayloadInvalidError(f"{what} payload invalid: {schemas.describe_errors(exc.messages)}"
                                  ) from None


def _full_name(first: str | None, last: str | None) -> str | None:
    return " ".join(part.strip() for part in (first, last) if part and part.strip()) or None


def customer_record(customer: Mapping[str, Any]) -> CustomerRecord:
    return CustomerRecord(
        platform_customer_id=customer["id"],
        email=customer["email"] or None,
        name=_full_name(customer["first_name"], customer["last_name"]),
        phone=customer["phone"] or None,
        updated_at=customer["updated_at"],
    )


def order_record(order: Mapping[str, Any]) -> OrderRecord:
    """A complete :class:`OrderRecord` from a loaded Shopify Order (webhook body or orders.json)."""
    # the total as charged (with order edits), before refunds: refunds are stored apart, and what
    # is left to refund is this less them (current_total_price has them taken off already)
    total = order["total_price"]
    if total is None:
        total = order["current_total_price"]
    if total is None:
        raise PayloadInvalidError("order payload invalid: total_price: Missing data for required field.")
    customer = order["customer"]
    if customer is not None and customer["id"] is None and not customer["email"]:
        customer = None
    customer_rec = customer_record(customer) if customer is not None else None
    billing_name = (order["billing_address"] or {}).get("name") or None
    fulfillment = (FULFILLMENT_STATUSES.get(order["fulfillment_status"], FulfillmentStatus.UNKNOWN)
                   if "fulfillment_status" in order else FulfillmentStatus.UNKNOWN)
    return OrderRecord(
        platform_order_id=order["id"],
        number=order["name"],
        currency=order["currency"],
        total=total,
        updated_at=order["updated_at"],
        placed_at=order["created_at"] or order["processed_at"],
        financial_status=FINANCIAL_STATUSES.get(order["financial_status"] or "",
                                                FinancialStatus.UNKNOWN),
        fulfillment_status=fulfillment,
        cancelled_at=order["cancelled_at"],
        email=order["email"] or order["contact_email"] or (customer_rec and customer_rec.email) or None,
        phone=order["phone"] or (customer_rec and customer_rec.phone) or None,
        customer_name=(customer_rec and customer_rec.name) or billing_name,
        customer=customer_rec,
        lines=tuple(_line_record(line) for line in order["line_items"]),
        refunds=tuple(refund_record(refund, refund["order_id"] or order["id"],
                                    fallback_currency=order["currency"])
                      for refund in order["refunds"]),
    )


def _line_record(line: Mapping[str, Any]) -> OrderLineRecord:
    return OrderLineRecord(
        platform_line_id=line["id"],
        title=line["title"] or line["name"] or "",
        quantity=line["quantity"],
        unit_price=line["price"],
        sku=line["sku"] or None,
        product_id=line["product_id"],
        variant_id=line["variant_id"],
    )


def refund_record(refund: Mapping[str, Any], order_id: str, *,
                  fallback_currency: str | None) -> RefundRecord:
    """The money a refund returned, in the currency it was paid back in.

    The successful ``refund`` transactions are what left the shop. A refund without one (a pending
    or store-credit refund) is valued from its lines (subtotal + tax) less its order adjustments,
    which Shopify signs from the shop's side (a refunded shipping fee is ``"-5.00"``).
    """
    transactions = [t for t in refund["transactions"]
                    if t["kind"] == "refund" and t["status"] == "success"]
    if transactions:
        amount = sum((t["amount"] for t in transactions), Decimal("0"))
        currency = next((t["currency"] for t in transactions if t["currency"]), None)
        currency = currency or _set_currency(refund, "presentment_money")
    else:
        lines = sum(((item["subtotal"] or 0) + (item["total_tax"] or 0)
                     for item in refund["refund_line_items"]), Decimal("0"))
        adjustments = sum((adj["amount"] + (adj["tax_amount"] or 0)
                           for adj in refund["order_adjustments"]), Decimal("0"))
        amount = lines - adjustments
        currency = _set_currency(refund, "shop_money")
    currency = currency or fallback_currency
    if currency is None:
        raise PayloadInvalidError("refund payload invalid: no currency in its transactions or money sets")
    return RefundRecord(
        platform_refund_id=refund["id"],
        platform_order_id=order_id,
        amount=amount,
        currency=currency,
        note=refund["note"] or None,
        created_at=refund["created_at"],
    )


def _set_currency(refund: Mapping[str, Any], side: str) -> str | None:
    """The currency of the first money set in a refund (``shop_money`` or ``presentment_money``)."""
    money_sets = [item["subtotal_set"] for item in refund["refund_line_items"]]
    money_sets += [adj["amount_set"] for adj in refund["order_adjustments"]]
    money_sets.append(refund["total_duties_set"])
    for money_set in money_sets:
        money = money_set and (money_set[side] or money_set["shop_money"])
        if money:
            return money["currency_code"]
    return None
