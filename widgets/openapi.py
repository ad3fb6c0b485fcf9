"""The OpenAPI document of the public widget API, served at ``/widget/v1/openapi.json``.

The widget routes stay plain Flask (their hot paths — ``config`` and the lookups — are tuned and
benchmarked), so this module describes them with apispec from the same marshmallow schemas the
views load and dump (``schemas.py``), plus every error the guard, the rate limiter and the views
answer. It is its own blueprint: nothing here runs on a widget request, and the document is built
once per process, on its first request. docs/widget-api.md is the prose of the same contract.
"""

from __future__ import annotations

import json
import threading

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Response

from ccms_addon import __version__
from ccms_addon.api import ErrorSchema
from ccms_addon.widgets.assets import CONTENT_TYPES
from ccms_addon.widgets.cors import WIDGET_HEADER
from ccms_addon.widgets.schemas import (ClaimCreateSchema, ClaimReceiptSchema, FormTokenSchema,
                                        OrderLookupSchema, RequestLookupSchema,
                                        RequestStatusSchema, ShopperOrderSchema,
                                        VocItemCreateSchema, VocReceiptSchema, WidgetConfigSchema)
from ccms_addon.widgets.shops import _WIDGET_KEY
from ccms_addon.widgets.views import MAX_WRITE_BODY, PREFIX

bp = Blueprint("widget_openapi", __name__)

PATH = "/widget/v1/openapi.json"
_JSON = "application/json"
_built: bytes | None = None
_lock = threading.Lock()

#: why each error status is answered (the ``code`` values in the error body)
ERRORS = {
    400: "`widget_header_required` (a write without the header), `invalid_json`, or `rejected` "
         "(the honeypot field `website` was filled)",
    403: "`origin_not_allowed`: a write from a page that is not one of the shop's storefronts",
    404: "`unknown_widget`: no active shop uses this widget key (or, for lookups and claims, "
         "`not_found`: the same answer for no such order/request and a wrong contact)",
    413: f"`body_too_large`: over {MAX_WRITE_BODY // 1024} KB",
    415: "`unsupported_media_type`: the body is not `application/json`",
    422: "`validation_error`: field errors under `fields.json` (the form token's too)",
    429: "`rate_limited`: per IP or per shop; wait `Retry-After` seconds",
    503: "`store_unavailable`: try again after `Retry-After` seconds",
}
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}


def _error(status: int) -> dict:
    response = {"description": ERRORS[status],
                "content": {_JSON: {"schema": {"$ref": "#/components/schemas/Error"}}}}
    if status in (429, 503):
        response["headers"] = _RETRY_AFTER
    return response


def _errors(*statuses: int) -> dict:
    return {str(status): _error(status) for status in statuses}


def _ok(schema: str, status: int = 200, wrap: str | None = None, **extra) -> dict:
    body: dict = {"$ref": f"#/components/schemas/{schema}"}
    if wrap:
        body = {"type": "object", "properties": {wrap: body}, "required": [wrap],
                "additionalProperties": False}
    return {str(status): {"description": "OK" if status == 200 else "Created",
                          "content": {_JSON: {"schema": body}}, **extra}}


def _write(summary: str, body: str, answer: dict, *, rate_limited: bool = True) -> dict:
    """A POST of the widget: the custom header, a JSON body, and the guard's errors."""
    return {"post": {
        "summary": summary,
        "parameters": [{"in": "header", "name": WIDGET_HEADER, "required": True,
                        "schema": {"type": "string", "enum": ["1"]},
                        "description": "forces a CORS preflight: no plain form can post"}],
        "requestBody": {"required": True, "content": {_JSON: {
            "schema": {"$ref": f"#/components/schemas/{body}"}}}},
        "responses": {**answer, **_errors(400, 403, 404, 413, 415, 422, 503,
                                          *((429,) if rate_limited else ()))}}}


def build_spec() -> dict:
    spec = APISpec(title="ccms-addon widget API", version=__version__, openapi_version="3.0.3",
                   plugins=[MarshmallowPlugin()], info={"description": (
                       "What a shopper's browser talks to; the widget key in the URL names the "
                       "shop. See docs/widget-api.md.")})
    for name, schema in [("Error", ErrorSchema), ("WidgetConfig", WidgetConfigSchema),
                         ("FormToken", FormTokenSchema), ("VocItemCreate", VocItemCreateSchema),
                         ("VocReceipt", VocReceiptSchema), ("OrderLookup", OrderLookupSchema),
                         ("ShopperOrder", ShopperOrderSchema),
                         ("RequestLookup", RequestLookupSchema),
                         ("RequestStatus", RequestStatusSchema),
                         ("ClaimCreate", ClaimCreateSchema), ("ClaimReceipt", ClaimReceiptSchema)]:
        spec.components.schema(name, schema=schema)
    key = {"in": "path", "name": "widget_key", "required": True,
           "schema": {"type": "string", "pattern": _WIDGET_KEY.pattern},
           "description": "the shop's public widget key"}
    base = PREFIX.replace("<widget_key>", "{widget_key}")
    etag = {"ETag": {"schema": {"type": "string"}},
            "Cache-Control": {"schema": {"type": "string"}}}

    spec.path(path=f"{base}/config", parameters=[key], operations={"get": {
        "summary": "The shop's public widget settings (cacheable, ETag)",
        "parameters": [{"in": "header", "name": "If-None-Match", "required": False,
                        "schema": {"type": "string"}}],
        "responses": {**_ok("WidgetConfig", headers=etag),
                      "304": {"description": "Not modified (the ETag matched)", "headers": etag},
                      **_errors(404, 503)}}})
    spec.path(path=f"{base}/token", parameters=[key], operations={"get": {
        "summary": "A signed form token (a write needs one at least 3 s old)",
        "responses": {**_ok("FormToken"), **_errors(404, 429, 503)}}})
    spec.path(path=f"{base}/voc", parameters=[key], operations=_write(
        "A complaint, question, idea or praise → its reference number", "VocItemCreate",
        _ok("VocReceipt", 201)))
    spec.path(path=f"{base}/orders/lookup", parameters=[key], operations=_write(
        "Where is my order: the exact number and the checkout contact", "OrderLookup",
        _ok("ShopperOrder", wrap="order")))
    spec.path(path=f"{base}/requests/lookup", parameters=[key], operations=_write(
        "My request: its status and the times it changed", "RequestLookup",
        _ok("RequestStatus", wrap="request")))
    spec.path(path=f"{base}/claims", parameters=[key], operations=_write(
        "A guarantee claim (free return, buyback) on an order named like a lookup",
        "ClaimCreate", _ok("ClaimReceipt", 201)))

    script = {CONTENT_TYPES["js"].split(";")[0]: {"schema": {"type": "string"}}}
    spec.path(path="/widget/v1/loader.js", operations={"get": {
        "summary": "The loader every storefront page embeds",
        "responses": {"200": {"description": "The script", "content": script, "headers": etag},
                      "304": {"description": "Not modified", "headers": etag}}}})
    assets = {kind.split(";")[0]: {"schema": {"type": "string"}}
              for kind in CONTENT_TYPES.values()}
    spec.path(path="/widget/v1/assets/{name}", operations={"get": {
        "summary": "The panel's content-hashed script, style and strings (immutable)",
        "parameters": [{"in": "path", "name": "name", "required": True,
                        "schema": {"type": "string"}}],
        "responses": {"200": {"description": "The file", "content": assets, "headers": etag},
                      "304": {"description": "Not modified", "headers": etag},
                      "404": {"description": "`not_found`: no such asset",
                              "content": {_JSON: {"schema": {
                                  "$ref": "#/components/schemas/Error"}}}}}}})
    return spec.to_dict()


@bp.get(PATH)
def openapi_json():
    global _built
    if _built is None:
        with _lock:
            if _built is None:
                _built = json.dumps(build_spec(), sort_keys=True).encode()
    return Response(_built, mimetype=_JSON, headers={"Cache-Control": "public, max-age=300"})
