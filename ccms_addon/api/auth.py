"""Bearer-token authentication of the merchant API: the shop comes only from the token."""

from __future__ import annotations

from flask import current_app, g, request
from flask_smorest import abort

from ccms_addon.store import repository


def require_shop() -> None:
    """``before_request`` of every merchant blueprint: sets ``g.shop_id`` or answers 401."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        abort(401, message="Send the shop's API token as 'Authorization: Bearer <token>'.",
              headers={"WWW-Authenticate": "Bearer"})
    runtime = current_app.extensions["ccms"]
    with runtime.db.session() as session:
        shop = repository.shop_for_token(session, token.strip())
    if shop is None:
        abort(401, message="The API token is not valid.", headers={"WWW-Authenticate": "Bearer"})
    g.shop_id = shop.id
