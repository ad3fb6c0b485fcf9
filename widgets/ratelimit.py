"""Rate limits of the public widget API: moving windows in the queue's Redis, per IP and per shop.

``init_app(app)`` installs one :class:`WidgetLimiter` per app (nothing is global, so every test app
is fresh) as the first ``before_request`` hook of the widget blueprint: only the endpoints named in
:data:`DEFAULT_LIMITS` (or the app's replacements) are counted, before any other check of the
blueprint, and nothing else in the app pays for it (webhooks, the merchant API and the widget's
``config`` run no rate-limit code at all).

A request is checked against **all** its rules in one Redis round trip: one Lua script per
endpoint (its limits written in) that looks at the request timestamps kept per IP and per shop (a
list each, newest first, trimmed to the largest amount) and either refuses — nothing is counted,
and the answer is 429 in the project's one error shape with ``Retry-After`` (seconds until the
counted request that blocks leaves its window) — or records the request under every key. That is
the moving window of the ``limits`` library (a burst at a window's edge cannot double the limit),
with the server's clock, atomically.

The script goes over a connection the limiter keeps per process (:class:`_Link`), its command
packed here: no client-side pool checkout, retry wrapper or reply callback per request. For the
endpoints that write nothing (:data:`DEFERRED`: the lookups) the script is only *sent* before the
other checks, and its verdict read once the endpoint has run its query (:func:`settle`, or the
blueprint's ``after_request`` for any other answer): the two round trips (Redis, the store)
overlap instead of following each other. A refused request then gets the 429 all the same, with
nothing of the work it did; a client or shop this process saw refused is checked before any other
work again until its window frees up, so a flood of refused lookups costs no queries.

If Redis is unreachable the limiter counts in process memory for a while and logs: a shopper's
complaint is never refused because the rate limiter's storage is down.

The client address is ``request.remote_addr``: behind a load balancer, wrap the WSGI app in
``werkzeug.middleware.proxy_fix.ProxyFix`` so it is the shopper's address, not the balancer's.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import redis
from flask import Flask, g, request
from redis.exceptions import NoScriptError

from ccms_addon.errors import error_response
from ccms_addon.queue import glob_escape
from ccms_addon.runtime import Runtime

log = logging.getLogger(__name__)

#: where the limiter is kept in ``app.extensions``
EXTENSION = "ccms_widget_limiter"
#: what a limit is counted by
PER_IP = "ip"
PER_SHOP = "shop"

#: endpoint → [(limit, counted by)]. A storefront loads ``config`` once per visitor and 5 minutes
#: (it is cacheable); ``token`` once per panel opening. Writes are what a person can type; lookups
#: allow a few mistakes but make guessing order numbers and contacts slow (20/min, 200/day per IP).
#: ``config`` has none: a cached public document, cheaper to serve than to count (CDN-cacheable)
DEFAULT_LIMITS: Mapping[str, Sequence[tuple[str, str]]] = {
    "widgets.form_token": [("60/minute", PER_IP)],
    "widgets.submit_voc": [("10/minute", PER_IP), ("300/minute", PER_SHOP)],
    "widgets.submit_claim": [("5/minute;50/day", PER_IP), ("120/minute", PER_SHOP)],
    "widgets.lookup_order": [("20/minute;200/day", PER_IP), ("600/minute", PER_SHOP)],
    "widgets.lookup_requests": [("20/minute;200/day", PER_IP), ("600/minute", PER_SHOP)],
}
#: endpoints that write nothing: their verdict may be read after their query (see the docstring)
DEFERRED = frozenset({"widgets.lookup_order", "widgets.lookup_requests"})
#: seconds announced when the window's end cannot be read
FALLBACK_RETRY_AFTER = 60
#: moving window: a burst at a window's edge cannot double the limit
STRATEGY = "moving-window"
#: seconds the limiter counts in memory after Redis failed, before it tries Redis again
REDIS_RETRY_SECONDS = 5.0

_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "month": 30 * 86400,
          "year": 365 * 86400}
_LIMIT = re.compile(r"^\s*(\d+)\s*(?:/|per)\s*(\d+)?\s*(second|minute|hour|day|month|year)s?\s*$",
                    re.IGNORECASE)


@dataclass(frozen=True)
class Rule:
    """``amount`` requests per ``seconds``, counted by IP or by shop."""

    amount: int
    seconds: int
    counted_by: str

    @property
    def text(self) -> str:
        return f"{self.amount}/{self.seconds}s"


def parse_limits(value: str, counted_by: str) -> list[Rule]:
    """``"20/minute;200/day"`` (the ``limits`` library's notation: ``N/unit``, ``N per M units``,
    several separated by ``;`` or ``,``) → rules."""
    if counted_by not in (PER_IP, PER_SHOP):
        raise ValueError(f"a limit is counted by {PER_IP!r} or {PER_SHOP!r}, not {counted_by!r}")
    rules = []
    for part in re.split(r"[;,]", value):
        if not part.strip():
            continue
        match = _LIMIT.match(part)
        if not match or int(match.group(1)) < 1:
            raise ValueError(f"not a rate limit: {part!r} (e.g. '20/minute')")
        multiple = int(match.group(2) or 1)
        rules.append(Rule(int(match.group(1)), multiple * _UNITS[match.group(3).lower()],
                          counted_by))
    return rules


def counter_prefix(queue_prefix: str) -> str:
    """Where the limiter's counters live: ``<prefix>ccms-widget:<endpoint>:ip|shop:<ip|widget key>``."""
    return f"{queue_prefix}ccms-widget:"


def shop_counters_match(queue_prefix: str, widget_key: str) -> str:
    """A ``SCAN`` pattern of one shop's per-shop counters on every endpoint. They are keyed by
    widget key, not shop id (they are counted before the shop is looked up), so a departing shop's
    are found by its key (``ccms_addon.queue.forget_shop``'s ``also_matching``)."""
    return glob_escape(counter_prefix(queue_prefix)) + "*:shop:" + glob_escape(widget_key[:64])


def client_ip() -> str:
    return request.remote_addr or "unknown"


@dataclass(frozen=True)
class _Counter:
    """One list of request timestamps (newest first) and the rules read from it: every rule
    counted the same way (per IP, or per shop) of one endpoint shares it, trimmed to the largest
    amount — the moving window of a rule is blocked when its ``amount``-th newest entry is younger
    than its window."""

    counted_by: str
    rules: tuple[Rule, ...]

    @property
    def length(self) -> int:
        return max(rule.amount for rule in self.rules)

    @property
    def ttl_ms(self) -> int:
        return max(rule.seconds for rule in self.rules) * 1000


def _script(counters: Sequence[_Counter]) -> str:
    """The Lua script of one endpoint, its limits written in: one ``EVALSHA`` with one key per
    counter and no arguments. Returns 0 when the request was counted under every key, else
    ``{milliseconds until it would be allowed, index in KEYS of the counter that blocks}`` (and
    then nothing was counted). The clock is the server's, so every web process agrees on it."""
    lines = ["local t = redis.call('TIME')",
             "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)",
             "local wait, who = 0, 0",
             "local function check(i, amount, window)",
             "  local oldest = redis.call('LINDEX', KEYS[i], amount - 1)",
             "  if oldest then",
             "    local left = tonumber(oldest) + window - now",
             "    if left > wait then wait, who = left, i end",
             "  end",
             "end"]
    for i, counter in enumerate(counters, 1):
        for rule in counter.rules:
            lines.append(f"check({i}, {int(rule.amount)}, {int(rule.seconds) * 1000})")
    lines.append("if wait > 0 then return {wait, who} end")
    for i, counter in enumerate(counters, 1):
        lines.append(f"redis.call('LPUSH', KEYS[{i}], now)")
        lines.append(f"redis.call('LTRIM', KEYS[{i}], 0, {int(counter.length) - 1})")
        lines.append(f"redis.call('PEXPIRE', KEYS[{i}], {int(counter.ttl_ms)})")
    lines.append("return 0")
    return "\n".join(lines)


class _MemoryWindows:
    """The same moving windows in process memory, used while Redis is unreachable."""

    MAX_KEYS = 50_000

    def __init__(self):
        self._lists: dict[str, deque] = {}
        self._lock = threading.Lock()

    def hit(self, keys: list[str], counters: Sequence[_Counter]) -> tuple[float, int]:
        """(seconds to wait, index of the counter that blocks), (0, -1) when counted."""
        now = time.time()
        with self._lock:
            wait, who = 0.0, -1
            for i, (key, counter) in enumerate(zip(keys, counters)):
                entries = self._lists.get(key)
                for rule in counter.rules:
                    if entries is not None and len(entries) >= rule.amount:
                        left = entries[rule.amount - 1] + rule.seconds - now
                        if left > wait:
                            wait, who = left, i
            if wait > 0:
                return wait, who
            if len(self._lists) > self.MAX_KEYS:
                self._lists.clear()  # a crude bound: an outage long enough to matter is logged
            for key, counter in zip(keys, counters):
                entries = self._lists.get(key)
                if entries is None:
                    entries = self._lists[key] = deque(maxlen=counter.length)
                entries.appendleft(now)
            return 0.0, -1


class _Endpoint:
    """The counters of one limited endpoint, its script and the start of its ``EVALSHA``
    command, packed once."""

    def __init__(self, name: str, rules: Sequence[Rule], prefix: str):
        self.name = name
        self.counters = tuple(
            _Counter(kind, tuple(rule for rule in rules if rule.counted_by == kind))
            for kind in (PER_IP, PER_SHOP) if any(rule.counted_by == kind for rule in rules))
        self.key_prefixes = tuple(f"{prefix}{name}:" + ("ip:" if c.counted_by == PER_IP
                                                        else "shop:") for c in self.counters)
        self.deferred = name in DEFERRED
        self.source = _script(self.counters)
        sha = hashlib.sha1(self.source.encode()).hexdigest().encode()  # what Redis names it
        count = str(len(self.counters)).encode()
        self._head = (b"*%d\r\n" % (3 + len(self.counters))
                      + b"".join(_bulk(part) for part in (b"EVALSHA", sha, count)))

    def keys(self, widget_key: str, ip: str) -> list[str]:
        return [prefix + (ip if counter.counted_by == PER_IP else widget_key[:64])
                for prefix, counter in zip(self.key_prefixes, self.counters)]

    def command(self, keys: list[str]) -> bytes:
        """``EVALSHA <sha> <n> <keys…>`` in the protocol's bytes."""
        return self._head + b"".join(_bulk(key.encode("utf-8", "backslashreplace"))
                                     for key in keys)


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


class _Link:
    """One connection of this process to the runtime's Redis, made like the client's own (same
    server, credentials, timeouts), used by one request at a time."""

    __slots__ = ("conn", "pid", "used")

    def __init__(self, client: redis.Redis):
        pool = client.connection_pool
        self.conn = pool.connection_class(**pool.connection_kwargs)
        self.pid = os.getpid()
        self.used = False  # has answered once: a later connection error may be a stale socket

    def drop(self) -> None:
        """Close it (after an error, or a reply left unread); never in a forked child."""
        if self.pid == os.getpid():
            try:
                self.conn.disconnect()
            except Exception:  # noqa: BLE001 — dropping a broken connection
                pass


@dataclass
class _Pending:
    """A script sent and not answered yet."""

    link: _Link
    limited: _Endpoint
    keys: list[str]
    command: bytes


#: where a deferred check waits for its verdict during a request (``flask.g``)
_PENDING = "_ccms_rate_pending"
#: links kept idle per limiter, at most
MAX_IDLE_LINKS = 8
#: refused keys remembered per process, at most
MAX_REFUSED = 10_000


class WidgetLimiter:
    """The widget API's rate limits for one app. ``table``: endpoint → rules."""

    def __init__(self, runtime: Runtime, table: Mapping[str, Sequence[Rule]]):
        self.runtime = runtime
        self.prefix = counter_prefix(runtime.settings.queue_prefix)
        self.table = {endpoint: _Endpoint(endpoint, rules, self.prefix)
                      for endpoint, rules in table.items() if rules}
        self._memory = _MemoryWindows()
        self._redis_down_until = 0.0
        self._idle: list[_Link] = []
        self._idle_lock = threading.Lock()
        #: key → monotonic time until which it is known to be refused (deferred endpoints)
        self._refused: dict[str, float] = {}

    def keys(self, endpoint: str, widget_key: str, ip: str) -> list[str]:
        return self.table[endpoint].keys(widget_key, ip)

    def hit(self, endpoint: str, widget_key: str, ip: str) -> float:
        """Count one request of ``endpoint``; 0 if allowed, else seconds until it would be."""
        limited = self.table[endpoint]
        return self._hit(limited, limited.keys(widget_key, ip))[0]

    # ---- the hooks -------------------------------------------------------------------------------

    def check(self):
        """``before_request`` of the widget blueprint: None, or the 429 answer. A deferred
        endpoint's script is sent and its verdict left for :meth:`settle`."""
        limited = self.table.get(request.endpoint)
        if limited is None:
            return None
        view_args = request.view_args
        keys = limited.keys(str(view_args.get("widget_key", "")) if view_args else "",
                            client_ip())
        if limited.deferred and not self._refused_lately(keys):
            pending = self._send(limited, keys)
            if pending is not None:
                setattr(g, _PENDING, pending)
                return None
        return self._answer(keys, *self._hit(limited, keys))

    def settle(self, response=None):
        """The 429 answer if the request's deferred check refuses it, else ``response``; reads
        the verdict once (the endpoint's view may call it before more work, ``after_request``
        calls it for every answer). Should a request end without it (an error in the response
        handling itself), its link is never put back: it goes with the request's ``g``, and
        the socket with its unread reply is closed when the link is collected."""
        pending = g.pop(_PENDING, None)
        if pending is None:
            return response
        refusal = self._answer(pending.keys, *self._receive(pending))
        return refusal if refusal is not None else response

    # ---- Redis -----------------------------------------------------------------------------------

    def _hit(self, limited: _Endpoint, keys: list[str]) -> tuple[float, int]:
        pending = self._send(limited, keys)
        if pending is None:
            return self._memory.hit(keys, limited.counters)
        return self._receive(pending)

    def _send(self, limited: _Endpoint, keys: list[str], retried: bool = False
              ) -> _Pending | None:
        """The script sent to Redis; None when Redis is (known to be) unreachable."""
        if time.monotonic() < self._redis_down_until:
            return None
        command = limited.command(keys)
        link = self._acquire()
        try:
            link.conn.send_packed_command((command,))
        except (redis.RedisError, OSError) as exc:
            link.drop()
            if link.used and not retried and isinstance(exc, redis.ConnectionError):
                return self._send(limited, keys, True)  # a server restart closed it: once more
            self._down(exc)
            return None
        return _Pending(link, limited, keys, command)

    def _receive(self, pending: _Pending, retried: bool = False) -> tuple[float, int]:
        """(seconds to wait, index of the counter that blocks) from the script's reply; the
        memory windows' answer when Redis failed."""
        link, limited = pending.link, pending.limited
        conn = link.conn
        try:
            try:
                reply = conn.read_response()
            except NoScriptError:  # a restarted or flushed server: load it, run it again
                conn.send_command("SCRIPT", "LOAD", limited.source)
                conn.read_response()
                conn.send_packed_command((pending.command,))
                reply = conn.read_response()
        except (redis.RedisError, OSError) as exc:
            link.drop()
            if link.used and not retried and isinstance(exc, redis.ConnectionError):
                again = self._send(limited, pending.keys, True)  # a stale socket: once more
                if again is not None:
                    return self._receive(again, True)
                return self._memory.hit(pending.keys, limited.counters)
            self._down(exc)
            return self._memory.hit(pending.keys, limited.counters)
        link.used = True
        self._release(link)
        if not reply:
            return 0.0, -1
        return int(reply[0]) / 1000, int(reply[1]) - 1

    def _down(self, exc: BaseException) -> None:
        self._redis_down_until = time.monotonic() + REDIS_RETRY_SECONDS
        log.warning("rate-limit storage unreachable (%s); counting in memory for %ss",
                    exc, REDIS_RETRY_SECONDS)

    def _acquire(self) -> _Link:
        pid = os.getpid()
        with self._idle_lock:
            while self._idle:
                link = self._idle.pop()
                if link.pid == pid:
                    return link  # (a forked child forgets its parent's: they are not its own)
        # the runtime's Redis is reached only once a limited endpoint is called
        return _Link(self.runtime.redis)

    def _release(self, link: _Link) -> None:
        with self._idle_lock:
            if len(self._idle) < MAX_IDLE_LINKS:
                self._idle.append(link)
                return
        link.drop()

    # ---- refusals --------------------------------------------------------------------------------

    def _refused_lately(self, keys: list[str]) -> bool:
        refused = self._refused
        if not refused:
            return False
        now = time.monotonic()
        return any(refused.get(key, 0.0) > now for key in keys)

    def _answer(self, keys: list[str], wait: float, who: int):
        if wait <= 0:
            return None
        if 0 <= who < len(keys) and math.isfinite(wait):
            if len(self._refused) >= MAX_REFUSED:
                self._refused.clear()
            self._refused[keys[who]] = time.monotonic() + wait
        retry_after = max(1, math.ceil(wait)) if math.isfinite(wait) else FALLBACK_RETRY_AFTER
        return error_response(429, "rate_limited",
                              f"Too many requests; try again in {retry_after} seconds.",
                              headers={"Retry-After": str(retry_after)})


def settle():
    """For a view of a :data:`DEFERRED` endpoint, before work it need not do for a refused
    request: the 429 answer, or None."""
    from flask import current_app
    limiter = current_app.extensions.get(EXTENSION)
    return limiter.settle() if limiter is not None else None


def init_app(app: Flask, limits: Mapping[str, Sequence[tuple[str, str]]] | None = None
             ) -> WidgetLimiter:
    """Rate-limit the widget blueprint's endpoints (call after it is registered). ``limits``
    replaces :data:`DEFAULT_LIMITS` entries (tests use small ones)."""
    if EXTENSION in app.extensions:
        return app.extensions[EXTENSION]
    runtime: Runtime = app.extensions["ccms"]
    table: dict[str, list[Rule]] = {}
    for endpoint, rules in {**DEFAULT_LIMITS, **(limits or {})}.items():
        if endpoint not in app.view_functions:
            raise LookupError(f"no endpoint {endpoint!r}: register the widget blueprint first")
        table[endpoint] = [rule for value, counted_by in rules
                           for rule in parse_limits(value, counted_by)]
    limiter = WidgetLimiter(runtime, table)
    # first of the blueprint's hooks: a refused request costs no shop lookup and no parsing
    app.before_request_funcs.setdefault("widgets", []).insert(0, limiter.check)
    # after_request hooks run last-registered first: a deferred refusal gets the CORS headers too
    app.after_request_funcs.setdefault("widgets", []).append(limiter.settle)
    app.extensions[EXTENSION] = limiter
    return limiter
