"""Reading orders from the platforms' admin APIs: the backfill and the reconciliation.

* :func:`backfill_orders` (``ccms-addon sync orders --shop ID [--since DATE]``) reads a shop's
  order history page by page through the adapter's ``list_orders``. Each page is stored with
  ``repository.upsert_orders`` *in the same transaction* as the cursor that follows it, kept in the
  shop's settings (``settings["sync"]``): a run that is killed resumes after the last page it
  committed, and a page is never half stored. ``order_synced`` fires after each commit for the
  orders the page changed (a replayed page changes nothing and fires nothing).
* :func:`reconcile_due` (a periodic sweep of the dispatcher) enqueues, for every active shop with
  credentials whose last reconciliation is older than :data:`RECONCILE_EVERY`, one
  :func:`reconcile_shop` job (job id ``shop-<shop id>-reconcile``: one per shop at a time). The job
  reads the orders updated since the last reconciliation began, less :data:`RECONCILE_OVERLAP`
  (clock skew, the platform's search index lag), and stores them: what a webhook missed is
  repaired within minutes.

``settings["sync"]`` of a shop (the adapters never see it: only scalar settings reach them):

==========================  ===================================================================
``cursor``                  where an unfinished backfill continues (the adapter's, opaque)
``updated_since``           the ``--since`` of that backfill (ISO 8601; None: the whole history)
``started_at``              when the backfill began; ``completed_at`` when it read its last page
``orders``                  orders read by the backfill so far (all its runs)
``lease_until``             a running backfill's lease (renewed every page); another waits
``last_reconciled_at``      the instant up to which every update has been read (the start of the
                            last complete reconciliation, or of a complete backfill)
``reconcile_attempted_at``  the last reconciliation that ran, whatever its outcome
``last_error``              the last failure, for the merchant and the operator
==========================  ===================================================================
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any

import click
from rq import Queue
from sqlalchemy import select

from ccms_addon.platforms import (CursorInvalidError, OrderPage, PlatformAdapter,
                                  PlatformAuthError, PlatformError, PlatformUnavailableError)
from ccms_addon.queue import DELIVERIES_QUEUE, jobs_in_flight, queue, shop_job_id
from ccms_addon.runtime import Runtime, current
from ccms_addon.store import repository
from ccms_addon.store.models import Shop, ShopStatus, utcnow

log = logging.getLogger(__name__)

#: the key of the shop's settings this module owns
SETTINGS_KEY = "sync"
#: attempts of one page the platform cannot serve now (5xx, a 429 storm, a timeout); the waits
#: between them double from PAGE_RETRY_BASE seconds up to PAGE_RETRY_MAX
PAGE_ATTEMPTS = 6
PAGE_RETRY_BASE = 2.0
PAGE_RETRY_MAX = 60.0
#: how often a saved cursor may turn out stale before a backfill gives up
MAX_RESTARTS = 2
#: a backfill's lease on its shop, renewed at every page: a second run waits for it to lapse
BACKFILL_LEASE = timedelta(minutes=3)
#: a shop is reconciled at most this often; the sweep that checks runs every
#: RECONCILE_SWEEP_INTERVAL seconds (the dispatcher's periodic sweeps)
RECONCILE_EVERY = timedelta(minutes=15)
RECONCILE_SWEEP_INTERVAL = 60.0
#: read again this far behind the last reconciliation (clock skew, search-index lag)
RECONCILE_OVERLAP = timedelta(minutes=10)
#: the furthest back a reconciliation reads; older gaps are a backfill's business
RECONCILE_MAX_WINDOW = timedelta(days=7)
#: the reconciliation job: its function, queue, timeout and result lifetime
RECONCILE_JOB = "ccms_addon.sync.reconcile_shop"
RECONCILE_QUEUE = DELIVERIES_QUEUE
RECONCILE_JOB_TIMEOUT = 1800
RECONCILE_RESULT_TTL = 3600
#: shops looked at per sweep
RECONCILE_BATCH = 500

Sleep = Callable[[float], None]


class SyncError(Exception):
    """A backfill or reconciliation that cannot go on (message for the merchant or operator)."""


class SyncBusyError(SyncError):
    """Another backfill of the shop holds its lease."""


def reconcile_job_id(shop_id: int) -> str:
    return shop_job_id(shop_id, "reconcile")


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(timezone.utc).isoformat() if moment is not None else None


def _parse(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def sync_state(shop: Shop) -> dict[str, Any]:
    """A copy of the shop's ``settings["sync"]`` (empty when it never synced)."""
    state = (shop.settings or {}).get(SETTINGS_KEY)
    return dict(state) if isinstance(state, dict) else {}


def _save_state(shop: Shop, state: dict[str, Any]) -> None:
    # a new dict: the JSON column notices assignments, not mutations
    shop.settings = {**(shop.settings or {}), SETTINGS_KEY: state}


def _locked_shop(session, shop_id: int) -> Shop | None:
    return session.get(Shop, shop_id, with_for_update=True, populate_existing=True)


# --------------------------------------------------------------------------------------------------
# Reading pages: the shared loop (retries, stale cursors, hooks after commit)
# --------------------------------------------------------------------------------------------------


@dataclass
class SyncProgress:
    """What a run has done so far; handed to the progress callback after every page."""

    shop_id: int
    pages: int = 0
    orders: int = 0          # records read (repeats included)
    changed: int = 0         # orders inserted or changed in the store
    total: int | None = None  # the platform's estimate of what the listing holds, if it says
    previously: int = 0      # orders read by the earlier runs of a resumed backfill
    resumed: bool = False
    completed: bool = False
    waiting: str | None = None  # why the run is waiting, while it waits


Progress = Callable[[SyncProgress], None]


def _fetch_page(adapter: PlatformAdapter, context, *, since: datetime | None, cursor: str | None,
                progress: SyncProgress, report: Progress | None, sleep: Sleep) -> OrderPage:
    """``adapter.list_orders`` with the platform's bad moments retried, waiting longer each time."""
    for attempt in range(1, PAGE_ATTEMPTS + 1):
        try:
            return adapter.list_orders(context, updated_since=since, cursor=cursor)
        except PlatformUnavailableError as exc:
            if attempt == PAGE_ATTEMPTS:
                raise
            wait = min(PAGE_RETRY_BASE * 2 ** (attempt - 1), PAGE_RETRY_MAX)
            log.warning("shop %s: %s; page retried in %.0fs (attempt %d of %d)",
                        progress.shop_id, exc, wait, attempt, PAGE_ATTEMPTS)
            progress.waiting = f"{exc} — retrying in {wait:.0f}s"
            if report:
                report(progress)
            sleep(wait)
            progress.waiting = None
    raise AssertionError("unreachable")


def _broadcast(runtime: Runtime, shop_id: int, changes: list[repository.OrderChange]) -> None:
    for change in changes:
        runtime.pm.hook.order_synced(shop_id=shop_id, order_id=change.order_id,
                                     platform_order_id=change.platform_order_id,
                                     created=change.created)


def installed_shop_and_adapter(runtime: Runtime, shop_id: int) -> tuple[Shop, PlatformAdapter]:
    with runtime.db.session() as session:
        shop = session.get(Shop, shop_id)
        if shop is None:
            raise SyncError(f"no shop with id {shop_id}")
        session.expunge(shop)
    if shop.status is not ShopStatus.ACTIVE or not shop.credentials_encrypted:
        raise SyncError(f"shop {shop_id} ({shop.domain}) is not installed: it has no admin-API "
                        "credentials")
    adapter = runtime.platforms.get(shop.platform)
    if adapter is None:
        raise SyncError(f"shop {shop_id} is on {shop.platform!r}, whose adapter is not installed")
    return shop, adapter


# --------------------------------------------------------------------------------------------------
# The backfill
# --------------------------------------------------------------------------------------------------


def backfill_orders(runtime: Runtime, shop_id: int, since: datetime | None = None,
                    progress: Progress | None = None, *, restart: bool = False,
                    sleep: Sleep = time.sleep, stop_after_pages: int | None = None
                    ) -> SyncProgress:
    """Read the shop's orders updated at or after ``since`` (None: its whole history) into the
    store, resuming the unfinished backfill of the same ``since`` unless ``restart``.

    ``progress`` is called after every page. Raises :class:`SyncBusyError` when another backfill
    of the shop is running, :class:`SyncError` for a shop that cannot be synced,
    ``PlatformAuthError`` when the platform refuses the credentials, ``PlatformUnavailableError``
    when it stays unavailable through :data:`PAGE_ATTEMPTS` tries (run again: it resumes).
    ``stop_after_pages`` ends the run early, resumable (tests and benchmarks).
    """
    since = since.astimezone(timezone.utc) if since is not None else None
    shop, adapter = installed_shop_and_adapter(runtime, shop_id)
    owner = uuid.uuid4().hex
    status = SyncProgress(shop_id)
    cursor = _claim(runtime, shop_id, since, owner, restart, status)
    context = runtime.shop_context(shop, adapter)
    restarts = 0
    try:
        while True:
            try:
                page = _fetch_page(adapter, context, since=since, cursor=cursor, progress=status,
                                   report=progress, sleep=sleep)
            except CursorInvalidError as exc:
                restarts += 1
                if cursor is None or restarts > MAX_RESTARTS:
                    raise SyncError(f"shop {shop_id}: the listing cannot be continued ({exc})"
                                    ) from None
                log.warning("shop %s: %s; the backfill starts over", shop_id, exc)
                cursor = None
                continue
            cursor = page.next_cursor
            changes = _commit_page(runtime, shop_id, owner, page)
            status.pages += 1
            status.orders += len(page.records)
            status.changed += len(changes)
            status.total = page.total if page.total is not None else status.total
            status.completed = cursor is None
            _broadcast(runtime, shop_id, changes)
            if progress:
                progress(status)
            if cursor is None:
                return status
            if stop_after_pages is not None and status.pages >= stop_after_pages:
                return status
    except BaseException as exc:
        _release(runtime, shop_id, owner, error=exc)
        raise
    finally:
        _release(runtime, shop_id, owner)


def _claim(runtime: Runtime, shop_id: int, since: datetime | None, owner: str, restart: bool,
           status: SyncProgress) -> str | None:
    """Take the shop's backfill lease; the cursor to continue from (None: from the start)."""
    now = utcnow()
    with runtime.db.session() as session:
        shop = _locked_shop(session, shop_id)
        state = sync_state(shop)
        lease = _parse(state.get("lease_until"))
        if lease is not None and lease > now and state.get("lease_owner") != owner:
            raise SyncBusyError(f"another backfill of shop {shop_id} is running (its lease ends "
                                f"{lease:%H:%M:%S} UTC)")
        same = state.get("started_at") and not state.get("completed_at") \
            and state.get("updated_since") == _iso(since) and state.get("cursor")
        if same and not restart:
            status.resumed = True
            status.previously = int(state.get("orders") or 0)
            cursor = state["cursor"]
        else:
            cursor = None
            state.update(cursor=None, updated_since=_iso(since), started_at=_iso(now),
                         completed_at=None, orders=0)
        state.update(lease_owner=owner, lease_until=_iso(now + BACKFILL_LEASE), last_error=None)
        _save_state(shop, state)
    return cursor


def _commit_page(runtime: Runtime, shop_id: int, owner: str, page: OrderPage
                 ) -> list[repository.OrderChange]:
    """Store the page's orders and the cursor after it in one transaction."""
    now = utcnow()
    with runtime.db.session() as session:
        shop = _locked_shop(session, shop_id)
        state = sync_state(shop)
        if state.get("lease_owner") != owner:
            raise SyncBusyError(f"shop {shop_id}: the backfill lost its lease to another run")
        changes = repository.upsert_orders(session, shop_id, page.records) if page.records else []
        state.update(cursor=page.next_cursor, orders=int(state.get("orders") or 0)
                     + len(page.records), lease_until=_iso(now + BACKFILL_LEASE))
        if page.next_cursor is None:
            state["completed_at"] = _iso(now)
            # everything updated before the backfill began has been read: a reconciliation
            # need not go further back (for a backfill of the whole history, or one since
            # before the last reconciliation)
            started = _parse(state.get("started_at"))
            since = _parse(state.get("updated_since"))
            last = _parse(state.get("last_reconciled_at"))
            if started and (since is None or since <= _reconcile_since(shop, state, started)) \
                    and (last is None or started > last):
                state["last_reconciled_at"] = _iso(started)
        _save_state(shop, state)
    return changes


def _release(runtime: Runtime, shop_id: int, owner: str, *, error: BaseException | None = None
             ) -> None:
    try:
        with runtime.db.session() as session:
            shop = _locked_shop(session, shop_id)
            if shop is None:
                return
            state = sync_state(shop)
            if state.get("lease_owner") != owner:
                return
            if error is not None:
                state["last_error"] = f"{type(error).__name__}: {error}"[:500]
                _save_state(shop, state)
                return
            state.pop("lease_owner", None)
            state.pop("lease_until", None)
            _save_state(shop, state)
    except Exception:  # noqa: BLE001 — the lease lapses by itself
        log.exception("shop %s: the backfill lease could not be released", shop_id)


# --------------------------------------------------------------------------------------------------
# The reconciliation
# --------------------------------------------------------------------------------------------------


def _reconcile_since(shop: Shop, state: dict[str, Any], now: datetime, *,
                     warn: bool = False) -> datetime:
    """Where a reconciliation starting ``now`` reads from: the last one's start (else the
    install), at most :data:`RECONCILE_MAX_WINDOW` back, less the overlap."""
    last = _parse(state.get("last_reconciled_at"))
    start = last if last is not None else (shop.installed_at or now)
    if start.tzinfo is None:
        start = start.replace(tzinfo=timezone.utc)
    oldest = now - RECONCILE_MAX_WINDOW
    if start < oldest:
        if warn and last is not None:
            log.warning("shop %s was last reconciled %s: the reconciliation reads back to %s "
                        "only; run `ccms-addon sync orders --shop %s --since %s` for the rest",
                        shop.id, _iso(start), _iso(oldest), shop.id, start.date().isoformat())
        start = oldest
    return start - RECONCILE_OVERLAP


def _is_due(state: dict[str, Any], now: datetime) -> bool:
    lease = _parse(state.get("lease_until"))
    if lease is not None and lease > now:
        return False  # a backfill is reading this shop right now
    attempted = _parse(state.get("reconcile_attempted_at"))
    return attempted is None or now - attempted >= RECONCILE_EVERY


def due_shops(runtime: Runtime, now: datetime | None = None) -> list[int]:
    """Ids of the active shops with credentials, on an installed platform, due a reconciliation."""
    now = now or utcnow()
    with runtime.db.session() as session:
        rows = session.execute(
            select(Shop.id, Shop.platform, Shop.settings)
            .where(Shop.status == ShopStatus.ACTIVE, Shop.credentials_encrypted.is_not(None))
            .order_by(Shop.id).limit(RECONCILE_BATCH)).all()
    due = []
    for shop_id, platform, settings in rows:
        if platform not in runtime.platforms:
            continue
        state = (settings or {}).get(SETTINGS_KEY)
        if _is_due(state if isinstance(state, dict) else {}, now):
            due.append(shop_id)
    return due


def reconcile_due(runtime: Runtime, now: datetime | None = None) -> int:
    """Enqueue a :func:`reconcile_shop` job for every shop due one (a dispatcher sweep); returns
    how many were enqueued. A shop whose job is still queued or running is left to it."""
    shop_ids = due_shops(runtime, now)
    if not shop_ids:
        return 0
    redis = runtime.redis
    in_flight = jobs_in_flight(redis, [reconcile_job_id(i) for i in shop_ids])
    wanted = [i for i in shop_ids if reconcile_job_id(i) not in in_flight]
    if wanted:
        q: Queue = queue(RECONCILE_QUEUE, redis, runtime.settings)
        q.enqueue_many([Queue.prepare_data(RECONCILE_JOB, args=(i,), job_id=reconcile_job_id(i),
                                           result_ttl=RECONCILE_RESULT_TTL,
                                           timeout=RECONCILE_JOB_TIMEOUT) for i in wanted])
    return len(wanted)


def reconcile_shop(shop_id: int) -> str:
    """RQ job: read the shop's orders updated since its last reconciliation into the store."""
    return reconcile(current(), shop_id).outcome


@dataclass
class ReconcileResult:
    shop_id: int
    outcome: str               # "reconciled", "skipped", "unavailable", "refused"
    since: datetime | None = None
    orders: int = 0
    changed: int = 0
    detail: str = ""


def reconcile(runtime: Runtime, shop_id: int, *, now: datetime | None = None,
              sleep: Sleep = time.sleep) -> ReconcileResult:
    """Read the orders updated since the last reconciliation (less the overlap) and store them;
    ``last_reconciled_at`` moves to this run's start only when every page was read."""
    started = now or utcnow()
    try:
        shop, adapter = installed_shop_and_adapter(runtime, shop_id)
    except SyncError as exc:
        return ReconcileResult(shop_id, "skipped", detail=str(exc))
    state = sync_state(shop)
    lease = _parse(state.get("lease_until"))
    if lease is not None and lease > started:
        return ReconcileResult(shop_id, "skipped", detail="a backfill is running")
    since = _reconcile_since(shop, state, started, warn=True)
    _update_state(runtime, shop_id, reconcile_attempted_at=_iso(started))
    result = ReconcileResult(shop_id, "reconciled", since=since)
    status = SyncProgress(shop_id)
    context = runtime.shop_context(shop, adapter)
    cursor = None
    try:
        while True:
            page = _fetch_page(adapter, context, since=since, cursor=cursor, progress=status,
                               report=None, sleep=sleep)
            with runtime.db.session() as session:
                changes = repository.upsert_orders(session, shop_id, page.records) \
                    if page.records else []
            _broadcast(runtime, shop_id, changes)
            result.orders += len(page.records)
            result.changed += len(changes)
            cursor = page.next_cursor
            if cursor is None:
                break
    except PlatformUnavailableError as exc:
        _update_state(runtime, shop_id, last_error=f"reconciliation: {exc}"[:500])
        return replace(result, outcome="unavailable", detail=str(exc))
    except (PlatformError, SyncError) as exc:  # refused credentials, a stale cursor…
        log.warning("shop %s: reconciliation refused: %s", shop_id, exc)
        _update_state(runtime, shop_id, last_error=f"reconciliation: {exc}"[:500])
        return replace(result, outcome="refused", detail=str(exc))
    _update_state(runtime, shop_id, advance_reconciled=started, last_error=None)
    log.info("shop %s reconciled since %s: %d orders read, %d changed", shop_id, _iso(since),
             result.orders, result.changed)
    return result


def _update_state(runtime: Runtime, shop_id: int, *, advance_reconciled: datetime | None = None,
                  **values: Any) -> None:
    with runtime.db.session() as session:
        shop = _locked_shop(session, shop_id)
        if shop is None:
            return
        state = sync_state(shop)
        state.update(values)
        if advance_reconciled is not None:
            last = _parse(state.get("last_reconciled_at"))
            if last is None or advance_reconciled > last:
                state["last_reconciled_at"] = _iso(advance_reconciled)
        _save_state(shop, state)


# --------------------------------------------------------------------------------------------------
# ccms-addon sync orders --shop ID [--since YYYY-MM-DD]
# --------------------------------------------------------------------------------------------------


@click.group("sync")
def sync_group() -> None:
    """Read orders from the platforms' admin APIs."""


@sync_group.command("orders")
@click.option("--shop", "shop_id", type=int, required=True, help="The shop's id in the store.")
@click.option("--since", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="Only orders updated on or after this day (UTC); default: the whole history.")
@click.option("--restart", is_flag=True,
              help="Start over instead of resuming an interrupted backfill of the same --since.")
def sync_orders_command(shop_id: int, since: datetime | None, restart: bool) -> None:
    """Backfill a shop's orders through its platform's admin API, with a progress bar.

    An interrupted run (Ctrl-C, a crash, the platform down) resumes where it stopped when run
    again with the same --since. Prints a JSON summary when done.
    """
    import json

    from rich.console import Console

    from ccms_addon.config import Settings
    from ccms_addon.runtime import build_runtime

    console = Console(stderr=True)
    since_utc = since.replace(tzinfo=timezone.utc) if since is not None else None
    runtime = build_runtime(Settings.from_env())
    try:
        with ProgressBar(console) as report:
            result = backfill_orders(runtime, shop_id, since_utc, report, restart=restart)
    except SyncError as exc:
        raise click.ClickException(str(exc)) from None
    except PlatformAuthError as exc:
        raise click.ClickException(f"the platform refused the shop's credentials: {exc} — "
                                   "the merchant must install the app again") from None
    except PlatformUnavailableError as exc:
        raise click.ClickException(f"the platform is unavailable: {exc} — run the same command "
                                   "again later: it resumes where it stopped") from None
    except PlatformError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        runtime.close()
    read = result.previously + result.orders
    word = "resumed and completed" if result.resumed else "completed"
    console.print(f"[green]shop {shop_id}: backfill {word}: {read} orders read "
                  f"({result.changed} new or changed in this run, {result.pages} pages)[/green]")
    click.echo(json.dumps({"shop_id": shop_id, "since": since_utc.date().isoformat()
                           if since_utc else None, "resumed": result.resumed,
                           "pages": result.pages, "orders": read, "changed": result.changed,
                           "completed": result.completed}))


class ProgressBar:
    """A rich progress bar fed by :class:`SyncProgress`; a context manager giving the callback."""

    def __init__(self, console) -> None:
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn,
                                   TextColumn, TimeElapsedColumn)
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(),
                                 TextColumn("{task.fields[note]}"), console=console,
                                 transient=False)
        self.task = None

    def __enter__(self) -> Progress:
        self.progress.start()
        self.task = self.progress.add_task("orders", total=None, note="")
        return self.update

    def update(self, status: SyncProgress) -> None:
        done = status.previously + status.orders
        total = status.total if status.total is not None and status.total >= done else None
        note = status.waiting or (f"{status.pages} pages, {status.changed} changed"
                                  + (" (resumed)" if status.resumed else ""))
        self.progress.update(self.task, completed=done, total=total, note=note)

    def __exit__(self, *exc_info: object) -> None:
        self.progress.stop()
