"""Orders of the calling shop. The shop comes only from the bearer token: an order of another shop
is answered 404, exactly like an order that does not exist."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime

from flask import current_app, g
from flask_smorest import Blueprint, abort
from marshmallow import RAISE

from ccms_addon.api.auth import require_shop
from ccms_addon.api.schemas import OrderListArgsSchema, OrderPageSchema, OrderSchema
from ccms_addon.store import repository

bp = Blueprint("orders", __name__, url_prefix="/api/v1", description="Orders synced from the shop's platform")


bp.before_request(require_shop)


def _encode_cursor(updated_at: datetime, order_id: int) -> str:
    return base64.urlsafe_b64encode(f"{updated_at.isoformat()}|{order_id}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        stamp, _, order_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return datetime.fromisoformat(stamp), int(order_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        abort(422, message="Invalid cursor.", messages={"query": {"cursor": ["Invalid cursor."]}})


@bp.get("/orders")
@bp.arguments(OrderListArgsSchema, location="query", unknown=RAISE)
@bp.response(200, OrderPageSchema)
@bp.alt_response(401, description="Missing or invalid token")
def list_orders(args):
    """Orders by the time the platform last updated them, oldest first, a page at a time."""
    after = _decode_cursor(args["cursor"]) if args.get("cursor") else None
    runtime = current_app.extensions["ccms"]
    limit = args["limit"]
    with runtime.db.session() as session:
        orders = repository.list_orders(session, g.shop_id, updated_since=args.get("updated_since"),
                                        after=after, limit=limit + 1)
    page, more = orders[:limit], len(orders) > limit
    return dict(orders=page, next_cursor=_encode_cursor(page[-1].platform_updated_at, page[-1].id)
                if more else None)


@bp.get("/orders/<platform_order_id>")
@bp.response(200, OrderSchema)
@bp.alt_response(404, description="No such order in this shop")
def get_order(platform_order_id: str):
    """One order by its id on the platform."""
    runtime = current_app.extensions["ccms"]
    with runtime.db.session() as session:
        order = repository.get_order(session, g.shop_id, platform_order_id)
    if order is None:
        abort(404, message="No such order.")
    return order
