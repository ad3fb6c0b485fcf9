"""The widget's static assets: the loader and the content-hashed panel files.

Served from the files ``build.py`` wrote to ``static/`` (read once, at first use), each with its
precompressed brotli or gzip sibling chosen by Accept-Encoding. The loader's URL is the one
merchants embed, so it is cached briefly and revalidated by ETag; the hashed panel files never
change under their name, so they are cached for a year. They are public: any page may load them.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

from flask import Blueprint, Response, request

from ccms_addon.errors import error_response

bp = Blueprint("widget_assets", __name__)

STATIC = Path(__file__).parent / "static"
LOADER = "loader.js"
#: the loader's URL never changes: short caching, revalidated by ETag
LOADER_CACHE = "public, max-age=300"
#: hashed names never change content
HASHED_CACHE = "public, max-age=31536000, immutable"
CONTENT_TYPES = {
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "json": "application/json; charset=utf-8",
}
#: preferred first: brotli is smaller than gzip
ENCODINGS = (("br", ".br"), ("gzip", ".gz"))


@dataclass(frozen=True)
class StaticFile:
    content_type: str
    etag: str  # of the uncompressed bytes, unquoted
    bodies: dict[str, bytes]  # content coding ("identity", "gzip", "br") → bytes


_files: dict[str, StaticFile] | None = None
_lock = threading.Lock()


def _load(directory: Path = STATIC) -> dict[str, StaticFile]:
    """Every file the manifest names, by served name, with its compressed siblings."""
    manifest = json.loads((directory / "manifest.json").read_text("utf-8"))
    files = {}
    for entry in manifest.values():
        name = entry["file"]
        bodies = {"identity": (directory / name).read_bytes()}
        for coding, suffix in ENCODINGS:
            sibling = directory / (name + suffix)
            if sibling.exists():
                bodies[coding] = sibling.read_bytes()
        files[name] = StaticFile(CONTENT_TYPES[name.rsplit(".", 1)[1]],
                                 entry["sha256"][:32], bodies)
    return files


def _static_files() -> dict[str, StaticFile]:
    global _files
    if _files is None:
        with _lock:
            if _files is None:
                _files = _load()
    return _files


def _coding(available: dict[str, bytes]) -> str:
    accepted = request.accept_encodings
    for coding, _ in ENCODINGS:
        if coding in available and accepted[coding] > 0:
            return coding
    return "identity"


def _serve(name: str, cache_control: str) -> Response:
    file = _static_files().get(name)
    if file is None:
        return error_response(404, "not_found", "No such widget asset.")
    coding = _coding(file.bodies)
    # each coding is its own representation, so it gets its own tag (as Apache's -gzip suffix)
    etag = file.etag if coding == "identity" else f"{file.etag}-{coding}"
    headers = {
        "Cache-Control": cache_control,
        "ETag": f'"{etag}"',
        "Vary": "Accept-Encoding",
        "Access-Control-Allow-Origin": "*",
        "Cross-Origin-Resource-Policy": "cross-origin",
        "X-Content-Type-Options": "nosniff",
    }
    if request.if_none_match.contains_weak(etag):
        return Response(status=304, headers=headers)
    body = file.bodies[coding]
    if coding != "identity":
        headers["Content-Encoding"] = coding
    headers["Content-Length"] = str(len(body))
    return Response(body, status=200, headers=headers, content_type=file.content_type)


@bp.get("/widget/v1/loader.js")
def loader():
    return _serve(LOADER, LOADER_CACHE)


@bp.get("/widget/v1/assets/<path:name>")
def asset(name: str):
    if name == LOADER:  # only the hashed panel files live here
        return error_response(404, "not_found", "No such widget asset.")
    return _serve(name, HASHED_CACHE)
