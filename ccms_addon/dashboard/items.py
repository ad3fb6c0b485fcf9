"""An item's page — the customer's own words, their contact, the order with its lines and refunds,
their other items, the timeline, the issues they raised — and the actions on it, each one call of
:class:`~ccms_addon.voc.service.VocDesk` (the same rules and the same trail as the API's).

A refused action (bad input, a move the lifecycle does not allow) shows the page again with the
message beside the field and the status the desk gave (422, 409); an item that is not one of the
merchant's shops is 404 like a missing one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import abort, redirect, request, url_for
from marshmallow import Schema, ValidationError
from sqlalchemy import func, or_, select

from ccms_addon.money import format_amount
from ccms_addon.store.models import (Customer, Order, OrderLine, Refund, VocItem, VocSeverity,
                                     utcnow)
from ccms_addon.voc.lifecycle import CLOSE_WITHOUT_RESPONSE, OPEN
from ccms_addon.voc.order_actions import ACTIONS as ORDER_ACTIONS
from ccms_addon.voc.order_actions import PARAMS, OrderActions
from ccms_addon.voc.service import ItemNotFound, VocActionError, VocDesk, actor_for

from .auth import Viewer
from .schemas import (AcknowledgeSchema, AssessSchema, AssignSchema, CloseSchema, DuplicateSchema,
                      NoteSchema, OrderActionSchema, ReopenSchema, ReplySchema, StartSchema,
                      form_data, form_errors)
from .views import (action_error, active_staff, bp, category_labels, category_options, page,
                    requires, runtime, staff_names, translator, viewer)

#: other items of the same customer or order shown on the page
HISTORY_LIMIT = 20


@dataclass(frozen=True)
class TimelineEntry:
    at: Any
    type: str
    actor: str
    note: str | None
    from_status: str | None
    to_status: str | None
    data: dict


def actor_name(actor: str) -> str:
    """``staff:<id>:<name>`` → the name; other actors (``system``, ``customer``) as they are."""
    kind, _, rest = actor.partition(":")
    if kind == "staff":
        return rest.partition(":")[2] or actor
    return actor


def _item_context(current: Viewer, item_id: int) -> dict[str, Any]:
    desk = VocDesk(runtime())
    with runtime().db.session() as session:
        try:
            item = desk.load(session, current.shop_ids, item_id)
        except ItemNotFound:
            abort(404)
        events = [TimelineEntry(e.created_at, e.type, actor_name(e.actor), e.note, e.from_status,
                                e.to_status, dict(e.data or {})) for e in item.events]
        issues = list(item.issues)
        order = lines = refunds = None
        if item.order_id is not None:
            order = session.get(Order, item.order_id)
            lines = list(order.lines)
            refunds = list(session.scalars(select(Refund).where(
                Refund.shop_id == order.shop_id,
                Refund.platform_order_id == order.platform_order_id).order_by(Refund.id)))
        customer = session.get(Customer, item.customer_id) if item.customer_id else None
        same = [VocItem.order_id == item.order_id] if item.order_id else []
        if item.customer_id:
            same.append(VocItem.customer_id == item.customer_id)
        if item.contact_email:
            same.append(func.lower(VocItem.contact_email) == item.contact_email.lower())
        history = list(session.scalars(select(VocItem).where(
            VocItem.shop_id.in_(current.shop_ids), VocItem.id != item.id, or_(*same))
            .order_by(VocItem.created_at.desc(), VocItem.id.desc()).limit(HISTORY_LIMIT))) \
            if same else []
        original = (session.scalar(select(VocItem.reference).where(
            VocItem.id == item.duplicate_of_id, VocItem.shop_id.in_(current.shop_ids)))
            if item.duplicate_of_id else None)
        duplicates = list(session.execute(select(VocItem.id, VocItem.reference).where(
            VocItem.duplicate_of_id == item.id, VocItem.shop_id.in_(current.shop_ids))
            .order_by(VocItem.id)))
        names = staff_names(session, current.merchant_id)
        assignable = active_staff(session, current.merchant_id)
    t = translator()
    shop = current.shop(item.shop_id)
    notifier, recipient = desk.reply_route(item)
    return dict(
        item=item, shop=shop, zone=shop.timezone, events=events, issues=issues, order=order,
        lines=lines or [], refunds=refunds or [], customer=customer, history=history,
        original=original, duplicates=duplicates, staff_names=names, staff_options=assignable,
        reply_notifier=notifier, reply_recipient=recipient,
        is_open=item.status in OPEN, breached=(item.status in OPEN and item.respond_due_at
                                               is not None and item.respond_due_at < utcnow()),
        category_labels=category_labels(current, t.locale),
        categories=category_options(current, t.locale),
        channel_label=(runtime().channels[item.channel].label(t.locale)
                       if item.channel in runtime().channels else item.channel),
        severities=[s.value for s in VocSeverity], resolutions=CLOSE_WITHOUT_RESPONSE,
        money=format_amount, errors={}, values={}, done=request.args.get("done"),
        order_actions=ORDER_ACTIONS if order is not None else ())


@bp.get("/items/<int:item_id>")
def item(item_id: int):
    """Every active person reads an item; its actions need ``work``."""
    return page("item.html", **_item_context(viewer(), item_id))


# --------------------------------------------------------------------------------------------------
# Actions
# --------------------------------------------------------------------------------------------------


def _resolve_original(current: Viewer, item_id: int, wanted: str) -> int:
    """The item a duplicate repeats, by reference number (or id), in the same shop."""
    with runtime().db.session() as session:
        item = VocDesk(runtime()).load(session, current.shop_ids, item_id)
        query = select(VocItem.id).where(VocItem.shop_id == item.shop_id)
        text = wanted.strip()
        match = (VocItem.reference == text.upper() if not text.isdigit()
                 else or_(VocItem.id == int(text), VocItem.reference == text))
        found = session.scalar(query.where(match))
    if found is None:
        raise VocActionError("No item with this reference in the same shop.", "unknown_original",
                             field="original")
    return found


def _acknowledge(desk: VocDesk, current: Viewer, item_id: int, data: dict) -> None:
    desk.acknowledge(current.shop_ids, item_id, actor_for(current),
                     notify_customer=data["notify_customer"])


def _start(desk: VocDesk, current: Viewer, item_id: int, data: dict) -> None:
    desk.start(current.shop_ids, item_id, actor_for(current))


def _reply(desk: VocDesk, current: Viewer, item_id: int, data: dict) -> None:
    desk.reply(current.shop_ids, item_id, actor_for(current), data["message"],
               given_outside=data["given_outside"])


def _note(desk: VocDesk, current: Viewer, item_id: int, data: dict) -> None:
    desk.add_note(current.shop_ids, item_id, actor_for(current), data["text"])


def _assign(desk: VocDesk, current: Viewer, item_id: int, data: dict) -> None:
    try:
        desk.assign(current.shop_ids, item_id, actor_for(current), data["assignee_id"])
    except VocActionError as exc:  # the desk names its own API field
        exc.field = "assignee_id"
        raise


def _assess(desk: VocDesk, current: Viewer, item_id: int, data: dict) -> None:
    issues = ([(data["issue_category"], data.get("issue_summary"))]
              if data.get("issue_category") else [])
    desk.assess(current.shop_ids, item_id, actor_for(current), category=data["category"],
                severity=data["severity"], issues=issues)


def _close(desk: VocDesk, current: Viewer, item_id: int, data: dict) -> None:
    desk.close(current.shop_ids, item_id, actor_for(current), root_cause=data["root_cause"],
               prevention_action=data["prevention_action"], resolution=data["resolution"],
               handled_issue_ids=data["handled_issue_ids"])


def _reopen(desk: VocDesk, current: Viewer, item_id: int, data: dict) -> None:
    desk.reopen(current.shop_ids, item_id, actor_for(current), data["reason"])


def _duplicate(desk: VocDesk, current: Viewer, item_id: int, data: dict) -> None:
    original = _resolve_original(current, item_id, data["original"])
    try:
        desk.mark_duplicate(current.shop_ids, item_id, actor_for(current), original)
    except VocActionError as exc:
        exc.field = "original" if exc.field == "original_id" else exc.field
        raise


def _order_action(desk: VocDesk, current: Viewer, item_id: int, data: dict) -> None:
    """The order action's own parameters only (``order_actions.PARAMS``), from the form."""
    quantities = _line_quantities(current, item_id)
    offered = {
        "amount": data["amount"], "reason": data["reason"],
        "lines": [{"platform_line_id": line_id, "quantity": quantities.get(line_id, 0)}
                  for line_id in data["lines"]],
        "restock": None if data["restock"] is None else data["restock"] == "yes",
        "refund": data["refund"], "notify_customer": data["notify_customer"]}
    params = {name: value for name, value in offered.items()
              if name in PARAMS[data["action"]] and value not in (None, [], "")}
    OrderActions(desk.runtime).request(current.shop_ids, item_id, actor_for(current),
                                       data["action"], params)


def _line_quantities(current: Viewer, item_id: int) -> dict[str, int]:
    with runtime().db.session() as session:
        item = VocDesk(runtime()).load(session, current.shop_ids, item_id)
        if item.order_id is None:
            return {}
        return dict(session.execute(select(OrderLine.platform_line_id, OrderLine.quantity).where(
            OrderLine.shop_id == item.shop_id, OrderLine.order_id == item.order_id)).all())


#: action name → (its form, what it does)
ACTIONS: dict[str, tuple[type[Schema], Callable[[VocDesk, Viewer, int, dict], None]]] = {
    "acknowledge": (AcknowledgeSchema, _acknowledge),
    "start": (StartSchema, _start),
    "reply": (ReplySchema, _reply),
    "note": (NoteSchema, _note),
    "assign": (AssignSchema, _assign),
    "assess": (AssessSchema, _assess),
    "close": (CloseSchema, _close),
    "reopen": (ReopenSchema, _reopen),
    "duplicate": (DuplicateSchema, _duplicate),
    "order_action": (OrderActionSchema, _order_action),
}


@bp.post("/items/<int:item_id>/<action>")
@requires("work")
def item_action(item_id: int, action: str):
    if action not in ACTIONS:
        abort(404)
    current = viewer()
    schema_class, run = ACTIONS[action]
    schema = schema_class()
    status, errors = 422, {}
    try:
        data = schema.load(form_data(schema, request.form))
        run(VocDesk(runtime()), current, item_id, data)
    except ValidationError as exc:
        errors = form_errors(schema, exc.messages)
    except ItemNotFound:
        abort(404)
    except VocActionError as exc:
        status, errors = exc.status, action_error(exc)
    else:
        return redirect(url_for(".item", item_id=item_id, done=action) + "#timeline", 303)
    context = _item_context(current, item_id)
    context.update(errors={action: errors}, values={action: request.form})
    return page("item.html", status, **context)
