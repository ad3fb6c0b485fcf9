"""The merchant JSON API (``/api/v1``), token-scoped to one shop, documented by OpenAPI at
``/api/v1/openapi.json``.

The document lists every answer an operation gives: each error in the project's one shape
(:class:`ErrorSchema`), 401 on every operation (the bearer token), 400 where a body is read (not
JSON), 422 wherever input is validated, and
no catch-all ``default`` response — so a status the document does not name is a bug that the
schemathesis run (tests/api/test_schemathesis.py) reports.
"""

from __future__ import annotations

from apispec import BasePlugin
from flask import Flask
from flask_smorest import Api
from marshmallow import Schema, fields
from werkzeug.routing import IntegerConverter

from ccms_addon import __version__
from ccms_addon.errors import error_response


class ErrorDetailSchema(Schema):
    code = fields.String(required=True, metadata={"description": "a stable name of the error, "
                                                                 "e.g. `not_found`"})
    message = fields.String(required=True, metadata={"description": "for people"})
    fields_ = fields.Dict(data_key="fields", metadata={
        "description": "field errors by location (`json`, `query`, `headers`) and field name"})


class ErrorSchema(Schema):
    """Every error answer: ``{"error": {"code", "message", "fields"?}}`` (``ccms_addon.errors``)."""

    error = fields.Nested(ErrorDetailSchema, required=True)


class _ErrorsDocumented(BasePlugin):
    """Every merchant operation may answer 401 (no or a wrong token), one that reads a body 400
    (not JSON); an error response given only a description gets the error schema as content."""

    def operation_helper(self, path=None, operations=None, **kwargs) -> None:
        for operation in (operations or {}).values():
            responses = operation.setdefault("responses", {})
            responses.setdefault("401", "UNAUTHORIZED")
            if "requestBody" in operation:  # a body that is not JSON at all
                responses.setdefault("400", "BAD_REQUEST")
            for status, response in responses.items():
                if (isinstance(response, dict) and str(status)[:1] in ("4", "5")
                        and "content" not in response):
                    response["content"] = {"application/json": {
                        "schema": {"$ref": "#/components/schemas/Error"}}}


class IdConverter(IntegerConverter):
    """``<id:name>``: a row id of at most 18 digits, so it always fits the store's BIGINT; a longer
    one matches no route (404) instead of overflowing in the database."""

    regex = r"[0-9]{1,18}"


class MerchantApi(Api):
    """flask-smorest's Api answering errors in the project's one JSON shape."""

    ERROR_SCHEMA = ErrorSchema
    #: every answer is named per operation (no catch-all): see the module
    DEFAULT_ERROR_RESPONSE_NAME = None

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
    app.url_map.converters["id"] = IdConverter
    api = MerchantApi(app, spec_kwargs={
        "extra_plugins": [_ErrorsDocumented()],
        "components": {"securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearerAuth": []}]})
    api.register_converter(IdConverter, lambda _: {"type": "integer", "minimum": 0,
                                                   "maximum": 10**18 - 1})
    from ccms_addon.api.views import bp as orders_bp
    from ccms_addon.api.widget import bp as widget_bp
    api.register_blueprint(orders_bp)
    api.register_blueprint(widget_bp)
    from ccms_addon.api.programs import bp as programs_bp
    api.register_blueprint(programs_bp)
    from ccms_addon.api.voc import bp as voc_bp
    from ccms_addon.api.voc_reports import bp as voc_reports_bp
    api.register_blueprint(voc_bp)
    api.register_blueprint(voc_reports_bp)
    return api
