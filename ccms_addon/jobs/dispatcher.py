"""Hands stored deliveries to RQ, in batches, and sweeps the inbox (and, every half minute, the
merchant notifications that never reached RQ).

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
from datetime import timedelta, timezone

from rq import Queue
from rq.job import Job, JobStatus
from sqlalchemy import or_, select, update

from ccms_addon.jobs.notify import sweep_unnotified
from ccms_addon.jobs.pipeline import FINAL_STATES
from ccms_addon.queue import DELIVERIES_QUEUE, queue
from ccms_addon.runtime import Runtime
from ccms_addon.store.models import WebhookDelivery, utcnow

log = logging.getLogger(__name__)

#: seconds between polls when the inbox had nothing due
IDLE_INTERVAL = 0.2
#: seconds between sweeps of merchant notifications that never reached RQ
NOTIFY_SWEEP_INTERVAL = 30.0
#: Redis key held by the one dispatcher allowed to run at a time
LOCK_KEY = "ccms:dispatcher:lock"
#: seconds the lock is held without renewal before another dispatcher may take over
LOCK_TTL = 10
#: the job function, by import path so the web process need not import it
PROCESS_DELIVERY = "ccms_addon.jobs.pipeline.process_delivery"
#: seconds RQ keeps a job's result and a job may run
RESULT_TTL = 3600
JOB_TIMEOUT = 600


def delivery_job_id(delivery_id: int) -> str:
    return f"delivery-{delivery_id}"


#: RQ states in which a delivery's job is still on its way: the sweep only extends its lease
_WAITING = {JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED}
#: a started job counts as running only while its worker's heartbeat is this fresh (RQ beats every
#: 30 s); a SIGKILLed worker leaves its job "started" until RQ's own cleanup, much later
HEARTBEAT_GRACE = timedelta(seconds=90)


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
            select(WebhookDelivery.id, WebhookDelivery.next_attempt_at)
            .where(WebhookDelivery.status.not_in(FINAL_STATES),
                   or_(WebhookDelivery.next_attempt_at.is_(None),
                       WebhookDelivery.next_attempt_at <= now))
            .order_by(WebhookDelivery.id).limit(limit)).all()
    if not rows:
        return 0
    redis = runtime.redis
    swept = [r.id for r in rows if r.next_attempt_at is not None]
    in_flight = _jobs_in_flight(redis, swept) if swept else set()
    to_enqueue = [r.id for r in rows if r.id not in in_flight]
    # Lease first: if Redis is down the rows simply come due again when the lease runs out.
    lease = now + timedelta(seconds=settings.sweep_after)
    with runtime.db.engine.begin() as conn:
        conn.execute(update(WebhookDelivery)
                     .where(WebhookDelivery.id.in_([r.id for r in rows]),
                            WebhookDelivery.status.not_in(FINAL_STATES))
                     .values(next_attempt_at=lease))
    if to_enqueue:
        q: Queue = queue(DELIVERIES_QUEUE, redis, settings)
        q.enqueue_many([Queue.prepare_data(PROCESS_DELIVERY, args=(i,), job_id=delivery_job_id(i),
                                           result_ttl=RESULT_TTL, timeout=JOB_TIMEOUT)
                        for i in to_enqueue])
    return len(to_enqueue)


def _jobs_in_flight(redis, delivery_ids: list[int]) -> set[int]:
    """Deliveries whose RQ job still exists and is queued, scheduled or running."""
    jobs = Job.fetch_many([delivery_job_id(i) for i in delivery_ids], connection=redis)
    fresh_since = utcnow() - HEARTBEAT_GRACE
    in_flight = set()
    for delivery_id, job in zip(delivery_ids, jobs):
        if job is None:
            continue
        status = job.get_status(refresh=False)
        beat = job.last_heartbeat
        if beat is not None and beat.tzinfo is None:
            beat = beat.replace(tzinfo=timezone.utc)
        if status in _WAITING or (status == JobStatus.STARTED and beat and beat >= fresh_since):
            in_flight.add(delivery_id)
    return in_flight


class Dispatcher:
    """The dispatch loop; one runs per deployment at a time (a Redis lock elects it)."""

    def __init__(self, runtime: Runtime, *, idle_interval: float = IDLE_INTERVAL):
        self.runtime = runtime
        self.idle_interval = idle_interval
        self.stopping = threading.Event()
        self._token = f"{id(self)}-{time.time()}"
        self._next_notify_sweep = 0.0

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
        if time.monotonic() >= self._next_notify_sweep:
            self._next_notify_sweep = time.monotonic() + NOTIFY_SWEEP_INTERVAL
            sweep_unnotified(self.runtime)
        return moved

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
