"""Hands stored work to RQ: webhook deliveries in batches, follow-ups near their due time, and the
periodic sweeps that rebuild whatever Redis lost (messages, settlements, enrollments, VOC
acknowledgements) or that act on the clock (VOC escalations, the owner's daily digest).

The webhook request never talks to Redis: it only commits the row. This loop picks rows that are
due (``status`` not final and ``next_attempt_at`` empty or past), enqueues one ``process_delivery``
job per row with a deterministic job id in a single Redis pipeline (``Queue.enqueue_many``), then
leases the rows for ``sweep_after`` seconds. A row whose job was lost (Redis restarted, worker
killed) is due again when its lease runs out: that is the sweep. Running a job twice is harmless.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from rq import Queue
from sqlalchemy import or_, select, update

from ccms_addon import outbox
from ccms_addon.jobs.notify import sweep_unnotified
from ccms_addon.programs.claims import sweep_due_settlements
from ccms_addon.programs.collections import refresh_due as refresh_due_collections
from ccms_addon.programs.enrollment import sweep_unenrolled
from ccms_addon.programs.scheduler import schedule_due
from ccms_addon.sync import RECONCILE_SWEEP_INTERVAL, reconcile_due
from ccms_addon.jobs.pipeline import FINAL_STATES
from ccms_addon.queue import DELIVERIES_QUEUE, jobs_in_flight, queue, shop_job_id
from ccms_addon.runtime import Runtime
from ccms_addon.store.models import WebhookDelivery, utcnow
from ccms_addon.voc.digest import send_due_digests
from ccms_addon.voc.escalation import sweep_escalations
from ccms_addon.store.privacy import purge_expired_voc
from ccms_addon.voc.jobs import sweep_unacknowledged
from ccms_addon.voc.order_actions import sweep_order_actions

log = logging.getLogger(__name__)

#: seconds between polls when the inbox had nothing due
IDLE_INTERVAL = 0.2
#: seconds between the sweeps of work that never reached RQ or is due again: merchant
#: notifications, outbox retries, claim settlements; and between enrollment catch-ups
NOTIFY_SWEEP_INTERVAL = 30.0
ENROLLMENT_SWEEP_INTERVAL = 300.0
#: seconds between the passes that act on the clock: escalations (warnings are due to the minute)
#: and the owners' digests (each goes out once its local hour has come)
ESCALATION_SWEEP_INTERVAL = 60.0
#: Redis key held by the one dispatcher allowed to run at a time
LOCK_KEY = "ccms:dispatcher:lock"
#: seconds the lock is held without renewal before another dispatcher may take over
LOCK_TTL = 10
#: the job function, by import path so the web process need not import it
PROCESS_DELIVERY = "ccms_addon.jobs.pipeline.process_delivery"
#: seconds RQ keeps a job's result and a job may run
RESULT_TTL = 3600
JOB_TIMEOUT = 600


def delivery_job_id(shop_id: int, delivery_id: int) -> str:
    return shop_job_id(shop_id, f"delivery-{delivery_id}")


def dispatch_due(runtime: Runtime, limit: int | None = None) -> int:
    """Enqueue the deliveries that are due; returns how many were handed to RQ.

    A row whose lease ran out while its job is still queued or running (a backlog, a slow job)
    keeps its job and gets a new lease: the sweep re-sends only jobs that are really gone.
    """
    settings = runtime.settings
    limit = limit or settings.dispatch_batch
    now = utcnow()
    with runtime.db.engine.connect() as conn:
        rows = conn.execute(
            select(WebhookDelivery.id, WebhookDelivery.shop_id, WebhookDelivery.next_attempt_at)
            .where(WebhookDelivery.status.not_in(FINAL_STATES),
                   or_(WebhookDelivery.next_attempt_at.is_(None),
                       WebhookDelivery.next_attempt_at <= now))
            .order_by(WebhookDelivery.id).limit(limit)).all()
    if not rows:
        return 0
    redis = runtime.redis
    job_ids = {r.id: delivery_job_id(r.shop_id, r.id) for r in rows}
    in_flight = jobs_in_flight(redis, [job_ids[r.id] for r in rows
                                       if r.next_attempt_at is not None])
    to_enqueue = [r.id for r in rows if job_ids[r.id] not in in_flight]
    # Lease first: if Redis is down the rows simply come due again when the lease runs out.
    lease = now + timedelta(seconds=settings.sweep_after)
    with runtime.db.engine.begin() as conn:
        conn.execute(update(WebhookDelivery)
                     .where(WebhookDelivery.id.in_([r.id for r in rows]),
                            WebhookDelivery.status.not_in(FINAL_STATES))
                     .values(next_attempt_at=lease))
    if to_enqueue:
        q: Queue = queue(DELIVERIES_QUEUE, redis, settings)
        q.enqueue_many([Queue.prepare_data(PROCESS_DELIVERY, args=(i,), job_id=job_ids[i],
                                           result_ttl=RESULT_TTL, timeout=JOB_TIMEOUT)
                        for i in to_enqueue])
    return len(to_enqueue)


class Dispatcher:
    """The dispatch loop; one runs per deployment at a time (a Redis lock elects it)."""

    def __init__(self, runtime: Runtime, *, idle_interval: float = IDLE_INTERVAL):
        self.runtime = runtime
        self.idle_interval = idle_interval
        self.stopping = threading.Event()
        self._token = f"{id(self)}-{time.time()}"
        self._next_run: dict[str, float] = {}

    def _hold_lock(self) -> bool:
        redis = self.runtime.redis
        if redis.set(LOCK_KEY, self._token, nx=True, ex=LOCK_TTL):
            return True
        if redis.get(LOCK_KEY) == self._token.encode():
            redis.expire(LOCK_KEY, LOCK_TTL)
            return True
        return False

    def run_once(self) -> int:
        if not self._hold_lock():
            return 0
        moved = dispatch_due(self.runtime)
        moved += schedule_due(self.runtime)
        for name, interval, sweep in self._sweeps():
            if time.monotonic() >= self._next_run.get(name, 0.0):
                self._next_run[name] = time.monotonic() + interval
                try:
                    sweep()
                except Exception:  # noqa: BLE001 — one failing sweep must not stop the others
                    log.exception("the %s sweep failed", name)
        return moved

    def _sweeps(self):
        runtime = self.runtime
        return (("notifications", NOTIFY_SWEEP_INTERVAL, lambda: sweep_unnotified(runtime)),
                ("outbox", NOTIFY_SWEEP_INTERVAL, lambda: outbox.sweep_due(runtime)),
                ("settlements", NOTIFY_SWEEP_INTERVAL, lambda: sweep_due_settlements(runtime)),
                ("enrollments", ENROLLMENT_SWEEP_INTERVAL, lambda: sweep_unenrolled(runtime.db)),
                ("reconciliation", RECONCILE_SWEEP_INTERVAL, lambda: reconcile_due(runtime)),
                ("collections", RECONCILE_SWEEP_INTERVAL,
                 lambda: refresh_due_collections(runtime)),
                ("acknowledgements", NOTIFY_SWEEP_INTERVAL, lambda: sweep_unacknowledged(runtime)),
                ("escalations", ESCALATION_SWEEP_INTERVAL, lambda: sweep_escalations(runtime)),
                ("order actions", NOTIFY_SWEEP_INTERVAL, lambda: sweep_order_actions(runtime)),
                ("retention", RECONCILE_SWEEP_INTERVAL, lambda: purge_expired_voc(runtime)),
                ("digests", ESCALATION_SWEEP_INTERVAL,
                 lambda: send_due_digests(runtime, utcnow())))

    def run(self) -> None:
        log.info("dispatcher started")
        while not self.stopping.is_set():
            try:
                moved = self.run_once()
            except Exception:  # noqa: BLE001 — store or Redis briefly down: keep going
                log.exception("dispatch failed; retrying")
                moved = 0
                self.stopping.wait(1.0)
            if moved == 0:
                self.stopping.wait(self.idle_interval)
        self._release()

    def _release(self) -> None:
        try:
            redis = self.runtime.redis
            if redis.get(LOCK_KEY) == self._token.encode():
                redis.delete(LOCK_KEY)
        except Exception:  # noqa: BLE001
            pass

    def stop(self) -> None:
        self.stopping.set()
