"""Listing a Cafe24 mall's orders for the backfill and the reconciliation.

What Cafe24 documents for ``GET /api/v2/admin/orders`` ("Retrieve a list of orders",
developers.cafe24.com/docs/ko/api/admin/#retrieve-a-list-of-orders) and ``GET
/api/v2/admin/orders/count``, and how this module lives with it:

* The search is by *date*: ``start_date`` and ``end_date`` (days, in the mall's time, KST), of the
  ``date_type`` chosen — ``order_date`` (the default), ``pay_date``, ``shipbegin_date``,
  ``shipend_date``, ``cancel_date``, ``cancel_request_date``, ``cancel_complete_date``,
  ``return_request_date``, ``return_complete_date``, ``exchange_request_date``,
  ``exchange_complete_date``, ``purchaseconfirmation_date``… There is **no modification date**
  (no ``update_date``), and orders carry no modification time. So a history backfill walks
  ``order_date`` (every order has one), and "updated since" is the union of the date types of the
  events that change what the store keeps (:data:`CHANGE_DATE_TYPES`); an order is read once per
  event in the range (the repeats are no-ops in the store).
* "검색기간은 한 호출에 3개월 이상 검색 불가": one call searches less than 3 months. Windows are
  :data:`WINDOW_DAYS` days, shorter than any three months.
* ``limit`` is 1–1000 (default 10), ``offset`` at most 15,000: one window lists at most 16,000
  orders. The window is counted first (``/orders/count``, same filters) and halved until it fits;
  a single day with more orders than that is read to the offset limit and the rest is logged.
* Every mall has a leaky bucket of 40 calls draining 2 a second, reported as ``X-Api-Call-Limit:
  used/max``; past it Cafe24 answers 429 and the usage headers ``X-Cafe24-Call-Usage`` (percent)
  and ``X-Cafe24-Call-Remain`` (seconds until calls resume, sent only at 100 % and more) appear
  (Cafe24 API docs, "API Limit"). :class:`~.client.Cafe24Client` pauses before the bucket
  overflows; this module carries that pause from one page to the next (per mall, in this
  process), so the first call of a page does not hit a bucket the previous page filled.
* Orders have no modification time: a listed order is dated by its latest event date
  (:func:`last_event`), so listing an order nothing happened to since is a no-op in the store.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta, timezone
from typing import Any

from marshmallow import ValidationError

from ccms_addon.platforms import (CursorInvalidError, OrderPage, OrderRecord,
                                  PlatformUnavailableError, ShopContext)

from . import schemas
from .client import Cafe24Client

log = logging.getLogger(__name__)

ORDERS_PATH = "/api/v2/admin/orders"
COUNT_PATH = "/api/v2/admin/orders/count"
#: the mall's time zone: Cafe24's dates are KST
KST = timezone(timedelta(hours=9))
#: the largest ``limit`` and ``offset`` Cafe24 accepts
MAX_LIMIT = 1000
MAX_OFFSET = 15_000
#: days per search window: the shortest three months (Feb–Apr) are 89 days
WINDOW_DAYS = 88
#: where a history backfill starts when the shop's settings name no ``sync_history_start``
HISTORY_START = date(2010, 1, 1)
#: a history backfill reads by order date
HISTORY_DATE_TYPES = ("order_date",)
#: "updated since": the events that change what the store keeps of an order
CHANGE_DATE_TYPES = ("order_date", "pay_date", "shipbegin_date", "shipend_date", "cancel_date",
                     "cancel_request_date", "cancel_complete_date", "return_request_date",
                     "return_complete_date", "exchange_request_date", "exchange_complete_date",
                     "purchaseconfirmation_date")
#: the longest pause between two calls the listing accepts from the usage headers
WAIT_CAP = 30.0
CURSOR_PREFIX = "cafe24:1:"

Sleep = Callable[[float], None]
Clock = Callable[[], float]

_resume_at: dict[str, float] = {}
_resume_lock = threading.Lock()


def reset_pacing() -> None:
    """Forget every mall's pause (tests start each mall afresh)."""
    with _resume_lock:
        _resume_at.clear()


def encode_cursor(state: Mapping[str, Any]) -> str:
    raw = json.dumps(dict(state), separators=(",", ":"), sort_keys=True).encode()
    return CURSOR_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict[str, Any]:
    if not isinstance(cursor, str) or not cursor.startswith(CURSOR_PREFIX):
        raise CursorInvalidError("not a cursor of this Cafe24 adapter version")
    text = cursor[len(CURSOR_PREFIX):]
    try:
        state = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        state["s"] = date.fromisoformat(state["s"])
        int(state["t"]), int(state["o"])
    except (ValueError, binascii.Error, KeyError, TypeError):
        raise CursorInvalidError("a Cafe24 cursor that cannot be read") from None
    return state


def _state_cursor(state: Mapping[str, Any]) -> str:
    return encode_cursor({**state, "s": state["s"].isoformat()})


def history_start(settings: Mapping[str, str]) -> date:
    value = settings.get("sync_history_start")
    try:
        return date.fromisoformat(str(value)) if value else HISTORY_START
    except ValueError:
        return HISTORY_START


class OrderLister:
    """One :meth:`Cafe24Adapter.list_orders` call."""

    def __init__(self, shop: ShopContext, client: Cafe24Client, *, shop_no: str, sleep: Sleep,
                 clock: Clock, now: datetime | None = None) -> None:
        self.shop = shop
        self.client = client
        self.shop_no = shop_no
        self.sleep = sleep
        self.clock = clock
        self.now = now or datetime.now(timezone.utc)
        self.today = self.now.astimezone(KST).date()

    def run(self, updated_since: datetime | None, cursor: str | None) -> OrderPage:
        types = CHANGE_DATE_TYPES if updated_since is not None else HISTORY_DATE_TYPES
        if updated_since is not None:
            start = updated_since.astimezone(KST).date()
        else:
            start = history_start(self.shop.settings)
        state = decode_cursor(cursor) if cursor else {"t": 0, "s": start, "o": 0}
        self._wait_for_bucket()
        try:
            return self._page(state, types, start)
        finally:
            with _resume_lock:
                _resume_at[self.shop.domain] = self.clock() + min(self.client.next_pause, WAIT_CAP)

    def _wait_for_bucket(self) -> None:
        with _resume_lock:
            resume = _resume_at.get(self.shop.domain)
        if resume is not None:
            wait = resume - self.clock()
            if wait > 0:
                self.sleep(min(wait, WAIT_CAP))

    def _page(self, state: dict[str, Any], types: tuple[str, ...], start: date) -> OrderPage:
        while True:
            if state["t"] >= len(types):
                return OrderPage((), None)
            date_type = types[state["t"]]
            if state["s"] > self.today:
                state = {"t": state["t"] + 1, "s": start, "o": 0}
                continue
            if state.get("n") is None:
                end, count = self._window(date_type, state["s"])
                if count == 0:
                    state = {"t": state["t"], "s": end + timedelta(days=1), "o": 0}
                    continue
                state = {**state, "e": end.isoformat(), "n": count, "o": 0}
            end = date.fromisoformat(state["e"])
            offset = state["o"]
            records = self._orders(date_type, state["s"], end, offset)
            offset += len(records)
            done = (len(records) < MAX_LIMIT or offset >= state["n"]
                    or offset > MAX_OFFSET)
            if done and offset < state["n"]:
                log.warning("Cafe24 mall %s: %d orders by %s on %s are beyond the offset limit "
                            "(%d) and were not listed", self.shop.domain, state["n"] - offset,
                            date_type, state["s"], MAX_OFFSET + MAX_LIMIT)
            if done:
                nxt = {"t": state["t"], "s": end + timedelta(days=1), "o": 0}
            else:
                nxt = {**state, "o": offset}
            return OrderPage(tuple(records), _state_cursor(nxt))

    def _window(self, date_type: str, start: date) -> tuple[date, int]:
        """The longest window from ``start`` (at most :data:`WINDOW_DAYS` days, not past today)
        whose orders fit the offset limit, and their count."""
        end = min(start + timedelta(days=WINDOW_DAYS - 1), self.today)
        while True:
            count = self._count(date_type, start, end)
            if count <= MAX_OFFSET + MAX_LIMIT or end == start:
                return end, count
            end = start + (end - start) // 2

    def _filters(self, date_type: str, start: date, end: date) -> dict[str, str]:
        return {"shop_no": self.shop_no, "date_type": date_type,
                "start_date": start.isoformat(), "end_date": end.isoformat()}

    def _count(self, date_type: str, start: date, end: date) -> int:
        answer = self.client.get(COUNT_PATH, self._filters(date_type, start, end))
        try:
            return int((answer or {})["count"])
        except (KeyError, TypeError, ValueError):
            raise PlatformUnavailableError("Cafe24 answered orders/count without a count") from None

    def _orders(self, date_type: str, start: date, end: date, offset: int) -> list[OrderRecord]:
        from .adapter import order_record
        answer = self.client.get(ORDERS_PATH, {**self._filters(date_type, start, end),
                                               "embed": "items,buyer", "limit": str(MAX_LIMIT),
                                               "offset": str(offset)})
        if answer is None:
            raise PlatformUnavailableError("Cafe24 answered the order search with 404")
        try:
            orders = schemas.Cafe24OrdersResponseSchema().load(answer)["orders"]
        except ValidationError as exc:
            raise PlatformUnavailableError(
                f"Cafe24 orders answer is malformed: {exc.messages}") from None
        raw = {str(o.get("order_id")): o for o in answer.get("orders") or [] if isinstance(o, dict)}
        return [order_record(order, last_event(raw.get(order["order_id"]), self.now))
                for order in orders]


#: date fields that are not events (a wish for later)
NOT_EVENTS = frozenset({"wished_delivery_date"})


def last_event(order: Mapping[str, Any] | None, now: datetime) -> datetime:
    """The latest event date of a listed order and its items (``order_date``, ``payment_date``,
    ``cancel_date``, the items' ``shipped_date``, ``delivered_date``…), never after ``now``.

    Cafe24 orders carry no modification time. Dating a listed order by its last event, rather
    than by the listing time, keeps a listing that finds nothing new a no-op in the store (no
    change, no ``order_synced``), as a replay must be; an order a later event touched is newer.
    """
    latest = None
    for source in [order or {}, *((order or {}).get("items") or [])]:
        if not isinstance(source, Mapping):
            continue
        for key, value in source.items():
            if not key.endswith("_date") or key in NOT_EVENTS or not isinstance(value, str):
                continue
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                continue
            moment = moment.replace(tzinfo=KST) if moment.tzinfo is None else moment
            latest = moment if latest is None or moment > latest else latest
    if latest is None:
        return now
    return min(latest.astimezone(timezone.utc), now)


def list_orders(shop: ShopContext, client: Cafe24Client, *, shop_no: str,
                updated_since: datetime | None, cursor: str | None, sleep: Sleep = time.sleep,
                clock: Clock = time.monotonic, now: datetime | None = None) -> OrderPage:
    """One page of the mall's orders (see the module docstring)."""
    client.retry_after_cap = max(client.retry_after_cap, WAIT_CAP)
    return OrderLister(shop, client, shop_no=shop_no, sleep=sleep, clock=clock,
                       now=now).run(updated_since, cursor)
