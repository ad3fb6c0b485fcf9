"""The merchant dashboard: server-rendered pages under ``/dashboard``, standalone or inside a
platform's admin iframe, in Korean, English and Japanese.

- ``auth.py``     — the signed session cookie, the embedded launch's cookie, CSRF, failed sign-ins,
                    the Content-Security-Policy with the shop's ``frame-ancestors``
- ``views.py``    — the blueprint, sign-in/out, language, the inbox and its bulk actions
- ``items.py``    — an item's page and its actions (through ``VocDesk``)
- ``board.py``    — the owner's board (figures from ``ccms_addon.voc.metrics``), ``charts.py`` its
                    inline SVG
- ``reports.py``  — the CSV export and monthly report links (``ccms_addon.voc.reports``)
- ``admin.py``    — the owner's settings (widget, VOC handling) and staff
- ``api_access.py`` — the owner issues the shop's merchant-API token (shown once)
- ``schemas.py``  — the forms (marshmallow); ``i18n.py`` and ``i18n/*.json`` — the words

Roles (``VocDesk.staff_can``): an agent works the inbox and items; a manager also reads the board
and the reports; an owner also edits the settings and the staff. Shopper text is only ever
rendered through Jinja's autoescape (no ``|safe`` anywhere), under a policy that allows no inline
script or style.
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the dashboard blueprint with every page module's routes."""
    from . import admin, api_access, board, items, reports, views  # noqa: F401 — each adds its routes to bp
    app.register_blueprint(views.bp)
