"""RQ jobs of the VOC desk: the automatic acknowledgement of a new item, and the sweep that finds
items whose acknowledgement job never reached RQ.

The job only calls :meth:`ccms_addon.voc.service.VocDesk.auto_acknowledge`, which decides (the
shop's ``auto_acknowledge`` setting, a customer who can be reached, an item nobody took further
yet) and writes the message under the outbox key ``voc-ack:<item id>``: a job
run twice, or queued by the hook and again by the sweep, tells the customer once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from rq import Queue
from sqlalchemy import and_, or_, select

from ccms_addon.queue import NOTIFICATIONS_QUEUE, jobs_in_flight, queue, shop_job_id
from ccms_addon.runtime import Runtime
from ccms_addon.store.models import Shop, ShopStatus, VocItem, VocStatus, utcnow
from ccms_addon.voc.settings import voc_settings

log = logging.getLogger(__name__)

#: the job function, by import path so the web process need not import it
ACKNOWLEDGE_ITEM = "ccms_addon.voc.jobs.acknowledge_item"
#: the sweep leaves items younger than this to the job the hook queued
SWEEP_GRACE = timedelta(minutes=2)
#: the sweep never acknowledges items older than this: a customer who wrote days ago while the
#: queue was down is better acknowledged by a person (the escalation sweep tells one)
SWEEP_WINDOW = timedelta(days=2)
#: rows read per page while sweeping
SWEEP_PAGE = 500
RESULT_TTL = 3600
JOB_TIMEOUT = 120


def acknowledge_job_id(shop_id: int, voc_item_id: int) -> str:
    return shop_job_id(shop_id, f"voc-ack-{voc_item_id}")


def acknowledge_item(voc_item_id: int) -> bool:
    """RQ job: acknowledge one new item on the shop's behalf. True when it moved."""
    from ccms_addon.runtime import current
    from ccms_addon.voc.service import VocDesk
    return VocDesk(current()).auto_acknowledge(voc_item_id)


def enqueue_acknowledgements(runtime: Runtime, items: Iterable[tuple[int, int]]) -> None:
    """Queue one job per ``(shop id, item id)``, deterministic ids, one Redis pipeline. Raises
    what Redis raises."""
    q: Queue = queue(NOTIFICATIONS_QUEUE, runtime.redis, runtime.settings)
    q.enqueue_many([Queue.prepare_data(ACKNOWLEDGE_ITEM, args=(i,),
                                       job_id=acknowledge_job_id(shop_id, i),
                                       result_ttl=RESULT_TTL, timeout=JOB_TIMEOUT)
                    for shop_id, i in items])


def acknowledge_soon(runtime: Runtime, shop_id: int, voc_item_id: int) -> None:
    """Queue the acknowledgement; with Redis down, leave it to :func:`sweep_unacknowledged`."""
    try:
        enqueue_acknowledgements(runtime, [(shop_id, voc_item_id)])
    except Exception:  # noqa: BLE001 — the item is stored; the sweep queues the job later
        log.warning("could not queue the acknowledgement of VOC item %s; the sweep will",
                    voc_item_id)


def sweep_unacknowledged(runtime: Runtime, *, now: datetime | None = None) -> int:
    """Queue the acknowledgement of items still ``received`` whose job is gone; returns how many.

    Looks at items of active shops created between :data:`SWEEP_WINDOW` and :data:`SWEEP_GRACE`
    ago that the desk would acknowledge (the shop acknowledges automatically and the customer can
    be reached: the same checks as the job) and whose job is neither queued nor running. An item
    that cannot be acknowledged automatically (a phone call with no address) is left to people
    and to the escalation sweep. Running it often is harmless.
    """
    from ccms_addon.voc.service import (NOT_AUTO_ACKNOWLEDGED_CHANNELS,
                                        NOT_AUTO_ACKNOWLEDGED_KINDS, VocDesk)
    now = now or utcnow()
    desk = VocDesk(runtime)
    # channels answered through a notifier other than email reach the customer by phone number
    phone_channels = [name for name, channel in runtime.channels.items()
                      if channel.reply_notifier not in (None, "email")]
    reachable = or_(VocItem.contact_email.is_not(None),
                    and_(VocItem.channel.in_(phone_channels), VocItem.contact_phone.is_not(None)))
    wanted: list[tuple[int, int]] = []
    auto_by_shop: dict[int, bool] = {}
    last_id = 0
    with runtime.db.engine.connect() as conn:
        while True:
            rows = conn.execute(
                select(VocItem.id, VocItem.shop_id, VocItem.channel, VocItem.contact_email,
                       VocItem.contact_phone)
                .join(Shop, Shop.id == VocItem.shop_id)
                .where(VocItem.status == VocStatus.RECEIVED, Shop.status == ShopStatus.ACTIVE,
                       VocItem.kind.not_in(NOT_AUTO_ACKNOWLEDGED_KINDS),
                       VocItem.channel.not_in(NOT_AUTO_ACKNOWLEDGED_CHANNELS),
                       VocItem.created_at <= now - SWEEP_GRACE,
                       VocItem.created_at >= now - SWEEP_WINDOW, reachable, VocItem.id > last_id)
                .order_by(VocItem.id).limit(SWEEP_PAGE)).all()
            if not rows:
                break
            last_id = rows[-1].id
            unknown = {row.shop_id for row in rows} - set(auto_by_shop)
            if unknown:
                for shop_id, settings in conn.execute(
                        select(Shop.id, Shop.settings).where(Shop.id.in_(unknown))):
                    auto_by_shop[shop_id] = voc_settings(settings)["auto_acknowledge"]
            wanted += [(row.shop_id, row.id) for row in rows
                       if auto_by_shop[row.shop_id] and desk.reply_route(row)[0] is not None]
    if not wanted:
        return 0
    in_flight = jobs_in_flight(runtime.redis, [acknowledge_job_id(*w) for w in wanted])
    lost = [w for w in wanted if acknowledge_job_id(*w) not in in_flight]
    if lost:
        enqueue_acknowledgements(runtime, lost)
        log.info("acknowledgement sweep enqueued %d job(s)", len(lost))
    return len(lost)
