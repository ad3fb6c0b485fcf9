"""The public widget API under ``/widget/v1/<widget_key>/`` (the contract: docs/widget-api.md).

Every request names its shop by the widget key only. Checks, in order (rate limits run before all
of them, see ``ratelimit.py``): unknown or uninstalled shop → 404 · a write (POST) from an origin
that is not the shop's storefront → 403 · without ``X-CCMS-Widget: 1`` → 400 · body over 16 KB →
413 · not JSON → 415/400 · invalid fields → 422 · honeypot filled → 400 ``rejected`` · form token
missing, too young, expired or another shop's → 422 on ``token``.

Why the honeypot answers a plain 400 ``rejected``: a 422 would tell a bot which field gave it
away, and a fake 201 would deceive the rare real shopper whose browser auto-filled the hidden
field (they at least see that it failed and can call the shop's phone shown in the same panel).

Nothing a shopper sends is ever rendered here: answers are JSON with ``nosniff``.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request
from marshmallow import Schema, ValidationError
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import RequestEntityTooLarge

from ccms_addon.errors import error_response
from ccms_addon.jobs.notify import enqueue_merchant_notification
from ccms_addon.money import format_amount
from ccms_addon.store.models import (Customer, Order, OrderLine, VocChannel, VocEvent, VocItem,
                                     VocKind, VocStatus)
from ccms_addon.store.voc import NewVocItem, record_voc_item
from ccms_addon.widgets.cors import WIDGET_HEADER, add_cors_headers, preflight, same_origin
from ccms_addon.widgets.errors import WidgetRequestError
from ccms_addon.widgets.schemas import (FormTokenSchema, OrderLookupSchema, RequestLookupSchema,
                                        RequestStatusSchema, ShopperOrderSchema,
                                        VocItemCreateSchema, VocReceiptSchema, digits,
                                        MIN_PHONE_DIGITS)
from ccms_addon.widgets.shops import (SHOPS_EXTENSION, ShopDirectory, WidgetShop, current_runtime,
                                      current_shops)
from ccms_addon.widgets.tokens import form_token, form_token_problem

bp = Blueprint("widgets", __name__)
bp.after_request(add_cors_headers)
log = logging.getLogger(__name__)

PREFIX = "/widget/v1/<widget_key>"
#: largest body a write may carry (the app-wide limit stays 1 MiB for webhooks)
MAX_WRITE_BODY = 16 * 1024
#: seconds browsers and CDNs may keep a shop's config
CONFIG_MAX_AGE = 300
#: orders sharing one number (``#1001`` and ``1001``) compared per lookup, at most
MAX_CANDIDATES = 5
#: compared against when there is no row, so a miss costs what a mismatch costs
_NOTHING = "\x00"


@bp.errorhandler(WidgetRequestError)
def _widget_error(exc: WidgetRequestError):
    return error_response(exc.status, exc.code, exc.message, exc.fields)


@bp.errorhandler(SQLAlchemyError)
def _store_unavailable(exc: SQLAlchemyError):
    log.exception("store unreachable in the widget API")
    return error_response(503, "store_unavailable", "Please try again in a moment.",
                          headers={"Retry-After": "5"})


@bp.record_once
def _setup(state) -> None:
    state.app.extensions[SHOPS_EXTENSION] = ShopDirectory(state.app.extensions["ccms"])


# --------------------------------------------------------------------------------------------------
# Guards common to every route: the shop, CORS, the custom header, the size and type of writes
# --------------------------------------------------------------------------------------------------


@bp.before_request
def _guard():
    widget_key = (request.view_args or {}).get("widget_key")
    if widget_key is None:
        return None
    shop = current_shops().get(widget_key)
    g.widget_shop = shop
    if shop is None or not shop.active:
        raise WidgetRequestError(404, "unknown_widget", "No shop uses this widget key.")
    origin = request.headers.get("Origin")
    allowed = origin is None or shop.allows(origin) or same_origin(origin)
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        return preflight(origin, allowed)
    if request.method != "POST":
        return None
    if not allowed:
        raise WidgetRequestError(403, "origin_not_allowed",
                                 "This page's origin is not one of the shop's storefronts.")
    if request.headers.get(WIDGET_HEADER) != "1":
        raise WidgetRequestError(400, "widget_header_required",
                                 f"Writes must carry the header '{WIDGET_HEADER}: 1'.")
    request.max_content_length = MAX_WRITE_BODY
    if (request.content_length or 0) > MAX_WRITE_BODY:
        raise _too_large()
    if not request.is_json:
        raise WidgetRequestError(415, "unsupported_media_type",
                                 "Send the body as Content-Type: application/json.")
    return None


def _too_large() -> WidgetRequestError:
    return WidgetRequestError(413, "body_too_large",
                              f"The body is larger than {MAX_WRITE_BODY // 1024} KB.")


def _json_body() -> Any:
    try:
        raw = request.get_data(cache=True)
    except RequestEntityTooLarge:
        raise _too_large() from None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise WidgetRequestError(400, "invalid_json", "The body is not valid JSON.") from None


def _load(schema: Schema, data: Any) -> dict:
    try:
        return schema.load(data)
    except ValidationError as exc:
        raise WidgetRequestError(422, "validation_error", "Some fields are not valid.",
                                 {"json": exc.normalized_messages()}) from None


# --------------------------------------------------------------------------------------------------
# Matching a shopper to an order or a request without telling which part was wrong
# --------------------------------------------------------------------------------------------------


def contact_matches(given_email: str | None, given_phone: str | None,
                    email: str | None, phone: str | None) -> bool:
    """Email case-insensitively or phone digits-only, compared in constant time; both are always
    compared so a mismatch costs what a match costs."""
    e_given = (given_email or "").strip().casefold().encode()
    e_have = (email or _NOTHING).strip().casefold().encode()
    p_given, p_have = digits(given_phone).encode(), (digits(phone) or _NOTHING).encode()
    email_ok = hmac.compare_digest(e_given, e_have) and bool(e_given)
    phone_ok = hmac.compare_digest(p_given, p_have) and len(p_given) >= MIN_PHONE_DIGITS
    return email_ok or phone_ok


def split_contact(contact: str) -> tuple[str | None, str | None]:
    """One "email or phone" input → (email, phone)."""
    return (contact, None) if "@" in contact else (None, contact)


def order_number_forms(value: str) -> list[str]:
    """``#1001`` and ``1001`` name the same order (Shopify names carry the ``#``)."""
    number = value.strip()
    bare = number.lstrip("#").strip()
    return sorted({number, bare, f"#{bare}"} if bare else {number})


def _candidate_orders(session, shop_id: int, number: str):
    return session.execute(
        select(Order.id, Order.customer_id, Order.email, Order.phone,
               Customer.email.label("customer_email"), Customer.phone.label("customer_phone"))
        .outerjoin(Customer, Customer.id == Order.customer_id)
        .where(Order.shop_id == shop_id, Order.number.in_(order_number_forms(number)))
        .order_by(Order.id).limit(MAX_CANDIDATES)).all()


def _match_order(rows, email: str | None, phone: str | None):
    matched = None
    for row in rows or [None]:
        ok = (contact_matches(email, phone, row.email if row else None, row.phone if row else None)
              | contact_matches(email, phone, row.customer_email if row else None,
                                row.customer_phone if row else None))
        if ok and matched is None and row is not None:
            matched = row
    return matched


# --------------------------------------------------------------------------------------------------
# Routes
# --------------------------------------------------------------------------------------------------


@bp.get(f"{PREFIX}/config")
def config(widget_key: str):
    """The shop's public widget settings: cacheable, with a strong ETag of the content."""
    shop: WidgetShop = g.widget_shop
    if request.if_none_match.contains_weak(shop.etag):
        response = Response(status=304)
    elif "gzip" in request.accept_encodings:
        response = Response(shop.config_body_gzip, mimetype="application/json")
        response.headers["Content-Encoding"] = "gzip"
    else:
        response = Response(shop.config_body, mimetype="application/json")
    response.vary.add("Accept-Encoding")
    response.set_etag(shop.etag)
    response.headers["Cache-Control"] = f"public, max-age={CONFIG_MAX_AGE}"
    return response


@bp.get(f"{PREFIX}/token", endpoint="form_token")
def form_token_view(widget_key: str):
    response = jsonify(FormTokenSchema().dump(
        {"token": form_token(current_app.config["SECRET_KEY"], g.widget_shop.id)}))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post(f"{PREFIX}/voc")
def submit_voc(widget_key: str):
    """A complaint, question, idea or praise → a VocItem (channel widget) and its reference."""
    shop: WidgetShop = g.widget_shop
    data = _json_body()
    if isinstance(data, dict) and _filled(data.get("website")):
        log.info("widget submission to shop %s rejected by the honeypot", shop.id)
        raise WidgetRequestError(400, "rejected", "The submission was rejected.")
    args = _load(VocItemCreateSchema(categories=shop.categories,
                                     consent_required=shop.consent_required), data)
    problem = form_token_problem(current_app.config["SECRET_KEY"], shop.id, args["token"])
    if problem:
        raise WidgetRequestError(422, "validation_error", "Some fields are not valid.",
                                 {"json": {"token": [problem]}})
    runtime = current_runtime()
    order_id = customer_id = None
    if args["order_number"]:
        with runtime.db.session() as session:
            matched = _match_order(_candidate_orders(session, shop.id, args["order_number"]),
                                   args["email"], args["phone"])
        if matched is not None:
            order_id, customer_id = matched.id, matched.customer_id
    item = record_voc_item(runtime, shop.id, NewVocItem(
        kind=VocKind(args["kind"]), channel=VocChannel.WIDGET, body=args["message"],
        actor="shopper", locale=args["locale"] or shop.default_locale,
        contact_name=args["name"], contact_email=args["email"], contact_phone=args["phone"],
        order_id=order_id, customer_id=customer_id, category=args["category"],
        ack_promise_hours=shop.ack_promise_hours,
        # the order number as typed, kept for the merchant whether it matched or not
        event_data={"order_number": args["order_number"].strip()} if args["order_number"] else None))
    try:
        enqueue_merchant_notification(runtime, item.id)
    except Exception:  # noqa: BLE001 — the item is stored; sweep_unnotified sends it later
        log.exception("could not enqueue the merchant notification of VOC item %s", item.id)
    body = VocReceiptSchema().dump(dict(reference=item.reference, status=item.status.value,
                                        ack_due_at=item.acknowledge_due_at,
                                        ack_promise_hours=shop.ack_promise_hours))
    return jsonify(body), 201


def _filled(value: Any) -> bool:
    return not (value is None or (isinstance(value, str) and not value.strip()))


_ORDER_NOT_FOUND = ("not_found", "No order matches this order number and contact.")
_REQUEST_NOT_FOUND = ("not_found", "No request matches this reference number and contact.")


@bp.post(f"{PREFIX}/orders/lookup")
def lookup_order(widget_key: str):
    """Where is my order: the same 404, after the same queries, for "no such order" and for
    "wrong contact"."""
    shop: WidgetShop = g.widget_shop
    args = _load(OrderLookupSchema(), _json_body())
    email, phone = split_contact(args["contact"])
    with current_runtime().db.session() as session:
        matched = _match_order(_candidate_orders(session, shop.id, args["order_number"]),
                               email, phone)
        order = session.get(Order, matched.id) if matched else None
        lines = session.scalars(select(OrderLine).where(
            OrderLine.shop_id == shop.id,
            OrderLine.order_id == (matched.id if matched else -1)).order_by(OrderLine.id)).all()
        if order is None:
            raise WidgetRequestError(404, *_ORDER_NOT_FOUND)
        body = ShopperOrderSchema().dump(dict(
            number=order.number, placed_at=order.placed_at,
            financial_status=order.financial_status.value,
            fulfillment_status=order.fulfillment_status.value,
            lines=[dict(title=line.title, quantity=line.quantity) for line in lines],
            total=format_amount(order.total, order.currency), currency=order.currency))
    return jsonify(order=body)


@bp.post(f"{PREFIX}/requests/lookup")
def lookup_requests(widget_key: str):
    """My requests: the status and the times it changed, for the reference and its contact."""
    shop: WidgetShop = g.widget_shop
    args = _load(RequestLookupSchema(), _json_body())
    email, phone = split_contact(args["contact"])
    with current_runtime().db.session() as session:
        item = session.execute(
            select(VocItem.id, VocItem.reference, VocItem.kind, VocItem.status, VocItem.created_at,
                   VocItem.contact_email, VocItem.contact_phone)
            .where(VocItem.shop_id == shop.id,
                   VocItem.reference == args["reference"].strip().upper())).first()
        ok = contact_matches(email, phone, item.contact_email if item else None,
                             item.contact_phone if item else None) and item is not None
        events = session.execute(
            select(VocEvent.to_status, VocEvent.created_at)
            .where(VocEvent.shop_id == shop.id,
                   VocEvent.voc_item_id == (item.id if ok else -1),
                   VocEvent.to_status.is_not(None))
            .order_by(VocEvent.created_at, VocEvent.id)).all()
    if not ok:
        raise WidgetRequestError(404, *_REQUEST_NOT_FOUND)
    known = {s.value for s in VocStatus}
    body = RequestStatusSchema().dump(dict(
        reference=item.reference, kind=item.kind.value, status=item.status.value,
        created_at=item.created_at,
        timeline=[dict(status=e.to_status, at=e.created_at) for e in events
                  if e.to_status in known]))
    return jsonify(request=body)
