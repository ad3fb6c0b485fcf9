"""Email in: every shop's VOC mailbox ``voc-<Shop.inbound_key>@<CCMS_INBOUND_DOMAIN>``, and what
an inbound message becomes in the store.

A shop gets its key the first time its address is needed (:func:`ensure_inbound_key`: random,
lower-case, unique). :func:`record_inbound_mail` then decides, for a message already read
(:mod:`ccms_addon.voc.mail_text`):

* **a reply in an item's thread** — its ``In-Reply-To``/``References`` name one of the messages we
  sent about the item (their ``Message-ID`` is derived from the outbox's idempotency key,
  :func:`ccms_addon.notifiers.email.message_id`) or the customer's first message
  (``VocItem.thread_ref``), or its subject carries the item's reference (``VOC-YYYY-NNNNNN``) —
  *and* it comes from the item's contact address: a ``customer_message`` event on that item.
  The customer writing again means they are owed an answer again: an item ``responded`` or
  ``closed`` moves back to ``in_progress`` in the same transaction (:func:`lifecycle.advance`:
  a closed item is reopened exactly as :meth:`VocDesk.reopen` does — ``reopened_count`` + 1,
  escalation reset — and, as there, the response due time restarts from now);
* otherwise **a new item** through :func:`record_voc_item`: kind ``inquiry``, or ``complaint``
  when one of the shop's rules that applies only to complaints matches the text; channel
  ``email``; contact from ``From:``; ``thread_ref`` = its ``Message-ID``.

A message seen before (the same ``Message-ID``: a sending server that retried after our answer
was lost) is recognised and not recorded twice.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from ccms_addon.runtime import Runtime
from ccms_addon.store.models import (OutboundMessage, Shop, ShopStatus, VocChannel, VocEvent,
                                     VocItem, VocKind, VocStatus, utcnow)
from ccms_addon.voc.intake import NewVocItem, record_voc_item
from ccms_addon.voc.lifecycle import advance
from ccms_addon.voc.mail_text import InboundMail
from ccms_addon.voc.settings import business_hours_of, sla_hours, voc_settings

#: the local part's prefix of every shop's VOC address
INBOUND_PREFIX = "voc-"
#: random bytes in a key: 80 bits, 16 base32 characters
KEY_BYTES = 10
#: our own messages to one recipient searched for the one a reply answers (newest first)
THREAD_SEARCH_LIMIT = 500
#: the event a customer's further message is recorded as
CUSTOMER_MESSAGE = "customer_message"

_OUR_MESSAGE_ID = re.compile(r"^<([0-9a-f]{40})@[^<>\s]+>$")
_KEY = re.compile(r"^[a-z0-9_-]{1,40}$")


# --------------------------------------------------------------------------------------------------
# Addresses
# --------------------------------------------------------------------------------------------------


def new_inbound_key() -> str:
    """16 characters of ``[a-z2-7]``: case-insensitive like the mail systems that carry it."""
    return base64.b32encode(secrets.token_bytes(KEY_BYTES)).decode("ascii").lower()


def ensure_inbound_key(session: Session, shop: Shop) -> str:
    """The shop's inbound key, given one now if it has none (in the caller's transaction).

    The key is written only where none is (a conditional UPDATE), so two callers racing for one
    shop end with the same key, and an address once handed out never changes."""
    if shop.inbound_key:
        return shop.inbound_key
    key = new_inbound_key()
    while session.scalar(select(Shop.id).where(Shop.inbound_key == key)) is not None:
        key = new_inbound_key()
    session.execute(update(Shop).where(Shop.id == shop.id, Shop.inbound_key.is_(None))
                    .values(inbound_key=key).execution_options(synchronize_session=False))
    session.refresh(shop, ["inbound_key"])
    return shop.inbound_key


def inbound_address_for(runtime: Runtime, session: Session, shop: Shop) -> str | None:
    """The shop's VOC mailbox, its key made on first use; None when ``CCMS_INBOUND_DOMAIN`` is
    unset (the add-on receives no mail)."""
    domain = inbound_domain(runtime)
    if not domain:
        return None
    return f"{INBOUND_PREFIX}{ensure_inbound_key(session, shop)}@{domain}"


def inbound_domain(runtime: Runtime) -> str:
    return (runtime.settings.platform_settings("inbound").get("domain") or "").strip().lower()


def inbound_key_of(address: str, domain: str) -> str | None:
    """The key in ``voc-<key>[+tag]@<domain>`` (any case), or None for any other address."""
    local, at, host = (address or "").strip().strip("<>").rpartition("@")
    if not at or not domain or host.lower().rstrip(".") != domain:
        return None
    local = local.lower().partition("+")[0]
    if not local.startswith(INBOUND_PREFIX):
        return None
    key = local[len(INBOUND_PREFIX):]
    return key if _KEY.match(key) else None


def shop_for_address(session: Session, address: str, domain: str) -> int | None:
    """The active shop whose VOC mailbox ``address`` is, or None."""
    key = inbound_key_of(address, domain)
    if key is None:
        return None
    return session.scalar(select(Shop.id).where(Shop.inbound_key == key,
                                                Shop.status == ShopStatus.ACTIVE))


# --------------------------------------------------------------------------------------------------
# Recording
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recorded:
    """What became of one message for one shop: ``created``, ``appended`` or ``duplicate``."""

    outcome: str
    item_id: int
    reference: str


def record_inbound_mail(runtime: Runtime, shop_id: int, mail: InboundMail) -> Recorded:
    """Store ``mail`` for the shop (see the module); returns once it is committed."""
    with runtime.db.session() as session:
        shop = session.get(Shop, shop_id)
        item = thread_item(session, shop, mail)
        if item is not None:
            return _append(session, shop, item, mail)
        if mail.message_id:
            seen = session.scalar(select(VocItem).where(VocItem.shop_id == shop_id,
                                                        VocItem.thread_ref == mail.message_id))
            if seen is not None:
                return Recorded("duplicate", seen.id, seen.reference)
        kind = kind_of(shop, mail)
    item = record_voc_item(runtime, shop_id, NewVocItem(
        kind=kind, channel=VocChannel.EMAIL, body=mail.body, subject=mail.subject,
        actor="shopper", locale=mail.locale, contact_name=mail.from_name,
        contact_email=mail.from_email, thread_ref=mail.message_id,
        event_data=_event_data(mail)))
    return Recorded("created", item.id, item.reference)


def kind_of(shop: Shop, mail: InboundMail) -> VocKind:
    """``complaint`` when a rule of the shop that applies only to complaints matches the text,
    else ``inquiry`` (an email says nothing of its kind; the rules are the merchant's words for
    what a complaint sounds like)."""
    text = f"{mail.subject or ''}\n{mail.body}".casefold()
    for rule in voc_settings(shop.settings)["rules"]:
        if ("complaint" in rule["kinds"] and "inquiry" not in rule["kinds"]
                and any(word.casefold() in text for word in rule["keywords"])):
            return VocKind.COMPLAINT
    return VocKind.INQUIRY


def thread_item(session: Session, shop: Shop, mail: InboundMail) -> VocItem | None:
    """The item ``mail`` answers (see the module), only when it comes from the item's contact."""
    sender = (mail.from_email or "").lower()
    if not sender:
        return None
    for item in _candidates(session, shop.id, sender, mail):
        if item is not None and (item.contact_email or "").lower() == sender:
            return item
    return None


def _candidates(session: Session, shop_id: int, sender: str, mail: InboundMail):
    ours = {m.group(1) for ref in mail.references if (m := _OUR_MESSAGE_ID.match(ref))}
    if ours:
        sent = session.execute(
            select(OutboundMessage.idempotency_key, OutboundMessage.data)
            .where(OutboundMessage.shop_id == shop_id, OutboundMessage.channel == "email",
                   func.lower(OutboundMessage.recipient) == sender)
            .order_by(OutboundMessage.id.desc()).limit(THREAD_SEARCH_LIMIT))
        for key, data in sent:
            if hashlib.sha256(key.encode()).hexdigest()[:40] in ours and (data or {}).get("reference"):
                yield _by_reference(session, shop_id, data["reference"])
    if mail.references:
        yield session.scalar(select(VocItem).where(
            VocItem.shop_id == shop_id, VocItem.thread_ref.in_(list(mail.references)))
            .order_by(VocItem.id).limit(1))
    if mail.reference_in_subject:
        yield _by_reference(session, shop_id, mail.reference_in_subject)


def _by_reference(session: Session, shop_id: int, reference: str) -> VocItem | None:
    return session.scalar(select(VocItem).where(VocItem.shop_id == shop_id,
                                                VocItem.reference == reference))


def _append(session: Session, shop: Shop, item: VocItem, mail: InboundMail) -> Recorded:
    if session.bind.dialect.name == "postgresql":
        session.refresh(item, with_for_update=True)
    if mail.message_id and session.scalar(select(VocEvent.id).where(
            VocEvent.voc_item_id == item.id, VocEvent.type == CUSTOMER_MESSAGE,
            VocEvent.data["message_id"].as_string() == mail.message_id).limit(1)) is not None:
        return Recorded("duplicate", item.id, item.reference)
    waiting_again = item.status in (VocStatus.RESPONDED, VocStatus.CLOSED)
    advance(session, item, CUSTOMER_MESSAGE, "shopper",
            to=VocStatus.IN_PROGRESS if waiting_again else None, note=mail.body,
            data=_event_data(mail))
    if waiting_again:
        item.respond_due_at = business_hours_of(shop).add(
            utcnow(), sla_hours(voc_settings(shop.settings), item.kind.value, item.severity))
    item.updated_at = utcnow()
    return Recorded("appended", item.id, item.reference)


def _event_data(mail: InboundMail) -> dict:
    """What the timeline keeps of the message besides its text. Its ``Date`` is the sender's
    clock: kept here, never used as the time the item was received."""
    data: dict = {"message_id": mail.message_id, "subject": mail.subject,
                  "sent_at": mail.sent_at.isoformat() if mail.sent_at else None}
    if mail.attachments:
        data["attachments"] = [a.as_data() for a in mail.attachments]
    return data
