"""Hands follow-ups to RQ near their due time, and rebuilds what Redis lost.

SQL holds the schedule; Redis holds only what is due within :data:`HORIZON` (``enqueue_at`` with
the deterministic job id ``followup-<id>``), so months of schedule never sit in Redis. A handed-over
row is ``queued`` with a lease (its due time plus :data:`LEASE`); when the lease runs out and the
row is still not dispatched, its job is looked up: still waiting or running → a new lease; gone
(Redis flushed or restarted, worker killed) → enqueued again. Running a follow-up's job twice sends
once (``ccms_addon.programs.followups``). The dispatcher loop calls :func:`schedule_due`.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from rq import Queue
from sqlalchemy import and_, or_, select, update

from ccms_addon.queue import NOTIFICATIONS_QUEUE, jobs_in_flight, queue
from ccms_addon.runtime import Runtime
from ccms_addon.store.models import FollowUp, FollowUpStatus, utcnow

log = logging.getLogger(__name__)

#: how far ahead follow-ups are handed to RQ
HORIZON = timedelta(minutes=10)
#: how long after its due time a queued follow-up's job is trusted before it is looked up
LEASE = timedelta(minutes=5)
#: rows per pass
BATCH = 1000
SEND_FOLLOW_UP = "ccms_addon.programs.followups.send_follow_up"
RESULT_TTL = 3600
JOB_TIMEOUT = 120


def follow_up_job_id(follow_up_id: int) -> str:
    return f"followup-{follow_up_id}"


def schedule_due(runtime: Runtime, *, now: datetime | None = None, limit: int = BATCH) -> int:
    """One pass: returns how many follow-ups were handed to RQ."""
    now = now or utcnow()
    with runtime.db.engine.connect() as conn:
        rows = conn.execute(
            select(FollowUp.id, FollowUp.due_at, FollowUp.status)
            .where(or_(and_(FollowUp.status == FollowUpStatus.SCHEDULED,
                            FollowUp.due_at <= now + HORIZON),
                       and_(FollowUp.status == FollowUpStatus.QUEUED,
                            FollowUp.lease_until <= now)))
            .order_by(FollowUp.due_at).limit(limit)).all()
    if not rows:
        return 0
    redis = runtime.redis
    expired = [follow_up_job_id(r.id) for r in rows if r.status is FollowUpStatus.QUEUED]
    in_flight = jobs_in_flight(redis, expired)
    to_enqueue = [r for r in rows if follow_up_job_id(r.id) not in in_flight]
    # Lease first: if Redis is down, the rows come round again when the lease runs out.
    with runtime.db.engine.begin() as conn:
        for r in rows:
            conn.execute(update(FollowUp)
                         .where(FollowUp.id == r.id,
                                FollowUp.status.in_((FollowUpStatus.SCHEDULED,
                                                     FollowUpStatus.QUEUED)))
                         .values(status=FollowUpStatus.QUEUED,
                                 lease_until=max(r.due_at, now) + LEASE))
    if to_enqueue:
        q: Queue = queue(NOTIFICATIONS_QUEUE, redis, runtime.settings)
        due_now = [r for r in to_enqueue if r.due_at <= now]
        later = [r for r in to_enqueue if r.due_at > now]
        if due_now:
            q.enqueue_many([Queue.prepare_data(SEND_FOLLOW_UP, args=(r.id,),
                                               job_id=follow_up_job_id(r.id),
                                               result_ttl=RESULT_TTL, timeout=JOB_TIMEOUT)
                            for r in due_now])
        if later:
            with redis.pipeline() as pipe:
                for r in later:
                    q.enqueue_at(r.due_at, SEND_FOLLOW_UP, r.id, job_id=follow_up_job_id(r.id),
                                 result_ttl=RESULT_TTL, job_timeout=JOB_TIMEOUT, pipeline=pipe)
                pipe.execute()
    log.debug("scheduler handed %d follow-up(s) to RQ", len(to_enqueue))
    return len(to_enqueue)
