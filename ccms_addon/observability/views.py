"""``GET /metrics``: the Prometheus text format (OpenMetrics when the scraper asks for it).

Who may scrape:

* with ``CCMS_METRICS_TOKEN`` set, whoever sends ``Authorization: Bearer <token>`` (compared in
  constant time), from anywhere; anyone else gets 401;
* without it, only a request made **directly** from a loopback or private address (RFC 1918,
  unique-local IPv6): one that carries ``X-Forwarded-For`` or ``Forwarded`` came through a proxy or
  load balancer — possibly from the internet, with the balancer's private address as its peer —
  and gets 403. So a Prometheus on the private network scrapes each instance with no set-up, and
  nothing reaches the figures through the public entrance.

The figures carry no personal data (counts by platform, status, queue), and each scrape costs the
store a few aggregate queries; the rule above is about the second more than the first.
"""

from __future__ import annotations

import hmac
import ipaddress

from flask import Blueprint, Response, current_app, request
from prometheus_client.exposition import choose_encoder

from ccms_addon.errors import error_response

bp = Blueprint("metrics", __name__)

#: ``app.config`` key of the bearer token (set from ``CCMS_METRICS_TOKEN`` by ``init_app``)
TOKEN_CONFIG = "CCMS_METRICS_TOKEN"
#: ``app.extensions`` key of the app's metrics registry
REGISTRY_EXTENSION = "ccms_metrics"
#: headers a proxy adds: their presence means the peer address is not the scraper's
PROXY_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP")
#: who may scrape without a token: loopback, RFC 1918 and unique-local IPv6 (not ``is_private``,
#: which also admits documentation and reserved ranges; not 100.64/10, shared by a carrier's NAT)
LOCAL_NETWORKS = tuple(ipaddress.ip_network(net) for net in (
    "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "::1/128", "fc00::/7"))


@bp.get("/metrics")
def metrics():
    denied = _refusal()
    if denied is not None:
        return denied
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    body = encoder(current_app.extensions[REGISTRY_EXTENSION])
    return Response(body, 200, {"Content-Type": content_type, "Cache-Control": "no-store"})


def _refusal() -> Response | None:
    token = current_app.config.get(TOKEN_CONFIG)
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                              token.encode()):
            return None
        return error_response(401, "unauthorized", "A valid bearer token is required.",
                              headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    if any(name in request.headers for name in PROXY_HEADERS) or not _local(request.remote_addr):
        return error_response(403, "forbidden",
                              "Metrics are served to the private network only; set "
                              "CCMS_METRICS_TOKEN to scrape from elsewhere.")
    return None


def _local(address: str | None) -> bool:
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    if getattr(ip, "ipv4_mapped", None):
        ip = ip.ipv4_mapped
    return any(ip in net for net in LOCAL_NETWORKS if net.version == ip.version)
