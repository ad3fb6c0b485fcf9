"""Settings › API access: the owner issues the shop's merchant-API token.

A shop installed from an app store never saw the token made at install (only its digest is
kept), so this page is where its first usable token comes from, and where a leaked one is
replaced. The token is shown once, in the answer to the POST that made it, never cached, and the
previous token stops working with it.
"""

from __future__ import annotations

from flask import abort, request, url_for

from ccms_addon.store import repository
from ccms_addon.store.models import Shop

from .views import bp, page, requires, runtime, viewer


def _page(shop_id: int, *, new_token: str | None = None, status: int = 200):
    info = viewer().shop(shop_id)
    if info is None:
        abort(404)
    with runtime().db.session() as session:
        issued_at = (session.get(Shop, shop_id).settings or {}).get(repository.API_TOKEN_ISSUED_AT)
    response = page("settings_api.html", status, shop=info, issued_at=issued_at,
                    new_token=new_token,
                    api_base=request.host_url.rstrip("/") + "/api/v1",
                    openapi_url=url_for("api-docs.openapi_json", _external=True))
    response.headers["Cache-Control"] = "no-store"  # the token must not sit in a cache
    return response


@bp.get("/settings/<int:shop_id>/api")
@requires("admin")
def api_access_page(shop_id: int):
    return _page(shop_id)


@bp.post("/settings/<int:shop_id>/api")
@requires("admin")
def issue_api_token(shop_id: int):
    if viewer().shop(shop_id) is None:
        abort(404)
    with runtime().db.session() as session:
        token = repository.issue_api_token(session, session.get(Shop, shop_id))
    return _page(shop_id, new_token=token)
