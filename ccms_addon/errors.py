"""One JSON error shape for every surface: ``{"error": {"code", "message", "fields"?}}``.

Validation errors become 422 with field errors keyed by location (flask-smorest's habit); any
HTTPException keeps its status; anything unexpected is logged and answered 500 without a stack trace.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

#: the bytes ``jsonify`` writes (Flask's defaults: ASCII, sorted keys, compact), without building
#: an encoder and going through the app's JSON provider for every error answer (some are on hot
#: paths: a webhook's 401, a widget lookup's 404)
_ENCODER = json.JSONEncoder(ensure_ascii=True, sort_keys=True, separators=(",", ":"))


def error_response(status: int, code: str, message: str, fields: dict[str, Any] | None = None,
                   headers: dict[str, str] | None = None):
    body: dict[str, Any] = {"code": code, "message": message}
    if fields:
        body["fields"] = fields
    try:
        response = Response(_ENCODER.encode({"error": body}) + "\n", status,
                            mimetype="application/json")
    except TypeError:  # a field message that is not plain JSON: the app's provider knows more
        response = jsonify(error=body)
        response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def init_app(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        fields = None
        data = getattr(exc, "data", None)  # flask-smorest / webargs put validation messages here
        if isinstance(data, dict) and "messages" in data:
            fields = data["messages"]
        code = (exc.name or "error").lower().replace(" ", "_")
        return error_response(exc.code or 500, code, exc.description or exc.name, fields)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error")
        return error_response(500, "internal_error", "Something went wrong on our side.")
