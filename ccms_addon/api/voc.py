"""The VOC lifecycle of the calling shop (merchant API, ``/api/v1/voc``): the inbox, an item with
its issues and timeline, intake by hand (phone, in person, email forwarded, want-slips), every
action of the lifecycle, bulk actions, the VOC settings and the merchant's staff.

The shop comes only from the bearer token: an item of another shop is 404 like a missing one.
Every action goes through :class:`~ccms_addon.voc.service.VocDesk` and every new item through
:func:`~ccms_addon.voc.intake.record_voc_item`, so the API keeps exactly the dashboard's rules.

Who acts: the token is the shop's integration, recorded as ``api:shop:<id>`` with every
permission. A request that names a person of the shop's merchant in ``X-Staff-Email`` acts as
them: the timeline records ``staff:<id>:<name>`` and their role's permissions apply (403 beyond
them; ``work`` for items, ``report`` for the board, reports and exports, ``admin`` for changing
settings and adding staff). A name that is not an active staff member is a 422 on the header.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from functools import wraps
from typing import Any

from flask import current_app, g
from flask_smorest import Blueprint, abort
from marshmallow import RAISE, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from ccms_addon.api.auth import require_shop
from ccms_addon.api.voc_schemas import (REFERENCE, AcknowledgeSchema, ActorHeadersSchema,
                                        AssessSchema, AssignSchema, BulkOutcomeSchema, BulkSchema,
                                        CloseSchema, DuplicateSchema, InboxArgsSchema,
                                        NoBodySchema, NoteSchema, ReopenSchema, ReplySchema,
                                        StaffCreateSchema, StaffSchema, VocIntakeSchema,
                                        VocItemDetailSchema, VocItemPageSchema,
                                        VocSettingsChangeSchema)
from ccms_addon.errors import error_response
from ccms_addon.runtime import Runtime
from ccms_addon.staff import StaffError, add_staff, normalise_email
from ccms_addon.store.models import Order, Shop, Staff, StaffRole, VocItem, VocKind, utcnow
from ccms_addon.voc.inbox import BadCursor, InboxFilter, decode_cursor, list_items
from ccms_addon.voc.intake import NewVocItem, record_voc_item
from ccms_addon.voc.lifecycle import OPEN, InvalidTransition
from ccms_addon.voc.service import VocActionError, VocDesk, actor_for, staff_can
from ccms_addon.voc.settings import VocSettingsSchema, voc_settings
from ccms_addon.widgets.views import order_number_forms

bp = Blueprint("voc", __name__, url_prefix="/api/v1/voc",
               description="The VOC lifecycle: inbox, items, intake, actions, settings, staff")
bp.before_request(require_shop)

_REFERENCE = re.compile(REFERENCE)
#: service field names → the API's, where they differ
_API_FIELDS = {"original_id": "original"}


def _runtime() -> Runtime:
    return current_app.extensions["ccms"]


@bp.errorhandler(VocActionError)
def _action_refused(exc: VocActionError):
    fields = ({"json": {_API_FIELDS.get(exc.field, exc.field): [str(exc)]}}
              if exc.field and exc.status == 422 else None)
    return error_response(exc.status, exc.code, str(exc), fields)


@bp.errorhandler(InvalidTransition)
def _invalid_transition(exc: InvalidTransition):
    return error_response(409, exc.code, str(exc))


# --------------------------------------------------------------------------------------------------
# Who acts
# --------------------------------------------------------------------------------------------------


def acting(permission: str) -> Callable:
    """Documents ``X-Staff-Email``, resolves the actor into ``g.voc_actor`` and checks the named
    person's permission (``work``, ``report`` or ``admin``)."""

    def decorator(view: Callable) -> Callable:
        @bp.arguments(ActorHeadersSchema, location="headers", as_kwargs=True)
        @bp.alt_response(403, response="FORBIDDEN")
        @wraps(view)
        def wrapper(*args: Any, staff_email: str | None = None, **kwargs: Any):
            g.voc_actor = _actor(staff_email, permission)
            return view(*args, **kwargs)
        return wrapper
    return decorator


def _actor(staff_email: str | None, permission: str) -> str:
    if not staff_email:
        return f"api:shop:{g.shop_id}"
    with _runtime().db.session() as session:
        staff = session.scalar(
            select(Staff).join(Shop, Shop.merchant_id == Staff.merchant_id)
            .where(Shop.id == g.shop_id, Staff.email == normalise_email(staff_email),
                   Staff.active.is_(True)))
        if staff is None:
            abort(422, message="No active staff member of this shop's merchant has this email.",
                  messages={"headers": {"X-Staff-Email": ["Not an active staff member."]}})
        if not staff_can(staff, permission):
            abort(403, message=f"A {staff.role.value} may not do this.")
        return actor_for(staff)


# --------------------------------------------------------------------------------------------------
# Reading items
# --------------------------------------------------------------------------------------------------


def _items_out(session: Session, items: list[VocItem], now: datetime,
               order_numbers: dict[int, str] | None = None) -> list[dict]:
    """Items as the API shows them: assignee by name, duplicate and order by their numbers."""
    staff_ids = {i.assignee_id for i in items if i.assignee_id}
    names = dict(session.execute(select(Staff.id, Staff.name).where(
        Staff.id.in_(staff_ids))).all()) if staff_ids else {}
    original_ids = {i.duplicate_of_id for i in items if i.duplicate_of_id}
    originals = dict(session.execute(select(VocItem.id, VocItem.reference).where(
        VocItem.id.in_(original_ids))).all()) if original_ids else {}
    if order_numbers is None:
        order_ids = {i.order_id for i in items if i.order_id}
        order_numbers = dict(session.execute(select(Order.id, Order.number).where(
            Order.id.in_(order_ids))).all()) if order_ids else {}
    return [_item_out(i, now, order_numbers.get(i.order_id),
                      {"id": i.assignee_id, "name": names[i.assignee_id]}
                      if i.assignee_id in names else None,
                      originals.get(i.duplicate_of_id)) for i in items]


def _item_out(item: VocItem, now: datetime, order_number: str | None, assignee: dict | None,
              duplicate_of: str | None) -> dict:
    plain = ("reference", "channel", "subject", "body", "locale", "contact_name", "contact_email",
             "contact_phone", "category", "severity", "product_ref", "recurrence",
             "escalation_level", "reopened_count", "root_cause", "prevention_action",
             "satisfaction", "satisfaction_comment", "satisfaction_requested_at",
             "acknowledge_due_at", "respond_due_at", "acknowledged_at", "responded_at",
             "closed_at", "created_at", "updated_at")
    out = {name: getattr(item, name) for name in plain}
    out.update(kind=item.kind.value, status=item.status.value, order_number=order_number,
               assignee=assignee, duplicate_of=duplicate_of,
               recurrence=bool(item.recurrence), escalation_level=item.escalation_level or 0,
               reopened_count=item.reopened_count or 0,
               breached=bool(item.status in OPEN and item.respond_due_at
                             and item.respond_due_at < now))
    return out


def _item_id(session: Session, reference: str) -> int:
    """The id of this shop's item with this reference, or 404 (another shop's item too)."""
    item_id = None
    if _REFERENCE.fullmatch(reference):
        item_id = session.scalar(select(VocItem.id).where(
            VocItem.shop_id == g.shop_id, VocItem.reference == reference.upper()))
    if item_id is None:
        abort(404, message="No such VOC item.")
    return item_id


def _detail(item_id: int) -> dict:
    with _runtime().db.session() as session:
        item = session.get(VocItem, item_id)
        out = _items_out(session, [item], utcnow())[0]
        out["issues"] = list(item.issues)
        out["timeline"] = list(item.events)
        return out


def _act(reference: str, action: Callable[..., Any], **params: Any) -> dict:
    """Run one VocDesk action on the item named by ``reference`` and answer the item after it."""
    with _runtime().db.session() as session:
        item_id = _item_id(session, reference)
    action([g.shop_id], item_id, g.voc_actor, **params)
    return _detail(item_id)


@bp.get("/items")
@acting("work")
@bp.arguments(InboxArgsSchema, location="query", unknown=RAISE)
@bp.response(200, VocItemPageSchema)
def list_voc_items(args: dict):
    """The inbox: items newest first (or oldest first, or by response due time), filtered and
    searched, a keyset page at a time."""
    if args.get("cursor"):
        _check_cursor(args["cursor"])
    now = utcnow()
    with _runtime().db.session() as session:
        rows, next_cursor = list_items(session, [g.shop_id], inbox_filter(args),
                                       limit=args["limit"], cursor=args.get("cursor"), now=now)
        items = _items_out(session, [row.item for row in rows], now,
                           {row.item.order_id: row.order_number for row in rows
                            if row.order_number is not None})
    return {"items": items, "next_cursor": next_cursor}


def inbox_filter(args: dict) -> InboxFilter:
    """The inbox's filter from the loaded query of ``GET /voc/items`` (and the items export)."""
    assignee = args.get("assignee")
    return InboxFilter(
        statuses=args.get("status") or (), kinds=args.get("kind") or (),
        channels=args.get("channel") or (), categories=args.get("category") or (),
        severities=args.get("severity") or (),
        assignee=int(assignee) if assignee and assignee != "none" else assignee,
        breached=args.get("breached", False), recurrence=args.get("recurrence", False),
        q=args.get("q"), created_from=args.get("created_from"),
        created_to=args.get("created_to"), sort=args["sort"])


def _check_cursor(cursor: str) -> None:
    """A cursor this API handed out: a zoned time and an id the store can hold."""
    problem = {"query": {"cursor": ["Invalid cursor."]}}
    try:
        stamp, item_id = decode_cursor(cursor)
        if stamp is None or stamp.tzinfo is None:
            raise BadCursor()
        stamp.astimezone(timezone.utc)
    except (BadCursor, OverflowError, ValueError):
        abort(422, message="Invalid cursor.", messages=problem)
    if not -2**63 < item_id < 2**63:
        abort(422, message="Invalid cursor.", messages=problem)


@bp.get("/items/<reference>")
@acting("work")
@bp.response(200, VocItemDetailSchema)
@bp.alt_response(404, response="NOT_FOUND")
def get_voc_item(reference: str):
    """One item: the customer's words, every issue they raised and the timeline."""
    with _runtime().db.session() as session:
        item_id = _item_id(session, reference)
    return _detail(item_id)


# --------------------------------------------------------------------------------------------------
# Intake
# --------------------------------------------------------------------------------------------------


@bp.post("/items")
@acting("work")
@bp.arguments(VocIntakeSchema)
@bp.response(201, VocItemDetailSchema)
def create_voc_item(data: dict):
    """Record a voice that reached staff outside the add-on: a phone call, a conversation at the
    counter, an email forwarded by hand, a social post — or a want-slip (``kind: want_slip``), a
    latent complaint staff overheard before the customer filed one. It is classified, given its
    due times and checked for duplicates and recurrence like every item; a contact detail left out
    is taken from the order named by ``order_number``."""
    runtime = _runtime()
    kind = VocKind(data["kind"])
    channel = data["channel"] or ("staff" if kind is VocKind.WANT_SLIP else "phone")
    if channel not in runtime.channels:
        known = ", ".join(sorted(runtime.channels))
        abort(422, message="Unknown channel.",
              messages={"json": {"channel": [f"Not one of: {known}."]}})
    with runtime.db.session() as session:
        shop = session.get(Shop, g.shop_id)
        order = None
        if data["order_number"]:
            order = session.scalar(select(Order).where(
                Order.shop_id == g.shop_id,
                Order.number.in_(order_number_forms(data["order_number"])))
                .order_by(Order.id).limit(1))
            if order is None:
                abort(422, message="No such order in this shop.",
                      messages={"json": {"order_number": ["No such order in this shop."]}})

    def known(field: str, on_order: str) -> str | None:
        """What staff typed, else what the order knows (so a caller can be written to)."""
        return data[field] or (getattr(order, on_order) if order is not None else None)

    item = record_voc_item(runtime, g.shop_id, NewVocItem(
        kind=kind, channel=channel, body=data["body"], actor=g.voc_actor,
        subject=data["subject"], locale=known("locale", "locale") or shop.locale,
        contact_name=known("contact_name", "customer_name"),
        contact_email=known("contact_email", "email"),
        contact_phone=known("contact_phone", "phone"),
        order_id=order.id if order else None, customer_id=order.customer_id if order else None,
        category=data["category"], severity=data["severity"], product_ref=data["product_ref"],
        more_issues=tuple((i["category"], i["summary"]) for i in data["issues"]),
        occurred_at=data["occurred_at"],
        event_data={"order_number": data["order_number"]} if data["order_number"] else None))
    return _detail(item.id)


# --------------------------------------------------------------------------------------------------
# Actions
# --------------------------------------------------------------------------------------------------

def _action(path: str, schema: type) -> Callable:
    """The decorators every action shares: route, actor, body, the item as the answer, 404 and
    the lifecycle's 409."""

    def decorator(view: Callable) -> Callable:
        view = bp.alt_response(404, response="NOT_FOUND")(view)
        view = bp.alt_response(409, response="CONFLICT")(view)
        view = bp.response(200, VocItemDetailSchema)(view)
        view = bp.arguments(schema, required=False)(view)
        view = acting("work")(view)
        return bp.post(f"/items/<reference>/{path}")(view)
    return decorator


@_action("acknowledge", AcknowledgeSchema)
def acknowledge_voc_item(data: dict, reference: str):
    """Received → acknowledged; the customer gets the reference and the promised answer time."""
    return _act(reference, VocDesk(_runtime()).acknowledge, **data)


@_action("start", NoBodySchema)
def start_voc_item(data: dict, reference: str):
    """→ in progress (assessment, investigation)."""
    return _act(reference, VocDesk(_runtime()).start)


@_action("assign", AssignSchema)
def assign_voc_item(data: dict, reference: str):
    """Give the item to an active person of the merchant (``null``: unassign)."""
    return _act(reference, VocDesk(_runtime()).assign, staff_id=data["assignee_id"])


@_action("notes", NoteSchema)
def add_voc_note(data: dict, reference: str):
    """An internal note on the timeline, never shown to the customer."""
    return _act(reference, VocDesk(_runtime()).add_note, text=data["note"])


@_action("assess", AssessSchema)
def assess_voc_item(data: dict, reference: str):
    """Set the category and severity (a new severity moves the response due time) and record
    further problems the customer raised."""
    issues = tuple((i["category"], i["summary"]) for i in data.get("issues") or ())
    return _act(reference, VocDesk(_runtime()).assess, category=data.get("category"),
                severity=data.get("severity"), issues=issues)


@_action("reply", ReplySchema)
def reply_voc_item(data: dict, reference: str):
    """Answer the customer on the channel they used (or record an answer given by phone or at
    the counter with ``given_outside``) → responded. 422 on ``message`` when the customer left
    no address to answer on."""
    return _act(reference, VocDesk(_runtime()).reply, text=data["message"],
                given_outside=data["given_outside"])


@_action("close", CloseSchema)
def close_voc_item(data: dict, reference: str):
    """→ closed, with the root cause and the prevention action (required for an answered
    complaint), the issues handled, and a 1–5 satisfaction request to the customer. An item never
    answered closes only with a ``resolution`` (duplicate, withdrawn, spam, resolved_elsewhere)."""
    return _act(reference, VocDesk(_runtime()).close, **data)


@_action("reopen", ReopenSchema)
def reopen_voc_item(data: dict, reference: str):
    """A closed item → in progress again; the response clock restarts."""
    return _act(reference, VocDesk(_runtime()).reopen, reason=data["reason"])


@_action("duplicate", DuplicateSchema)
def mark_voc_duplicate(data: dict, reference: str):
    """Link the item to the one it repeats (``original``, a reference) and close it as a
    duplicate."""
    with _runtime().db.session() as session:
        original = None
        if _REFERENCE.fullmatch(data["original"]):
            original = session.scalar(select(VocItem.id).where(
                VocItem.shop_id == g.shop_id, VocItem.reference == data["original"].upper()))
    if original is None:
        abort(422, message="No such VOC item.",
              messages={"json": {"original": ["No such VOC item in this shop."]}})
    return _act(reference, VocDesk(_runtime()).mark_duplicate, original_id=original)


@bp.post("/items/bulk")
@acting("work")
@bp.arguments(BulkSchema)
@bp.response(200, BulkOutcomeSchema)
def bulk_voc_action(data: dict):
    """Apply one action to many items; each succeeds or fails on its own (``results`` in the
    order given; an unknown reference fails with ``not_found``)."""
    references = list(dict.fromkeys(ref.upper() for ref in data["references"]))
    with _runtime().db.session() as session:
        ids = dict(session.execute(select(VocItem.reference, VocItem.id).where(
            VocItem.shop_id == g.shop_id,
            VocItem.reference.in_([r for r in references if _REFERENCE.fullmatch(r)]))).all())
    params = dict(data["params"])
    if data["action"] == "assign":
        params = {"staff_id": params["assignee_id"]}
    elif data["action"] == "note":
        params = {"text": params["note"]}
    elif data["action"] == "assess":
        params["issues"] = tuple((i["category"], i["summary"]) for i in params.get("issues") or ())
    done = {r.item_id: r for r in VocDesk(_runtime()).bulk(
        [g.shop_id], [ids[r] for r in references if r in ids], data["action"], g.voc_actor,
        **params)}
    results = []
    for reference in references:
        result = done.get(ids.get(reference))
        if result is None:
            results.append({"reference": reference, "ok": False, "code": "not_found",
                            "message": "No such VOC item."})
        else:
            results.append({"reference": reference, "ok": result.ok, "code": result.code,
                            "message": result.message})
    succeeded = sum(1 for r in results if r["ok"])
    return {"results": results, "succeeded": succeeded, "failed": len(results) - succeeded}


# --------------------------------------------------------------------------------------------------
# Settings and staff
# --------------------------------------------------------------------------------------------------


@bp.get("/settings")
@acting("work")
@bp.response(200, VocSettingsSchema)
def get_voc_settings():
    """The shop's VOC settings, defaults filled in (SLA hours merged over the defaults)."""
    with _runtime().db.session() as session:
        return voc_settings(session.get(Shop, g.shop_id).settings)


@bp.put("/settings")
@acting("admin")
@bp.arguments(VocSettingsChangeSchema(partial=True))
@bp.response(200, VocSettingsSchema)
def put_voc_settings(changes: dict):
    """Change the VOC settings; answers them in full. Merge semantics: a field given replaces the
    stored one and a field left out keeps its value; ``sla_hours`` merges per kind and severity
    (``{"complaint": {"high": 3}}`` changes one cell) and ``digest`` per field; ``rules`` is
    replaced whole (send ``[]`` to remove every rule)."""
    with _runtime().db.session() as session:
        shop = session.get(Shop, g.shop_id)
        stored = dict((shop.settings or {}).get("voc") or {})
        merged = merge_voc_settings(stored, changes)
        try:
            VocSettingsSchema().load(merged)
        except ValidationError as exc:
            abort(422, message="The settings are not valid.",
                  messages={"json": exc.normalized_messages()})
        shop.settings = {**(shop.settings or {}), "voc": merged}
        return voc_settings(shop.settings)


def merge_voc_settings(stored: dict, changes: dict) -> dict:
    """``changes`` over ``stored`` (see ``PUT /voc/settings``)."""
    merged = dict(stored)
    for key, value in changes.items():
        if key == "sla_hours":
            table = {kind: dict(hours) for kind, hours in (stored.get(key) or {}).items()}
            for kind, hours in value.items():
                table.setdefault(kind, {}).update(hours)
            merged[key] = table
        elif key == "digest":
            merged[key] = {**(stored.get(key) or {}), **value}
        else:
            merged[key] = value
    return merged


@bp.get("/staff")
@acting("work")
@bp.response(200, StaffSchema(many=True))
def list_staff():
    """The people of the shop's merchant (across all its shops), active first."""
    with _runtime().db.session() as session:
        return _staff_out(session.scalars(
            select(Staff).join(Shop, Shop.merchant_id == Staff.merchant_id)
            .where(Shop.id == g.shop_id).order_by(Staff.active.desc(), Staff.id)).all())


@bp.post("/staff")
@acting("admin")
@bp.arguments(StaffCreateSchema)
@bp.response(201, StaffSchema)
def create_staff(data: dict):
    """Add a person to the merchant's team (422 on ``email`` when they are already on it)."""
    with _runtime().db.session() as session:
        merchant_id = session.scalar(select(Shop.merchant_id).where(Shop.id == g.shop_id))
        try:
            staff = add_staff(session, merchant_id, data["email"], data["name"],
                              StaffRole(data["role"]), password=data["password"],
                              locale=data["locale"])
        except StaffError as exc:
            abort(422, message=str(exc), messages={"json": {exc.field: [str(exc)]}})
        return _staff_out([staff])[0]


def _staff_out(people: Iterable[Staff]) -> list[dict]:
    return [dict(id=s.id, email=s.email, name=s.name, role=s.role.value, locale=s.locale,
                 active=bool(s.active), created_at=s.created_at, last_login_at=s.last_login_at)
            for s in people]
