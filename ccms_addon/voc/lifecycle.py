"""The ISO 10002 / CCMS lifecycle of a VOC item, as a table of allowed moves.

received → acknowledged → in_progress → responded → closed, and back: a closed item may be
reopened (→ in_progress) and a responded one goes back in progress when the customer writes again.
Steps may be skipped forward (a one-line answer acknowledges and responds at once); the timestamps
of every skipped step are set so the figures of acknowledgement and response stay true. Every move
is one :class:`VocEvent` with its actor; a move the table does not allow is refused.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from ccms_addon.store.models import VocEvent, VocItem, VocStatus, utcnow

S = VocStatus
#: from → the statuses it may move to
ALLOWED: dict[VocStatus, frozenset[VocStatus]] = {
    S.RECEIVED: frozenset({S.ACKNOWLEDGED, S.IN_PROGRESS, S.RESPONDED, S.CLOSED}),
    S.ACKNOWLEDGED: frozenset({S.IN_PROGRESS, S.RESPONDED, S.CLOSED}),
    S.IN_PROGRESS: frozenset({S.RESPONDED, S.CLOSED}),
    S.RESPONDED: frozenset({S.IN_PROGRESS, S.CLOSED}),
    S.CLOSED: frozenset({S.IN_PROGRESS}),
}
#: statuses in which the item still waits for the merchant (SLA clocks run)
OPEN = (S.RECEIVED, S.ACKNOWLEDGED, S.IN_PROGRESS)
#: an item closed before it was answered must say why
CLOSE_WITHOUT_RESPONSE = ("duplicate", "withdrawn", "spam", "resolved_elsewhere")


class InvalidTransition(ValueError):
    """The lifecycle does not allow this move; ``code`` names the reason for an API answer."""

    def __init__(self, message: str, code: str = "invalid_transition"):
        super().__init__(message)
        self.code = code


def check(item: VocItem, to: VocStatus) -> None:
    if to is item.status:
        raise InvalidTransition(f"{item.reference} is already {to.value}.", "unchanged")
    if to not in ALLOWED[item.status]:
        raise InvalidTransition(f"{item.reference} cannot go from {item.status.value} to "
                                f"{to.value}.")


def add_event(session: Session, item: VocItem, type_: str, actor: str, *,
              note: str | None = None, data: dict | None = None,
              from_status: VocStatus | None = None, to_status: VocStatus | None = None,
              at: datetime | None = None) -> VocEvent:
    """Append one event to an item's timeline (no status change of its own: see :func:`move`)."""
    event = VocEvent(shop_id=item.shop_id, voc_item_id=item.id, type=type_, actor=actor,
                     from_status=from_status.value if from_status else None,
                     to_status=to_status.value if to_status else None, note=note, data=data,
                     created_at=at or utcnow())
    session.add(event)
    return event


def move(session: Session, item: VocItem, to: VocStatus, actor: str, *, type_: str | None = None,
         note: str | None = None, data: dict | None = None, resolution: str | None = None,
         at: datetime | None = None) -> VocEvent:
    """Move ``item`` to ``to`` (raising :class:`InvalidTransition`), stamp the lifecycle times and
    record the event. ``resolution`` is required to close an item that was never answered."""
    check(item, to)
    now = at or utcnow()
    before = item.status
    if to is S.CLOSED and before is not S.RESPONDED and resolution not in CLOSE_WITHOUT_RESPONSE:
        raise InvalidTransition(
            f"{item.reference} has not been answered: reply first, or close it as one of "
            f"{', '.join(CLOSE_WITHOUT_RESPONSE)}.", "not_answered")
    if to is not S.RECEIVED and item.acknowledged_at is None:
        item.acknowledged_at = now
    if to in (S.RESPONDED, S.CLOSED) and item.responded_at is None and resolution is None:
        item.responded_at = now
    if to is S.CLOSED:
        item.closed_at = now
    if before is S.CLOSED:  # reopened: the item is open again, its next answer is awaited
        item.closed_at = None
        item.reopened_count = (item.reopened_count or 0) + 1
        item.escalation_level = 0
    item.status = to
    item.updated_at = now
    payload = dict(data or {})
    if resolution:
        payload["resolution"] = resolution
    return add_event(session, item, type_ or _default_type(before, to), actor, note=note,
                     data=payload or None, from_status=before, to_status=to, at=now)


def _default_type(before: VocStatus, to: VocStatus) -> str:
    if before is S.CLOSED:
        return "reopened"
    return {S.ACKNOWLEDGED: "acknowledged", S.IN_PROGRESS: "started", S.RESPONDED: "responded",
            S.CLOSED: "closed"}[to]


def advance(session: Session, item: VocItem, type_: str, actor: str, *,
            to: VocStatus | None = None, note: str | None = None,
            data: dict | None = None) -> VocEvent:
    """For a process that reports a fact (a claim approved, a refund settled): record the event
    and move the item to ``to`` when the lifecycle allows it from where the item stands; an item a
    person already moved further (or closed) keeps its status."""
    if to is not None and to is not item.status and to in ALLOWED[item.status] and not (
            to is S.CLOSED and item.status is not S.RESPONDED):
        return move(session, item, to, actor, type_=type_, note=note, data=data)
    return add_event(session, item, type_, actor, note=note, data=data)
