"""Installing the add-on from a platform's app store, and the admin's authentication.

The flow is the same for every platform; what differs is the adapter's (``install_*``,
``complete_install``, ``register_webhooks``, ``verify_session_token``, ``frame_ancestors`` in
:class:`ccms_addon.platforms.PlatformAdapter`):

1. ``GET /install/<platform>`` — the adapter validates the request (Shopify's ``hmac``, the shop's
   form) and names the shop. The core makes a nonce, signs ``{platform, shop, nonce}`` into the
   ``state`` (itsdangerous, 10 minutes) and binds the nonce to the browser in a signed, HttpOnly,
   SameSite=Lax cookie, then sends the browser to the adapter's ``install_url``.
2. ``GET|POST /install/<platform>/callback`` — the state the platform echoed must carry the core's
   signature, be younger than 10 minutes and name this platform; a GET (the browser, redirected
   back) must also bring the cookie with the same nonce. A POST is the platform's own request
   (WooCommerce posting its keys): it has no cookie, and the adapter checks the keys against the
   shop. The adapter completes the authorisation; the core stores the shop — a new row, or the
   same row made active again with the new credentials on a reinstall (widget key, settings and
   data kept) — registers its webhooks and injects the widget, then lands the merchant: where
   the adapter says (Shopify's embedded admin) or on ``/admin/`` with a short-lived receipt.
3. ``/admin/`` and ``/admin/<platform>`` — a tiny page saying the shop is connected (the dashboard
   is a later issue). :func:`admin_required` authenticates a request of the embedded admin with
   the platform's session token (``Authorization: Bearer …`` or Shopify's ``id_token``) and sends
   a per-shop ``Content-Security-Policy: frame-ancestors`` with every HTML answer.

Bad input is a 4xx page (JSON for a POST or a JSON client), never a 5xx; a platform that cannot be
reached is a 502. Webhook or widget set-up that fails because the platform is busy (a 429 storm)
does not fail the install: the shop is connected, the problem is recorded in
``Shop.settings["install"]`` and :func:`finish_install_job` retries it through RQ.

Register the blueprint with :func:`init_app`.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from flask import (Blueprint, Flask, Response, current_app, g, make_response, redirect,
                   render_template_string, request)
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ccms_addon.errors import error_response
from ccms_addon.platforms import (InstallError, InstallRequest, InstallResult, PlatformAdapter,
                                  PlatformError, PlatformUnavailableError, SessionTokenError,
                                  SessionTokenUnsupportedError, ShopContext, WebhookRegistration,
                                  WidgetInjection)
from ccms_addon.runtime import Runtime
from ccms_addon.store.models import Shop, ShopStatus, utcnow

log = logging.getLogger(__name__)

bp = Blueprint("install", __name__)

#: seconds a pending install (its state and browser cookie) stays valid
STATE_MAX_AGE = 600
#: seconds the ``/admin/?installed=`` receipt shows the connected shop
RECEIPT_MAX_AGE = 600
#: itsdangerous salts: the state the platform echoes, the browser's cookie, the landing receipt
STATE_SALT = "ccms-install-state"
COOKIE_SALT = "ccms-install-browser"
RECEIPT_SALT = "ccms-install-receipt"
#: the browser cookie of a pending install, one per platform: ``ccms_install_<platform>``
COOKIE_PREFIX = "ccms_install_"
#: the key of ``Shop.settings`` the outcome of the set-up is kept under
SETTINGS_KEY = "install"
#: RQ job finishing a set-up: the safety net after a platform posted credentials (seconds), and
#: the retries when the platform was busy
FINISH_JOB = "ccms_addon.install.finish_install_job"
FINISH_SAFETY_DELAY = 120
FINISH_RETRY_DELAY = 60
FINISH_RETRY_INTERVALS = (60, 300, 900, 3600, 3600)
#: a CSP source an adapter may name for ``frame-ancestors`` (an origin, nothing else)
_ORIGIN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:/")


def init_app(app: Flask) -> None:
    """Register the install and admin routes."""
    app.register_blueprint(bp)


# --------------------------------------------------------------------------------------------------
# Pages
# --------------------------------------------------------------------------------------------------

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{{ title }}</title></head>
<body><main><h1>{{ title }}</h1>{% for line in lines %}<p>{{ line }}</p>{% endfor %}</main></body>
</html>
"""


def _page(status: int, title: str, lines: list[str], *, frame_sources: list[str] | None = None
          ) -> Response:
    """A small server-rendered page (autoescaped: nothing shown can become markup)."""
    response = make_response(render_template_string(_PAGE, title=title, lines=lines), status)
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; base-uri 'none'; form-action 'none'; "
        + frame_ancestors_directive(frame_sources or []))
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


def _refuse(status: int, code: str, message: str) -> Response:
    """The error answer: JSON for a platform's POST or a client asking for JSON, else a page."""
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    if request.method == "POST" or best == "application/json":
        response = error_response(status, code, message)
        response.headers["Cache-Control"] = "no-store"
        return response
    return _page(status, "The add-on could not be installed" if request.path.startswith("/install")
                 else "Not signed in", [message])


def frame_ancestors_directive(sources: list[str]) -> str:
    """``frame-ancestors <origins>``, or ``'none'``; anything that is not a plain origin is dropped."""
    clean = [s for s in sources if s and set(s) <= _ORIGIN_CHARS and s.startswith("https://")]
    return "frame-ancestors " + (" ".join(clean) if clean else "'none'")


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def _runtime() -> Runtime:
    return current_app.extensions["ccms"]


def _settings(runtime: Runtime, adapter: PlatformAdapter) -> Mapping[str, str]:
    return runtime.settings.platform_settings(adapter.name)


def _install_request() -> InstallRequest:
    body = request.get_data(cache=True) if request.method == "POST" else b""
    return InstallRequest(method=request.method, query=tuple(request.args.items(multi=True)),
                          body=body, headers=request.headers)


def _serializer(salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=salt)


def callback_url(runtime: Runtime, platform: str) -> str:
    """``{CCMS_PUBLIC_URL}/install/<platform>/callback``: the redirect URI to configure."""
    return f"{runtime.settings.public_url.rstrip('/')}/install/{platform}/callback"


def webhook_url(runtime: Runtime, platform: str) -> str:
    """``{CCMS_PUBLIC_URL}/webhooks/<platform>``: where deliveries are subscribed to."""
    return f"{runtime.settings.public_url.rstrip('/')}/webhooks/{platform}"


@dataclass(frozen=True)
class PendingInstall:
    platform: str
    shop: str
    nonce: str
    #: when the install was started (the state's signature time)
    started_at: datetime


def _read_state(token: str, platform: str) -> PendingInstall:
    try:
        data, signed_at = _serializer(STATE_SALT).loads(token, max_age=STATE_MAX_AGE,
                                                        return_timestamp=True)
    except SignatureExpired:
        raise InstallError("This install link has expired: start the install again.",
                           status=403, code="state_expired") from None
    except BadSignature:
        raise InstallError("The install state is not one this add-on issued.", status=403,
                           code="state_invalid") from None
    if (not isinstance(data, dict) or data.get("p") != platform
            or not isinstance(data.get("s"), str) or not isinstance(data.get("n"), str)):
        raise InstallError("The install state is not for this platform.", status=403,
                           code="state_invalid")
    return PendingInstall(platform, data["s"], data["n"], signed_at)


def _browser_nonce(platform: str) -> str | None:
    value = request.cookies.get(COOKIE_PREFIX + platform)
    if not value:
        return None
    try:
        data = _serializer(COOKIE_SALT).loads(value, max_age=STATE_MAX_AGE)
    except BadSignature:
        return None
    if not isinstance(data, dict) or data.get("p") != platform or not isinstance(data.get("n"), str):
        return None
    return data["n"]


def _cookie_secure(runtime: Runtime) -> bool:
    return runtime.settings.public_url.startswith("https://")


def _active_shop(runtime: Runtime, platform: str, domain: str) -> Shop | None:
    with runtime.db.session() as session:
        shop = session.scalar(select(Shop).where(Shop.platform == platform, Shop.domain == domain))
        if shop is None or shop.status is not ShopStatus.ACTIVE or not shop.credentials_encrypted:
            return None
        session.expunge(shop)
        return shop


def _platform_error(exc: PlatformError) -> Response:
    if isinstance(exc, InstallError):
        return _refuse(exc.status, exc.code, str(exc))
    log.warning("install: platform error %s", type(exc).__name__)
    return _refuse(502, "platform_unavailable",
                   f"The platform could not be reached or answered unexpectedly ({exc}). Try "
                   "again in a moment.")


# --------------------------------------------------------------------------------------------------
# 1. Start
# --------------------------------------------------------------------------------------------------


@bp.get("/install/<platform>")
def start(platform: str):
    runtime = _runtime()
    adapter = runtime.platforms.get(platform)
    if adapter is None:
        return _refuse(404, "unknown_platform", f"No platform named {platform!r}.")
    settings = _settings(runtime, adapter)
    try:
        shop = adapter.install_shop(_install_request(), settings)
        nonce = secrets.token_urlsafe(24)
        state = _serializer(STATE_SALT).dumps({"p": platform, "s": shop, "n": nonce})
        target = adapter.install_url(shop, state=state, callback_url=callback_url(runtime, platform),
                                     settings=settings)
    except PlatformError as exc:
        return _platform_error(exc)
    response = redirect(target, 302)
    response.set_cookie(COOKIE_PREFIX + platform,
                        _serializer(COOKIE_SALT).dumps({"p": platform, "n": nonce}),
                        max_age=STATE_MAX_AGE, path="/install/", secure=_cookie_secure(runtime),
                        httponly=True, samesite="Lax")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


# --------------------------------------------------------------------------------------------------
# 2. Callback
# --------------------------------------------------------------------------------------------------


@bp.route("/install/<platform>/callback", methods=["GET", "POST"])
def callback(platform: str):
    runtime = _runtime()
    adapter = runtime.platforms.get(platform)
    if adapter is None:
        return _refuse(404, "unknown_platform", f"No platform named {platform!r}.")
    settings = _settings(runtime, adapter)
    incoming = _install_request()
    token = adapter.install_state(incoming)
    if not token:
        return _refuse(400, "state_missing", "The request carries no install state: start the "
                                             "install again from your store.")
    try:
        pending = _read_state(token, platform)
        if request.method == "GET":
            nonce = _browser_nonce(platform)
            if nonce is None or not hmac.compare_digest(nonce.encode(), pending.nonce.encode()):
                raise InstallError("This install was started in another browser, or its cookie "
                                   "expired: start the install again.", status=403,
                                   code="state_not_bound")
        result = adapter.complete_install(pending.shop, incoming,
                                          callback_url=callback_url(runtime, platform),
                                          settings=settings)
    except PlatformError as exc:
        return _platform_error(exc)

    if result is None:  # the platform delivered the credentials in a request of its own
        shop = _active_shop(runtime, platform, pending.shop)
        # ... for this pending install: not keys stored before it was started
        if shop is None or shop.installed_at < pending.started_at - timedelta(seconds=1):
            return _refuse(409, "not_installed", "Your store did not send its keys to the add-on: "
                                                 "start the install again.")
        outcome = finish_install(runtime, shop.id)
        return _land(runtime, platform, shop.id, None, outcome)

    if result.shop_domain != pending.shop:
        return _refuse(400, "shop_mismatch", "The platform answered for another shop.")
    shop_id = store_install(runtime, platform, result)
    log.info("install: %s shop %s authorised", platform, shop_id)
    if request.method == "POST":
        # the platform waits for this answer; the browser's return does the set-up, and a job
        # does it should the browser never come back
        schedule_finish(runtime, shop_id, FINISH_SAFETY_DELAY)
        return Response(b'{"status":"installed"}\n', 200, mimetype="application/json")
    outcome = finish_install(runtime, shop_id)
    return _land(runtime, platform, shop_id, result.landing_url, outcome)


def _land(runtime: Runtime, platform: str, shop_id: int, landing_url: str | None,
          outcome: "SetupOutcome") -> Response:
    if outcome.retry:
        schedule_finish(runtime, shop_id, FINISH_RETRY_DELAY)
    if landing_url is None:
        receipt = _serializer(RECEIPT_SALT).dumps({"p": platform, "i": shop_id})
        landing_url = "/admin/?" + urlencode({"installed": receipt})
    response = redirect(landing_url, 302)
    response.delete_cookie(COOKIE_PREFIX + platform, path="/install/",
                           secure=_cookie_secure(runtime), httponly=True, samesite="Lax")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


# --------------------------------------------------------------------------------------------------
# Storing the shop (install and reinstall)
# --------------------------------------------------------------------------------------------------


def store_install(runtime: Runtime, platform: str, result: InstallResult) -> int:
    """Store an authorised shop and return its id: a new row, or — a reinstall — the same row,
    active again, with the new credentials (and webhook secret, if the platform gave one) in place
    of the revoked ones; its widget key, settings and data are kept."""
    from ccms_addon.store.repository import create_shop
    box = runtime.box
    for attempt in (1, 2):
        try:
            with runtime.db.session() as session:
                shop = session.scalar(select(Shop).where(
                    Shop.platform == platform, Shop.domain == result.shop_domain
                ).with_for_update())
                if shop is None:
                    shop = create_shop(session, box, platform=platform, domain=result.shop_domain,
                                       name=result.shop_name, webhook_secret=result.webhook_secret,
                                       credentials=dict(result.credentials),
                                       settings=dict(result.settings)).shop
                    return shop.id
                shop.status = ShopStatus.ACTIVE
                shop.uninstalled_at = None
                shop.installed_at = utcnow()
                shop.credentials_encrypted = box.encrypt_json(dict(result.credentials))
                if result.webhook_secret:
                    shop.webhook_secret_encrypted = box.encrypt(result.webhook_secret)
                if result.shop_name:
                    shop.name = result.shop_name
                shop.settings = {**(shop.settings or {}), **dict(result.settings)}
                return shop.id
        except IntegrityError:  # the same shop created by a concurrent callback: update it
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


class ShopCredentials:
    """:class:`ccms_addon.platforms.CredentialsStore` of one shop: its encrypted credentials row.

    ``Runtime.shop_context`` should hand one to every :class:`ShopContext`
    (``credentials_store=ShopCredentials(self, shop.id)``) so a refreshed token survives the job.
    """

    def __init__(self, runtime: Runtime, shop_id: int) -> None:
        self.runtime = runtime
        self.shop_id = shop_id

    def load(self) -> Mapping[str, Any]:
        with self.runtime.db.session() as session:
            shop = session.get(Shop, self.shop_id)
            if (shop is None or shop.status is not ShopStatus.ACTIVE
                    or not shop.credentials_encrypted):
                return {}
            return self.runtime.box.decrypt_json(shop.credentials_encrypted)

    def save(self, credentials: Mapping[str, Any]) -> None:
        with self.runtime.db.session() as session:
            shop = session.get(Shop, self.shop_id, with_for_update=True)
            if shop is None or shop.status is not ShopStatus.ACTIVE:
                return  # uninstalled meanwhile: its credentials stay revoked
            shop.credentials_encrypted = self.runtime.box.encrypt_json(dict(credentials))


def shop_context(runtime: Runtime, shop: Shop, adapter: PlatformAdapter) -> ShopContext:
    """``runtime.shop_context`` with the shop's :class:`ShopCredentials` attached."""
    return replace(runtime.shop_context(shop, adapter),
                   credentials_store=ShopCredentials(runtime, shop.id))


# --------------------------------------------------------------------------------------------------
# Finishing the set-up: webhooks and widget
# --------------------------------------------------------------------------------------------------


@dataclass
class SetupOutcome:
    """What registering the webhooks and injecting the widget came to."""

    webhooks: WebhookRegistration | None = None
    widget: WidgetInjection | None = None
    problems: list[str] = field(default_factory=list)
    #: a problem the platform may not have tomorrow (429, 5xx, unreachable): retried by a job
    retry: bool = False


def finish_install(runtime: Runtime, shop_id: int) -> SetupOutcome:
    """Register the shop's webhooks and inject the widget, and record the outcome in
    ``Shop.settings["install"]``. Idempotent (both adapter calls are); never raises for a platform
    error: the outcome says what is missing and whether it is worth a retry."""
    from ccms_addon.widget_install import WidgetInstallError, install_widget
    outcome = SetupOutcome()
    with runtime.db.session() as session:
        shop = session.get(Shop, shop_id)
        if shop is None or shop.status is not ShopStatus.ACTIVE:
            outcome.problems.append("The shop is not installed.")
            return outcome
        adapter = runtime.platforms.get(shop.platform)
        if adapter is None:
            outcome.problems.append(f"No adapter named {shop.platform!r} is installed.")
            return outcome
        context = shop_context(runtime, shop, adapter)
        secret = (runtime.box.decrypt(shop.webhook_secret_encrypted)
                  if shop.webhook_secret_encrypted else None)
    url = webhook_url(runtime, adapter.name)
    try:
        outcome.webhooks = adapter.register_webhooks(context, url, secret)
    except PlatformUnavailableError as exc:
        outcome.problems.append(f"Webhooks are not registered yet: {exc}")
        outcome.retry = True
    except PlatformError as exc:
        outcome.problems.append(f"Webhooks could not be registered: {exc}")
    try:
        outcome.widget = install_widget(runtime, shop_id)
    except PlatformUnavailableError as exc:
        outcome.problems.append(f"The widget is not installed yet: {exc}")
        outcome.retry = True
    except (PlatformError, WidgetInstallError) as exc:
        outcome.problems.append(f"The widget could not be installed: {exc}")
    record = {"webhook_url": url, "complete": not outcome.problems,
              "problems": outcome.problems, "checked_at": datetime.now(timezone.utc).isoformat()}
    if outcome.webhooks is not None:
        record.update(webhooks=list(outcome.webhooks.topics), webhooks_detail=outcome.webhooks.detail)
    with runtime.db.session() as session:
        shop = session.get(Shop, shop_id, with_for_update=True)
        if shop is not None:
            previous = (shop.settings or {}).get(SETTINGS_KEY) or {}
            if outcome.webhooks is None and previous.get("webhooks"):
                record.setdefault("webhooks", previous["webhooks"])
                record.setdefault("webhooks_detail", previous.get("webhooks_detail", ""))
            shop.settings = {**(shop.settings or {}), SETTINGS_KEY: record}
    if outcome.problems:
        log.warning("install: shop %s set-up incomplete (%d problem(s), retry=%s)", shop_id,
                    len(outcome.problems), outcome.retry)
    return outcome


def finish_install_job(shop_id: int) -> str:
    """RQ job: finish a shop's set-up; raises while the platform is busy, so RQ retries it."""
    from ccms_addon.runtime import current
    outcome = finish_install(current(), shop_id)
    if outcome.retry:
        raise PlatformUnavailableError(f"shop {shop_id}: set-up incomplete, retrying later")
    return "complete" if not outcome.problems else "incomplete"


def finish_job_id(shop_id: int) -> str:
    from ccms_addon.queue import shop_job_id
    return shop_job_id(shop_id, "install")


def schedule_finish(runtime: Runtime, shop_id: int, delay: float) -> bool:
    """Queue :func:`finish_install_job` in ``delay`` seconds (with retries); False when Redis could
    not be reached (the merchant can reinstall, which finishes the set-up again)."""
    from rq import Retry

    from ccms_addon.queue import DELIVERIES_QUEUE, queue
    try:
        queue(DELIVERIES_QUEUE, runtime.redis, runtime.settings).enqueue_in(
            timedelta(seconds=delay), FINISH_JOB, shop_id, job_id=finish_job_id(shop_id),
            retry=Retry(max=len(FINISH_RETRY_INTERVALS), interval=list(FINISH_RETRY_INTERVALS)),
            result_ttl=86400, failure_ttl=7 * 86400)
        return True
    except Exception:  # noqa: BLE001 — Redis down must not fail the install
        log.warning("install: could not queue the set-up of shop %s", shop_id)
        return False


# --------------------------------------------------------------------------------------------------
# 3. The admin: authentication, frame-ancestors, the "connected" page
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AdminIdentity:
    """Who an admin request is for: a shop, proven by a session token or an install receipt."""

    platform: str
    shop_id: int
    shop_domain: str
    via: str  # "session_token" or "install_receipt"


class AdminAuthError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def _bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def authenticate_admin(platform: str | None = None, *, allow_receipt: bool = False
                       ) -> AdminIdentity:
    """The shop an admin request is for, from the platform's session token (the
    ``Authorization: Bearer`` header, or the ``id_token`` Shopify adds when it loads the app URL),
    or — with ``allow_receipt`` — the install receipt of ``?installed=``. The tenant comes only
    from what was verified, never from a parameter. :class:`AdminAuthError` otherwise."""
    runtime = _runtime()
    if platform is not None and platform not in runtime.platforms:
        raise AdminAuthError(404, "unknown_platform", f"No platform named {platform!r}.")
    token = _bearer_token() or request.args.get("id_token")
    if token:
        adapters = ([runtime.platforms[platform]] if platform is not None
                    else list(runtime.platforms.values()))
        reason = "This session token is not accepted."
        for adapter in adapters:
            try:
                domain = adapter.verify_session_token(token, _settings(runtime, adapter))
            except SessionTokenUnsupportedError:
                continue
            except SessionTokenError as exc:
                reason = f"The session token is not valid: {exc}."
                continue
            shop = _active_shop(runtime, adapter.name, domain)
            if shop is None:
                raise AdminAuthError(401, "not_installed", "This shop has not installed the "
                                                          "add-on: install it from the app store.")
            return AdminIdentity(adapter.name, shop.id, shop.domain, "session_token")
        raise AdminAuthError(401, "invalid_session_token", reason)
    receipt = request.args.get("installed") if allow_receipt else None
    if receipt:
        try:
            data = _serializer(RECEIPT_SALT).loads(receipt, max_age=RECEIPT_MAX_AGE)
        except SignatureExpired:
            raise AdminAuthError(401, "receipt_expired",
                                 "This page has expired: open the add-on from your store's "
                                 "admin.") from None
        except BadSignature:
            raise AdminAuthError(401, "receipt_invalid", "This link is not valid.") from None
        if isinstance(data, dict) and isinstance(data.get("i"), int) and data.get("p") in \
                runtime.platforms and (platform is None or data["p"] == platform):
            with runtime.db.session() as session:
                shop = session.get(Shop, data["i"])
                if (shop is not None and shop.platform == data["p"]
                        and shop.status is ShopStatus.ACTIVE):
                    return AdminIdentity(shop.platform, shop.id, shop.domain, "install_receipt")
        raise AdminAuthError(401, "not_installed", "This shop is not installed.")
    raise AdminAuthError(401, "unauthenticated", "Open the add-on from your store's admin.")


def frame_sources(identity: AdminIdentity | None) -> list[str]:
    """The origins allowed to frame this shop's admin pages (``[]``: none)."""
    if identity is None:
        return []
    adapter = _runtime().platforms.get(identity.platform)
    return list(adapter.frame_ancestors(identity.shop_domain)) if adapter else []


def with_frame_ancestors(response: Response, identity: AdminIdentity | None) -> Response:
    """Add the shop's ``frame-ancestors`` to an HTML answer's Content-Security-Policy (set one when
    there is none; leave a policy that already names its frame ancestors alone)."""
    if response.mimetype != "text/html":
        return response
    directive = frame_ancestors_directive(frame_sources(identity))
    existing = response.headers.get("Content-Security-Policy")
    if not existing:
        response.headers["Content-Security-Policy"] = directive
    elif "frame-ancestors" not in existing:
        response.headers["Content-Security-Policy"] = f"{existing.rstrip('; ')}; {directive}"
    return response


def current_admin() -> AdminIdentity:
    """The identity :func:`admin_required` verified for this request."""
    return g.ccms_admin


def admin_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a view of the embedded admin: the request must carry a valid session token of a
    shop that has the add-on installed (401 otherwise); :func:`current_admin` names the shop, and
    every HTML answer carries that shop's ``frame-ancestors``. A ``platform`` URL argument, when
    the route has one, restricts which platform's tokens are tried."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            g.ccms_admin = authenticate_admin(kwargs.get("platform"))
        except AdminAuthError as exc:
            return _refuse(exc.status, exc.code, str(exc))
        return with_frame_ancestors(make_response(view(*args, **kwargs)), g.ccms_admin)

    return wrapper


@bp.get("/admin/")
@bp.get("/admin/<platform>")
def admin_home(platform: str | None = None):
    """The landing page: the shop is connected, and what (if anything) is left to do."""
    try:
        identity = authenticate_admin(platform, allow_receipt=True)
    except AdminAuthError as exc:
        if (exc.code == "unauthenticated" and platform is not None
                and request.args.get("shop") and request.args.get("hmac")):
            # the platform's signed launch of a shop that has not installed the add-on (Shopify
            # sends the app store's install request to the app URL): start the install
            return redirect(f"/install/{platform}?{request.query_string.decode('latin-1')}", 302)
        return _refuse(exc.status, exc.code, str(exc))
    runtime = _runtime()
    with runtime.db.session() as session:
        shop = session.get(Shop, identity.shop_id)
        settings = dict(shop.settings or {}) if shop is not None else {}
    record = settings.get(SETTINGS_KEY) or {}
    widget = settings.get("widget_injection") or {}
    lines = [f"{identity.shop_domain} is connected to the customer-care add-on."]
    if record.get("webhooks"):
        lines.append(f"Receiving {len(record['webhooks'])} kinds of store events.")
    if widget.get("detail"):
        lines.append(str(widget["detail"]))
    for problem in record.get("problems") or []:
        lines.append(f"Still to do: {problem} It is retried automatically.")
    return _page(200, "Connected", lines, frame_sources=frame_sources(identity))


__all__ = ["AdminAuthError", "AdminIdentity", "SetupOutcome", "ShopCredentials", "admin_required",
           "authenticate_admin", "bp", "callback_url", "current_admin", "finish_install",
           "finish_install_job", "frame_ancestors_directive", "init_app", "schedule_finish",
           "shop_context", "store_install", "webhook_url", "with_frame_ancestors"]
