"""The Cafe24 platform adapter: webhook identity, canonical events, Admin API fetches, and an approved
claim's order return (:mod:`.settlement`).

What Cafe24 does differently from the other platforms, and how this module copes:

* No body signature. Cafe24 sends the app's webhook key as-is in ``X-API-Key``; it is compared in
  constant time. An optional sender IP allow-list is offered by :meth:`Cafe24Adapter.sender_allowed`.
* No delivery id and no event time. A delivery is identified by its event, its shop number and the
  SHA-256 of its body: a retry of the same body is the same delivery.
* The topic is the event number (``"90023"``) inside the body. Cafe24 publishes two samples without the
  ``{"event_no", "resource"}`` wrapper (90080, 90147); those shapes are recognised by their keys.
* Order events carry the order header only (no items, no modification time): they yield a summary
  (``complete=False``) and ask for the full order; bulk events carry only ids.
* Neither orders nor customers carry a modification time in the Admin API: a fetched record is dated
  with the fetch time, which is when it was known to be current.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlsplit

from marshmallow import Schema, ValidationError

from ccms_addon.platforms import (
    AppUninstalled,
    InstallRequest,
    InstallResult,
    SessionTokenUnsupportedError,
    WebhookRegistration,
    CanonicalEvent,
    CustomerChanged,
    CustomerRecord,
    CustomerRedactRequested,
    CustomersNeedFetch,
    DeliveryIdentity,
    FinancialStatus,
    FulfillmentStatus,
    OrderActionRequest,
    OrderActionResult,
    OrderCancelled,
    OrderChanged,
    OrderLineRecord,
    CollectionPage,
    OrderPage,
    OrderRecord,
    OrdersNeedFetch,
    PayloadInvalidError,
    PlatformAuthError,
    PlatformUnavailableError,
    RefundCreated,
    RefundRecord,
    ReturnRequested,
    SettlementRequest,
    SettlementResult,
    ShopContext,
    UnknownTopicError,
    WebhookRequest,
    WidgetInjection,
    load_json,
)

from . import collections, install, order_actions, schemas, settlement, sync, widget
from .client import (DEFAULT_TIMEOUT, MAX_RETRIES, Cafe24Client, Sleep, fresh_shop,
                     reauthorizer)

#: the header Cafe24 puts the app's webhook key in
API_KEY_HEADER = "X-API-Key"
#: Admin API defaults, overridable per shop with the settings ``api_base_url`` / ``api_version``
DEFAULT_API_BASE_URL = "https://{domain}.cafe24api.com"
DEFAULT_API_VERSION = "2026-03-01"
#: order ids per ``GET /api/v2/admin/orders`` (the endpoint takes a comma list, up to 1000 results)
ORDERS_PER_CALL = 100
#: host names of a mall, whose first label is the mall id
MALL_HOST_SUFFIXES = (".cafe24.com", ".cafe24api.com")
#: the currency of a 90160 return, which names none: Cafe24 is a Korean platform
DEFAULT_CURRENCY = "KRW"

ORDER_EVENTS = frozenset({90023, 90024, 90025, 90026, 90027, 90029})
ORDER_CANCELLATION_CHANGED, ORDER_RETURN_CHANGED = 90026, 90027
BULK_ORDER_EVENTS = frozenset({90071, 90072, 90073, 90074})
CUSTOMER_SIGNED_UP, APP_DELETED, CUSTOMER_CHANGED, CUSTOMER_DELETED, RETURN_COMPLETED = (
    90032, 90077, 90080, 90147, 90160)
HANDLED_EVENTS = ORDER_EVENTS | BULK_ORDER_EVENTS | {
    CUSTOMER_SIGNED_UP, APP_DELETED, CUSTOMER_CHANGED, CUSTOMER_DELETED, RETURN_COMPLETED}

#: keys of the published unwrapped bodies, by which their event is recognised
_CUSTOMER_CHANGED_MARKERS = frozenset({"diff_key", "sub_event_code"})
_CUSTOMER_DELETED_KEYS = frozenset({"mall_id", "event_shop_no", "member_id"})

#: ``paid`` of an order: T paid, F unpaid, M partly paid
PAID_STATUS = {"T": FinancialStatus.PAID, "F": FinancialStatus.PENDING,
               "M": FinancialStatus.PARTIALLY_PAID}
#: ``shipping_status`` of an order: F before shipping, W held, X not yet ordered from the supplier,
#: M in transit, T delivered
SHIPPING_STATUS = {"F": FulfillmentStatus.UNFULFILLED, "W": FulfillmentStatus.UNFULFILLED,
                   "X": FulfillmentStatus.UNFULFILLED, "M": FulfillmentStatus.FULFILLED,
                   "T": FulfillmentStatus.DELIVERED}

# Item ``order_status`` codes (N normal, C cancel, R return, E exchange) that decide an order's state.
ITEM_UNSHIPPED = frozenset({"N00", "N01", "N02", "N03", "N10", "N20", "N21", "N22"})
ITEM_IN_TRANSIT = frozenset({"N30"})
ITEM_DELIVERED = frozenset({"N40", "N50"})
ITEM_RETURNED = frozenset({"R40", "R41", "R42", "R43"})
#: cancel or return finished with the money paid back
ITEM_REFUNDED = frozenset({"C35", "C40", "R40"})
#: cancelled before payment
ITEM_VOIDED = frozenset({"C47", "C48", "C49"})


def _load(schema: Schema, data: Any, what: str) -> dict[str, Any]:
    try:
        return schema.load(data)
    except ValidationError as exc:
        raise PayloadInvalidError(f"Cafe24 {what} is malformed: {exc.messages}") from None


def _event_of_unwrapped(body: Mapping[str, Any]) -> int:
    """The event of a body published without the wrapper (only 90080 and 90147 are)."""
    keys = set(body)
    if keys & _CUSTOMER_CHANGED_MARKERS:
        return CUSTOMER_CHANGED
    if "member_id" in keys and keys <= _CUSTOMER_DELETED_KEYS:
        return CUSTOMER_DELETED
    raise PayloadInvalidError("Cafe24 body has no event_no and is neither the unwrapped 90080 nor "
                              "the unwrapped 90147 shape")


def parse_body(body: bytes) -> tuple[int, dict[str, Any]]:
    """``(event_no, resource)`` of a webhook body, wrapped or in a published unwrapped shape."""
    data = load_json(body)
    if not isinstance(data, dict):
        raise PayloadInvalidError("Cafe24 body is not a JSON object")
    if "event_no" in data or "resource" in data:
        envelope = _load(schemas.Cafe24EnvelopePayloadSchema(), data, "webhook envelope")
        return envelope["event_no"], envelope["resource"]
    return _event_of_unwrapped(data), data


def _first(*values: Any) -> Any:
    return next((value for value in values if value is not None), None)


def _now() -> datetime:
    return datetime.now(timezone.utc)


# --------------------------------------------------------------------------------------------------
# Webhook bodies → canonical events
# --------------------------------------------------------------------------------------------------


def order_summary(header: Mapping[str, Any]) -> OrderRecord:
    """A summary from an order event's header; dated by the latest date the header carries."""
    dates = [header[key] for key in ("order_date", "payment_date", "cancel_date",
                                     "return_confirmed_date") if header[key] is not None]
    phone = _first(header["buyer_cellphone"], header["buyer_phone"])
    customer = None
    if header["member_id"]:
        customer = CustomerRecord(platform_customer_id=header["member_id"], email=header["buyer_email"],
                                  name=header["buyer_name"], phone=phone)
    return OrderRecord(
        platform_order_id=header["order_id"],
        number=header["order_id"],
        currency=header["currency"] or DEFAULT_CURRENCY,
        total=_first(header["order_price_amount"], header["actual_payment_amount"]),
        updated_at=max(dates),
        placed_at=header["order_date"],
        financial_status=PAID_STATUS.get(header["paid"] or "", FinancialStatus.UNKNOWN),
        fulfillment_status=SHIPPING_STATUS.get(header["shipping_status"] or "",
                                               FulfillmentStatus.UNKNOWN),
        cancelled_at=header["cancel_date"],
        email=header["buyer_email"],
        phone=phone,
        customer_name=header["buyer_name"],
        customer=customer,
        complete=False,
    )


def events_for(event_no: int, resource: Mapping[str, Any]) -> list[CanonicalEvent]:
    """Canonical events of one handled Cafe24 event."""
    if event_no in ORDER_EVENTS:
        header = _load(schemas.Cafe24OrderEventPayloadSchema(), resource, f"{event_no} order event")
        events: list[CanonicalEvent] = [OrderChanged(order_summary(header)),
                                        OrdersNeedFetch((header["order_id"],))]
        return events + claim_events(event_no, header)
    if event_no in BULK_ORDER_EVENTS:
        bulk = _load(schemas.Cafe24OrdersBulkPayloadSchema(), resource, f"{event_no} bulk order event")
        return [OrdersNeedFetch(bulk["order_id"])]
    if event_no == CUSTOMER_SIGNED_UP:
        member = _load(schemas.Cafe24CustomerSignedUpPayloadSchema(), resource, "90032 sign-up")
        return [CustomerChanged(CustomerRecord(
            platform_customer_id=member["member_id"], email=member["email"], name=member["name"],
            phone=_first(member["cellphone"], member["phone"]), updated_at=member["created_date"]))]
    if event_no == CUSTOMER_CHANGED:
        changed = _load(schemas.Cafe24CustomerChangedPayloadSchema(), resource, "90080 change")
        return [CustomersNeedFetch((changed["member_id"],))]
    if event_no == CUSTOMER_DELETED:
        deleted = _load(schemas.Cafe24CustomerDeletedPayloadSchema(), resource, "90147 deletion")
        return [CustomerRedactRequested(platform_customer_ids=deleted["member_id"])]
    if event_no == APP_DELETED:
        _load(schemas.Cafe24AppDeletedPayloadSchema(), resource, "90077 app deletion")
        return [AppUninstalled()]
    if event_no == RETURN_COMPLETED:
        claim = _load(schemas.Cafe24ReturnCompletedPayloadSchema(), resource, "90160 return")
        refund = RefundRecord(
            platform_refund_id=claim["claim_code"], platform_order_id=claim["order_id"],
            amount=claim["refund_amount"], currency=claim["currency"] or DEFAULT_CURRENCY,
            note=_first(claim["claim_reason"], claim["claim_reason_type_text"]))
        return ([RefundCreated(refund), OrdersNeedFetch((claim["order_id"],))]
                + claim_events(event_no, claim))
    raise UnknownTopicError(f"Cafe24 event {event_no} is not handled")


def claim_events(event_no: int, resource: Mapping[str, Any]) -> list[CanonicalEvent]:
    """The cancellation or return an event reports, when it carries the claim's reason (Cafe24
    sends ``claim_reason_type``/``claim_reason``/``claim_reason_type_text`` with a claim; a
    status change without them says nothing about why). Who asked for it is not sent."""
    if event_no not in (ORDER_CANCELLATION_CHANGED, ORDER_RETURN_CHANGED, RETURN_COMPLETED):
        return []
    code = resource.get("claim_reason_type")
    words = _first(resource.get("claim_reason"), resource.get("claim_reason_type_text"))
    if code is None and words is None:
        return []
    if event_no == ORDER_CANCELLATION_CHANGED:
        return [OrderCancelled(resource["order_id"], reason_code=code, reason=words)]
    return [ReturnRequested(resource["order_id"], reason_code=code, reason=words,
                            claim_id=resource.get("claim_code"))]


# --------------------------------------------------------------------------------------------------
# Admin API answers → canonical records
# --------------------------------------------------------------------------------------------------


def order_states(order: Mapping[str, Any]) -> tuple[FinancialStatus, FulfillmentStatus]:
    """Financial and fulfilment state of a fetched order, from its items' status codes first.

    The order-level ``paid`` and ``shipping_status`` flags do not show refunds, returns or partial
    shipments; the items' ``order_status`` codes do. Where those do not decide, the flags do.
    """
    codes = [(item["order_status"] or "").upper() for item in order["items"]]
    paid = (order["paid"] or "").upper()

    if codes and all(code in ITEM_VOIDED or (paid == "F" and code.startswith("C")) for code in codes):
        financial = FinancialStatus.VOIDED
    elif codes and all(code in ITEM_REFUNDED | ITEM_VOIDED for code in codes):
        financial = FinancialStatus.REFUNDED
    elif any(code in ITEM_REFUNDED for code in codes):
        financial = FinancialStatus.PARTIALLY_REFUNDED
    else:
        financial = PAID_STATUS.get(paid, FinancialStatus.UNKNOWN)

    active = [code for code in codes if not code.startswith("C")]
    shipped = ITEM_IN_TRANSIT | ITEM_DELIVERED
    if active and all(code in ITEM_RETURNED for code in active):
        fulfillment = FulfillmentStatus.RETURNED
    elif active and all(code in ITEM_DELIVERED for code in active):
        fulfillment = FulfillmentStatus.DELIVERED
    elif active and all(code in shipped for code in active):
        fulfillment = FulfillmentStatus.FULFILLED
    elif any(code in shipped for code in active) and any(code in ITEM_UNSHIPPED for code in active):
        fulfillment = FulfillmentStatus.PARTIAL
    elif active and all(code in ITEM_UNSHIPPED for code in active):
        fulfillment = FulfillmentStatus.UNFULFILLED
    else:
        fulfillment = SHIPPING_STATUS.get((order["shipping_status"] or "").upper(),
                                          FulfillmentStatus.UNKNOWN)
    return financial, fulfillment


def order_line(item: Mapping[str, Any]) -> OrderLineRecord:
    """One item; its unit price is the product's price plus the chosen option's surcharge."""
    return OrderLineRecord(
        platform_line_id=item["order_item_code"],
        title=item["product_name"] or "",
        quantity=item["quantity"],
        unit_price=item["product_price"] + (item["option_price"] or Decimal(0)),
        sku=_first(item["custom_variant_code"], item["custom_product_code"]),
        product_id=item["product_no"],
        variant_id=item["variant_code"],
    )


def order_record(order: Mapping[str, Any], fetched_at: datetime) -> OrderRecord:
    """A complete order from ``GET /api/v2/admin/orders?embed=items,buyer``.

    Cafe24 orders carry no modification time, so ``updated_at`` is ``fetched_at``: the moment the
    order was known to look like this. The total is the order price (as in the webhook summary).
    Refunds are not part of this answer; they arrive as 90160 events.
    """
    buyer = order["buyer"] or {}
    amounts = order["actual_order_amount"] or order["initial_order_amount"] or {}
    total = _first(amounts.get("order_price_amount"), order["payment_amount"],
                   amounts.get("payment_amount"))
    if total is None:
        raise PlatformUnavailableError(f"Cafe24 order {order['order_id']} came without any amount")
    email = _first(buyer.get("email"), order["member_email"])
    name = _first(buyer.get("name"), order["billing_name"])
    phone = _first(buyer.get("cellphone"), buyer.get("phone"))
    member_id = _first(buyer.get("member_id"), order["member_id"])
    financial, fulfillment = order_states(order)
    return OrderRecord(
        platform_order_id=order["order_id"],
        number=order["order_id"],
        currency=order["currency"] or DEFAULT_CURRENCY,
        total=total,
        updated_at=fetched_at,
        placed_at=order["order_date"],
        financial_status=financial,
        fulfillment_status=fulfillment,
        cancelled_at=order["cancel_date"],
        email=email,
        phone=phone,
        customer_name=name,
        customer=(CustomerRecord(platform_customer_id=member_id, email=email, name=name, phone=phone)
                  if member_id else None),
        lines=tuple(order_line(item) for item in order["items"]),
        complete=True,
    )


def _load_answer(schema: Schema, data: Any, what: str) -> dict[str, Any]:
    """An Admin API answer; an unreadable one is treated as an outage (a proxy page, a bad deploy)."""
    try:
        return schema.load(data)
    except ValidationError as exc:
        raise PlatformUnavailableError(f"Cafe24 {what} answer is malformed: {exc.messages}") from None


def _chunks(ids: Sequence[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(ids), size):
        yield list(ids[start:start + size])


# --------------------------------------------------------------------------------------------------
# The adapter
# --------------------------------------------------------------------------------------------------


class Cafe24Adapter:
    """:class:`ccms_addon.platforms.PlatformAdapter` for Cafe24.

    ``timeout``, ``max_retries`` and ``sleep`` tune the Admin API client (tests make waits instant).
    """

    name = "cafe24"

    def __init__(self, *, timeout: tuple[float, float] = DEFAULT_TIMEOUT,
                 max_retries: int = MAX_RETRIES, sleep: Sleep = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._timeout = timeout
        self._max_retries = max_retries
        self._sleep = sleep
        self._clock = clock

    # -- shop registration and replay -------------------------------------------------------------

    def canonical_shop_domain(self, value: str) -> str:
        """The mall id of ``value``: a mall id, or a ``{mall}.cafe24.com`` / ``cafe24api.com`` URL."""
        return canonical_mall_id(value)

    def delivery_headers(self, body: bytes, *, shop_domain: str, topic: str | None,
                         secret: str) -> dict[str, str]:
        """What Cafe24 sends with ``body``: the webhook key as-is. The body names its own event and
        mall, so ``topic`` and ``shop_domain`` add nothing to the headers."""
        return {"Content-Type": "application/json", API_KEY_HEADER: secret}

    # -- webhook ingress -------------------------------------------------------------------------

    def is_ping(self, request: WebhookRequest) -> bool:
        """Cafe24 sends no liveness probe."""
        return False

    def shop_domain(self, request: WebhookRequest) -> str:
        """The mall id, lower-cased. The shop number is part of the delivery, not of the shop."""
        _, resource = parse_body(request.body)
        return _load(schemas.Cafe24ShopPayloadSchema(), resource, "webhook resource")["mall_id"]

    def webhook_secrets(self, settings: Mapping[str, str], shop_secret: str | None) -> list[str]:
        """The app's webhook key (``CCMS_CAFE24_WEBHOOK_KEY``).

        Cafe24 has one key per app, not per shop, so ``shop_secret`` is not used.
        """
        key = (settings.get("webhook_key") or "").strip()
        return [key] if key else []

    def verify(self, request: WebhookRequest, secrets: Sequence[str]) -> bool:
        """True when ``X-API-Key`` equals one of the secrets, compared in constant time.

        Cafe24 signs nothing: the key itself is the only proof of origin.
        """
        sent = request.headers.get(API_KEY_HEADER)
        if not sent:
            return False
        sent_bytes = sent.encode("utf-8")
        matched = False
        for secret in secrets:
            if secret and hmac.compare_digest(sent_bytes, secret.encode("utf-8")):
                matched = True
        return matched

    def sender_allowed(self, request: WebhookRequest, settings: Mapping[str, str]) -> bool:
        """True when the sender's address is in ``allowed_ips`` (``CCMS_CAFE24_ALLOWED_IPS``).

        A comma-separated list of addresses and CIDR networks; unset or blank allows every sender.
        Kept apart from :meth:`verify` because the Protocol gives ``verify`` no settings.
        Raises ``ValueError`` for a malformed list, so a configuration mistake is loud.
        """
        networks = parse_allowed_ips(settings.get("allowed_ips"))
        if not networks:
            return True
        try:
            address = ipaddress.ip_address(request.remote_addr or "")
        except ValueError:
            return False
        return any(address in network for network in networks)

    def delivery(self, request: WebhookRequest) -> DeliveryIdentity:
        """Topic = event number; id = ``"{event_no}:{event_shop_no}:{sha256(body)}"``.

        Cafe24 sends neither a delivery id nor an event time, so a retried body is recognised by its
        hash and ``occurred_at`` stays unknown.
        """
        event_no, resource = parse_body(request.body)
        shop = _load(schemas.Cafe24ShopPayloadSchema(), resource, "webhook resource")
        digest = hashlib.sha256(request.body).hexdigest()
        return DeliveryIdentity(
            shop_domain=shop["mall_id"],
            topic=str(event_no),
            delivery_id=f"{event_no}:{shop['event_shop_no'] or ''}:{digest}",
        )

    # -- worker ----------------------------------------------------------------------------------

    def normalize(self, topic: str, body: bytes) -> list[CanonicalEvent]:
        """Canonical events of a stored delivery (see :func:`events_for`)."""
        if not (topic.isascii() and topic.isdigit()) or int(topic) not in HANDLED_EVENTS:
            raise UnknownTopicError(f"Cafe24 topic {topic!r} is not handled")
        event_no, resource = parse_body(body)
        if event_no != int(topic):
            raise PayloadInvalidError(f"Cafe24 body is event {event_no}, stored as topic {topic}")
        return events_for(event_no, resource)

    def fetch_orders(self, shop: ShopContext, platform_order_ids: Sequence[str]) -> list[OrderRecord]:
        """Full orders, with items and buyer, by ``GET /api/v2/admin/orders?order_id=a,b``."""
        wanted = list(dict.fromkeys(i.strip() for i in platform_order_ids if i and i.strip()))
        if not wanted:
            return []
        fetched_at = _now()
        records: list[OrderRecord] = []
        with self._client(shop) as client:
            for chunk in _chunks(wanted, ORDERS_PER_CALL):
                answer = client.get("/api/v2/admin/orders", {
                    "shop_no": self._shop_no(shop), "order_id": ",".join(chunk),
                    "embed": "items,buyer", "limit": str(len(chunk))})
                if answer is None:
                    continue
                orders = _load_answer(schemas.Cafe24OrdersResponseSchema(), answer, "orders")["orders"]
                records.extend(order_record(order, fetched_at) for order in orders
                               if order["order_id"] in chunk)
        return records

    def fetch_customers(self, shop: ShopContext,
                        platform_customer_ids: Sequence[str]) -> list[CustomerRecord]:
        """Members by ``GET /api/v2/admin/customersprivacy/{member_id}``, one call each.

        That endpoint returns email and phone (scope ``mall.read_privacy``) but no modification time:
        ``updated_at`` is the fetch time. Members Cafe24 no longer knows (404) are left out.
        """
        wanted = list(dict.fromkeys(i.strip() for i in platform_customer_ids if i and i.strip()))
        fetched_at = _now()
        records: list[CustomerRecord] = []
        with self._client(shop) as client:
            for member_id in wanted:
                answer = client.get(f"/api/v2/admin/customersprivacy/{quote(member_id, safe='')}",
                                    {"shop_no": self._shop_no(shop)})
                if answer is None:
                    continue
                member = _load_answer(schemas.Cafe24CustomerPrivacyResponseSchema(), answer,
                                      "customersprivacy")["customersprivacy"]
                records.append(CustomerRecord(
                    platform_customer_id=member["member_id"], email=member["email"],
                    name=member["name"], phone=_first(member["cellphone"], member["phone"]),
                    updated_at=fetched_at))
        return records

    def list_orders(self, shop: ShopContext, *, updated_since: datetime | None,
                    cursor: str | None) -> OrderPage:
        """``GET /api/v2/admin/orders`` by date windows (``order_date`` for history, the dates of
        every order event for "updated since"), counted first, ``limit=1000`` with ``offset``;
        paced by ``X-Api-Call-Limit``; see :mod:`.sync`."""
        with self._client(shop) as client:
            return sync.list_orders(shop, client, shop_no=self._shop_no(shop),
                                    updated_since=updated_since, cursor=cursor,
                                    sleep=self._sleep, clock=self._clock)

    # -- the storefront widget -------------------------------------------------------------------

    def inject_widget(self, shop: ShopContext, loader_url: str, widget_key: str) -> WidgetInjection:
        """A ScriptTag (``loader_url?shop_key=…``) on every page (``display_location: ["all"]``)
        of the shop's ``shop_no``; see :mod:`.widget`."""
        with self._client(shop) as client:
            return widget.inject_widget(client, shop_no=self._shop_no(shop), loader_url=loader_url,
                                        widget_key=widget_key, client_id=shop.settings.get("client_id"))

    # -- an approved claim's refund or return ----------------------------------------------------

    def settle_claim(self, shop: ShopContext, request: SettlementRequest) -> SettlementResult:
        """An order return (``POST /api/v2/admin/orders/{order_id}/return``): accepted for a return,
        completed (Cafe24 refunds the items) for a refund, after looking for a return whose reason
        carries ``request.reference``; see :mod:`.settlement`. The shop setting
        ``cafe24_pg_cancel=false`` leaves the PG payment for the merchant to cancel."""
        with self._client(shop) as client:
            return settlement.settle_claim(client, shop_no=self._shop_no(shop), request=request,
                                           pg_cancel=_pg_cancel(shop))

    def order_action(self, shop: ShopContext, request: OrderActionRequest) -> OrderActionResult:
        """A cancel (``POST /api/v2/admin/orders/{order_id}/cancellation``, before shipping) or a
        resend (a same-product exchange, ``POST …/exchange``, its reference in the order's
        memos), after looking for the claim that carries ``request.reference``; see
        :mod:`.order_actions`. ``cafe24_pg_cancel=false`` leaves the PG payment to the merchant."""
        with self._client(shop) as client:
            return order_actions.order_action(client, shop_no=self._shop_no(shop), request=request,
                                              pg_cancel=_pg_cancel(shop))

    # -- install, webhooks and the admin (see :mod:`.install`) -------------------------------------

    def install_shop(self, request: InstallRequest, settings: Mapping[str, str]) -> str:
        """The mall id of ``?mall_id=`` (what Cafe24 appends to the App URL), in canonical form."""
        return install.install_shop(request, settings)

    def install_url(self, shop_domain: str, *, state: str, callback_url: str,
                    settings: Mapping[str, str]) -> str:
        """``https://{mall_id}.cafe24api.com/api/v2/oauth/authorize`` with ``response_type=code``,
        the client id, ``state``, the redirect URI and ``CCMS_CAFE24_SCOPES``."""
        return install.install_url(shop_domain, state=state, callback_url=callback_url,
                                   settings=settings)

    def install_state(self, request: InstallRequest) -> str | None:
        """Cafe24 echoes ``state`` in the redirect's query."""
        return request.arg("state")

    def complete_install(self, shop_domain: str, request: InstallRequest, *, callback_url: str,
                         settings: Mapping[str, str]) -> InstallResult:
        """``POST /api/v2/oauth/token`` (``grant_type=authorization_code``, HTTP Basic client
        credentials): both tokens and their expiry, the mall's ``shop_no``."""
        return install.complete_install(shop_domain, request, callback_url=callback_url,
                                        settings=settings)

    def register_webhooks(self, shop: ShopContext, webhook_url: str,
                          webhook_secret: str | None) -> WebhookRegistration:
        """Switch the mall's webhook reception on; the events and the URL are chosen in the
        developer center (Cafe24 signs with the app's webhook key: no per-shop secret)."""
        with self._client(shop) as client:
            return install.register_webhooks(client, webhook_url)

    def list_collection_products(self, shop: ShopContext, collection_id: str, *,
                                 cursor: str | None) -> CollectionPage:
        """A category's products (Cafe24 files products in categories), in one page; see
        :mod:`.collections`."""
        with self._client(shop) as client:
            return collections.list_collection_products(client, collection_id,
                                                        self._shop_no(shop))

    def verify_session_token(self, token: str, settings: Mapping[str, str]) -> str:
        """Cafe24 apps open in their own window: there is no embedded admin session token."""
        raise SessionTokenUnsupportedError("Cafe24 has no embedded admin session tokens")

    def frame_ancestors(self, shop_domain: str) -> list[str]:
        """The admin is never framed for a Cafe24 mall."""
        return []

    def _client(self, shop: ShopContext) -> Cafe24Client:
        shop = fresh_shop(shop)  # an access token about to expire is refreshed first
        token = shop.credentials.get("access_token")
        if not token:
            raise PlatformAuthError(f"no Cafe24 access token stored for shop {shop.shop_id}")
        base = shop.settings.get("api_base_url", DEFAULT_API_BASE_URL).replace("{domain}", shop.domain)
        version = shop.settings.get("api_version", DEFAULT_API_VERSION)
        client = Cafe24Client(base, str(token), version, timeout=self._timeout,
                              max_retries=self._max_retries, sleep=self._sleep)
        if shop.credentials.get("refresh_token"):
            client.reauthorize = reauthorizer(shop)  # and once more on a 401
        return client

    @staticmethod
    def _shop_no(shop: ShopContext) -> str:
        return str(shop.settings.get("shop_no", "1"))


def _pg_cancel(shop: ShopContext) -> bool:
    """Whether Cafe24 cancels the card / transfer payment at the PG with a refund (the shop
    setting ``cafe24_pg_cancel``, on by default)."""
    return str(shop.settings.get("cafe24_pg_cancel", "true")).strip().lower() not in (
        "false", "0", "no", "off")


def canonical_mall_id(value: str) -> str:
    """``"CafE24BestShop"``, ``"https://cafe24bestshop.cafe24.com/"`` → ``"cafe24bestshop"``.

    Raises ``ValueError`` naming the expected form when ``value`` is not a mall id.
    """
    try:
        host = urlsplit(value.strip() if "//" in value else "//" + value.strip()).hostname or ""
    except ValueError:
        host = ""
    for suffix in MALL_HOST_SUFFIXES:
        if host.endswith(suffix):
            host = host[: -len(suffix)]
            break
    if not schemas.MALL_ID_RE.fullmatch(host):
        raise ValueError(f"{value!r} is not a Cafe24 mall id: lower-case letters and digits, "
                         "e.g. 'cafe24bestshop' (or its https://cafe24bestshop.cafe24.com address)")
    return host


def parse_allowed_ips(value: str | None) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Networks of a comma-separated allow-list (``"1.2.3.4, 10.0.0.0/8"``); [] when blank."""
    networks = []
    for entry in (value or "").split(","):
        if entry.strip():
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                raise ValueError(
                    f"allowed_ips: {entry.strip()!r} is not an IP address or network") from None
    return networks
