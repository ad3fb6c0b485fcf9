"""Escalation: people hear of an item before its promise to the customer breaks, and the owner
hears when it broke.

``VocItem.escalation_level`` is a ladder the sweep (run by the dispatcher every minute) climbs:

- **level 1** — the response is due within the shop's ``escalate_before_minutes`` *business*
  minutes (its opening hours, time zone and holidays: an item written on Friday evening warns
  nobody over the weekend), or the item is still ``received`` after the acknowledgement promised
  to the customer fell due (nobody could acknowledge it automatically: a phone call). The
  assignee is warned; an item nobody holds warns the shop's managers and owners.
- **level 2** — the response time has passed: the owners are told (and, when the item skipped
  level 1, the assignee too, in the same pass; one message per person per pass).

Promises broken more than :data:`BACKLOG_HORIZON` ago are left to the owner's board and digest.

Each step is claimed by one conditional ``UPDATE … WHERE escalation_level = <seen>`` and, in the
same transaction, leaves an ``escalated`` :class:`VocEvent` (level, reason, recipients) and one
outbox message per recipient keyed ``voc-escalation:<item>:<level>:<reopened count>:<recipient>``.
Two sweeps racing (two dispatchers, a retry) cannot both win the claim, and the key could not
send twice even if they did. Reopening an item (or giving it to someone else) puts it back to
level 0; the reopened count in the key lets the new round speak again, the recipient in the key
lets a new assignee be warned while the old one is not warned twice.

Staff emails are plain text in each person's locale (ko, en, ja) with the dashboard link and the
customer's own words, quoted verbatim.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from ccms_addon.outbox import OutgoingMessage, enqueue, record
from ccms_addon.runtime import Runtime
from ccms_addon.store.models import (Shop, ShopStatus, Staff, StaffRole, VocItem, VocStatus,
                                     utcnow)
from ccms_addon.voc import messages
from ccms_addon.voc.lifecycle import OPEN, add_event
from ccms_addon.voc.settings import business_hours_of, voc_settings

log = logging.getLogger(__name__)

WARNED, BREACHED = 1, 2
#: why an item climbed
DUE_SOON = "response_due_soon"
OVERDUE = "response_overdue"
UNACKNOWLEDGED = "acknowledgement_overdue"
#: items due later than this (calendar time) are not examined. Business time is always shorter
#: than calendar time, so an item is never warned late unless the shop opens less than
#: ``escalate_before_minutes`` within two weeks; then it is warned when it comes into view.
LOOKAHEAD = timedelta(days=14)
#: a promise that broke longer ago than this is not escalated any more: it is the owner's board's
#: and the digest's "SLA breaches". Without it, the first sweep after an install or an outage
#: would mail one message per stale item of a whole backlog.
BACKLOG_HORIZON = timedelta(days=7)
#: rows read per page while sweeping
SWEEP_PAGE = 1000
#: the dashboard page of an item, under CCMS_PUBLIC_URL
DASHBOARD_ITEM_PATH = "/dashboard/items/{id}"
EMAIL_CHANNEL = "email"
#: roles told when an item nobody holds is about to break its promise
UNASSIGNED_ROLES = (StaffRole.MANAGER, StaffRole.OWNER)


def escalation_key(item_id: int, level: int, reopened_count: int, recipient: str) -> str:
    """The outbox key of one escalation message (``recipient``: ``staff-<id>`` or ``merchant``)."""
    return f"voc-escalation:{item_id}:{level}:{reopened_count}:{recipient}"


def dashboard_link(runtime: Runtime, item_id: int) -> str:
    return runtime.settings.public_url + DASHBOARD_ITEM_PATH.format(id=item_id)


@dataclass(frozen=True)
class Target:
    level: int
    reason: str


def target_for(item, clock, escalate_before_minutes: int, now: datetime) -> Target | None:
    """The level ``item`` should stand at ``now`` and why (None: level 0)."""
    if item.status not in OPEN:
        return None
    due = item.respond_due_at
    if due is not None and due <= now:
        return Target(BREACHED, OVERDUE)
    if due is not None and clock.between(now, due) <= timedelta(minutes=escalate_before_minutes):
        return Target(WARNED, DUE_SOON)
    if (item.status is VocStatus.RECEIVED and item.acknowledge_due_at is not None
            and item.acknowledge_due_at <= now):
        return Target(WARNED, UNACKNOWLEDGED)
    return None


@dataclass(frozen=True)
class Recipient:
    #: the part of the outbox key naming them
    key: str
    email: str
    locale: str
    #: how they appear on the timeline
    label: str


def recipients(session: Session, item: VocItem, shop: Shop, level: int) -> list[Recipient]:
    """Level 1: the assignee, else the managers and owners; level 2: the owners. With nobody on
    the team, the merchant's own address."""
    from ccms_addon.voc.service import actor_for
    team = select(Staff).where(Staff.merchant_id == shop.merchant_id, Staff.active.is_(True))
    people: Sequence[Staff] = []
    if level == WARNED:
        assignee = (session.scalar(team.where(Staff.id == item.assignee_id))
                    if item.assignee_id is not None else None)
        people = ([assignee] if assignee is not None
                  else session.scalars(team.where(Staff.role.in_(UNASSIGNED_ROLES))
                                       .order_by(Staff.id)).all())
    else:
        people = session.scalars(team.where(Staff.role == StaffRole.OWNER).order_by(Staff.id)).all()
    found = [Recipient(f"staff-{p.id}", p.email, p.locale or "en", actor_for(p)) for p in people]
    if not found and (shop.merchant.email or "").strip():
        found = [Recipient("merchant", shop.merchant.email.strip(), shop.locale or "en",
                           "merchant")]
    return found


def sweep_escalations(runtime: Runtime, *, now: datetime | None = None) -> int:
    """Climb every open item that is due for it; returns the number of steps taken."""
    now = now or utcnow()
    steps = 0
    clocks: dict[int, tuple] = {}
    last_id = 0
    while True:
        with runtime.db.engine.connect() as conn:
            rows = conn.execute(
                select(VocItem.id, VocItem.shop_id, VocItem.status, VocItem.escalation_level,
                       VocItem.reopened_count, VocItem.respond_due_at, VocItem.acknowledge_due_at)
                .join(Shop, Shop.id == VocItem.shop_id)
                .where(Shop.status == ShopStatus.ACTIVE, VocItem.status.in_(OPEN),
                       VocItem.id > last_id,
                       or_(and_(VocItem.escalation_level == 0,
                                or_(VocItem.respond_due_at.between(now - BACKLOG_HORIZON,
                                                                   now + LOOKAHEAD),
                                    and_(VocItem.status == VocStatus.RECEIVED,
                                         VocItem.acknowledge_due_at.between(
                                             now - BACKLOG_HORIZON, now)))),
                           and_(VocItem.escalation_level == WARNED,
                                VocItem.respond_due_at.between(now - BACKLOG_HORIZON, now))))
                .order_by(VocItem.id).limit(SWEEP_PAGE)).all()
            unknown = {row.shop_id for row in rows} - set(clocks)
            if unknown:
                for shop in conn.execute(select(Shop.id, Shop.settings, Shop.timezone)
                                         .where(Shop.id.in_(unknown))):
                    clocks[shop.id] = (business_hours_of(shop),
                                       voc_settings(shop.settings)["escalate_before_minutes"])
        if not rows:
            break
        last_id = rows[-1].id
        for row in rows:
            clock, before = clocks[row.shop_id]
            target = target_for(row, clock, before, now)
            if target is None or target.level <= (row.escalation_level or 0):
                continue
            try:
                steps += escalate(runtime, row, target, clock, now)
            except Exception:  # noqa: BLE001 — one item must not stop the sweep
                log.exception("could not escalate VOC item %s", row.id)
    if steps:
        log.info("escalation sweep took %d step(s)", steps)
    return steps


def escalate(runtime: Runtime, seen, target: Target, clock, now: datetime) -> int:
    """Claim the climb from ``seen.escalation_level`` to ``target.level`` and record each step;
    0 when another sweep (or a person) changed the item first."""
    keys: list[str] = []
    taken = 0
    with runtime.db.session() as session:
        claimed = session.execute(
            update(VocItem)
            .where(VocItem.id == seen.id, VocItem.escalation_level == seen.escalation_level,
                   VocItem.status == seen.status, VocItem.reopened_count == seen.reopened_count)
            .values(escalation_level=target.level)
            .execution_options(synchronize_session=False)).rowcount
        if claimed != 1:
            return 0
        item = session.get(VocItem, seen.id)
        shop = session.get(Shop, item.shop_id)
        assignee = session.get(Staff, item.assignee_id) if item.assignee_id else None
        # a level skipped (the item broke its promise unwarned) is taken in the same pass, for
        # the same reason: the assignee hears that it is overdue, not that it is due soon
        reason = target.reason
        mailed: set[str] = set()  # one message a person per pass, whatever levels it climbs
        for level in range((seen.escalation_level or 0) + 1, target.level + 1):
            told = recipients(session, item, shop, level)
            for person in told:
                if person.key in mailed:
                    continue
                mailed.add(person.key)
                key = escalation_key(item.id, level, item.reopened_count or 0, person.key)
                subject, body = compose(runtime, item, shop, clock, level, reason, person, now,
                                        assignee.name if assignee else None)
                if record(session.connection(), OutgoingMessage(
                        key=key, shop_id=item.shop_id, channel=EMAIL_CHANNEL,
                        recipient=person.email, subject=subject, body=body, locale=person.locale,
                        data={"purpose": "voc_escalation", "reference": item.reference,
                              "level": level, "link": dashboard_link(runtime, item.id)})):
                    keys.append(key)
            if not told:
                log.warning("VOC item %s escalated to level %s with nobody to tell",
                            item.id, level)
            add_event(session, item, "escalated", "system",
                      data={"level": level, "reason": reason,
                            "to": [person.label for person in told],
                            "respond_due_at": item.respond_due_at.isoformat()
                            if item.respond_due_at else None})
            taken += 1
    if keys:
        try:
            enqueue(runtime, keys)
        except Exception:  # noqa: BLE001 — recorded: the outbox sweep sends them
            log.warning("could not enqueue %d escalation message(s); the outbox sweep will",
                        len(keys))
    return taken


# --------------------------------------------------------------------------------------------------
# The message
# --------------------------------------------------------------------------------------------------

TEXTS = {
    "en": {
        "subject": {DUE_SOON: "[{shop}] Due soon: {reference} ({kind})",
                    OVERDUE: "[{shop}] Overdue: {reference} ({kind})",
                    UNACKNOWLEDGED: "[{shop}] Not acknowledged: {reference} ({kind})"},
        "lead": {DUE_SOON: "The answer to {reference} is due at {due}, {left} business minutes "
                           "from now.",
                 OVERDUE: "The answer to {reference} was due at {due}: the response time promised "
                          "for this {kind} has been broken.",
                 UNACKNOWLEDGED: "Nobody has acknowledged {reference} yet: the customer was "
                                 "promised an acknowledgement by {ack_due}."},
        "assigned": "Assigned to: {assignee}",
        "unassigned": "Nobody is assigned to it.",
        "details": "Status: {status} · Severity: {severity} · Category: {category} · "
                   "Channel: {channel}",
        "open": "Open it: {link}",
        "subject_line": "Subject: {subject}",
        "customer": "The customer wrote:",
        "footer": "--\n{shop} · escalation level {level} of 2",
        "kinds": {}, "severities": {}, "statuses": {}, "none": "none",
    },
    "ko": {
        "subject": {DUE_SOON: "[{shop}] 답변 기한 임박: {reference} ({kind})",
                    OVERDUE: "[{shop}] 답변 기한 초과: {reference} ({kind})",
                    UNACKNOWLEDGED: "[{shop}] 접수 확인 지연: {reference} ({kind})"},
        "lead": {DUE_SOON: "{reference} 건의 답변 기한은 {due}입니다. 영업시간 기준으로 {left}분 "
                           "남았습니다.",
                 OVERDUE: "{reference} 건의 답변 기한({due})이 지났습니다. 이 {kind} 건에 약속한 "
                          "응답 시간을 넘겼습니다.",
                 UNACKNOWLEDGED: "{reference} 건이 아직 접수 확인되지 않았습니다. 고객에게 약속한 "
                                 "접수 확인 기한은 {ack_due}였습니다."},
        "assigned": "담당자: {assignee}",
        "unassigned": "담당자가 지정되지 않았습니다.",
        "details": "상태: {status} · 심각도: {severity} · 분류: {category} · 채널: {channel}",
        "open": "바로 가기: {link}",
        "subject_line": "제목: {subject}",
        "customer": "고객이 남긴 내용:",
        "footer": "--\n{shop} · 에스컬레이션 {level}/2단계",
        "kinds": {"complaint": "불만", "inquiry": "문의", "suggestion": "제안", "praise": "칭찬",
                  "claim": "보상 청구", "want_slip": "잠재 불만 기록"},
        "severities": {"critical": "긴급", "high": "높음", "normal": "보통", "low": "낮음"},
        "statuses": {"received": "접수", "acknowledged": "접수 확인", "in_progress": "처리 중"},
        "none": "없음",
    },
    "ja": {
        "subject": {DUE_SOON: "[{shop}] 回答期限間近：{reference}（{kind}）",
                    OVERDUE: "[{shop}] 回答期限超過：{reference}（{kind}）",
                    UNACKNOWLEDGED: "[{shop}] 受付確認の遅れ：{reference}（{kind}）"},
        "lead": {DUE_SOON: "{reference} の回答期限は {due} です。営業時間であと {left} 分です。",
                 OVERDUE: "{reference} の回答期限（{due}）を過ぎました。この{kind}に約束した応答時間を"
                          "超えています。",
                 UNACKNOWLEDGED: "{reference} はまだ受付確認されていません。お客様にお約束した受付確認の"
                                 "期限は {ack_due} でした。"},
        "assigned": "担当者：{assignee}",
        "unassigned": "担当者が割り当てられていません。",
        "details": "状態：{status}・重要度：{severity}・分類：{category}・チャネル：{channel}",
        "open": "開く：{link}",
        "subject_line": "件名：{subject}",
        "customer": "お客様の内容：",
        "footer": "--\n{shop}・エスカレーション レベル {level}/2",
        "kinds": {"complaint": "苦情", "inquiry": "問い合わせ", "suggestion": "提案",
                  "praise": "お褒め", "claim": "請求", "want_slip": "ウォントスリップ"},
        "severities": {"critical": "緊急", "high": "高", "normal": "通常", "low": "低"},
        "statuses": {"received": "受付", "acknowledged": "受付確認済み", "in_progress": "対応中"},
        "none": "なし",
    },
}


def _one_line(value: str | None) -> str:
    return " ".join((value or "").split())


def _local(moment: datetime | None, zone: str, locale: str) -> str:
    """A moment in the shop's zone, written for the reader (the customer messages' format)."""
    if moment is None:
        return "-"
    return messages.fill("{due}", shop="", reference="", due=moment, zone=zone, locale=locale)


def compose(runtime: Runtime, item: VocItem, shop: Shop, clock, level: int, reason: str,
            person: Recipient, now: datetime, assignee: str | None) -> tuple[str, str]:
    """Subject and plain-text body for one person; the customer's words verbatim, as text."""
    locale = person.locale[:2] if person.locale[:2] in TEXTS else "en"
    texts = TEXTS[locale]
    zone = shop.timezone or "UTC"
    channel = runtime.channels.get(item.channel)
    kind = texts["kinds"].get(item.kind.value, item.kind.value.replace("_", " "))
    left = int(clock.between(now, item.respond_due_at).total_seconds() // 60) \
        if item.respond_due_at else 0
    fields = dict(shop=_one_line(shop.name) or shop.domain, reference=item.reference, kind=kind,
                  due=_local(item.respond_due_at, zone, locale), left=left,
                  ack_due=_local(item.acknowledge_due_at, zone, locale))
    lines = [texts["lead"][reason].format(**fields), "",
             texts["assigned"].format(assignee=_one_line(assignee)) if assignee
             else texts["unassigned"],
             texts["details"].format(
                 status=texts["statuses"].get(item.status.value, item.status.value),
                 severity=texts["severities"].get(item.severity or "",
                                                  item.severity or texts["none"]),
                 category=item.category or texts["none"],
                 channel=channel.label(locale) if channel else item.channel),
             "", texts["open"].format(link=dashboard_link(runtime, item.id)), ""]
    if item.subject:
        lines.append(texts["subject_line"].format(subject=_one_line(item.subject)))
    lines += [texts["customer"], messages.quote(item.body, limit=len(item.body) + 1), "",
              texts["footer"].format(shop=fields["shop"], level=level)]
    return texts["subject"][reason].format(**fields), "\n".join(lines) + "\n"

