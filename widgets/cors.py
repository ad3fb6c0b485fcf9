"""CORS for the widget API: which origins may call a shop's widget API, the preflight answer, and
the headers every answer carries. ``views.py`` registers :func:`add_cors_headers` on the
blueprint and calls :func:`preflight` from its guard.

Only a shop's own storefronts (and the add-on's own pages) are allowed.
"""

from __future__ import annotations

from flask import Response, g, request
from sqlalchemy.exc import SQLAlchemyError

from ccms_addon.widgets.errors import WidgetRequestError
from ccms_addon.widgets.shops import current_runtime, current_shops, origin_of

#: seconds browsers may keep a preflight's answer
PREFLIGHT_MAX_AGE = 600
#: the header every write must carry (it forces a CORS preflight: no plain cross-site form can post)
WIDGET_HEADER = "X-CCMS-Widget"
ALLOWED_REQUEST_HEADERS = ("content-type", WIDGET_HEADER.lower())
EXPOSED_HEADERS = "ETag, Retry-After"
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff",
                    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'"}


def same_origin(origin: str) -> bool:
    """Pages served by the add-on itself (the demo storefronts) post same-origin."""
    mine = origin_of(origin)
    return mine is not None and mine in (origin_of(current_runtime().settings.public_url),
                                         origin_of(request.host_url))


def preflight(origin: str | None, allowed: bool):
    method = request.headers.get("Access-Control-Request-Method", "")
    wanted = {h.strip().lower() for h in
              request.headers.get("Access-Control-Request-Headers", "").split(",") if h.strip()}
    if not origin or not allowed:
        raise WidgetRequestError(403, "origin_not_allowed",
                                 "This page's origin is not one of the shop's storefronts.")
    if method not in ("GET", "POST") or not wanted <= set(ALLOWED_REQUEST_HEADERS):
        raise WidgetRequestError(403, "preflight_refused",
                                 "Only GET and POST with Content-Type and X-CCMS-Widget "
                                 "are allowed.")
    response = Response(status=204)
    del response.headers["Content-Type"]
    response.headers["Access-Control-Allow-Methods"] = "GET, POST"
    response.headers["Access-Control-Allow-Headers"] = "Content-Type, X-CCMS-Widget"
    response.headers["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE)
    return response


def add_cors_headers(response: Response) -> Response:
    """``after_request``: security headers always; CORS headers for an allowed origin. Cheap when
    the answer already carries them (the config's prebuilt headers)."""
    headers = response.headers
    vary = headers.get("Vary")
    if vary is None:
        headers["Vary"] = "Origin"
    elif "origin" not in {v.strip().lower() for v in vary.split(",")}:
        response.vary.add("Origin")
    for name, value in SECURITY_HEADERS.items():
        if name not in headers:
            headers[name] = value
    origin = request.environ.get("HTTP_ORIGIN")
    if not origin:
        return response
    if "widget_shop" in g:
        shop = g.widget_shop
    else:  # answered before the guard ran (a rate limit)
        try:
            shop = current_shops().get((request.view_args or {}).get("widget_key", ""))
        except SQLAlchemyError:
            shop = None
    if shop is not None and shop.active and (shop.allows(origin) or same_origin(origin)):
        headers["Access-Control-Allow-Origin"] = origin
        headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
    return response
