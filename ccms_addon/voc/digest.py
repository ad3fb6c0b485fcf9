"""The owner's daily digest: the board's first figures by plain-text email, once a day.

One digest per merchant and local day, covering the merchant's active shops whose digest is
enabled (``Shop.settings["voc"]["digest"]``). The zone and the hour are those of the first such
shop (lowest id); it is sent during that local hour (``digest.hour``) — a dispatcher that was
down for the whole hour skips that day rather than sending yesterday's news at night. Recipients:
the merchant's active owners (Staff role ``owner``, each in their own language) and the
``digest.recipients`` of those shops (in the shop's language).

It carries what the owner should read directly: the new voices of the last 24 hours verbatim
(the shopper's words as plain text, never HTML), the SLA breaches of the moment, the top
categories and products of the last seven days — the same queries as :mod:`metrics`' board.

Each message goes through the outbox with the idempotency key
``voc-digest:<merchant>:<local date>:<recipient>``, recorded before any attempt: however often
:func:`send_due_digests` runs in that hour (two dispatchers, a retry), each person gets one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.orm import Session

from ccms_addon.outbox import OutgoingMessage, Outbox, enqueue, record
from ccms_addon.runtime import Runtime
from ccms_addon.store.models import (Merchant, OutboundMessage, Shop, ShopStatus, Staff,
                                     StaffRole, utcnow)
from ccms_addon.voc import metrics
from ccms_addon.voc.report_render import channel_label, kind_label, normal_locale, strings
from ccms_addon.voc.settings import voc_settings

log = logging.getLogger(__name__)

#: what the digest looks back on for new voices
DIGEST_SPAN = timedelta(hours=24)
#: voices quoted verbatim in one digest (the rest are counted)
DIGEST_VOICES = 20
EMAIL_CHANNEL = "email"
PURPOSE = "voc_digest"


def digest_key(merchant_id: int, day: date, recipient: str) -> str:
    return f"voc-digest:{merchant_id}:{day.isoformat()}:{recipient.lower()}"


@dataclass(frozen=True)
class DigestPlan:
    """One merchant's digest that is due now."""

    merchant_id: int
    merchant_name: str
    zone: str
    day: date
    #: the shop the outbox rows are filed under (the first enabled one)
    shop_id: int
    shop_ids: tuple[int, ...]
    #: (address, locale) pairs, each address once
    recipients: tuple[tuple[str, str], ...]

    def key(self, recipient: str) -> str:
        return digest_key(self.merchant_id, self.day, recipient)


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def due_digests(session: Session, now: datetime) -> list[DigestPlan]:
    """The merchants whose digest hour it is now, in their first enabled shop's zone."""
    by_merchant: dict[int, list] = {}
    for shop in session.execute(
            select(Shop.id, Shop.merchant_id, Shop.timezone, Shop.locale, Shop.settings)
            .where(Shop.status == ShopStatus.ACTIVE).order_by(Shop.merchant_id, Shop.id)):
        digest = voc_settings(shop.settings)["digest"]
        if digest["enabled"]:
            by_merchant.setdefault(shop.merchant_id, []).append((shop, digest))
    due = {}
    for merchant_id, shops in by_merchant.items():
        first, digest = shops[0]
        local = now.astimezone(_zone(first.timezone))
        if local.hour == digest["hour"]:
            due[merchant_id] = (shops, local.date(), _zone(first.timezone).key)
    if not due:
        return []
    owners: dict[int, list[tuple[str, str]]] = {}
    for staff in session.execute(
            select(Staff.merchant_id, Staff.email, Staff.locale)
            .where(Staff.merchant_id.in_(list(due)), Staff.role == StaffRole.OWNER,
                   Staff.active.is_(True)).order_by(Staff.id)):
        owners.setdefault(staff.merchant_id, []).append((staff.email, normal_locale(staff.locale)))
    names = dict(session.execute(select(Merchant.id, Merchant.name)
                                 .where(Merchant.id.in_(list(due)))).all())
    plans = []
    for merchant_id, (shops, day, zone) in due.items():
        recipients: dict[str, tuple[str, str]] = {}
        for email, locale in owners.get(merchant_id, []):
            recipients.setdefault(email.lower(), (email, locale))
        for shop, digest in shops:
            for email in digest["recipients"]:
                recipients.setdefault(email.lower(), (email, normal_locale(shop.locale)))
        if recipients:
            plans.append(DigestPlan(merchant_id, " ".join((names.get(merchant_id) or "").split()),
                                    zone, day, shops[0][0].id, tuple(s.id for s, _ in shops),
                                    tuple(recipients.values())))
    return plans


def _email_configured(runtime: Runtime, shop_settings: dict | None) -> bool:
    outbox = Outbox(runtime)
    notifier = outbox.notifiers.get(EMAIL_CHANNEL)
    return notifier is not None and bool(
        (outbox.config_for(notifier, shop_settings or {}).get("url") or "").strip())


def send_due_digests(runtime: Runtime, now: datetime | None = None) -> int:
    """Record (and queue) every digest due now that is not recorded yet; the messages recorded.
    Cheap when nothing is due: one query over the active shops. Run it from the dispatcher's
    periodic sweep (every minute or so)."""
    now = now or utcnow()
    with runtime.db.session() as session:
        plans = due_digests(session, now)
        if not plans:
            return 0
        wanted = [plan.key(email) for plan in plans for email, _ in plan.recipients]
        recorded = set(session.scalars(select(OutboundMessage.idempotency_key).where(
            OutboundMessage.idempotency_key.in_(wanted))))
    keys: list[str] = []
    for plan in plans:
        missing = [(email, locale) for email, locale in plan.recipients
                   if plan.key(email) not in recorded]
        if not missing:
            continue
        with runtime.db.session() as session:
            shop = session.get(Shop, plan.shop_id)
            if not _email_configured(runtime, shop.settings):
                log.warning("no email settings: the VOC digest of merchant %s is not sent",
                            plan.merchant_id)
                continue
            figures = _figures(session, plan, now)
            for email, locale in missing:
                subject, body = compose(plan, figures, locale)
                if record(session.connection(), OutgoingMessage(
                        key=plan.key(email), shop_id=plan.shop_id, channel=EMAIL_CHANNEL,
                        recipient=email, subject=subject, body=body, locale=locale,
                        data={"purpose": PURPOSE, "merchant_id": plan.merchant_id,
                              "day": plan.day.isoformat()})):
                    keys.append(plan.key(email))
    if keys:
        try:
            enqueue(runtime, keys)
        except Exception:  # noqa: BLE001 — recorded: the outbox's sweep sends them
            log.exception("could not queue %d digest(s); the outbox sweep will", len(keys))
    return len(keys)


@dataclass(frozen=True)
class DigestFigures:
    new_count: int
    voices: list[metrics.Voice]
    breaches: metrics.Breaches
    top_categories: list[metrics.Ranked]
    top_products: list[metrics.Ranked]


def _figures(session: Session, plan: DigestPlan, now: datetime) -> DigestFigures:
    ids = plan.shop_ids
    names = metrics.shop_names(session, ids)
    count, voices = metrics.new_voices(session, ids, since=now - DIGEST_SPAN, now=now,
                                       names=names, limit=DIGEST_VOICES)
    week_from = metrics.local_midnight(
        plan.day - timedelta(days=metrics.WEEK_DAYS - 1), ZoneInfo(plan.zone))
    return DigestFigures(
        count, voices, metrics.breaches(session, ids, now=now, names=names),
        metrics.top_categories(session, ids, since=week_from, now=now),
        metrics.top_products(session, ids, since=week_from, now=now))


def _line(text: str | None) -> str:
    return " ".join((text or "").split())


def _quote(text: str) -> list[str]:
    return ["    " + line for line in text.splitlines() or [""]]


def compose(plan: DigestPlan, figures: DigestFigures, locale: str) -> tuple[str, str]:
    """Subject and plain-text body in ``locale``; the voices verbatim, indented."""
    s = strings(locale)
    zone = ZoneInfo(plan.zone)
    subject = s["digest_subject"].format(merchant=_line(plan.merchant_name) or "ccms-addon",
                                         date=plan.day.isoformat())
    lines = [s["digest_intro"], "", s["digest_new"].format(count=figures.new_count), ""]
    if not figures.voices:
        lines += [s["digest_none"], ""]
    for voice in figures.voices:
        head = " · ".join(part for part in (
            voice.reference, kind_label(voice.kind, locale), channel_label(voice.channel, locale),
            _line(voice.shop), voice.created_at.astimezone(zone).strftime("%Y-%m-%d %H:%M"))
            if part)
        lines.append(head)
        if voice.contact_name or voice.category:
            lines.append("  " + " · ".join(_line(p) for p in (voice.contact_name, voice.category)
                                           if p))
        if voice.subject:
            lines += _quote(_line(voice.subject))
        lines += _quote(voice.excerpt + (" …" if voice.truncated else ""))
        lines.append("")
    hidden = figures.new_count - len(figures.voices)
    if hidden > 0:
        lines += [s["digest_more"].format(count=hidden), ""]
    b = figures.breaches
    lines.append(s["digest_breaches"].format(respond=b.respond_overdue,
                                             acknowledge=b.acknowledge_overdue))
    for item in b.most_overdue:
        lines.append("  " + s["digest_overdue_line"].format(
            reference=item.reference, shop=_line(item.shop), kind=kind_label(item.kind, locale),
            hours=f"{item.overdue_hours:.1f}"))
    for title, ranked in ((s["digest_top_categories"], figures.top_categories),
                          (s["digest_top_products"], figures.top_products)):
        if ranked:
            lines += ["", title]
            lines += [f"  {_line(r.label)} — {s['digest_items'].format(count=r.count)}"
                      for r in ranked]
    lines += ["", "--", s["digest_footer"]]
    return subject, "\n".join(lines) + "\n"
