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
from sqlalchemy import bindparam, select
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import parse_accept_header, quote_etag

from ccms_addon.errors import error_response
from ccms_addon.jobs.notify import enqueue_merchant_notification
from ccms_addon.money import format_amount
from ccms_addon.platforms import ReturnLine
from ccms_addon.programs.claims import ClaimRequest, event_moment, submit_claim
from ccms_addon.store.models import (Customer, Order, OrderLine, ProgramKind, VocChannel,
                                     VocEvent, VocItem, VocKind, VocStatus)
from ccms_addon.voc.intake import NewVocItem, record_voc_item
from ccms_addon.widgets.cors import (SECURITY_HEADERS, WIDGET_HEADER, add_cors_headers, preflight,
                                     same_origin)
from ccms_addon.widgets import ratelimit
from ccms_addon.widgets.errors import WidgetRequestError
from ccms_addon.widgets.schemas import (CONTACT_MAX, ORDER_NUMBER_MAX, ClaimCreateSchema,
                                        ClaimReceiptSchema, FormTokenSchema, OrderLookupSchema,
                                        RequestLookupSchema, RequestStatusSchema,
                                        ShopperOrderSchema, VocItemCreateSchema, VocReceiptSchema,
                                        digits, MIN_PHONE_DIGITS)
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
    environ = request.environ
    method = environ["REQUEST_METHOD"]
    if method == "GET":  # reads answer any origin; CORS headers decide who may read them
        return None
    origin = environ.get("HTTP_ORIGIN")
    allowed = origin is None or shop.allows(origin) or same_origin(origin)
    if method == "OPTIONS" and "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in environ:
        return preflight(origin, allowed)
    if method != "POST":
        return None
    if not allowed:
        raise WidgetRequestError(403, "origin_not_allowed",
                                 "This page's origin is not one of the shop's storefronts.")
    if environ.get(_WIDGET_HEADER_KEY) != "1":
        raise WidgetRequestError(400, "widget_header_required",
                                 f"Writes must carry the header '{WIDGET_HEADER}: 1'.")
    request.max_content_length = MAX_WRITE_BODY
    if (request.content_length or 0) > MAX_WRITE_BODY:
        raise _too_large()
    if not request.is_json:
        raise WidgetRequestError(415, "unsupported_media_type",
                                 "Send the body as Content-Type: application/json.")
    return None


#: the WSGI environ's name of the widget header
_WIDGET_HEADER_KEY = "HTTP_" + WIDGET_HEADER.upper().replace("-", "_")


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
    return _contact_ok(_given_contact(given_email, given_phone), email, phone)


def _given_contact(email: str | None, phone: str | None) -> tuple[bytes, bytes]:
    """The shopper's side of :func:`contact_matches`, normalised once for all candidates."""
    return (email or "").strip().casefold().encode(), digits(phone).encode()


def _contact_ok(given: tuple[bytes, bytes], email: str | None, phone: str | None) -> bool:
    e_given, p_given = given
    e_have = (email or _NOTHING).strip().casefold().encode()
    p_have = (digits(phone) or _NOTHING).encode()
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


#: reusable schema instances (marshmallow schemas keep no state between loads and dumps)
_ORDER_LOOKUP = OrderLookupSchema()
_REQUEST_LOOKUP = RequestLookupSchema()
_SHOPPER_ORDER = ShopperOrderSchema()
_REQUEST_STATUS = RequestStatusSchema()
_FORM_TOKEN = FormTokenSchema()
_VOC_RECEIPT = VocReceiptSchema()
_CLAIM_CREATE = ClaimCreateSchema()
_CLAIM_RECEIPT = ClaimReceiptSchema()


def _lookup_candidates(dialect_name: str):
    """The orders a lookup compares against (every column its answer needs), by shop and any of
    three spellings of the number: one statement, compiled once, run on the direct connection."""
    return (select(Order.id, Order.customer_id, Order.email, Order.phone,
                   Customer.email.label("customer_email"), Customer.phone.label("customer_phone"),
                   Order.number, Order.placed_at, Order.financial_status,
                   Order.fulfillment_status, Order.total, Order.currency)
            .outerjoin(Customer, Customer.id == Order.customer_id)
            .where(Order.shop_id == bindparam("shop_id", type_=Order.shop_id.type),
                   Order.number.in_([bindparam(n, type_=Order.number.type)
                                     for n in ("n1", "n2", "n3")]))
            .order_by(Order.id).limit(MAX_CANDIDATES))


def _lookup_lines(dialect_name: str):
    return (select(OrderLine.title, OrderLine.quantity)
            .where(OrderLine.shop_id == bindparam("shop_id", type_=OrderLine.shop_id.type),
                   OrderLine.order_id == bindparam("order_id", type_=OrderLine.order_id.type))
            .order_by(OrderLine.id))


class _Candidate:
    """A row of :func:`_lookup_candidates` by name."""

    __slots__ = ("id", "customer_id", "email", "phone", "customer_email", "customer_phone",
                 "number", "placed_at", "financial_status", "fulfillment_status", "total",
                 "currency")

    def __init__(self, row):
        for name, value in zip(self.__slots__, row):
            setattr(self, name, value)


def _candidate_orders(session, shop_id: int, number: str):
    return session.execute(
        select(Order.id, Order.customer_id, Order.email, Order.phone,
               Customer.email.label("customer_email"), Customer.phone.label("customer_phone"))
        .outerjoin(Customer, Customer.id == Order.customer_id)
        .where(Order.shop_id == shop_id, Order.number.in_(order_number_forms(number)))
        .order_by(Order.id).limit(MAX_CANDIDATES)).all()


def _match_order(rows, email: str | None, phone: str | None):
    """The first candidate whose order or customer contact matches; every candidate's both are
    compared (an empty list compares against nothing), so the time does not tell which part was
    wrong."""
    matched = None
    given = _given_contact(email, phone)
    for row in rows or [None]:
        ok = (_contact_ok(given, row.email if row else None, row.phone if row else None)
              | _contact_ok(given, row.customer_email if row else None,
                            row.customer_phone if row else None))
        if ok and matched is None and row is not None:
            matched = row
    return matched


# --------------------------------------------------------------------------------------------------
# Routes
# --------------------------------------------------------------------------------------------------


@bp.get(f"{PREFIX}/config")
def config(widget_key: str):
    """The shop's public widget settings: cacheable, with a strong ETag of the content.

    The body (plain and gzipped) and every header but CORS's are built once per shop version, so
    a full answer is a dictionary lookup and a response object around prebuilt parts."""
    shop: WidgetShop = g.widget_shop
    environ = request.environ
    if environ.get("HTTP_IF_NONE_MATCH") and request.if_none_match.contains_weak(shop.etag):
        response = Response(status=304)
        response.vary.add("Accept-Encoding")
        response.set_etag(shop.etag)
        response.headers["Cache-Control"] = f"public, max-age={CONFIG_MAX_AGE}"
        return response
    gzipped = _accepts_gzip(environ.get("HTTP_ACCEPT_ENCODING"))
    return Response(shop.config_body_gzip if gzipped else shop.config_body,
                    headers=_config_headers(shop.etag, gzipped))


#: Accept-Encoding values seen → whether they accept gzip (browsers send a handful of values)
_GZIP_ACCEPTED: dict[str, bool] = {}
#: (ETag, gzipped) → the config answer's headers but CORS's
_CONFIG_HEADERS: dict[tuple[str, bool], tuple[tuple[str, str], ...]] = {}
_MEMO_LIMIT = 1024


def _accepts_gzip(value: str | None) -> bool:
    if not value:
        return False
    found = _GZIP_ACCEPTED.get(value)
    if found is None:
        found = "gzip" in parse_accept_header(value)  # what request.accept_encodings would say
        if len(_GZIP_ACCEPTED) >= _MEMO_LIMIT:
            _GZIP_ACCEPTED.clear()
        _GZIP_ACCEPTED[value] = found
    return found


def _config_headers(etag: str, gzipped: bool) -> tuple[tuple[str, str], ...]:
    found = _CONFIG_HEADERS.get((etag, gzipped))
    if found is None:
        found = (("Content-Type", "application/json"),
                 *((("Content-Encoding", "gzip"),) if gzipped else ()),
                 ("Vary", "Accept-Encoding, Origin"),
                 ("ETag", quote_etag(etag)),
                 ("Cache-Control", f"public, max-age={CONFIG_MAX_AGE}"),
                 *SECURITY_HEADERS.items())
        if len(_CONFIG_HEADERS) >= _MEMO_LIMIT:
            _CONFIG_HEADERS.clear()
        _CONFIG_HEADERS[(etag, gzipped)] = found
    return found


@bp.get(f"{PREFIX}/token", endpoint="form_token")
def form_token_view(widget_key: str):
    response = jsonify(_FORM_TOKEN.dump(
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
        enqueue_merchant_notification(runtime, item.id, shop_id=item.shop_id)
    except Exception:  # noqa: BLE001 — the item is stored; sweep_unnotified sends it later
        log.exception("could not enqueue the merchant notification of VOC item %s", item.id)
    body = _VOC_RECEIPT.dump(dict(reference=item.reference, status=item.status.value,
                                        ack_due_at=item.acknowledge_due_at,
                                        ack_promise_hours=shop.ack_promise_hours))
    return jsonify(body), 201


def _filled(value: Any) -> bool:
    return not (value is None or (isinstance(value, str) and not value.strip()))


_ORDER_NOT_FOUND = ("not_found", "No order matches this order number and contact.")
_REQUEST_NOT_FOUND = ("not_found", "No request matches this reference number and contact.")
#: a lookup's miss, its body and headers built once (the same bytes ``error_response`` writes,
#: and the headers ``add_cors_headers`` would add but CORS's)
_ORDER_NOT_FOUND_BODY = error_response(404, *_ORDER_NOT_FOUND).get_data()
_ORDER_NOT_FOUND_HEADERS = (("Content-Type", "application/json"), ("Vary", "Origin"),
                            *SECURITY_HEADERS.items())


def _lookup_args(data: Any) -> tuple[str, str]:
    """(order number, contact) as ``OrderLookupSchema`` loads them: checked here for the usual
    body — exactly those two fields, strings within the schema's bounds that the store can keep,
    a number that is not blank — and by the schema otherwise (for its 422 and field errors)."""
    if type(data) is dict and len(data) == 2:
        number, contact = data.get("order_number"), data.get("contact")
        if (type(number) is str and type(contact) is str
                and 0 < len(number) <= ORDER_NUMBER_MAX and 3 <= len(contact) <= CONTACT_MAX
                and _storable(number) and _storable(contact) and not number.isspace()):
            return number, contact
    args = _load(_ORDER_LOOKUP, data)
    return args["order_number"], args["contact"]


def _storable(text: str) -> bool:
    """What ``schemas.Text`` accepts: no NUL, encodable as UTF-8 (no lone surrogate)."""
    if "\x00" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@bp.post(f"{PREFIX}/orders/lookup")
def lookup_order(widget_key: str):
    """Where is my order: the same 404, after the same one query, for "no such order" and for
    "wrong contact" (every candidate is compared, in constant time, whatever matches). The query
    is a prepared statement on the direct connection (one round trip, no transaction), run while
    the rate limit's verdict is on its way (``ratelimit.DEFERRED``); only a match reads its
    lines, once the verdict allows it."""
    shop: WidgetShop = g.widget_shop
    number, contact = _lookup_args(_json_body())
    email, phone = split_contact(contact)
    db = current_runtime().db
    forms = order_number_forms(number)
    forms += forms[-1:] * (3 - len(forms))  # always three parameters: one statement
    rows = db.run("widget.lookup_candidates", _lookup_candidates,
                  {"shop_id": shop.id, "n1": forms[0], "n2": forms[1], "n3": forms[2]})
    matched = _match_order([_Candidate(row) for row in rows], email, phone)
    if matched is None:
        return Response(_ORDER_NOT_FOUND_BODY, 404, _ORDER_NOT_FOUND_HEADERS)
    refused = ratelimit.settle()
    if refused is not None:
        return refused
    lines = db.run("widget.lookup_lines", _lookup_lines,
                   {"shop_id": shop.id, "order_id": matched.id})
    body = _SHOPPER_ORDER.dump(dict(
        number=matched.number, placed_at=matched.placed_at,
        financial_status=matched.financial_status.value,
        fulfillment_status=matched.fulfillment_status.value,
        lines=[dict(title=title, quantity=quantity) for title, quantity in lines],
        total=format_amount(matched.total, matched.currency), currency=matched.currency))
    return jsonify(order=body)


@bp.post(f"{PREFIX}/requests/lookup")
def lookup_requests(widget_key: str):
    """My requests: the status and the times it changed, for the reference and its contact."""
    shop: WidgetShop = g.widget_shop
    args = _load(_REQUEST_LOOKUP, _json_body())
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
    body = _REQUEST_STATUS.dump(dict(
        reference=item.reference, kind=item.kind.value, status=item.status.value,
        created_at=item.created_at,
        timeline=[dict(status=e.to_status, at=e.created_at) for e in events
                  if e.to_status in known]))
    return jsonify(request=body)


@bp.post(f"{PREFIX}/claims", endpoint="submit_claim")
def submit_claim_view(widget_key: str):
    """A guarantee claim (free return, buyback) on an order named like a lookup: the exact number
    and the checkout contact, answered with the same 404 for "no such order" and "wrong contact".
    The claim is recorded whether or not it is inside the terms (the merchant decides); the answer
    says which, with the reasons."""
    shop: WidgetShop = g.widget_shop
    data = _json_body()
    if isinstance(data, dict) and _filled(data.get("website")):
        log.info("widget claim to shop %s rejected by the honeypot", shop.id)
        raise WidgetRequestError(400, "rejected", "The submission was rejected.")
    args = _load(_CLAIM_CREATE, data)
    problem = form_token_problem(current_app.config["SECRET_KEY"], shop.id, args["token"])
    if problem:
        raise WidgetRequestError(422, "validation_error", "Some fields are not valid.",
                                 {"json": {"token": [problem]}})
    email, phone = split_contact(args["contact"])
    runtime = current_runtime()
    with runtime.db.session() as session:
        matched = _match_order(_candidate_orders(session, shop.id, args["order_number"]),
                               email, phone)
    if matched is None:
        return error_response(404, *_ORDER_NOT_FOUND)
    event_date = args["event_date"]
    item, claim = submit_claim(runtime, shop.id, ClaimRequest(
        kind=ProgramKind(args["program"]), order_id=matched.id, message=args["message"],
        channel=VocChannel.WIDGET, event=args["event"],
        event_date=event_moment(event_date) if event_date else None,
        lines=tuple(ReturnLine(line["platform_line_id"], line["quantity"])
                    for line in args["lines"]),
        evidence={"text": args["evidence"]} if args["evidence"] else {},
        conditions_accepted=args["conditions_accepted"], contact_name=args["name"],
        contact_email=email, contact_phone=phone,
        locale=args["locale"] or shop.default_locale))
    body = _CLAIM_RECEIPT.dump(dict(reference=item.reference, status=claim.status.value,
                                    eligible=bool(claim.eligibility.get("eligible")),
                                    reasons=claim.eligibility.get("reasons") or [],
                                    ack_due_at=item.acknowledge_due_at))
    return jsonify(body), 201
