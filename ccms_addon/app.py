"""The application factory: the one place blueprints are registered."""

from __future__ import annotations

import logging

from flask import Flask
from flask.sessions import SessionInterface

from ccms_addon import errors
from ccms_addon.config import MAX_WEBHOOK_BODY, Settings
from ccms_addon.runtime import Runtime, build_runtime


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None,
               widget_limits: dict | None = None) -> Flask:
    """Build the web app. Pass ``runtime`` to share one (tests, the demo); otherwise it is built
    from ``settings`` or the ``CCMS_*`` environment. ``widget_limits`` replaces entries of the
    widget API's rate limits (``widgets.ratelimit.DEFAULT_LIMITS``)."""
    runtime = runtime or build_runtime(settings)
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=runtime.settings.secret_key,
        MAX_CONTENT_LENGTH=MAX_WEBHOOK_BODY,
        JSON_SORT_KEYS=False,
    )
    app.extensions["ccms"] = runtime
    app.session_interface = _NoSession()
    errors.init_app(app)

    from ccms_addon.webhooks import bp as webhooks_bp
    from ccms_addon.webhooks.inbox import Inbox
    from ccms_addon.webhooks.views import INBOX_EXTENSION
    app.extensions[INBOX_EXTENSION] = Inbox(runtime)
    app.register_blueprint(webhooks_bp)

    from ccms_addon.widgets import assets as widget_assets
    from ccms_addon.widgets import views as widget_views
    from ccms_addon.widgets import ratelimit
    app.register_blueprint(widget_assets.bp)
    app.register_blueprint(widget_views.bp)
    from ccms_addon.widgets import openapi as widget_openapi  # its own blueprint: no hot-path cost
    app.register_blueprint(widget_openapi.bp)
    ratelimit.init_app(app, widget_limits)
    if runtime.settings.trusted_proxies:
        # behind a load balancer the shopper's address is in X-Forwarded-For (rate limits need it)
        from werkzeug.middleware.proxy_fix import ProxyFix
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=runtime.settings.trusted_proxies,
                                x_proto=runtime.settings.trusted_proxies)

    if runtime.settings.demo:
        from ccms_addon.demo import DEMO_SHOPS
        from ccms_addon.widgets import demo as demo_storefront
        app.config["CCMS_DEMO_SHOPS"] = DEMO_SHOPS
        app.register_blueprint(demo_storefront.bp)

    from ccms_addon.api import init_app as init_api
    init_api(app)

    from ccms_addon import health
    app.register_blueprint(health.bp)
    from ccms_addon import observability
    observability.init_app(app)  # /metrics; logging when nothing configured it (gunicorn)

    from ccms_addon.programs import pages as follow_up_pages
    app.register_blueprint(follow_up_pages.bp)
    from ccms_addon.voc import pages as satisfaction_pages
    app.register_blueprint(satisfaction_pages.bp)

    from ccms_addon.install import init_app as init_install
    init_install(app)
    from ccms_addon.dashboard import init_app as init_dashboard
    init_dashboard(app)

    logging.getLogger("ccms_addon").setLevel(logging.INFO)
    return app


class _NoSession(SessionInterface):
    """The add-on keeps no cookie session: the merchant API takes bearer tokens, the widget API
    signed form tokens. Flask would otherwise build a signing serializer and parse cookies for
    every request (webhooks included) and hand out a session nobody reads."""

    def open_session(self, app, request):  # noqa: ANN001
        return None  # Flask then uses a NullSession, which refuses writes

    def save_session(self, app, session, response) -> None:  # noqa: ANN001
        return None
