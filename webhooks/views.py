"""``POST /webhooks/<platform>``: the answer a platform gets, in the order checks are made.

200 stored (or a copy of a stored delivery, or a ping) · 401 signature missing or wrong ·
404 unknown platform or shop · 400 not what the platform sends · 413 over 1 MiB ·
503 the store is unreachable, so the platform retries. Never 2xx for a delivery that was not stored.
"""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, jsonify, request
from sqlalchemy.exc import SQLAlchemyError

from ccms_addon.errors import error_response
from ccms_addon.platforms import PayloadInvalidError, WebhookRequest
from ccms_addon.webhooks.inbox import Inbox

bp = Blueprint("webhooks", __name__)
log = logging.getLogger(__name__)

#: seconds a platform is asked to wait before retrying after a 503
RETRY_AFTER_SECONDS = "5"


@bp.post("/webhooks/<platform>")
def receive(platform: str):
    runtime = current_app.extensions["ccms"]
    adapter = runtime.platforms.get(platform)
    if adapter is None:
        return error_response(404, "unknown_platform", f"No platform named {platform!r}.")
    incoming = WebhookRequest(request.headers, request.get_data(cache=False),
                              request.remote_addr)
    if adapter.is_ping(incoming):
        return jsonify(status="pong")
    try:
        domain = adapter.shop_domain(incoming)
    except PayloadInvalidError as exc:
        return error_response(400, "invalid_payload", str(exc))

    inbox: Inbox = current_app.extensions["ccms_inbox"]
    try:
        shop = inbox.shop(platform, domain)
    except SQLAlchemyError:
        log.exception("store unreachable while looking up a shop")
        return _unavailable()
    if shop is None:
        return error_response(404, "unknown_shop", "This shop has not installed the add-on.")
    settings = runtime.settings.platform_settings(platform)
    secrets = adapter.webhook_secrets(settings, shop.webhook_secret)
    if not (secrets and adapter.sender_allowed(incoming, settings)
            and adapter.verify(incoming, secrets)):
        return error_response(401, "invalid_signature", "The delivery's signature is missing or wrong.")
    try:
        delivery = adapter.delivery(incoming)
    except PayloadInvalidError as exc:
        return error_response(400, "invalid_payload", str(exc))
    try:
        created = inbox.store(platform, shop.shop_id, delivery, incoming.body)
    except SQLAlchemyError:
        log.exception("could not store a %s delivery", platform)
        return _unavailable()
    return jsonify(status="accepted" if created else "duplicate")


def _unavailable():
    return error_response(503, "store_unavailable", "The delivery could not be stored; retry later.",
                          headers={"Retry-After": RETRY_AFTER_SECONDS})
