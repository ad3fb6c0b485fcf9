"""The widget's static assets: the loader and the content-hashed panel files."""

from flask import Blueprint

bp = Blueprint("widget_assets", __name__)
