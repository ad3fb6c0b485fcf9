"""The dashboard blueprint: signing in and out, the language, the inbox and its bulk actions, and
what every page shares (the viewer, the CSRF check, the headers, the error pages)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import wraps
from typing import Any
from urllib.parse import urlencode, urlsplit

from flask import (Blueprint, Response, abort, current_app, g, make_response, redirect,
                   render_template, request, url_for)
from marshmallow import ValidationError
from sqlalchemy import select
from werkzeug.exceptions import HTTPException

from ccms_addon.install import AdminAuthError, authenticate_admin
from ccms_addon.runtime import Runtime
from ccms_addon.staff import MIN_PASSWORD, authenticate, ensure_owner
from ccms_addon.store.models import (Shop, Staff, VocItem, VocKind, VocSeverity, VocStatus,
                                     utcnow)
from ccms_addon.voc.inbox import COUNT_LIMIT, BadCursor, InboxFilter, count_items, list_items
from ccms_addon.voc.service import VocActionError, VocDesk, actor_for, staff_can
from ccms_addon.voc.settings import voc_settings
from ccms_addon.widgets.settings import widget_settings

from . import auth
from .auth import EmbeddedShop, Viewer
from .i18n import LANGUAGE_NAMES, LOCALES, Translator, best_locale
from .schemas import (BULK_ACTIONS, BulkSchema, InboxQuerySchema, LocaleSchema, LoginSchema,
                      flat_errors, form_data, form_errors)

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard", template_folder="templates",
               static_folder="static", static_url_path="/static")

#: endpoints open without a sign-in
PUBLIC = {"dashboard.index", "dashboard.login", "dashboard.static"}
#: inbox rows per page
PAGE_SIZE = 50


# --------------------------------------------------------------------------------------------------
# What every request shares
# --------------------------------------------------------------------------------------------------


def runtime() -> Runtime:
    return current_app.extensions["ccms"]


def viewer() -> Viewer:
    return g.dash_viewer


def translator() -> Translator:
    return g.dash_t


@bp.before_request
def _sign_in_and_csrf():
    if request.endpoint == "dashboard.static":
        return None
    g.dash_viewer = auth.load_viewer(runtime())
    wanted = (g.dash_viewer.locale if g.dash_viewer is not None else
              request.args.get("lang") or request.accept_languages.best_match(LOCALES))
    g.dash_t = Translator(best_locale(wanted))
    if request.endpoint in PUBLIC:
        return None
    if g.dash_viewer is None:
        if request.method == "GET":
            return redirect(url_for(".login", next=request.full_path.rstrip("?")), 303)
        abort(401)
    if request.method == "POST" and not auth.csrf_valid(g.dash_viewer, request.form):
        abort(403, description="csrf")
    return None


@bp.after_request
def _headers(response: Response) -> Response:
    embedded = g.get("dash_embedded")
    if embedded is None and g.get("dash_viewer") is not None:
        embedded = g.dash_viewer.embedded
    response.headers["Content-Security-Policy"] = auth.content_security_policy(
        embedded, g.get("dash_csp_base", auth.BASE_CSP))
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Content-Type-Options"] = "nosniff"
    if request.endpoint != "dashboard.static":
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.errorhandler(HTTPException)
def _error_page(exc: HTTPException):
    t = g.get("dash_t") or Translator("en")
    code = exc.code or 500
    key = "error.csrf" if exc.description == "csrf" else f"error.http_{code}"
    return render_template("dashboard/error.html", status=code,
                           message=t.maybe(key, t("error.http_other"))), code


@bp.context_processor
def _template_globals() -> dict[str, Any]:
    current = g.get("dash_viewer")
    return {"t": g.get("dash_t") or Translator("en"), "viewer": current,
            "csrf_token": auth.csrf_token(current) if current is not None else "",
            "can": (lambda permission: current is not None and staff_can(current, permission)),
            "language_names": LANGUAGE_NAMES, "error_text": error_text}


def requires(permission: str) -> Callable:
    """Only staff whose role allows ``permission`` (``work``, ``report``, ``admin``)."""

    def decorate(view: Callable) -> Callable:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any):
            if not staff_can(viewer(), permission):
                abort(403)
            return view(*args, **kwargs)
        return wrapper

    return decorate


def safe_return(target: str | None, default: str) -> str:
    """``target`` when it is a path of the dashboard (never another site), else ``default``."""
    if not target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/dashboard") \
            or target.startswith("//") or "\\" in target:
        return default
    return target


#: marshmallow's default messages → catalog keys (the dashboard's own schemas use keys directly)
_MARSHMALLOW_MESSAGES = (
    ("Missing data for required field", "error.required"),
    ("Field may not be null", "error.required"),
    ("Not a valid integer", "error.integer"),
    ("Not a valid number", "error.number"),
    ("Not a valid email", "error.email"),
    ("Not a valid URL", "error.url"),
    ("Not a valid date", "error.date"),
    ("Not a valid boolean", "error.boolean"),
    ("Must be one of", "error.choice"),
    ("Unknown field", "error.unknown"),
    ("Shorter than minimum length", "error.length"),
    ("Longer than maximum length", "error.length"),
    ("Length must be", "error.length"),
    ("Must be greater than or equal to", "error.range"),
    ("Must be less than or equal to", "error.range"),
    ("String does not match expected pattern", "error.pattern"),
)


def error_text(message: str) -> str:
    """A validation message in the viewer's language when the catalog knows it (a message about
    a named field, ``name: message``, keeps the name)."""
    t = translator()
    name, sep, rest = message.partition(": ")
    if sep and " " not in name and rest:
        return f"{name}: {error_text(rest)}"
    if message.startswith(("form.error.", "action_error.")):
        return t(message, min=MIN_PASSWORD)
    for start, key in _MARSHMALLOW_MESSAGES:
        if message.startswith(start):
            return t(key)
    return message


def action_error(exc: VocActionError) -> dict[str, list[str]]:
    """A refused action as field errors, in the viewer's language when the code is known."""
    return {exc.field or "_schema": [translator().maybe(f"action_error.{exc.code}", str(exc))]}


def page(template: str, http_status: int = 200, **context: Any) -> Response:
    return make_response(render_template(f"dashboard/{template}", **context), http_status)


# --------------------------------------------------------------------------------------------------
# Signing in and out, the embedded launch, the language
# --------------------------------------------------------------------------------------------------


@bp.get("/")
def index():
    """The dashboard's address: the platform's admin opens it with its session token (the
    embedded launch); a person is sent to the inbox or to sign in."""
    if request.args.get("id_token") or request.headers.get("Authorization"):
        return _embedded_launch()
    if g.dash_viewer is None:
        return redirect(url_for(".login"), 303)
    return redirect(url_for(".inbox"), 303)


def _embedded_launch() -> Response:
    try:
        identity = authenticate_admin(request.args.get("platform") or None)
    except AdminAuthError as exc:
        t = translator()
        return page("error.html", exc.status, status=exc.status,
                    message=t.maybe(f"launch.{exc.code}", t("launch.failed")))
    rt = runtime()
    with rt.db.session() as session:
        shop = session.get(Shop, identity.shop_id)
        owner = ensure_owner(session, shop.merchant)
        session.flush()
        session.expunge(owner)
    embedded = EmbeddedShop(identity.platform, identity.shop_id, identity.shop_domain)
    g.dash_embedded = embedded
    response = redirect(url_for(".inbox"), 303)
    auth.issue_session(response, rt, owner, embedded=embedded)
    return response


@bp.route("/login", methods=["GET", "POST"])
def login():
    rt = runtime()
    t = translator()
    if request.method == "GET":
        if g.dash_viewer is not None:
            return redirect(url_for(".inbox"), 303)
        return _login_page(200, next_url=request.args.get("next"))
    if not auth.login_form_valid(request.form):
        return _login_page(403, errors={"_schema": [t("login.expired")]})
    try:
        data = LoginSchema().load(form_data(LoginSchema(), request.form))
    except ValidationError as exc:
        return _login_page(422, errors=form_errors(LoginSchema(), exc.messages),
                           values=request.form)
    ip = request.remote_addr or "unknown"
    throttle = auth.LoginThrottle(rt)
    wait = throttle.retry_after(data["email"], ip)
    if wait is not None:
        response = _login_page(429, errors={"_schema": [t("login.throttled", count=-(-wait // 60))]},
                               values=request.form)
        response.headers["Retry-After"] = str(wait)
        return response
    with rt.db.session() as session:
        staff = authenticate(session, data["email"], data["password"])
        if staff is not None:
            session.flush()
            session.expunge(staff)
    if staff is None:
        throttle.failed(data["email"], ip)
        return _login_page(401, errors={"_schema": [t("login.failed")]}, values=request.form)
    throttle.succeeded(data["email"], ip)
    response = redirect(safe_return(data.get("return_to"), url_for(".inbox")), 303)
    auth.issue_session(response, rt, staff)
    response.delete_cookie(auth.LOGIN_COOKIE, path=auth.COOKIE_PATH)
    return response


def _login_page(status: int, *, errors: Mapping | None = None, values: Mapping | None = None,
                next_url: str | None = None) -> Response:
    response = make_response("", status)
    token = auth.new_login_form(response, runtime())  # a fresh form, bound to a fresh cookie
    response.set_data(render_template(
        "dashboard/login.html", errors=errors or {}, values=values or {}, login_token=token,
        return_to=safe_return(next_url or (values or {}).get("return_to"), ""),
        lang=translator().locale))
    return response


@bp.post("/logout")
def logout():
    rt = runtime()
    auth.revoke(rt, viewer())
    response = redirect(url_for(".login"), 303)
    auth.clear_session(response, rt, viewer())
    return response


@bp.post("/locale")
def change_locale():
    try:
        data = LocaleSchema().load(form_data(LocaleSchema(), request.form))
    except ValidationError:
        abort(422)
    with runtime().db.session() as session:
        session.get(Staff, viewer().id).locale = data["locale"]
    return redirect(safe_return(data.get("return_to"), url_for(".inbox")), 303)


# --------------------------------------------------------------------------------------------------
# The inbox
# --------------------------------------------------------------------------------------------------


def staff_names(session, merchant_id: int) -> dict[int, str]:
    return dict(session.execute(select(Staff.id, Staff.name).where(
        Staff.merchant_id == merchant_id).order_by(Staff.name)).all())


def active_staff(session, merchant_id: int) -> list[tuple[int, str]]:
    return list(session.execute(select(Staff.id, Staff.name).where(
        Staff.merchant_id == merchant_id, Staff.active.is_(True)).order_by(Staff.name)).all())


def category_labels(current: Viewer, locale: str) -> dict[tuple[int, str], str]:
    """(shop id, category key) → the label the shop gave it in ``locale``."""
    labels: dict[tuple[int, str], str] = {}
    for shop in current.shops:
        try:
            categories = widget_settings(shop.settings)["categories"]
        except ValidationError:
            categories = []
        for category in categories:
            names = category["labels"]
            labels[(shop.id, category["key"])] = (names.get(locale) or names.get("en")
                                                  or next(iter(names.values()), category["key"]))
    return labels


def category_options(current: Viewer, locale: str) -> list[tuple[str, str]]:
    """Every category key the merchant's shops use (widget categories and rule categories)."""
    options = {key: label for (_, key), label in category_labels(current, locale).items()}
    for shop in current.shops:
        for rule in voc_settings(shop.settings)["rules"]:
            if rule.get("category"):
                options.setdefault(rule["category"], rule["category"])
    return sorted(options.items(), key=lambda pair: pair[1].casefold())


def channel_options(t: Translator) -> list[tuple[str, str]]:
    return [(name, channel.label(t.locale)) for name, channel in runtime().channels.items()]


def _inbox_filter(data: dict, current: Viewer) -> InboxFilter:
    assignee = data["assignee"]
    if assignee == "me":
        assignee = current.id
    elif assignee not in (None, "none"):
        assignee = int(assignee)
    return InboxFilter(statuses=data["status"], kinds=data["kind"], channels=data["channel"],
                       categories=data["category"], severities=data["severity"],
                       assignee=assignee, breached=data["breached"],
                       recurrence=data["recurrence"], q=data["q"], shop_id=data["shop"],
                       sort=data["sort"])


@bp.get("/inbox")
def inbox():
    """Every active person reads the inbox (a viewer too); changing needs ``work``."""
    current, t = viewer(), translator()
    schema = InboxQuerySchema()
    errors: dict[str, list[str]] = {}
    rows, next_cursor, total, data = [], None, 0, schema.load({})
    try:
        data = schema.load(form_data(schema, request.args))
        if data["shop"] is not None and current.shop(data["shop"]) is None:
            raise ValidationError({"shop": ["form.error.unknown_shop"]})
    except ValidationError as exc:
        errors = flat_errors(exc.messages)
    with runtime().db.session() as session:
        names = staff_names(session, current.merchant_id)
        staff_options = active_staff(session, current.merchant_id)
        if not errors:
            query = _inbox_filter(data, current)
            try:
                rows, next_cursor = list_items(session, current.shop_ids, query, limit=PAGE_SIZE,
                                               cursor=data["cursor"])
                if next_cursor is None and not data["cursor"]:
                    total = len(rows)  # one page holds them all: nothing more to count
                else:  # a capped count: a common word in a big shop must not read every item
                    counted = count_items(session, current.shop_ids, query, limit=COUNT_LIMIT)
                    total = f"{COUNT_LIMIT:,}+" if counted > COUNT_LIMIT else counted
            except BadCursor:
                errors = {"cursor": ["form.error.cursor"]}
    kept = [(k, v) for k, v in request.args.items(multi=True) if k != "cursor"]
    return page("inbox.html", 400 if errors else 200, rows=rows, total=total, errors=errors,
                now=utcnow(),
                filters=data, staff_names=names, staff_options=staff_options,
                next_url=("?" + urlencode(kept + [("cursor", next_cursor)])) if next_cursor else None,
                first_url=("?" + urlencode(kept)) if data.get("cursor") else None,
                export_url=url_for(".export_items") + ("?" + urlencode(kept) if kept else ""),
                return_to=request.full_path.rstrip("?"),
                statuses=[s.value for s in VocStatus], kinds=[k.value for k in VocKind],
                severities=[s.value for s in VocSeverity], channels=channel_options(t),
                categories=category_options(current, t.locale),
                category_labels=category_labels(current, t.locale),
                channel_labels=dict(channel_options(t)), bulk_actions=BULK_ACTIONS)


@bp.post("/inbox/bulk")
@requires("work")
def bulk():
    current = viewer()
    schema = BulkSchema()
    back = safe_return(request.form.get("return_to"), url_for(".inbox"))
    try:
        data = schema.load(form_data(schema, request.form))
    except ValidationError as exc:
        return page("bulk_result.html", 422, errors=form_errors(schema, exc.messages), results=[],
                    references={}, back=back)
    action, params = data["action"], {}
    if action == "assign":
        params["staff_id"] = None if data["assignee"] == "none" else int(data["assignee"])
    elif action == "note":
        params["text"] = data["note"]
    elif action in ("close_duplicate", "close_withdrawn"):
        action, params["resolution"] = "close", action.removeprefix("close_")
    try:
        results = VocDesk(runtime()).bulk(current.shop_ids, data["item_ids"], action,
                                          actor_for(current), **params)
    except VocActionError as exc:
        return page("bulk_result.html", exc.status, errors=action_error(exc), results=[],
                    references={}, back=back)
    with runtime().db.session() as session:
        references = dict(session.execute(select(VocItem.id, VocItem.reference).where(
            VocItem.id.in_(data["item_ids"]), VocItem.shop_id.in_(current.shop_ids))).all())
    return page("bulk_result.html", 200, errors={}, results=results, references=references,
                back=back, action=data["action"])
