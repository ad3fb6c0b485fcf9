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

If Redis is unreachable the limiter counts in process memory for a while and logs: a shopper's
complaint is never refused because the rate limiter's storage is down.

The client address is ``request.remote_addr``: behind a load balancer, wrap the WSGI app in
``werkzeug.middleware.proxy_fix.ProxyFix`` so it is the shopper's address, not the balancer's.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import redis
from flask import Flask, request

from ccms_addon.errors import error_response
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
    counter and no arguments. Returns 0 when the request was counted under every key, else the
    milliseconds until it would be allowed (and then nothing was counted). The clock is the
    server's, so every web process agrees on it."""
    lines = ["local t = redis.call('TIME')",
             "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)",
             "local wait = 0",
             "local function check(key, amount, window)",
             "  local oldest = redis.call('LINDEX', key, amount - 1)",
             "  if oldest then",
             "    local left = tonumber(oldest) + window - now",
             "    if left > wait then wait = left end",
             "  end",
             "end"]
    for i, counter in enumerate(counters, 1):
        for rule in counter.rules:
            lines.append(f"check(KEYS[{i}], {int(rule.amount)}, {int(rule.seconds) * 1000})")
    lines.append("if wait > 0 then return wait end")
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

    def hit(self, keys: list[str], counters: Sequence[_Counter]) -> float:
        now = time.time()
        with self._lock:
            wait = 0.0
            for key, counter in zip(keys, counters):
                entries = self._lists.get(key)
                for rule in counter.rules:
                    if entries is not None and len(entries) >= rule.amount:
                        wait = max(wait, entries[rule.amount - 1] + rule.seconds - now)
            if wait > 0:
                return wait
            if len(self._lists) > self.MAX_KEYS:
                self._lists.clear()  # a crude bound: an outage long enough to matter is logged
            for key, counter in zip(keys, counters):
                entries = self._lists.get(key)
                if entries is None:
                    entries = self._lists[key] = deque(maxlen=counter.length)
                entries.appendleft(now)
            return 0.0


class _Endpoint:
    """The counters of one limited endpoint and its script."""

    def __init__(self, name: str, rules: Sequence[Rule]):
        self.name = name
        self.counters = tuple(
            _Counter(kind, tuple(rule for rule in rules if rule.counted_by == kind))
            for kind in (PER_IP, PER_SHOP) if any(rule.counted_by == kind for rule in rules))
        self.source = _script(self.counters)
        self.script = None  # registered on first use


class WidgetLimiter:
    """The widget API's rate limits for one app. ``table``: endpoint → rules."""

    def __init__(self, runtime: Runtime, table: Mapping[str, Sequence[Rule]]):
        self.runtime = runtime
        self.prefix = f"{runtime.settings.queue_prefix}ccms-widget:"
        self.table = {endpoint: _Endpoint(endpoint, rules)
                      for endpoint, rules in table.items() if rules}
        self._memory = _MemoryWindows()
        self._redis_down_until = 0.0

    def keys(self, endpoint: str, widget_key: str, ip: str) -> list[str]:
        return [f"{self.prefix}{endpoint}:"
                + (f"ip:{ip}" if counter.counted_by == PER_IP else f"shop:{widget_key[:64]}")
                for counter in self.table[endpoint].counters]

    def hit(self, endpoint: str, widget_key: str, ip: str) -> float:
        """Count one request of ``endpoint``; 0 if allowed, else seconds until it would be."""
        limited = self.table[endpoint]
        keys = self.keys(endpoint, widget_key, ip)
        if time.monotonic() >= self._redis_down_until:
            try:
                if limited.script is None:
                    # the runtime's Redis is reached only once a limited endpoint is called
                    limited.script = self.runtime.redis.register_script(limited.source)
                return int(limited.script(keys=keys)) / 1000
            except (redis.RedisError, OSError) as exc:
                self._redis_down_until = time.monotonic() + REDIS_RETRY_SECONDS
                log.warning("rate-limit storage unreachable (%s); counting in memory for %ss",
                            exc, REDIS_RETRY_SECONDS)
        return self._memory.hit(keys, limited.counters)

    def check(self):
        """``before_request`` of the widget blueprint: None, or the 429 answer."""
        endpoint = request.endpoint
        if endpoint not in self.table:
            return None
        widget_key = str((request.view_args or {}).get("widget_key", ""))
        wait = self.hit(endpoint, widget_key, client_ip())
        if wait <= 0:
            return None
        retry_after = max(1, math.ceil(wait)) if math.isfinite(wait) else FALLBACK_RETRY_AFTER
        return error_response(429, "rate_limited",
                              f"Too many requests; try again in {retry_after} seconds.",
                              headers={"Retry-After": str(retry_after)})


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
    app.extensions[EXTENSION] = limiter
    return limiter
