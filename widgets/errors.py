"""The widget API's one exception: raised from the guard, the CORS preflight or a route, and
answered in the project's one error shape by the handler in ``views.py``."""

from __future__ import annotations


class WidgetRequestError(Exception):
    """An answer in the project's one error shape, raised from anywhere in a request."""

    def __init__(self, status: int, code: str, message: str, fields: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.fields = status, code, message, fields
