"""``POST /webhooks/<platform>``: the answer a platform gets, in the order checks are made.

200 stored (or a copy of a stored delivery, or a ping) · 401 signature missing or wrong ·
404 unknown platform or shop · 400 not what the platform sends · 413 over 1 MiB ·
503 the store is unreachable, so the platform retries. Never 2xx for a delivery that was not stored.

This is the hottest path of the add-on (DESIGN.md §7: it should cost little beyond the HMAC check
and the durable insert), so the blueprint registers no hooks, the app runs none for it (rate limits
and CORS live on the widget blueprint, no cookie session is opened), and the answers are
prebuilt bytes rather than ``jsonify`` calls.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, request

from ccms_addon.errors import error_response
from ccms_addon.observability.metrics import (ACCEPTED, DUPLICATE, INVALID_PAYLOAD,
                                              INVALID_SIGNATURE, REJECTED, UNAVAILABLE,
                                              UNKNOWN_SHOP, count_delivery)
from ccms_addon.platforms import PayloadInvalidError, WebhookRequest
from ccms_addon.webhooks.inbox import Inbox, StoreUnavailable

bp = Blueprint("webhooks", __name__)
log = logging.getLogger(__name__)

#: seconds a platform is asked to wait before retrying after a 503
RETRY_AFTER_SECONDS = "5"
#: where the inbox is kept in ``app.extensions``
INBOX_EXTENSION = "ccms_inbox"

# the JSON ``jsonify(status=...)`` would produce, built once
_ACCEPTED = b'{"status":"accepted"}\n'
_DUPLICATE = b'{"status":"duplicate"}\n'
_PONG = b'{"status":"pong"}\n'


def _ok(body: bytes) -> Response:
    return Response(body, 200, mimetype="application/json")


@bp.post("/webhooks/<platform>")
def receive(platform: str):
    extensions = current_app.extensions
    runtime = extensions["ccms"]
    adapter = runtime.platforms.get(platform)
    if adapter is None:
        return error_response(404, "unknown_platform", f"No platform named {platform!r}.")
    incoming = WebhookRequest(request.headers, request.get_data(cache=False),
                              request.remote_addr)
    if adapter.is_ping(incoming):
        return _ok(_PONG)
    try:
        domain = adapter.shop_domain(incoming)
    except PayloadInvalidError as exc:
        count_delivery(platform, REJECTED, INVALID_PAYLOAD)
        return error_response(400, "invalid_payload", str(exc))

    inbox: Inbox = extensions[INBOX_EXTENSION]
    try:
        shop = inbox.shop(platform, domain)
    except StoreUnavailable:
        log.exception("store unreachable while looking up a shop")
        count_delivery(platform, UNAVAILABLE)
        return _unavailable()
    if shop is None:
        count_delivery(platform, REJECTED, UNKNOWN_SHOP)
        return error_response(404, "unknown_shop", "This shop has not installed the add-on.")
    settings = runtime.settings.platform_settings(platform)

    def authentic(identity) -> bool:
        secrets = adapter.webhook_secrets(settings, identity.webhook_secret)
        return bool(secrets and adapter.sender_allowed(incoming, settings)
                    and adapter.verify(incoming, secrets))

    if not authentic(shop):
        # the shop's secret may have changed since it was cached (a WooCommerce reconnect makes
        # new webhooks with new secrets): read it again, and verify again only if it differs
        try:
            again = inbox.shop(platform, domain, fresh=True)
        except StoreUnavailable:
            again = None
        if again is None or again.webhook_secret == shop.webhook_secret or not authentic(again):
            count_delivery(platform, REJECTED, INVALID_SIGNATURE)
            return error_response(401, "invalid_signature",
                                  "The delivery's signature is missing or wrong.")
        shop = again
    try:
        delivery = adapter.delivery(incoming)
    except PayloadInvalidError as exc:
        count_delivery(platform, REJECTED, INVALID_PAYLOAD)
        return error_response(400, "invalid_payload", str(exc))
    try:
        created = inbox.store(platform, shop.shop_id, delivery, incoming.body)
    except StoreUnavailable:
        log.exception("could not store a %s delivery", platform)
        count_delivery(platform, UNAVAILABLE)
        return _unavailable()
    # one increment per answer (ccms_addon.observability.metrics: a duplicate leaves no row)
    count_delivery(platform, ACCEPTED if created else DUPLICATE)
    return _ok(_ACCEPTED if created else _DUPLICATE)


def _unavailable():
    return error_response(503, "store_unavailable", "The delivery could not be stored; retry later.",
                          headers={"Retry-After": RETRY_AFTER_SECONDS})
