"""WSGI entry point for gunicorn: ``gunicorn 'ccms_addon.wsgi:app'``."""

from ccms_addon.app import create_app

app = create_app()
