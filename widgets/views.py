"""The public widget API (see docs/widget-api.md)."""

from flask import Blueprint

bp = Blueprint("widgets", __name__)
