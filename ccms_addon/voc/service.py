"""What staff do to a VOC item: the one place every surface (dashboard, merchant API, CLI) goes
through, so an action has the same rules and leaves the same trail wherever it was taken.

Each action runs in one transaction: it checks the item belongs to one of the caller's shops (an
item of another shop is "not found", never "forbidden"), applies the lifecycle
(:mod:`ccms_addon.voc.lifecycle`), appends its :class:`VocEvent` and, when the customer must hear
of it, records the message in the outbox in the same transaction. Messages are handed to RQ after
the commit; the outbox's sweep sends any whose job was lost.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ccms_addon.links import make_link
from ccms_addon.outbox import OutgoingMessage, enqueue, record
from ccms_addon.runtime import Runtime
from ccms_addon.store.models import (Shop, Staff, StaffRole, VocChannel, VocIssue, VocItem,
                                     VocKind, VocSeverity, VocStatus, utcnow)
from ccms_addon.voc import messages
from ccms_addon.voc.lifecycle import InvalidTransition, add_event, move
from ccms_addon.voc.settings import business_hours_of, sla_hours, voc_settings

log = logging.getLogger(__name__)

#: the purpose (and salt) of the satisfaction link sent when an item closes
SATISFACTION_PURPOSE = "voc-satisfaction"
SATISFACTION_PATH = "/s"
MAX_TEXT = 20_000


class VocActionError(ValueError):
    """An action refused: ``status`` is the HTTP status an API answers with, ``code`` its name."""

    def __init__(self, message: str, code: str = "invalid", status: int = 422,
                 field: str | None = None):
        super().__init__(message)
        self.code, self.status, self.field = code, status, field


class ItemNotFound(VocActionError):
    def __init__(self) -> None:
        super().__init__("No such VOC item.", "not_found", 404)


#: items no automatic acknowledgement is written for: a claim has its own receipt, nobody wrote
#: a want-slip or a platform event to us, and a call or a visit was answered in person
NOT_AUTO_ACKNOWLEDGED_KINDS = (VocKind.CLAIM, VocKind.WANT_SLIP)
NOT_AUTO_ACKNOWLEDGED_CHANNELS = (VocChannel.PLATFORM.value, VocChannel.PHONE.value,
                                  VocChannel.STAFF.value)


def acknowledged_automatically(kind: VocKind | str, channel: str) -> bool:
    """Whether the desk writes the customer an acknowledgement for an item of this kind and
    channel (when the shop's ``auto_acknowledge`` is on and the customer left an address)."""
    return (VocKind(kind) not in NOT_AUTO_ACKNOWLEDGED_KINDS
            and channel not in NOT_AUTO_ACKNOWLEDGED_CHANNELS)


def actor_for(staff: Staff) -> str:
    """How a person appears on a timeline (id for the record, name for the reader)."""
    return f"staff:{staff.id}:{staff.name}"[:200]




@dataclass(frozen=True)
class BulkResult:
    item_id: int
    ok: bool
    code: str | None = None
    message: str | None = None


class VocDesk:
    def __init__(self, runtime: Runtime):
        self.runtime = runtime

    # ---------------------------------------------------------------------------------------------
    # Reading
    # ---------------------------------------------------------------------------------------------

    def load(self, session: Session, shop_ids: Collection[int], item_id: int, *,
             lock: bool = False) -> VocItem:
        query = select(VocItem).where(VocItem.id == item_id, VocItem.shop_id.in_(list(shop_ids)))
        if lock and session.bind.dialect.name == "postgresql":
            query = query.with_for_update()
        item = session.scalar(query)
        if item is None:
            raise ItemNotFound()
        return item

    # ---------------------------------------------------------------------------------------------
    # Actions
    # ---------------------------------------------------------------------------------------------

    def acknowledge(self, shop_ids: Collection[int], item_id: int, actor: str, *,
                    notify_customer: bool = True) -> VocItem:
        """Received → acknowledged; the customer gets the acknowledgement with the due time."""
        keys: list[str] = []
        with self.runtime.db.session() as session:
            item = self.load(session, shop_ids, item_id, lock=True)
            self._move(session, item, VocStatus.ACKNOWLEDGED, actor)
            if notify_customer:
                keys += self._acknowledgement(session, item)
        self._send(keys)
        return item

    def start(self, shop_ids: Collection[int], item_id: int, actor: str) -> VocItem:
        with self.runtime.db.session() as session:
            item = self.load(session, shop_ids, item_id, lock=True)
            if item.status is VocStatus.CLOSED:  # reopening needs its reason: reopen()
                raise VocActionError(f"{item.reference} is closed: reopen it.", "closed", 409)
            self._move(session, item, VocStatus.IN_PROGRESS, actor)
        return item

    def assign(self, shop_ids: Collection[int], item_id: int, actor: str,
               staff_id: int | None) -> VocItem:
        """Give the item to a person of the shop's merchant (``None``: unassign)."""
        with self.runtime.db.session() as session:
            item = self.load(session, shop_ids, item_id, lock=True)
            staff = None
            if staff_id is not None:
                merchant_id = session.scalar(select(Shop.merchant_id).where(Shop.id == item.shop_id))
                staff = session.scalar(select(Staff).where(
                    Staff.id == staff_id, Staff.merchant_id == merchant_id, Staff.active.is_(True)))
                if staff is None:
                    raise VocActionError("No such active staff member.", "unknown_staff",
                                         field="assignee_id")
            if item.assignee_id == staff_id:
                return item
            item.assignee_id, item.updated_at = staff_id, utcnow()
            item.escalation_level = min(item.escalation_level or 0, 0)
            add_event(session, item, "assigned", actor,
                      data={"assignee_id": staff_id, "assignee": staff.name if staff else None})
        return item

    def add_note(self, shop_ids: Collection[int], item_id: int, actor: str, text: str) -> VocItem:
        """An internal note: on the timeline, never shown to the customer."""
        text = _text(text, "note")
        with self.runtime.db.session() as session:
            item = self.load(session, shop_ids, item_id)
            add_event(session, item, "note", actor, note=text)
            item.updated_at = utcnow()
        return item

    def assess(self, shop_ids: Collection[int], item_id: int, actor: str, *,
               category: str | None = None, severity: str | None = None,
               issues: Sequence[tuple[str, str | None]] = ()) -> VocItem:
        """Set category and severity (a new severity moves the response due time) and record
        further problems the customer raised."""
        if severity is not None and severity not in {s.value for s in VocSeverity}:
            raise VocActionError("Unknown severity.", field="severity")
        with self.runtime.db.session() as session:
            item = self.load(session, shop_ids, item_id, lock=True)
            changes: dict[str, Any] = {}
            if category is not None and category != item.category:
                changes["category"] = [item.category, category]
                item.category = category
                if not any(i.category == category for i in item.issues):
                    session.add(VocIssue(shop_id=item.shop_id, voc_item_id=item.id,
                                         category=category, handled=False, created_at=utcnow()))
            if severity is not None and severity != item.severity:
                changes["severity"] = [item.severity, severity]
                item.severity = severity
                shop = session.get(Shop, item.shop_id)
                item.respond_due_at = business_hours_of(shop).add(
                    item.created_at, sla_hours(voc_settings(shop.settings), item.kind.value, severity))
            for issue_category, summary in issues:
                session.add(VocIssue(shop_id=item.shop_id, voc_item_id=item.id,
                                     category=_text(issue_category, "category", 100),
                                     summary=summary, handled=False, created_at=utcnow()))
                changes.setdefault("issues_added", []).append(issue_category)
            if changes:
                item.updated_at = utcnow()
                add_event(session, item, "assessed", actor, data=changes)
        return item

    def reply(self, shop_ids: Collection[int], item_id: int, actor: str, text: str, *,
              given_outside: bool = False) -> VocItem:
        """Answer the customer on the channel they used and move the item to responded.

        ``given_outside``: the answer was given by phone or at the counter; the text records what
        was said and nothing is sent."""
        text = _text(text, "message")
        keys: list[str] = []
        with self.runtime.db.session() as session:
            item = self.load(session, shop_ids, item_id, lock=True)
            shop = session.get(Shop, item.shop_id)
            data: dict[str, Any] = {}
            if not given_outside:
                notifier, recipient = self.reply_route(item)
                if notifier is None:
                    raise VocActionError(
                        "This customer left no address to answer on: call them and record the "
                        "answer as given outside.", "no_contact", field="message")
                key = f"voc-reply:{item.id}:{utcnow().timestamp():.6f}"
                names = messages.texts(item.locale)
                body = text + messages.fill(names["reply_footer"], shop=_shop_name(shop),
                                            reference=item.reference)
                record(session.connection(), OutgoingMessage(
                    key=key, shop_id=item.shop_id, channel=notifier, recipient=recipient,
                    subject=messages.fill(names["reply_subject"], shop=_shop_name(shop),
                                          reference=item.reference),
                    body=body, locale=item.locale,
                    data=self._mail_data(session, item, shop, purpose="voc_reply",
                                         written_by_person=True)))
                keys.append(key)
                data = {"message_key": key, "notifier": notifier}
            else:
                data = {"given_outside": True}
            event_type = "reply"
            if item.status is VocStatus.RESPONDED:
                add_event(session, item, event_type, actor, note=text, data=data)
                item.updated_at = utcnow()
            else:
                self._move(session, item, VocStatus.RESPONDED, actor, type_=event_type, note=text,
                           data=data)
        self._send(keys)
        return item

    def close(self, shop_ids: Collection[int], item_id: int, actor: str, *,
              root_cause: str | None = None, prevention_action: str | None = None,
              resolution: str | None = None, handled_issue_ids: Iterable[int] | None = None,
              ask_satisfaction: bool | None = None) -> VocItem:
        """Close with the root cause and the prevention action (what stops the next one); mark
        the issues that were handled; ask the customer for their satisfaction (1–5)."""
        keys: list[str] = []
        with self.runtime.db.session() as session:
            item = self.load(session, shop_ids, item_id, lock=True)
            if item.kind.value == "complaint" and resolution is None and not (root_cause or "").strip():
                raise VocActionError("A complaint is closed with its root cause.", "root_cause_required",
                                     field="root_cause")
            self._move(session, item, VocStatus.CLOSED, actor, resolution=resolution,
                       data={"root_cause": root_cause, "prevention_action": prevention_action})
            item.root_cause = _optional_text(root_cause, "root_cause") or item.root_cause
            item.prevention_action = (_optional_text(prevention_action, "prevention_action")
                                      or item.prevention_action)
            wanted = set(handled_issue_ids) if handled_issue_ids is not None else None
            for issue in item.issues:
                if wanted is None or issue.id in wanted:
                    issue.handled = True
            shop = session.get(Shop, item.shop_id)
            settings = voc_settings(shop.settings)
            asking = settings["ask_satisfaction"] if ask_satisfaction is None else ask_satisfaction
            if asking and resolution is None and item.satisfaction is None:
                keys += self._satisfaction_request(session, item, shop)
        self._send(keys)
        return item

    def reopen(self, shop_ids: Collection[int], item_id: int, actor: str, reason: str) -> VocItem:
        reason = _text(reason, "reason")
        with self.runtime.db.session() as session:
            item = self.load(session, shop_ids, item_id, lock=True)
            if item.status is not VocStatus.CLOSED:  # only a closed item reopens (else: start)
                raise VocActionError(f"{item.reference} is not closed.", "not_closed", 409)
            self._move(session, item, VocStatus.IN_PROGRESS, actor, note=reason)
            shop = session.get(Shop, item.shop_id)
            # the clock restarts: the customer is owed an answer again within the SLA
            item.respond_due_at = business_hours_of(shop).add(
                utcnow(), sla_hours(voc_settings(shop.settings), item.kind.value, item.severity))
        return item

    def mark_duplicate(self, shop_ids: Collection[int], item_id: int, actor: str,
                       original_id: int) -> VocItem:
        """Link the item to the one it repeats and close it as a duplicate."""
        with self.runtime.db.session() as session:
            item = self.load(session, shop_ids, item_id, lock=True)
            original = self.load(session, [item.shop_id], original_id)
            if original.id == item.id or original.duplicate_of_id == item.id:
                raise VocActionError("An item cannot duplicate itself.", field="original_id")
            item.duplicate_of_id = original.duplicate_of_id or original.id
            add_event(session, original, "duplicate_linked", actor,
                      data={"duplicate_id": item.id, "reference": item.reference})
            self._move(session, item, VocStatus.CLOSED, actor, resolution="duplicate",
                       data={"original_id": item.duplicate_of_id})
        return item

    def record_satisfaction(self, item_id: int, score: int, comment: str | None = None) -> VocItem:
        """The customer's rating from the satisfaction link (the link names the item)."""
        if not 1 <= int(score) <= 5:
            raise VocActionError("The score is from 1 to 5.", field="score")
        with self.runtime.db.session() as session:
            item = session.get(VocItem, item_id)
            if item is None:
                raise ItemNotFound()
            item.satisfaction = int(score)
            item.satisfaction_comment = _optional_text(comment, "comment")
            add_event(session, item, "satisfaction", "customer", note=item.satisfaction_comment,
                      data={"score": int(score)})
        return item

    def bulk(self, shop_ids: Collection[int], item_ids: Sequence[int], action: str, actor: str,
             **params: Any) -> list[BulkResult]:
        """Apply one action to many items; each succeeds or fails on its own."""
        handlers = {"acknowledge": self.acknowledge, "start": self.start, "assign": self.assign,
                    "close": self.close, "note": self.add_note, "assess": self.assess}
        if action not in handlers:
            raise VocActionError(f"Unknown bulk action {action!r}.", field="action")
        results = []
        for item_id in dict.fromkeys(item_ids):
            try:
                handlers[action](shop_ids, item_id, actor, **params)
                results.append(BulkResult(item_id, True))
            except (VocActionError, InvalidTransition) as exc:
                results.append(BulkResult(item_id, False, getattr(exc, "code", "invalid"), str(exc)))
        return results

    # ---------------------------------------------------------------------------------------------
    # Automatic steps (run by jobs)
    # ---------------------------------------------------------------------------------------------

    def auto_acknowledge(self, item_id: int) -> bool:
        """Acknowledge a new item on the shop's behalf when the customer can be reached. True when
        it moved; an item a person already took further is left alone."""
        keys: list[str] = []
        with self.runtime.db.session() as session:
            item = session.get(VocItem, item_id,
                               with_for_update=session.bind.dialect.name == "postgresql")
            if item is None or item.status is not VocStatus.RECEIVED or \
                    not acknowledged_automatically(item.kind, item.channel):
                return False
            shop = session.get(Shop, item.shop_id)
            if not voc_settings(shop.settings)["auto_acknowledge"]:
                return False
            if self.reply_route(item)[0] is None:
                return False  # nobody to tell: staff acknowledge it by hand (escalation watches)
            self._move(session, item, VocStatus.ACKNOWLEDGED, "system", type_="acknowledged")
            keys += self._acknowledgement(session, item)
        self._send(keys)
        return True

    # ---------------------------------------------------------------------------------------------
    # Helpers
    # ---------------------------------------------------------------------------------------------

    def reply_route(self, item: VocItem) -> tuple[str | None, str | None]:
        """(notifier channel, recipient) a message to the item's customer goes out on."""
        channel = self.runtime.channels.get(item.channel)
        notifier = channel.reply_notifier if channel else "email"
        if notifier == "email" or notifier is None:
            # a phone or in-person item whose customer left an email can still be written to
            return ("email", item.contact_email) if item.contact_email else (None, None)
        recipient = item.contact_phone or item.contact_email
        return (notifier, recipient) if recipient else (None, None)

    def _move(self, session: Session, item: VocItem, to: VocStatus, actor: str, **kwargs) -> None:
        try:
            move(session, item, to, actor, **kwargs)
        except InvalidTransition as exc:
            raise VocActionError(str(exc), exc.code, 409) from None

    def _mail_data(self, session: Session, item: VocItem, shop: Shop, **extra: Any
                   ) -> dict[str, Any]:
        from ccms_addon.voc.inbound import inbound_address_for
        data: dict[str, Any] = {"reference": item.reference, **extra}
        if item.thread_ref:
            data["in_reply_to"] = item.thread_ref
        reply_to = inbound_address_for(self.runtime, session, shop)
        if reply_to:
            data["reply_to"] = reply_to
        return data

    def _acknowledgement(self, session: Session, item: VocItem) -> list[str]:
        notifier, recipient = self.reply_route(item)
        if notifier is None:
            return []
        shop = session.get(Shop, item.shop_id)
        names = messages.texts(item.locale)
        key = f"voc-ack:{item.id}"
        fields = dict(shop=_shop_name(shop), reference=item.reference, name=item.contact_name,
                      due=item.respond_due_at, zone=shop.timezone or "UTC", locale=item.locale)
        fresh = record(session.connection(), OutgoingMessage(
            key=key, shop_id=item.shop_id, channel=notifier, recipient=recipient,
            subject=messages.fill(names["ack_subject"], **fields),
            body=messages.fill(names["ack_body"], quote=messages.quote(item.body), **fields),
            locale=item.locale,
            data=self._mail_data(session, item, shop, purpose="voc_acknowledgement")))
        return [key] if fresh else []

    def _satisfaction_request(self, session: Session, item: VocItem, shop: Shop) -> list[str]:
        notifier, recipient = self.reply_route(item)
        if notifier is None:
            return []
        names = messages.texts(item.locale)
        link = make_link(self.runtime.settings, SATISFACTION_PATH, SATISFACTION_PURPOSE,
                         {"item": item.id, "shop": item.shop_id})
        # one request per closing: a reopened and closed again item asks again
        key = f"voc-satisfaction:{item.id}:{item.reopened_count or 0}"
        fields = dict(shop=_shop_name(shop), reference=item.reference, name=item.contact_name,
                      locale=item.locale)
        fresh = record(session.connection(), OutgoingMessage(
            key=key, shop_id=item.shop_id, channel=notifier, recipient=recipient,
            subject=messages.fill(names["satisfaction_subject"], **fields),
            body=messages.fill(names["satisfaction_body"], link=link, **fields),
            locale=item.locale,
            data=self._mail_data(session, item, shop, purpose="voc_satisfaction", link=link)))
        item.satisfaction_requested_at = utcnow()
        return [key] if fresh else []

    def _send(self, keys: list[str]) -> None:
        if not keys:
            return
        try:
            enqueue(self.runtime, keys)
        except Exception:  # noqa: BLE001 — recorded: the outbox's sweep sends them
            log.exception("could not enqueue %d VOC message(s); the outbox sweep will", len(keys))


def _shop_name(shop: Shop) -> str:
    return " ".join((shop.name or shop.domain).split())


def _text(value: str | None, field: str, limit: int = MAX_TEXT) -> str:
    text = (value or "").strip()
    if not text:
        raise VocActionError(f"The {field} is empty.", "required", field=field)
    if len(text) > limit:
        raise VocActionError(f"The {field} is over {limit} characters.", "too_long", field=field)
    return text


def _optional_text(value: str | None, field: str) -> str | None:
    return _text(value, field) if value and value.strip() else None


def staff_can(staff: Staff, permission: str) -> bool:
    """``work`` (act on items), ``report`` (board, reports, export), ``admin`` (settings, staff).
    Every active person may read the inbox and the items of the merchant's shops."""
    allowed = {StaffRole.VIEWER: {"report"}, StaffRole.AGENT: {"work"},
               StaffRole.MANAGER: {"work", "report"}, StaffRole.OWNER: {"work", "report", "admin"}}
    return permission in allowed[staff.role]
