"""The merchant's widget settings: what the storefront widget shows and how it looks."""

from __future__ import annotations

from flask import current_app, g
from flask_smorest import Blueprint
from marshmallow import RAISE

from ccms_addon.api.auth import require_shop
from ccms_addon.store.models import Shop
from ccms_addon.widgets.settings import WidgetSettingsSchema, widget_settings

bp = Blueprint("widget_settings", __name__, url_prefix="/api/v1/widget",
               description="The storefront contact widget's settings")
bp.before_request(require_shop)


@bp.get("/settings")
@bp.response(200, WidgetSettingsSchema)
def get_settings():
    """The shop's widget settings, defaults filled in."""
    runtime = current_app.extensions["ccms"]
    with runtime.db.session() as session:
        return widget_settings(session.get(Shop, g.shop_id).settings)


@bp.put("/settings")
@bp.arguments(WidgetSettingsSchema, unknown=RAISE)
@bp.response(200, WidgetSettingsSchema)
def put_settings(new_settings: dict):
    """Replace the widget settings (a field left out takes its default)."""
    runtime = current_app.extensions["ccms"]
    stored = WidgetSettingsSchema().dump(new_settings)
    with runtime.db.session() as session:
        shop = session.get(Shop, g.shop_id)
        shop.settings = {**(shop.settings or {}), "widget": stored}
    return new_settings
