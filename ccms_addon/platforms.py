"""The contract between the core and a platform adapter.

A platform adapter (Shopify, Cafe24, WooCommerce, or a third party's) turns what its platform sends
into the canonical records below, and talks to the platform's admin API on the core's behalf. The core
knows only this module: it never imports an adapter (see ``ccms_addon.plugin_manager``).

Everything here is plain data: adapters build these records, the store persists them.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

from werkzeug.datastructures import Headers


# --------------------------------------------------------------------------------------------------
# Errors an adapter raises. The webhook ingress and the workers map them to answers and states.
# --------------------------------------------------------------------------------------------------


class PlatformError(Exception):
    """Base class for everything an adapter raises on purpose."""


class PayloadInvalidError(PlatformError):
    """The delivery is not what the platform sends (bad JSON, missing identity fields): HTTP 400."""


class UnknownTopicError(PlatformError):
    """The adapter does not handle this topic: the delivery is stored and marked ignored."""


class PlatformUnavailableError(PlatformError):
    """The platform's admin API could not be reached or answered 429/5xx: retry later with backoff."""


class PlatformAuthError(PlatformError):
    """The platform refused our credentials (revoked token, uninstalled app): do not retry blindly."""


# --------------------------------------------------------------------------------------------------
# Canonical states. str Enums with lowercase values, stored as strings.
# --------------------------------------------------------------------------------------------------


class FinancialStatus(str, enum.Enum):
    PENDING = "pending"
    AUTHORIZED = "authorized"
    PARTIALLY_PAID = "partially_paid"
    PAID = "paid"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    VOIDED = "voided"
    UNKNOWN = "unknown"


class FulfillmentStatus(str, enum.Enum):
    UNFULFILLED = "unfulfilled"
    PARTIAL = "partial"
    FULFILLED = "fulfilled"  # handed to the carrier / shipped
    DELIVERED = "delivered"
    RETURNED = "returned"
    UNKNOWN = "unknown"


# --------------------------------------------------------------------------------------------------
# What arrives: one webhook request, as the adapter sees it.
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookRequest:
    """One HTTP delivery as received: case-insensitive headers, the raw body, the sender's address."""

    headers: Headers
    body: bytes
    remote_addr: str | None = None

    @classmethod
    def build(cls, headers: Mapping[str, str] | Headers, body: bytes,
              remote_addr: str | None = None) -> "WebhookRequest":
        return cls(headers if isinstance(headers, Headers) else Headers(list(headers.items())),
                   body, remote_addr)


@dataclass(frozen=True)
class DeliveryIdentity:
    """Who sent a delivery and how to recognise a second copy of it.

    ``delivery_id`` is unique per (platform, shop) for one logical delivery: a platform's retry of the
    same delivery must produce the same id, so the inbox's unique constraint drops the copy.
    """

    shop_domain: str
    topic: str
    delivery_id: str
    occurred_at: datetime | None = None


# --------------------------------------------------------------------------------------------------
# Canonical records (what the store keeps) and events (what a delivery means).
# Money is always Decimal with its ISO 4217 currency; never float.
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CustomerRecord:
    platform_customer_id: str | None
    email: str | None = None
    name: str | None = None
    phone: str | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class OrderLineRecord:
    platform_line_id: str
    title: str
    quantity: int
    unit_price: Decimal
    sku: str | None = None
    product_id: str | None = None
    variant_id: str | None = None


@dataclass(frozen=True)
class RefundRecord:
    platform_refund_id: str
    platform_order_id: str
    amount: Decimal
    currency: str
    note: str | None = None
    created_at: datetime | None = None


@dataclass(frozen=True)
class OrderRecord:
    """An order as the platform last described it.

    ``updated_at`` is the platform's own modification time: the store keeps the newest and never lets
    an older record overwrite it. ``complete=False`` marks a summary (an event that carries only the
    order header): it creates the order if it is absent but never overwrites a complete record, and the
    adapter asks for the full order to be fetched (``OrdersNeedFetch``).
    """

    platform_order_id: str
    number: str
    currency: str
    total: Decimal
    updated_at: datetime
    placed_at: datetime | None = None
    financial_status: FinancialStatus = FinancialStatus.UNKNOWN
    fulfillment_status: FulfillmentStatus = FulfillmentStatus.UNKNOWN
    cancelled_at: datetime | None = None
    email: str | None = None
    phone: str | None = None
    customer_name: str | None = None
    customer: CustomerRecord | None = None
    lines: tuple[OrderLineRecord, ...] = ()
    refunds: tuple[RefundRecord, ...] = ()
    complete: bool = True


@dataclass(frozen=True)
class OrderChanged:
    order: OrderRecord


@dataclass(frozen=True)
class CustomerChanged:
    customer: CustomerRecord


@dataclass(frozen=True)
class RefundCreated:
    refund: RefundRecord


@dataclass(frozen=True)
class OrdersNeedFetch:
    """The delivery named orders without describing them: fetch them from the admin API."""

    platform_order_ids: tuple[str, ...]


@dataclass(frozen=True)
class CustomersNeedFetch:
    """The delivery named customers without describing them: fetch them from the admin API."""

    platform_customer_ids: tuple[str, ...]


@dataclass(frozen=True)
class CustomerDataRequested:
    """A privacy request for an export of what we hold on one customer (GDPR art. 15, PIPA art. 35)."""

    platform_request_id: str | None
    platform_customer_id: str | None
    email: str | None
    platform_order_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class CustomerRedactRequested:
    """Erase the personal data of these customers (by platform id or email) and of these orders."""

    platform_customer_ids: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    platform_order_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class ShopRedactRequested:
    """Delete everything held for the shop (Shopify sends it 48 hours after uninstall)."""


@dataclass(frozen=True)
class AppUninstalled:
    """The merchant removed the app: credentials are void, follow-ups stop."""


CanonicalEvent = (OrderChanged | CustomerChanged | RefundCreated | OrdersNeedFetch | CustomersNeedFetch
                  | CustomerDataRequested | CustomerRedactRequested | ShopRedactRequested
                  | AppUninstalled)


@dataclass(frozen=True)
class ShopContext:
    """What an adapter may know of a shop when it calls the platform's admin API.

    ``credentials`` are decrypted only for the duration of a job and never logged.
    """

    shop_id: int
    domain: str
    credentials: Mapping[str, Any] = field(default_factory=dict)
    settings: Mapping[str, str] = field(default_factory=dict)


def load_json(body: bytes) -> Any:
    """Parse a platform body: numbers with a fraction become Decimal (never float), big ints stay exact.

    Raises ``PayloadInvalidError`` for anything that is not JSON text.
    """
    try:
        return json.loads(body, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadInvalidError(f"body is not JSON: {exc}") from None


# --------------------------------------------------------------------------------------------------
# The adapter protocol.
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WidgetInjection:
    """How the widget's loader was put on the shop's storefront pages."""

    method: str        # e.g. "theme_app_extension", "script_tag", "wordpress_plugin"
    reference: str     # the platform-side id (script tag id…) or a short instruction key
    detail: str = ""   # what the merchant may still have to do, in plain words


@runtime_checkable
class PlatformAdapter(Protocol):
    """What a platform plugin returns from ``register_platforms``.

    The webhook ingress calls, in this order and nothing else on the request path:
    ``is_ping`` → ``shop_domain`` → ``sender_allowed`` → ``webhook_secrets`` → ``verify`` →
    ``delivery``.
    The worker calls ``normalize`` and, for ``OrdersNeedFetch``, ``fetch_orders``.
    """

    #: the entry-point name and the URL segment: ``/webhooks/<name>``
    name: str

    def canonical_shop_domain(self, value: str) -> str:
        """The shop identity in the form ``shop_domain`` returns (lower-cased host, no trailing
        slash…), for registering shops; ``ValueError`` with a helpful message when it is not valid."""

    def delivery_headers(self, body: bytes, *, shop_domain: str, topic: str | None,
                         secret: str) -> dict[str, str]:
        """The headers the platform would send with ``body``, signed with ``secret``: what
        ``ccms-addon webhooks replay``, the tests and the benchmarks send. ``topic`` may be None
        where the body names its own event."""

    def is_ping(self, request: WebhookRequest) -> bool:
        """True for a platform's liveness probe that must be answered 200 and not stored."""

    def shop_domain(self, request: WebhookRequest) -> str:
        """The shop's identity on the platform (``x.myshopify.com``, a Cafe24 mall id, a site URL).

        Raise ``PayloadInvalidError`` when the request does not name one.
        """

    def sender_allowed(self, request: WebhookRequest, settings: Mapping[str, str]) -> bool:
        """False when the sender's address is outside the platform's published range (an
        allow-list the merchant configured); True where the platform has none."""

    def webhook_secrets(self, settings: Mapping[str, str], shop_secret: str | None) -> list[str]:
        """The secrets a delivery may be signed with, newest first.

        ``settings`` are the app-level ``CCMS_<PLATFORM>_*`` values (lower-case keys without prefix);
        ``shop_secret`` is the per-shop webhook secret stored with the shop, if any.
        """

    def verify(self, request: WebhookRequest, secrets: Sequence[str]) -> bool:
        """True when the request is authentic. Compare in constant time; missing header → False."""

    def delivery(self, request: WebhookRequest) -> DeliveryIdentity:
        """Topic and de-duplication id of an authentic request; ``PayloadInvalidError`` if malformed."""

    def normalize(self, topic: str, body: bytes) -> list[CanonicalEvent]:
        """Canonical events for a stored delivery body (parse it with :func:`load_json`).

        ``UnknownTopicError`` for topics not handled, ``PayloadInvalidError`` for a body that does not
        have the documented shape.
        """

    def fetch_orders(self, shop: ShopContext, platform_order_ids: Sequence[str]) -> list[OrderRecord]:
        """Full orders from the admin API; ``PlatformUnavailableError`` when it should be retried.

        Orders the platform does not know (deleted since) are left out of the result.
        """

    def fetch_customers(self, shop: ShopContext,
                        platform_customer_ids: Sequence[str]) -> list[CustomerRecord]:
        """Customers from the admin API; same error contract as ``fetch_orders``."""

    def inject_widget(self, shop: ShopContext, loader_url: str, widget_key: str) -> WidgetInjection:
        """Put the widget's loader on every storefront page of ``shop``, the platform's way.

        Called after install and by ``ccms-addon widget install --shop ID``
        (:func:`ccms_addon.widget_install.install_widget`). ``loader_url`` is
        ``{CCMS_PUBLIC_URL}/widget/v1/loader.js``; ``widget_key`` is the shop's public key, given to
        the loader as ``data-shop-key`` or, where the platform renders only a ``src`` (script tags),
        as ``?shop_key=``. Idempotent: find what is already installed first, create only what is
        absent, update what changed. The result says which method is active and, in ``detail``,
        what the merchant must still do. Errors as ``fetch_orders``, plus ``PlatformError`` when the
        platform refuses the request.
        """
