"""Who is looking at the dashboard, and what protects their session.

The app keeps no Flask session (``app._NoSession``): the dashboard signs its own cookie
(itsdangerous, salted, 12 hours) naming the staff member, a random nonce and a fingerprint of
their password hash, and reads the person back from the store on every request — a deactivated
person, a changed password or a shop that left the merchant takes effect at once. Signing out
records the nonce as revoked in Redis until the cookie would have expired.

Two ways in:

- **standalone**: email and password (``staff.authenticate``, the same cost for a wrong email
  and a wrong password), failures counted per address and per IP in Redis (429 past the limit);
  the cookie is HttpOnly, SameSite=Lax, Secure on https.
- **embedded** (the platform's admin iframe): the launch carries the platform's session token,
  verified by :func:`ccms_addon.install.authenticate_admin`; the shop's merchant's owner
  (``staff.ensure_owner``) is signed in with a cookie that is ``SameSite=None; Secure;
  Partitioned`` (a third-party iframe keeps only partitioned cookies) and remembers the shop, so
  every answer carries that shop's ``frame-ancestors``; standalone answers carry ``'self'``.

Every POST carries a CSRF token bound to the session's nonce (the login form: to a nonce in a
short-lived cookie of its own), compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta

import redis
from flask import Response, current_app, request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import select

from ccms_addon.install import AdminIdentity, frame_ancestors_directive, frame_sources
from ccms_addon.runtime import Runtime
from ccms_addon.store.models import Shop, ShopStatus, Staff, StaffRole

log = logging.getLogger(__name__)

#: the session cookie, and the login form's own cookie (login CSRF)
COOKIE = "ccms_dashboard"
LOGIN_COOKIE = "ccms_dashboard_login"
COOKIE_PATH = "/dashboard"
#: seconds a sign-in lasts
SESSION_MAX_AGE = 12 * 3600
#: seconds a login form may be submitted after it was shown
LOGIN_FORM_MAX_AGE = 3600
SESSION_SALT = "ccms-dashboard-session"
LOGIN_SALT = "ccms-dashboard-login"
#: the hidden field every POST form carries
CSRF_FIELD = "csrf_token"
#: failed sign-ins allowed per window before 429: (attempts, seconds) per email and per IP
LOGIN_FAILURE_LIMITS = {"email": (5, 900), "ip": (30, 900)}


@dataclass(frozen=True)
class ShopInfo:
    id: int
    domain: str
    name: str
    platform: str
    timezone: str
    settings: Mapping = field(default_factory=dict, compare=False)

    @property
    def label(self) -> str:
        return self.name or self.domain


@dataclass(frozen=True)
class EmbeddedShop:
    """The shop whose admin iframe the dashboard was opened in."""

    platform: str
    shop_id: int
    domain: str


@dataclass(frozen=True)
class Viewer:
    """The signed-in person with their merchant's active shops. ``id``, ``name`` and ``role``
    are those of :class:`Staff`, so ``actor_for`` and ``staff_can`` take a viewer as they are."""

    id: int
    name: str
    email: str
    role: StaffRole
    locale: str
    merchant_id: int
    shops: tuple[ShopInfo, ...]
    nonce: str
    embedded: EmbeddedShop | None = None
    has_password: bool = False

    @property
    def shop_ids(self) -> list[int]:
        return [shop.id for shop in self.shops]

    def shop(self, shop_id: int | None) -> ShopInfo | None:
        return next((shop for shop in self.shops if shop.id == shop_id), None)


# --------------------------------------------------------------------------------------------------
# The session cookie
# --------------------------------------------------------------------------------------------------


def _serializer(salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=salt)


def password_fingerprint(password_hash: str | None) -> str:
    """Changes when the password does: a new password ends the sessions signed in with the old."""
    return hashlib.sha256((password_hash or "").encode()).hexdigest()[:16]


def _secure(runtime: Runtime) -> bool:
    return request.is_secure or runtime.settings.public_url.startswith("https://")


def issue_session(response: Response, runtime: Runtime, staff: Staff, *,
                  embedded: EmbeddedShop | None = None) -> None:
    payload = {"s": staff.id, "n": secrets.token_urlsafe(18),
               "p": password_fingerprint(staff.password_hash)}
    if embedded is not None:
        payload["e"] = [embedded.platform, embedded.shop_id, embedded.domain]
    value = _serializer(SESSION_SALT).dumps(payload)
    if embedded is not None:  # a third-party iframe keeps a partitioned cookie only
        response.set_cookie(COOKIE, value, max_age=SESSION_MAX_AGE, path=COOKIE_PATH, secure=True,
                             httponly=True, samesite="None", partitioned=True)
    else:
        response.set_cookie(COOKIE, value, max_age=SESSION_MAX_AGE, path=COOKIE_PATH,
                            secure=_secure(runtime), httponly=True, samesite="Lax")


def clear_session(response: Response, runtime: Runtime, viewer: Viewer | None) -> None:
    if viewer is not None and viewer.embedded is not None:
        response.delete_cookie(COOKIE, path=COOKIE_PATH, secure=True, httponly=True,
                               samesite="None", partitioned=True)
    else:
        response.delete_cookie(COOKIE, path=COOKIE_PATH, secure=_secure(runtime), httponly=True,
                               samesite="Lax")


def _revoked_key(runtime: Runtime, nonce: str) -> str:
    return f"{runtime.settings.queue_prefix}ccms-dashboard:revoked:{nonce}"


def revoke(runtime: Runtime, viewer: Viewer) -> None:
    """Sign out: the cookie's nonce is refused until the cookie would have expired anyway."""
    try:
        runtime.redis.set(_revoked_key(runtime, viewer.nonce), b"1", ex=SESSION_MAX_AGE)
    except redis.RedisError:
        log.warning("dashboard: could not record a sign-out in Redis; the cookie is only cleared")


def _is_revoked(runtime: Runtime, nonce: str) -> bool:
    try:
        return bool(runtime.redis.exists(_revoked_key(runtime, nonce)))
    except redis.RedisError:
        log.warning("dashboard: Redis unreachable, sign-outs cannot be checked")
        return False


def _read_cookie() -> dict | None:
    value = request.cookies.get(COOKIE)
    if not value:
        return None
    try:
        data = _serializer(SESSION_SALT).loads(value, max_age=SESSION_MAX_AGE)
    except BadSignature:
        return None
    if not (isinstance(data, dict) and isinstance(data.get("s"), int)
            and isinstance(data.get("n"), str) and isinstance(data.get("p"), str)):
        return None
    return data


def load_viewer(runtime: Runtime) -> Viewer | None:
    """The person the request's cookie names, if it is valid and they may still sign in."""
    data = _read_cookie()
    if data is None:
        return None
    with runtime.db.session() as session:
        staff = session.get(Staff, data["s"])
        if (staff is None or not staff.active or not hmac.compare_digest(
                data["p"], password_fingerprint(staff.password_hash))):
            return None
        shops = tuple(ShopInfo(row.id, row.domain, row.name or "", row.platform,
                               row.timezone or "UTC", dict(row.settings or {}))
                      for row in session.execute(
                          select(Shop.id, Shop.domain, Shop.name, Shop.platform, Shop.timezone,
                                 Shop.settings)
                          .where(Shop.merchant_id == staff.merchant_id,
                                 Shop.status == ShopStatus.ACTIVE).order_by(Shop.id)))
        viewer = Viewer(id=staff.id, name=staff.name, email=staff.email, role=staff.role,
                        locale=staff.locale, merchant_id=staff.merchant_id, shops=shops,
                        nonce=data["n"], has_password=staff.password_hash is not None)
    embedded = data.get("e")
    if embedded is not None:
        if not (isinstance(embedded, list) and len(embedded) == 3
                and viewer.shop(embedded[1]) is not None):
            return None  # the shop was uninstalled or left the merchant
        viewer = replace(viewer, embedded=EmbeddedShop(*embedded))
    if _is_revoked(runtime, viewer.nonce):
        return None
    return viewer


# --------------------------------------------------------------------------------------------------
# CSRF
# --------------------------------------------------------------------------------------------------


def _token(purpose: str, nonce: str) -> str:
    key = current_app.config["SECRET_KEY"].encode()
    return hmac.new(key, f"ccms-dashboard-{purpose}|{nonce}".encode(), hashlib.sha256).hexdigest()


def csrf_token(viewer: Viewer) -> str:
    return _token("csrf", viewer.nonce)


def csrf_valid(viewer: Viewer, form: Mapping[str, str]) -> bool:
    given = form.get(CSRF_FIELD) or ""
    return hmac.compare_digest(given.encode(), csrf_token(viewer).encode())


def new_login_form(response: Response, runtime: Runtime) -> str:
    """Bind a login form to this browser: a nonce in a short-lived cookie, its token in the form
    (so nobody can sign a victim into the attacker's account from another site)."""
    nonce = secrets.token_urlsafe(18)
    response.set_cookie(LOGIN_COOKIE, _serializer(LOGIN_SALT).dumps(nonce),
                        max_age=LOGIN_FORM_MAX_AGE, path=COOKIE_PATH, secure=_secure(runtime),
                        httponly=True, samesite="Lax")
    return _token("login", nonce)


def login_form_valid(form: Mapping[str, str]) -> bool:
    value = request.cookies.get(LOGIN_COOKIE)
    if not value:
        return False
    try:
        nonce = _serializer(LOGIN_SALT).loads(value, max_age=LOGIN_FORM_MAX_AGE)
    except BadSignature:
        return False
    given = form.get(CSRF_FIELD) or ""
    return isinstance(nonce, str) and hmac.compare_digest(given.encode(),
                                                          _token("login", nonce).encode())


# --------------------------------------------------------------------------------------------------
# Failed sign-ins
# --------------------------------------------------------------------------------------------------


class LoginThrottle:
    """Failed sign-ins counted per email and per IP in fixed windows (Redis ``INCR`` +
    ``EXPIRE``); a successful sign-in clears the email's count. Redis unreachable: nothing is
    counted (the password check itself costs the same either way) and it is logged."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self.prefix = f"{runtime.settings.queue_prefix}ccms-dashboard:login-failures:"

    def _keys(self, email: str, ip: str) -> dict[str, str]:
        digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
        return {"email": self.prefix + "email:" + digest, "ip": self.prefix + "ip:" + ip}

    def retry_after(self, email: str, ip: str) -> int | None:
        """Seconds to wait when a limit is reached, else None."""
        keys = self._keys(email, ip)
        try:
            pipe = self.runtime.redis.pipeline()
            for key in keys.values():
                pipe.get(key)
                pipe.ttl(key)
            answers = pipe.execute()
        except redis.RedisError:
            log.warning("dashboard: Redis unreachable, failed sign-ins are not counted")
            return None
        waits = []
        for index, (name, (limit, window)) in enumerate(LOGIN_FAILURE_LIMITS.items()):
            count, ttl = answers[2 * index], answers[2 * index + 1]
            if count is not None and int(count) >= limit:
                waits.append(ttl if ttl and ttl > 0 else window)
        return max(waits) if waits else None

    def failed(self, email: str, ip: str) -> None:
        try:
            pipe = self.runtime.redis.pipeline()
            for name, key in self._keys(email, ip).items():
                pipe.incr(key)
                pipe.expire(key, timedelta(seconds=LOGIN_FAILURE_LIMITS[name][1]), nx=True)
            pipe.execute()
        except redis.RedisError:
            log.warning("dashboard: Redis unreachable, a failed sign-in was not counted")

    def succeeded(self, email: str, ip: str) -> None:
        try:
            self.runtime.redis.delete(self._keys(email, ip)["email"])
        except redis.RedisError:
            pass


# --------------------------------------------------------------------------------------------------
# Framing
# --------------------------------------------------------------------------------------------------

#: everything but the frame ancestors: own scripts and styles only, no inline code of any kind
BASE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
            "connect-src 'self'; form-action 'self'; base-uri 'none'")


def content_security_policy(embedded: EmbeddedShop | None, base: str = BASE_CSP) -> str:
    """The dashboard's policy: inside a platform's admin, that shop's admin origins may frame it
    (the adapter's ``frame_ancestors``, as the install pages do); standalone, only the dashboard
    itself."""
    if embedded is not None:
        identity = AdminIdentity(embedded.platform, embedded.shop_id, embedded.domain, "dashboard")
        return f"{base}; {frame_ancestors_directive(frame_sources(identity))}"
    return f"{base}; frame-ancestors 'self'"
