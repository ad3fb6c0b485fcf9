"""Rate limits of the public widget API: flask-limiter on the queue's Redis, per IP and per shop.

``init_app(app)`` builds one limiter per app (nothing is global, so every test app is fresh),
stores its counters in the runtime's Redis through the runtime's own connection pool, and answers
a breach with a 429 in the project's one error shape with ``Retry-After`` in seconds.

If Redis is unreachable the limiter falls back to in-process counters and logs: a shopper's
complaint is never refused because the rate limiter's storage is down.

The client address is ``request.remote_addr``: behind a load balancer, wrap the WSGI app in
``werkzeug.middleware.proxy_fix.ProxyFix`` so it is the shopper's address, not the balancer's.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from functools import partial

from flask import Flask, request
from flask_limiter import Limiter
from flask_limiter.errors import RateLimitExceeded

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
    "widgets.lookup_order": [("20/minute;200/day", PER_IP), ("600/minute", PER_SHOP)],
    "widgets.lookup_requests": [("20/minute;200/day", PER_IP), ("600/minute", PER_SHOP)],
}
#: seconds announced when the window's end cannot be read
FALLBACK_RETRY_AFTER = 60
#: moving window: a burst at a window's edge cannot double the limit
STRATEGY = "moving-window"


def client_ip() -> str:
    return request.remote_addr or "unknown"


def shop_of_request() -> str:
    return "shop:" + str((request.view_args or {}).get("widget_key", ""))


_KEY_FUNCS = {PER_IP: client_ip, PER_SHOP: shop_of_request}


def _elsewhere(endpoint: str) -> bool:
    return request.endpoint != endpoint


def storage_uri(runtime: Runtime) -> str:
    """The limits library's URI for the runtime's Redis (``redis+unix://`` for a socket)."""
    url = runtime.settings.redis_url
    if url:
        return "redis+unix://" + url[len("unix://"):] if url.startswith("unix://") else url
    kwargs = runtime.redis.connection_pool.connection_kwargs
    if kwargs.get("path"):
        return f"redis+unix://{kwargs['path']}"
    host, port, db = kwargs.get("host", "localhost"), kwargs.get("port", 6379), kwargs.get("db", 0)
    return f"redis://{host}:{port}/{db}"


def init_app(app: Flask, limits: Mapping[str, Sequence[tuple[str, str]]] | None = None) -> Limiter:
    """Rate-limit the widget blueprint's endpoints (call after it is registered). ``limits``
    replaces :data:`DEFAULT_LIMITS` entries (tests use small ones)."""
    if EXTENSION in app.extensions:
        return app.extensions[EXTENSION]
    runtime: Runtime = app.extensions["ccms"]
    limiter = Limiter(
        key_func=client_ip,
        storage_uri=storage_uri(runtime),
        storage_options={"connection_pool": runtime.redis.connection_pool},
        strategy=STRATEGY,
        key_prefix=f"{runtime.settings.queue_prefix}ccms-widget",
        headers_enabled=False,
        swallow_errors=True,
        in_memory_fallback_enabled=True,
    )
    limiter.init_app(app)
    # flask-limiter checks every request of the app; only the widget API is limited, so the check
    # moves onto the widget blueprint (first of its hooks) and webhooks and the merchant API pay
    # nothing for it (it cost ~0.5 ms a request on the webhook hot path).
    check = limiter._check_request_limit
    app.before_request_funcs[None].remove(check)
    limited = {endpoint for endpoint, rules in {**DEFAULT_LIMITS, **(limits or {})}.items()
               if rules}

    def _check_limited_endpoints():
        if request.endpoint in limited:  # config (a cached document) skips the resolution
            return check()
        return None

    app.before_request_funcs.setdefault("widgets", []).insert(0, _check_limited_endpoints)
    # Blueprint limits are checked in the limiter's before_request, ahead of every other check
    # (route-decorated limits would only run once the view is reached); each rule is exempt
    # outside its own endpoint, and counted per endpoint.
    blueprint = app.blueprints["widgets"]
    table = {**DEFAULT_LIMITS, **(limits or {})}
    for endpoint, rules in table.items():
        if endpoint not in app.view_functions:
            raise LookupError(f"no endpoint {endpoint!r}: register the widget blueprint first")
        methods = sorted({m for rule in app.url_map.iter_rules(endpoint) for m in rule.methods
                          if m in ("GET", "POST")})
        for value, counted_by in rules:
            limiter.limit(value, key_func=_KEY_FUNCS[counted_by], methods=methods,
                          exempt_when=partial(_elsewhere, endpoint))(blueprint)

    def too_many_requests(exc: RateLimitExceeded):
        retry_after = FALLBACK_RETRY_AFTER
        try:
            breached = limiter.current_limit
            if breached is not None:
                retry_after = max(1, math.ceil(breached.reset_at - time.time()))
        except Exception:  # noqa: BLE001 — storage gone between the check and now
            log.warning("could not read the rate-limit window; announcing %ss", retry_after)
        return error_response(429, "rate_limited",
                              f"Too many requests; try again in {retry_after} seconds.",
                              headers={"Retry-After": str(retry_after)})

    app.register_error_handler(RateLimitExceeded, too_many_requests)
    app.extensions[EXTENSION] = limiter
    return limiter
