"""Operations endpoints: ``/healthz`` (the process is alive) and ``/readyz`` (store and queue answer)."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    runtime = current_app.extensions["ccms"]
    checks = {}
    try:
        with runtime.db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["store"] = "ok"
    except Exception as exc:  # noqa: BLE001 — report, do not raise
        checks["store"] = f"error: {type(exc).__name__}"
    try:
        runtime.redis.ping()
        checks["queue"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["queue"] = f"error: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return jsonify(status="ready" if ready else "unavailable", checks=checks), 200 if ready else 503
