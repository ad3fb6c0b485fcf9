"""The merchant JSON API (``/api/v1``), token-scoped to one shop, documented by OpenAPI at
``/api/v1/openapi.json``."""

from __future__ import annotations

from flask import Flask
from flask_smorest import Api

from ccms_addon import __version__
from ccms_addon.errors import error_response


class MerchantApi(Api):
    """flask-smorest's Api answering errors in the project's one JSON shape."""

    def handle_http_exception(self, error):
        data = getattr(error, "data", None) or {}
        fields = data.get("messages")
        code = (error.name or "error").lower().replace(" ", "_")
        headers = dict(data.get("headers") or {})
        return error_response(error.code or 500, code, error.description or error.name,
                              fields, headers)


def init_app(app: Flask) -> Api:
    app.config.update(
        API_TITLE="ccms-addon merchant API",
        API_VERSION=__version__,
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api/v1",
        OPENAPI_JSON_PATH="openapi.json",
    )
    api = MerchantApi(app, spec_kwargs={"components": {"securitySchemes": {
        "bearerAuth": {"type": "http", "scheme": "bearer"}}}, "security": [{"bearerAuth": []}]})
    from ccms_addon.api.views import bp as orders_bp
    from ccms_addon.api.widget import bp as widget_bp
    api.register_blueprint(orders_bp)
    api.register_blueprint(widget_bp)
    from ccms_addon.api.programs import bp as programs_bp
    api.register_blueprint(programs_bp)
    return api
