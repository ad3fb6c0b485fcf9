"""What ``/metrics`` reports, and where each figure comes from.

Two sources, chosen so the webhook request pays next to nothing:

* **Counted in the web process** — what leaves no trace in the store: a duplicate is an
  ``INSERT … ON CONFLICT DO NOTHING`` that writes nothing, a refused delivery writes nothing. The
  accepted ones are counted beside them (one ``inc()`` on a pre-bound child, ~1 µs against a
  request of some hundreds): a store count of the inbox would be a full scan of its largest table on
  every scrape, and it shrinks when ``shop/redact`` deletes rows, which a counter must never do.
  ``ccms_webhook_deliveries_total{platform, outcome, reason}``. With several worker processes per
  host, set ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode: each process
  writes its own file, the scrape adds them up). These are per host: ``sum()`` them.
* **Read from the store and Redis at scrape time** (:class:`StoreCollector`) — state, not events:
  the inbox backlog, queue depth and failed jobs, the outbox, follow-ups, SLA breaches. A few
  aggregate queries over indexed columns and one Redis pipeline; right whichever process answers,
  the same on every host: ``max()`` them, never ``sum()``.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from typing import Iterator

import redis
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import and_, case, func, or_, select, text
from sqlalchemy.exc import SQLAlchemyError

from ccms_addon.runtime import Runtime
from ccms_addon.store.models import (DeliveryStatus, FollowUp, FollowUpStatus, OutboundMessage,
                                     OutboundStatus, VocItem, VocStatus, WebhookDelivery, utcnow)

log = logging.getLogger(__name__)

#: prometheus_client's multiprocess directory (read by the library itself when it is imported)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# -- delivery outcomes (the ``outcome`` label) ----------------------------------------------------
ACCEPTED = "accepted"        # stored: a new row in the inbox
DUPLICATE = "duplicate"      # a copy of a stored delivery: answered 200, nothing written
REJECTED = "rejected"        # refused 4xx; ``reason`` says why (the error code of the answer)
UNAVAILABLE = "unavailable"  # 503: the store could not be reached; the platform retries
#: ``reason`` values of a rejection: the answer's error code
INVALID_SIGNATURE = "invalid_signature"
INVALID_PAYLOAD = "invalid_payload"
UNKNOWN_SHOP = "unknown_shop"

#: webhook deliveries by outcome. Only known platforms are counted (the path of an unknown one is
#: whatever a caller wrote, and must not become a label); pings and 413s are not deliveries.
DELIVERIES = Counter("ccms_webhook_deliveries", "Webhook deliveries answered, by outcome.",
                     ["platform", "outcome", "reason"], registry=None)

_children: dict[tuple[str, str, str], object] = {}


def count_delivery(platform: str, outcome: str, reason: str = "") -> None:
    """Count one answered delivery. The labelled child is bound once per process and kept, so
    this is a dict lookup and an increment."""
    key = (platform, outcome, reason)
    child = _children.get(key)
    if child is None:
        child = _children[key] = DELIVERIES.labels(platform, outcome, reason)
    child.inc()


# -- read at scrape time --------------------------------------------------------------------------

#: inbox rows that are still on their way, and the ones kept for a human
INBOX_PENDING = (DeliveryStatus.RECEIVED, DeliveryStatus.RETRYING)
INBOX_STATES = (*INBOX_PENDING, DeliveryStatus.FAILED)
#: outbox states reported (``sent`` is most of the table: it is not counted at every scrape)
OUTBOX_STATES = tuple(s for s in OutboundStatus if s is not OutboundStatus.SENT)
#: VOC states in which the item still owes the customer an answer
VOC_OPEN = tuple(s for s in VocStatus if s not in (VocStatus.RESPONDED, VocStatus.CLOSED))
#: follow-up purposes always reported (a zero is a series, an absent label is not)
FOLLOW_UP_PURPOSES = ("transactional", "marketing")
#: a follow-up still scheduled or queued this long after its due time counts as overdue (the
#: scheduler hands rows to RQ 10 minutes ahead, so any such row means nothing is sending)
FOLLOW_UP_OVERDUE_AFTER = timedelta(minutes=15)
#: PostgreSQL gives up on the scrape's queries after this long rather than pile up behind a lock
STORE_TIMEOUT_MS = 5000
#: the RQ registries reported per queue, besides the queue itself (``queued``)
QUEUE_REGISTRIES = {"started": "started_job_registry", "scheduled": "scheduled_job_registry",
                    "deferred": "deferred_job_registry", "failed": "failed_job_registry"}
#: RQ's set of the workers listening to one queue
RQ_WORKERS_BY_QUEUE = "rq:workers:{}"


class StoreCollector:
    """A prometheus_client custom collector: every scrape runs a handful of aggregate queries and
    one Redis pipeline. A source that cannot be read is reported ``ccms_metrics_source_up 0``
    and its figures are left out (Prometheus then keeps no stale value)."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self._queue_keys: list[tuple[str, str, dict[str, str]]] | None = None

    def describe(self):
        return []  # nothing is queried when the collector is registered

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("ccms_metrics_source_up",
                               "1 if the source was read for this scrape, 0 if it failed.",
                               labels=["source"])
        families: list[GaugeMetricFamily] = []
        for source, read, errors in (("store", self._store, (SQLAlchemyError,)),
                                     ("queue", self._queue, (redis.RedisError, OSError))):
            try:
                families.extend(read())
            except errors as exc:
                log.warning("metrics: the %s could not be read (%s)", source, type(exc).__name__)
                up.add_metric([source], 0)
            else:
                up.add_metric([source], 1)
        yield from families
        yield up

    # -- the store ----------------------------------------------------------------------------

    def _store(self) -> list[GaugeMetricFamily]:
        now = utcnow()
        db = self.runtime.db
        with db.engine.connect() as conn, conn.begin():
            if db.dialect == "postgresql":
                conn.execute(text(f"SET LOCAL statement_timeout = {STORE_TIMEOUT_MS}"))
            inbox = conn.execute(
                select(WebhookDelivery.platform, WebhookDelivery.status, func.count(),
                       func.min(WebhookDelivery.received_at))
                .where(WebhookDelivery.status.in_(INBOX_STATES))
                .group_by(WebhookDelivery.platform, WebhookDelivery.status)).all()
            outbox = conn.execute(
                select(OutboundMessage.status, func.count())
                .where(OutboundMessage.status.in_(OUTBOX_STATES))
                .group_by(OutboundMessage.status)).all()
            sent = conn.execute(
                select(FollowUp.purpose, func.count())
                .where(FollowUp.status == FollowUpStatus.DISPATCHED)
                .group_by(FollowUp.purpose)).all()
            overdue = conn.scalar(
                select(func.count()).select_from(FollowUp)
                .where(FollowUp.status.in_((FollowUpStatus.SCHEDULED, FollowUpStatus.QUEUED)),
                       FollowUp.due_at < now - FOLLOW_UP_OVERDUE_AFTER))
            respond_late = VocItem.respond_due_at < now
            acknowledge_late = and_(VocItem.status == VocStatus.RECEIVED,
                                    VocItem.acknowledge_due_at < now)
            sla = conn.execute(
                select(func.sum(case((respond_late, 1), else_=0)),
                       func.sum(case((acknowledge_late, 1), else_=0)))
                .where(VocItem.status.in_(VOC_OPEN), or_(respond_late, acknowledge_late))).one()

        platforms = sorted(set(self.runtime.platforms) | {row[0] for row in inbox})
        backlog = GaugeMetricFamily(
            "ccms_inbox_backlog", "Webhook deliveries stored and not yet processed, by status.",
            labels=["platform", "status"])
        oldest = GaugeMetricFamily(
            "ccms_inbox_backlog_oldest_seconds",
            "Age of the oldest delivery not yet processed (0 when there is none).",
            labels=["platform"])
        failed = GaugeMetricFamily(
            "ccms_inbox_failed", "Webhook deliveries kept as failed for a human to look at.",
            labels=["platform"])
        counts = {(platform, status): (n, first) for platform, status, n, first in inbox}
        for platform in platforms:
            firsts = []
            for status in INBOX_PENDING:
                n, first = counts.get((platform, status), (0, None))
                backlog.add_metric([platform, status.value], n)
                if first is not None:
                    firsts.append(first)
            oldest.add_metric([platform],
                              max((now - min(firsts)).total_seconds(), 0.0) if firsts else 0.0)
            failed.add_metric([platform], counts.get((platform, DeliveryStatus.FAILED), (0,))[0])

        messages = GaugeMetricFamily(
            "ccms_outbox_messages",
            "Outbound messages not (yet) sent, by state: pending and sending are on their way, "
            "failed and unknown need a human.", labels=["status"])
        by_status = dict(outbox)
        for status in OUTBOX_STATES:
            messages.add_metric([status.value], by_status.get(status, 0))

        followups = GaugeMetricFamily(
            "ccms_followups_sent",
            "Follow-ups whose message was handed to the outbox, by purpose (its delivery is "
            "ccms_outbox_messages' business).", labels=["purpose"])
        by_purpose = dict(sent)
        for purpose in sorted(set(FOLLOW_UP_PURPOSES) | set(by_purpose)):
            followups.add_metric([purpose], by_purpose.get(purpose, 0))
        late = GaugeMetricFamily(
            "ccms_followups_overdue",
            f"Follow-ups still waiting {int(FOLLOW_UP_OVERDUE_AFTER.total_seconds() // 60)} "
            "minutes after their due time.", value=overdue or 0)

        breaches = GaugeMetricFamily(
            "ccms_voc_sla_breaches",
            "Open VOC items past a deadline: respond (respond_due_at passed, not responded or "
            "closed) or acknowledge (acknowledge_due_at passed, still received).",
            labels=["sla"])
        breaches.add_metric(["respond"], sla[0] or 0)
        breaches.add_metric(["acknowledge"], sla[1] or 0)
        return [backlog, oldest, failed, messages, followups, late, breaches]

    # -- Redis --------------------------------------------------------------------------------

    def _keys(self) -> list[tuple[str, str, dict[str, str]]]:
        if self._queue_keys is None:
            from ccms_addon.queue import ALL_QUEUES, queue
            keys = []
            for name in ALL_QUEUES:
                q = queue(name, self.runtime.redis, self.runtime.settings)
                keys.append((name, q.key, {state: getattr(q, attr).key
                                           for state, attr in QUEUE_REGISTRIES.items()}
                             | {"workers": RQ_WORKERS_BY_QUEUE.format(q.name)}))
            self._queue_keys = keys
        return self._queue_keys

    def _queue(self) -> list[GaugeMetricFamily]:
        keys = self._keys()
        pipe = self.runtime.redis.pipeline(transaction=False)
        for _, queue_key, others in keys:
            pipe.llen(queue_key)
            for state in QUEUE_REGISTRIES:
                pipe.zcard(others[state])
            pipe.scard(others["workers"])
        answers = iter(pipe.execute())
        jobs = GaugeMetricFamily(
            "ccms_queue_jobs",
            "RQ jobs per queue and state: queued is the queue's depth, failed the jobs in its "
            "failed-job registry.", labels=["queue", "state"])
        workers = GaugeMetricFamily("ccms_queue_workers", "RQ workers listening to the queue.",
                                    labels=["queue"])
        for name, _, _ in keys:
            jobs.add_metric([name, "queued"], next(answers))
            for state in QUEUE_REGISTRIES:
                jobs.add_metric([name, state], next(answers))
            workers.add_metric([name], next(answers))
        return [jobs, workers]


def multiprocess_dir() -> str | None:
    """The multiprocess directory, checked: it must exist and be writable before the first
    delivery is counted (failing at start-up, not on a webhook)."""
    path = os.environ.get(MULTIPROC_ENV)
    if not path:
        return None
    if not os.path.isdir(path) or not os.access(path, os.W_OK):
        raise RuntimeError(f"{MULTIPROC_ENV}={path!r} is not a writable directory")
    return path


def build_registry(runtime: Runtime) -> CollectorRegistry:
    """What one app exposes: the delivery counters (this process's, or every process's files in
    multiprocess mode) and the store collector."""
    registry = CollectorRegistry(auto_describe=False)
    path = multiprocess_dir()
    if path:
        from prometheus_client.multiprocess import MultiProcessCollector
        MultiProcessCollector(registry, path)
    else:
        registry.register(DELIVERIES)
    registry.register(StoreCollector(runtime))
    return registry
