"""The contract between the core and a platform adapter.

A platform adapter (Shopify, Cafe24, WooCommerce, or a third party's) turns what its platform sends
into the canonical records below, and talks to the platform's admin API on the core's behalf. The core
knows only this module: it never imports an adapter (see ``ccms_addon.plugin_manager``).

Everything here is plain data: adapters build these records, the store persists them.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
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


class InstallError(PlatformError):
    """An install or authorisation step that must be refused, with the HTTP status to answer (a
    4xx: bad signature, foreign shop, forged or expired state, a code the platform refused).
    ``code`` is the machine-readable reason of the error page/JSON; the message is shown to the
    merchant, so it never carries a secret."""

    def __init__(self, message: str, *, status: int = 400, code: str = "install_refused") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class SessionTokenError(PlatformError):
    """A session token of an embedded admin that does not authenticate (HTTP 401)."""


class SessionTokenUnsupportedError(SessionTokenError):
    """The platform has no embedded admin, so it issues no session tokens to verify."""


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
    #: after-sale programs count from delivery (else fulfilment); the shopper's language and
    #: shipping country choose the follow-ups' language and time zone; marketing consent as the
    #: platform recorded it (None: unknown, treated as no consent)
    fulfilled_at: datetime | None = None
    delivered_at: datetime | None = None
    locale: str | None = None
    country_code: str | None = None
    accepts_marketing: bool | None = None


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


@dataclass(frozen=True)
class OrderCancelled:
    """The platform reports an order cancelled, with what it recorded of why (emitted beside the
    order's :class:`OrderChanged`; the pipeline turns it into at most one VOC item).

    ``reason_code`` is the platform's own code as sent (Shopify ``cancel_reason``, Cafe24
    ``claim_reason_type``, WooCommerce the order status); ``reason`` the words recorded with it
    (the shopper's, where the platform keeps them); ``by_customer`` True when the platform says
    the customer asked for it, False when it says the merchant did, None when it does not say.
    """

    platform_order_id: str
    reason_code: str | None = None
    reason: str | None = None
    by_customer: bool | None = None
    occurred_at: datetime | None = None


@dataclass(frozen=True)
class ReturnRequested:
    """A customer asked to return (part of) an order, or the platform reports such a return;
    ``claim_id`` is the platform's id of the return where it sends one (Cafe24's claim code)."""

    platform_order_id: str
    reason_code: str | None = None
    reason: str | None = None
    claim_id: str | None = None
    occurred_at: datetime | None = None


CanonicalEvent = (OrderChanged | CustomerChanged | RefundCreated | OrdersNeedFetch | CustomersNeedFetch
                  | CustomerDataRequested | CustomerRedactRequested | ShopRedactRequested
                  | AppUninstalled | OrderCancelled | ReturnRequested)


class CredentialsStore(Protocol):
    """Where an adapter reads and writes back a shop's credentials while it works for the shop.

    Platforms whose access tokens expire (Cafe24's after 2 hours, Shopify's expiring offline
    tokens after 1 hour) hand out a new access token *and a new refresh token* on every refresh,
    and void the old refresh token: a refreshed credential that is not stored at once is lost, and
    with it the shop. The core implements this (``ccms_addon.install.ShopCredentials``: encrypted,
    in the shop's row); an adapter calls it only after a refresh.
    """

    def load(self) -> Mapping[str, Any]:
        """The credentials stored now (another worker may have refreshed them meanwhile); an
        empty mapping for a shop that is gone or uninstalled."""

    def save(self, credentials: Mapping[str, Any]) -> None:
        """Store refreshed credentials (encrypted) in place of the shop's current ones. Does
        nothing for a shop that was uninstalled meanwhile (its credentials stay revoked)."""


@dataclass(frozen=True)
class ShopContext:
    """What an adapter may know of a shop when it calls the platform's admin API.

    ``credentials`` are decrypted only for the duration of a job and never logged.
    ``credentials_store`` is where refreshed credentials go (see :class:`CredentialsStore`). With
    None, an expiring token is never refreshed (a refreshed token could not be kept, and the
    platform voids the old refresh token as it issues the new one): an expired one is a
    ``PlatformAuthError``.
    """

    shop_id: int
    domain: str
    credentials: Mapping[str, Any] = field(default_factory=dict)
    settings: Mapping[str, str] = field(default_factory=dict)
    credentials_store: CredentialsStore | None = field(default=None, compare=False, repr=False)


#: refresh an expiring access token when less than this is left of it (seconds)
TOKEN_REFRESH_MARGIN = 300


def expires_at(seconds: float, now: datetime | None = None) -> str:
    """The ISO 8601 UTC instant ``seconds`` from ``now``: how expiring credentials record their
    ``expires_at`` / ``refresh_token_expires_at``."""
    base = now or datetime.now(timezone.utc)
    return (base + timedelta(seconds=float(seconds))).isoformat()


def credentials_expiring(credentials: Mapping[str, Any], *, margin: float = TOKEN_REFRESH_MARGIN,
                         now: datetime | None = None) -> bool:
    """True when the credentials carry an ``expires_at`` less than ``margin`` seconds away (or
    unreadable); False for credentials that do not expire."""
    value = credentials.get("expires_at")
    if not value:
        return False
    try:
        when = datetime.fromisoformat(str(value))
    except ValueError:
        return True
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when - timedelta(seconds=margin) <= (now or datetime.now(timezone.utc))


def refreshed_credentials(shop: ShopContext, current: Mapping[str, Any],
                          refresh: Callable[[Mapping[str, Any]], Mapping[str, Any]]
                          ) -> Mapping[str, Any]:
    """New credentials for ``shop`` from ``refresh(credentials)`` (the platform's refresh-token
    grant), written back through ``shop.credentials_store`` at once.

    Platforms void a refresh token once it is used, and several workers may work for one shop:
    the store is read first (another worker may have refreshed already: its fresh token is used,
    no second refresh is made), and a refused refresh is forgiven when the store meanwhile holds
    another refresh token (a worker that refreshed in between). ``PlatformAuthError`` otherwise:
    the shop must authorise the app again, or the context has no store to keep new credentials in.
    """
    store = shop.credentials_store
    if store is None:
        raise PlatformAuthError(f"shop {shop.shop_id}: the access token needs a refresh, and this "
                                "context has no credentials store to keep the new one in")
    latest = dict(store.load() or {})
    if (latest.get("access_token") and latest.get("access_token") != current.get("access_token")
            and not credentials_expiring(latest)):
        return latest
    if latest.get("refresh_token"):
        current = latest
    try:
        new = dict(refresh(current))
    except PlatformAuthError:
        latest = dict(store.load() or {})
        if (latest.get("access_token") and latest.get("refresh_token")
                and latest.get("refresh_token") != current.get("refresh_token")):
            return latest
        raise
    store.save(new)
    return new


def fresh_context(shop: ShopContext,
                  refresh: Callable[[Mapping[str, Any]], Mapping[str, Any]]) -> ShopContext:
    """``shop`` with its access token refreshed (through ``refresh``, the platform's grant) when
    less than the margin is left of it; unchanged when it does not expire or cannot be stored."""
    if (shop.credentials_store is None or not shop.credentials.get("refresh_token")
            or not credentials_expiring(shop.credentials)):
        return shop
    from dataclasses import replace
    return replace(shop, credentials=dict(refreshed_credentials(shop, shop.credentials, refresh)))


def reauthorizer(shop: ShopContext, refresh: Callable[[Mapping[str, Any]], Mapping[str, Any]]
                 ) -> Callable[[], str | None]:
    """What an admin-API client calls on a 401: refresh (or take the token another worker
    refreshed meanwhile); the new access token, or None when there is none to retry with."""
    def reauthorize() -> str | None:
        new = refreshed_credentials(shop, shop.credentials, refresh)
        token = new.get("access_token")
        return token if isinstance(token, str) and token != shop.credentials.get("access_token") \
            else None
    return reauthorize


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
class OrderPage:
    """One page of a shop's orders from :meth:`PlatformAdapter.list_orders`.

    ``next_cursor`` is opaque to the core: it is stored as-is (in the shop's settings) after the
    page's orders are committed, and handed back to continue, even in another process after a
    crash; None when nothing is left to read. ``total`` is the platform's count of what the whole
    listing will return, where it says (for a progress bar), else None.
    """

    records: tuple[OrderRecord, ...] = ()
    next_cursor: str | None = None
    total: int | None = None


class CursorInvalidError(PlatformError):
    """A saved :class:`OrderPage` cursor cannot be continued (it expired, its bulk export was
    deleted, it was written by another adapter version): list again from the start."""


@dataclass(frozen=True)
class CollectionPage:
    """One page of the products in a collection, from
    :meth:`PlatformAdapter.list_collection_products`: the platform's product ids (as order lines
    carry them in ``product_id``), the collection's title where the platform gives it, and the
    cursor of the next page (None on the last)."""

    product_ids: tuple[str, ...] = ()
    title: str | None = None
    next_cursor: str | None = None


class CollectionNotFoundError(PlatformError):
    """The platform knows no collection (category) with that id in this shop."""


@dataclass(frozen=True)
class WidgetInjection:
    """How the widget's loader was put on the shop's storefront pages."""

    method: str        # e.g. "theme_app_extension", "script_tag", "wordpress_plugin"
    reference: str     # the platform-side id (script tag id…) or a short instruction key
    detail: str = ""   # what the merchant may still have to do, in plain words


@dataclass(frozen=True)
class ReturnLine:
    """One order line (or part of it) a settlement gives back."""

    platform_line_id: str
    quantity: int


@dataclass(frozen=True)
class SettlementRequest:
    """What an approved guarantee claim asks the platform to do for one order.

    ``action`` is ``"refund"`` (money back, e.g. a buyback) or ``"return"`` (a return of the goods,
    refunded when they arrive, e.g. a free return). ``amount`` is in ``currency`` (the order's); None
    with ``action="return"`` means the platform computes the refund from the returned lines.
    ``reference`` is unique per claim (``CLAIM-<id>``): the adapter writes it into the platform-side
    record (note, reason, idempotency key) and looks for it before creating anything, so a retried
    job never refunds twice.
    """

    platform_order_id: str
    action: str
    reference: str
    currency: str
    amount: Decimal | None = None
    lines: tuple[ReturnLine, ...] = ()
    reason: str = ""
    restock: bool = False
    notify_customer: bool = True


    def check(self) -> None:
        """Refuse a request no platform call could satisfy, before any call is made
        (``PlatformError`` with a message a merchant can act on)."""
        if self.action not in SETTLEMENT_ACTIONS:
            raise PlatformError(f"unknown settlement action {self.action!r}: use 'refund' or "
                                "'return'")
        if not self.reference or not self.reference.strip() or not self.reference.isprintable():
            raise PlatformError("a settlement needs its claim reference (CLAIM-<id>)")
        if self.amount is not None:
            exact_amount(self.amount, self.currency)
            if self.amount <= 0:
                raise PlatformError(f"the amount to refund must be positive, not {self.amount}")
        for line in self.lines:
            if line.quantity <= 0:
                raise PlatformError(f"order line {line.platform_line_id}: the quantity to give "
                                    f"back must be positive, not {line.quantity}")
        if self.action == "refund" and self.amount is None and not self.lines:
            raise PlatformError("a refund needs an amount or the order lines to refund")


#: what a settlement can ask a platform for
SETTLEMENT_ACTIONS = ("refund", "return")


def exact_amount(amount: Decimal, currency: str) -> str:
    """``amount`` as a platform's decimal string with the currency's minor digits (15000 KRW is
    "15000"); an amount finer than the currency allows is refused (``PlatformError``), never
    rounded."""
    from ccms_addon.money import format_amount, quantize
    try:
        exact = quantize(amount, currency)
    except (InvalidOperation, ValueError, LookupError):
        raise PlatformError(f"cannot express {amount} {currency} as an amount") from None
    if exact != amount:
        raise PlatformError(f"{amount} {currency} has more decimals than {currency} allows")
    return format_amount(amount, currency)


def carries_reference(text: Any, reference: str) -> bool:
    """True when ``text`` names ``reference`` as a whole token (``CLAIM-1`` is not in
    ``CLAIM-12``): how an adapter finds the platform record a settlement already created."""
    if not isinstance(text, str) or not text:
        return False
    return re.search(rf"(?<![\w-]){re.escape(reference)}(?![\w-])", text) is not None


@dataclass(frozen=True)
class SettlementResult:
    """What the platform created for a settlement (or had already created for its reference)."""

    action: str                 # "refund" or "return", what was actually created
    platform_id: str            # the platform's refund / return id
    status: str                 # e.g. "created", "requested", "already_existed"
    amount: Decimal | None = None
    detail: str = ""


#: what :meth:`PlatformAdapter.order_action` can ask a platform for (a refund or a return of an
#: order is a :class:`SettlementRequest`, through ``settle_claim``)
ORDER_ACTIONS = ("cancel", "resend")


@dataclass(frozen=True)
class OrderActionRequest:
    """What staff ask the platform to do to one order from a VOC item, besides a refund or return.

    ``action`` is ``"cancel"`` (an order not shipped yet, as a whole: ``refund`` gives the payment
    back to the original payment method, ``restock`` puts the items back in stock) or ``"resend"``
    (a shipped order whose goods were lost or damaged: the ``lines`` are shipped again at no
    charge, the platform's way — a zero-priced replacement order or a same-product exchange;
    no ``lines`` means every line). ``notify_customer`` lets the platform tell the customer.
    ``reference`` is unique per action (``VOC-2026-000123-A2``): the adapter writes it into the
    platform-side record (staff note, tag, memo, meta data) and looks for it before creating
    anything, so a retried job never acts twice.
    """

    platform_order_id: str
    action: str
    reference: str
    lines: tuple[ReturnLine, ...] = ()
    reason: str = ""
    refund: bool = True
    restock: bool = True
    notify_customer: bool = True

    def check(self) -> None:
        """Refuse a request no platform call could satisfy, before any call is made
        (``PlatformError`` with a message a merchant can act on)."""
        if self.action not in ORDER_ACTIONS:
            raise PlatformError(f"unknown order action {self.action!r}: use 'cancel' or 'resend'")
        if not self.reference or not self.reference.strip() or not self.reference.isprintable():
            raise PlatformError("an order action needs its reference (VOC-…-A<n>)")
        if self.action == "cancel" and self.lines:
            raise PlatformError("a cancellation is of the whole order: name no lines")
        for line in self.lines:
            if line.quantity <= 0:
                raise PlatformError(f"order line {line.platform_line_id}: the quantity to send "
                                    f"again must be positive, not {line.quantity}")


@dataclass(frozen=True)
class OrderActionResult:
    """What the platform did for an order action (or had already done for its reference)."""

    action: str                 # "cancel" or "resend"
    platform_id: str            # the order's, the cancellation's, the replacement's or exchange's id
    status: str                 # "created", "requested" (the platform finishes it on its own),
    #                             or "already_existed"
    detail: str = ""


# --------------------------------------------------------------------------------------------------
# Install and admin authentication: what the install flows (``ccms_addon.install``) exchange with an
# adapter.
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InstallRequest:
    """One request of an install flow, as the merchant's browser (or the platform) sent it.

    ``query`` keeps every query-string pair in order, repeated names included (Shopify signs the
    whole query string); ``body`` is the raw body of a POST (WooCommerce posts its keys as JSON).
    """

    method: str
    query: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    headers: Headers = field(default_factory=Headers)

    def arg(self, name: str) -> str | None:
        """The first value of query parameter ``name``, None when absent."""
        return next((value for key, value in self.query if key == name), None)

    def args(self) -> dict[str, str]:
        """The query as a dict (first value of each name)."""
        found: dict[str, str] = {}
        for key, value in self.query:
            found.setdefault(key, value)
        return found


@dataclass(frozen=True)
class InstallResult:
    """What an authorisation produced: the shop, its new credentials, and how to land there.

    ``credentials`` are stored encrypted and replace the shop's previous ones (a reinstall);
    ``webhook_secret`` is the per-shop secret the platform will sign deliveries with, where there
    is one (WooCommerce), stored encrypted; ``settings`` are merged into the shop's settings
    (Cafe24's ``shop_no``…); ``landing_url`` is where the merchant's browser goes once the shop is
    set up (Shopify: the embedded admin inside Shopify), None for the add-on's own ``/admin/``.
    """

    shop_domain: str
    credentials: Mapping[str, Any]
    webhook_secret: str | None = None
    shop_name: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    landing_url: str | None = None


@dataclass(frozen=True)
class WebhookRegistration:
    """The webhook subscriptions a shop has after :meth:`PlatformAdapter.register_webhooks`.

    ``topics`` are the platform's topic names now subscribed (created or found); ``detail`` says,
    in plain words, what the merchant or the app's configuration must still provide (Shopify's
    privacy topics live in the app's configuration, Cafe24's events in its developer center).
    """

    topics: tuple[str, ...] = ()
    detail: str = ""


@runtime_checkable
class PlatformAdapter(Protocol):
    """What a platform plugin returns from ``register_platforms``.

    The webhook ingress calls, in this order and nothing else on the request path:
    ``is_ping`` → ``shop_domain`` → ``sender_allowed`` → ``webhook_secrets`` → ``verify`` →
    ``delivery``.
    The worker calls ``normalize`` and, for ``OrdersNeedFetch``, ``fetch_orders``.
    The backfill and the reconciliation (``ccms_addon.sync``) call ``list_orders``.
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

    def list_orders(self, shop: ShopContext, *, updated_since: datetime | None,
                    cursor: str | None) -> OrderPage:
        """One page of the shop's orders updated at or after ``updated_since`` (None: every order
        the app may read), complete records with their lines, in the platform's documented
        pagination; what ``ccms-addon sync orders`` backfills and the reconciliation job reads.

        The first call passes ``cursor=None``; each next call passes the previous page's
        ``next_cursor`` with the same ``updated_since``, until it is None. A page may be empty
        while more follow (a date window without orders, an export still running). The adapter
        paces itself by the platform's rate-limit headers before it is refused, and may wait in
        the call (at most about half a minute at a time); errors as ``fetch_orders`` (``PlatformUnavailableError``: retry the same cursor
        later), plus :class:`CursorInvalidError` when ``cursor`` can no longer be continued.
        Orders may repeat across pages (the store's upsert makes a repeat a no-op); an order
        updated while the listing runs may be missed, which the next reconciliation covers.
        """

    def list_collection_products(self, shop: ShopContext, collection_id: str, *,
                                 cursor: str | None) -> CollectionPage:
        """One page of the products in a collection a guarantee names: a Shopify collection
        (custom or smart), a Cafe24 category, a WooCommerce product category.

        The first call passes ``cursor=None``; each next call the previous page's
        ``next_cursor`` until it is None. Pacing and errors as :meth:`list_orders`, plus
        :class:`CollectionNotFoundError` when the shop has no such collection.
        """

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

    def settle_claim(self, shop: ShopContext, request: SettlementRequest) -> SettlementResult:
        """Create the platform-side refund or return for an approved guarantee claim.

        Idempotent by ``request.reference``: find an existing refund/return carrying it first and
        return it (status ``already_existed``) instead of creating a second one. Where the platform
        has no return API, a ``return`` becomes a refund of the lines with restock, and the result's
        ``action`` says so. Errors as ``fetch_orders`` (``PlatformUnavailableError`` is retried with
        backoff), plus ``PlatformError`` when the platform refuses the request for good (amount
        above what is refundable, order not found) with a message a merchant can act on.
        """

    def order_action(self, shop: ShopContext, request: OrderActionRequest) -> OrderActionResult:
        """Cancel an order or send its goods again, asked by staff from a VOC item (a refund or
        a return of an order goes through :meth:`settle_claim`).

        Idempotent by ``request.reference``: find the platform record that already carries it
        (or, for a cancel, an order that is already cancelled) and return it (status
        ``already_existed``) instead of acting a second time. Errors as :meth:`settle_claim`
        (``PlatformUnavailableError`` is retried with backoff; ``PlatformError`` when the
        platform refuses for good: the order shipped, was deleted, cannot be cancelled through
        the API).
        """

    # ---- install, authorisation and the embedded admin (``ccms_addon.install``) ----------------

    def install_shop(self, request: InstallRequest, settings: Mapping[str, str]) -> str:
        """Validate the request that starts an install (``GET /install/<name>``) and return the
        shop it is for, in :meth:`canonical_shop_domain` form.

        ``settings`` are the app-level ``CCMS_<PLATFORM>_*`` values. Check everything the
        platform signs (Shopify's ``hmac`` and ``timestamp``) and the shop's form (a
        ``*.myshopify.com`` domain, a Cafe24 mall id, an https site URL); raise
        :class:`InstallError` (a 4xx) for anything else, never another exception for bad input.
        """

    def install_url(self, shop_domain: str, *, state: str, callback_url: str,
                    settings: Mapping[str, str]) -> str:
        """Where to send the merchant's browser to authorise the app for ``shop_domain``.

        ``state`` is the core's signed, short-lived token naming this pending install; the
        platform must echo it back (OAuth ``state``, WooCommerce ``user_id``). ``callback_url``
        is ``{CCMS_PUBLIC_URL}/install/<name>/callback``, the redirect URI (and WooCommerce's
        ``callback_url`` and ``return_url``). ``InstallError`` when the app is not configured.
        """

    def install_state(self, request: InstallRequest) -> str | None:
        """The ``state`` token the platform echoed in a callback request (the query's ``state``,
        WooCommerce's ``user_id`` in the query or the JSON body); None when it is missing."""

    def complete_install(self, shop_domain: str, request: InstallRequest, *, callback_url: str,
                         settings: Mapping[str, str]) -> InstallResult | None:
        """Finish authorising ``shop_domain`` from a callback request whose state the core has
        verified (signature, age, and for a GET the browser's cookie): verify what the
        platform signs, exchange the code for credentials (or check the keys the platform
        posted), and return them.

        Return None for a callback that carries no credentials because the platform delivered
        them in a request of its own (WooCommerce's browser return after it posted the keys);
        the core then lands the merchant on the shop if it is installed. ``InstallError`` (4xx)
        for a bad signature, a shop that is not the pending one, a refused code or keys, a
        merchant who declined; ``PlatformUnavailableError`` when the platform cannot be reached.
        """

    def register_webhooks(self, shop: ShopContext, webhook_url: str,
                          webhook_secret: str | None) -> WebhookRegistration:
        """Subscribe the shop to the topics this adapter normalizes, delivered to
        ``webhook_url`` (``{CCMS_PUBLIC_URL}/webhooks/<name>``), signed with ``webhook_secret``
        where the platform signs per subscription.

        Idempotent: find the subscriptions that exist, create only what is missing, repair what
        points elsewhere (a reinstall, a new public URL). Where the platform takes no
        subscriptions through its API (Cafe24's developer center, Shopify's privacy topics), do
        what the API allows and say the rest in ``detail``. Errors as ``fetch_orders``, plus
        ``PlatformError`` when the platform refuses a subscription.
        """

    def verify_session_token(self, token: str, settings: Mapping[str, str]) -> str:
        """The shop domain a session token of the platform's embedded admin authenticates.

        Check the signature in constant time, the expiry and not-before times (a few seconds of
        leeway), the audience (the app's key) and the issuer and destination (the shop).
        :class:`SessionTokenError` when it does not authenticate;
        :class:`SessionTokenUnsupportedError` for a platform without an embedded admin.
        """

    def frame_ancestors(self, shop_domain: str) -> list[str]:
        """The origins allowed to frame the add-on's admin pages of this shop (the
        ``Content-Security-Policy: frame-ancestors`` sources): Shopify's admin and the shop for
        an embedded app; ``[]`` (``'none'``) where the admin is never embedded."""
