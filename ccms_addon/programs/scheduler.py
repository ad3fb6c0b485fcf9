"""Hands follow-ups to RQ near their due time, and rebuilds what Redis lost.

SQL holds the schedule; Redis holds only what is due within :data:`HORIZON`, so months of schedule
never sit in Redis. A shop's follow-ups due in the same minute travel together, up to
:data:`SEND_BATCH` in one job (``enqueue_at`` the minute's end, job id ``shop-<id>-followups-…``):
a worker forks once and says EHLO once for the lot. A handed-over row is ``queued`` with its job's
id and a lease (its due time plus :data:`LEASE`); when the lease runs out and the row is still not
dispatched, its job is looked up: still waiting or running → a new lease; gone (Redis flushed or
restarted, worker killed) → enqueued again. Running a follow-up twice sends once
(``ccms_addon.programs.followups``). The dispatcher loop calls :func:`schedule_due`.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from rq import Queue
from sqlalchemy import and_, or_, select, update

from ccms_addon.queue import NOTIFICATIONS_QUEUE, jobs_in_flight, queue, shop_job_id
from ccms_addon.runtime import Runtime
from ccms_addon.store.models import FollowUp, FollowUpStatus, utcnow

log = logging.getLogger(__name__)

#: how far ahead follow-ups are handed to RQ
HORIZON = timedelta(minutes=10)
#: how long after its due time a queued follow-up's job is trusted before it is looked up
LEASE = timedelta(minutes=5)
#: rows per pass
BATCH = 1000
SEND_FOLLOW_UPS = "ccms_addon.programs.followups.send_follow_ups"
#: follow-ups one job carries at most
SEND_BATCH = 25
RESULT_TTL = 3600
#: a job sends up to SEND_BATCH messages, each bounded by the SMTP timeout
JOB_TIMEOUT = 600


def batch_job_id(shop_id: int, follow_up_ids: list[int], now: datetime) -> str:
    """A new id per hand-over (a re-sent batch must not collide with a finished job's record);
    the lookup of a lease that ran out uses the id kept on the row."""
    return shop_job_id(shop_id,
                       f"followups-{follow_up_ids[0]}-{len(follow_up_ids)}-{now.timestamp():.0f}")


def _batches(rows: list, now: datetime) -> list[tuple[datetime, list]]:
    """Rows grouped by shop and by the minute they fall due (never before: the job runs at the
    minute's end, or now for what is already due), at most :data:`SEND_BATCH` a group, in due
    order. One job carries one shop's follow-ups: its id is in that shop's namespace."""
    groups: dict[tuple[datetime, int], list] = {}
    for row in rows:
        due = row.due_at if row.due_at > now else now
        run_at = due if due == now else (due.replace(second=0, microsecond=0)
                                         + timedelta(minutes=1) if due.second or due.microsecond
                                         else due)
        groups.setdefault((run_at, row.shop_id), []).append(row)
    return [(run_at, group[start:start + SEND_BATCH])
            for (run_at, _), group in sorted(groups.items(), key=lambda g: g[0])
            for start in range(0, len(group), SEND_BATCH)]


def schedule_due(runtime: Runtime, *, now: datetime | None = None, limit: int = BATCH) -> int:
    """One pass: returns how many follow-ups were handed to RQ."""
    now = now or utcnow()
    with runtime.db.engine.connect() as conn:
        rows = conn.execute(
            select(FollowUp.id, FollowUp.shop_id, FollowUp.due_at, FollowUp.status,
                   FollowUp.job_id)
            .where(or_(and_(FollowUp.status == FollowUpStatus.SCHEDULED,
                            FollowUp.due_at <= now + HORIZON),
                       and_(FollowUp.status == FollowUpStatus.QUEUED,
                            FollowUp.lease_until <= now)))
            .order_by(FollowUp.due_at, FollowUp.id).limit(limit)).all()
    if not rows:
        return 0
    redis = runtime.redis
    expired = [r for r in rows if r.status is FollowUpStatus.QUEUED and r.job_id]
    in_flight = jobs_in_flight(redis, sorted({r.job_id for r in expired}))
    renewed = [r for r in expired if r.job_id in in_flight]
    to_enqueue = [r for r in rows if not (r.status is FollowUpStatus.QUEUED
                                          and r.job_id in in_flight)]
    batches = [(run_at, group, batch_job_id(group[0].shop_id, [r.id for r in group], now))
               for run_at, group in _batches(to_enqueue, now)]
    # Lease first: if Redis is down, the rows come round again when the lease runs out.
    queueable = (FollowUpStatus.SCHEDULED, FollowUpStatus.QUEUED)
    with runtime.db.engine.begin() as conn:
        for run_at, group, job_id in batches:
            conn.execute(update(FollowUp)
                         .where(FollowUp.id.in_([r.id for r in group]),
                                FollowUp.status.in_(queueable))
                         .values(status=FollowUpStatus.QUEUED, job_id=job_id,
                                 lease_until=run_at + LEASE))
        for r in renewed:  # its job still waits (a backlog): look again after another lease
            conn.execute(update(FollowUp)
                         .where(FollowUp.id == r.id, FollowUp.status == FollowUpStatus.QUEUED,
                                FollowUp.job_id == r.job_id)
                         .values(lease_until=now + LEASE))
    if batches:
        q: Queue = queue(NOTIFICATIONS_QUEUE, redis, runtime.settings)
        due_now = [(group, job_id) for run_at, group, job_id in batches if run_at <= now]
        later = [(run_at, group, job_id) for run_at, group, job_id in batches if run_at > now]
        if due_now:
            q.enqueue_many([Queue.prepare_data(SEND_FOLLOW_UPS, args=([r.id for r in group],),
                                               job_id=job_id, result_ttl=RESULT_TTL,
                                               timeout=JOB_TIMEOUT)
                            for group, job_id in due_now])
        if later:
            with redis.pipeline() as pipe:
                for run_at, group, job_id in later:
                    q.enqueue_at(run_at, SEND_FOLLOW_UPS, [r.id for r in group], job_id=job_id,
                                 result_ttl=RESULT_TTL, job_timeout=JOB_TIMEOUT, pipeline=pipe)
                pipe.execute()
    log.debug("scheduler handed %d follow-up(s) to RQ in %d job(s)", len(to_enqueue), len(batches))
    return len(to_enqueue)
