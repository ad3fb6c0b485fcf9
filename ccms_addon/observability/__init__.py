"""Operations: Prometheus metrics (``metrics.py``, ``views.py``) and structured logs (``logs.py``).

``init_app(app)`` is the one call the app factory makes; the worker and the CLI call
:func:`configure_logging` from their entry point.
"""

from __future__ import annotations

import logging
import os

from flask import Flask

from ccms_addon.observability.logs import configure_logging

__all__ = ["configure_logging", "init_app"]


def init_app(app: Flask) -> None:
    """Serve ``/metrics`` (its token from ``CCMS_METRICS_TOKEN`` unless the app's config has one)
    and, when nothing configured logging yet (gunicorn importing ``ccms_addon.wsgi``), install the
    add-on's log handler."""
    from ccms_addon.observability import views
    from ccms_addon.observability.metrics import build_registry
    app.config.setdefault(views.TOKEN_CONFIG, os.environ.get("CCMS_METRICS_TOKEN") or None)
    app.extensions[views.REGISTRY_EXTENSION] = build_registry(app.extensions["ccms"])
    app.register_blueprint(views.bp)
    if not logging.getLogger().handlers:
        configure_logging()
