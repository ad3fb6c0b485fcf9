"""The widget's built assets: the weight budget, freshness of the checked-in build, how they are
served (caching, precompression, 304, 404, CORS) and what the sources must never use."""

from __future__ import annotations

import gzip
import json
import re

import brotli
import pytest

from ccms_addon.widgets import build

LOADER_URL = "/widget/v1/loader.js"


@pytest.fixture(scope="module")
def built() -> dict[str, build.Asset]:
    return build.build_assets()


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads((build.STATIC / build.MANIFEST).read_text("utf-8"))


def asset_url(manifest: dict, name: str) -> str:
    return f"/widget/v1/assets/{manifest[name]['file']}"


# --------------------------------------------------------------------------------------------------
# Budget and freshness
# --------------------------------------------------------------------------------------------------


def test_weight_budget(built):
    report = build.budget_report(built)
    assert report["loader"] <= 3 * 1024
    assert report["before_interaction"] <= 3 * 1024
    assert report["panel_total"] == report["panel_js"] + report["panel_css"] + report["strings"]
    assert report["widget_total"] <= 20 * 1024


def test_budget_counts_the_largest_language(built):
    sizes = [len(built[f"{lang}.json"].gzipped) for lang in ("ko", "en", "ja")]
    assert build.budget_report(built)["strings"] == max(sizes)


def test_checked_in_build_is_fresh(built, manifest):
    """Sources changed without ``python -m ccms_addon.widgets.build`` fail here."""
    hint = "static/ is stale: run python -m ccms_addon.widgets.build"
    assert set(manifest) == set(built), hint
    expected_files = {build.MANIFEST}
    for name, asset in built.items():
        assert manifest[name]["file"] == asset.file, hint
        assert manifest[name]["sha256"] == asset.digest, hint
        assert manifest[name]["bytes"] == len(asset.body), hint
        path = build.STATIC / asset.file
        assert path.read_bytes() == asset.body, hint
        # compressed siblings are compared by content: zlib builds differ in their bytes
        gz = (build.STATIC / (asset.file + ".gz")).read_bytes()
        br = (build.STATIC / (asset.file + ".br")).read_bytes()
        assert gzip.decompress(gz) == brotli.decompress(br) == asset.body, hint
        expected_files |= {asset.file, asset.file + ".gz", asset.file + ".br"}
    assert {p.name for p in build.STATIC.iterdir()} == expected_files, "leftover files in static/"


def test_loader_carries_the_hashed_panel_names(built):
    loader = built["loader.js"].body.decode()
    assert "__CCMS_ASSETS__" not in loader
    for name in ("panel.js", "panel.css", "ko.json", "en.json", "ja.json"):
        assert f'"{built[name].file}"' in loader
        assert re.fullmatch(r"[a-z]+\.[0-9a-f]{10}\.(js|css|json)", built[name].file)


def test_strings_cover_the_same_keys_in_every_language(built):
    keys = [set(json.loads(built[f"{lang}.json"].body)) for lang in ("ko", "en", "ja")]
    assert keys[0] == keys[1] == keys[2]


# --------------------------------------------------------------------------------------------------
# Serving
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("accept,coding,decode", [
    ("gzip, deflate, br", "br", brotli.decompress),
    ("gzip", "gzip", gzip.decompress),
    ("", None, lambda body: body),
    ("br;q=0, gzip;q=1", "gzip", gzip.decompress),
])
def test_loader_precompressed_by_accept_encoding(client, built, accept, coding, decode):
    response = client.get(LOADER_URL, headers={"Accept-Encoding": accept})
    assert response.status_code == 200
    assert response.headers.get("Content-Encoding") == coding
    assert response.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert response.headers["Content-Length"] == str(len(response.data))
    assert "Accept-Encoding" in response.headers["Vary"]
    assert decode(response.data) == built["loader.js"].body


def test_loader_short_cache_etag_and_304(client):
    first = client.get(LOADER_URL, headers={"Accept-Encoding": "gzip"})
    assert first.headers["Cache-Control"] == "public, max-age=300"
    etag = first.headers["ETag"]
    again = client.get(LOADER_URL, headers={"Accept-Encoding": "gzip", "If-None-Match": etag})
    assert again.status_code == 304
    assert again.data == b""
    assert again.headers["ETag"] == etag
    # another coding is another representation: its tag differs, so no false 304
    other = client.get(LOADER_URL, headers={"Accept-Encoding": "br", "If-None-Match": etag})
    assert other.status_code == 200
    assert other.headers["ETag"] != etag


@pytest.mark.parametrize("name,content_type", [
    ("panel.js", "text/javascript; charset=utf-8"),
    ("panel.css", "text/css; charset=utf-8"),
    ("ko.json", "application/json; charset=utf-8"),
])
def test_hashed_assets_immutable(client, manifest, name, content_type):
    response = client.get(asset_url(manifest, name), headers={"Accept-Encoding": "br"})
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert response.headers["Content-Type"] == content_type
    assert response.headers["Content-Encoding"] == "br"
    assert int(response.headers["Content-Length"]) == manifest[name]["br"] == len(response.data)


def test_assets_are_public_cross_origin(client, manifest):
    for url in (LOADER_URL, asset_url(manifest, "panel.js")):
        response = client.get(url, headers={"Origin": "https://any-shop.example"})
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        assert response.headers["Cross-Origin-Resource-Policy"] == "cross-origin"
        assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_head_answers_headers_only(client, manifest):
    response = client.head(asset_url(manifest, "panel.css"), headers={"Accept-Encoding": "gzip"})
    assert response.status_code == 200
    assert response.data == b""
    assert int(response.headers["Content-Length"]) == manifest["panel.css"]["gzip"]


@pytest.mark.parametrize("path", [
    "/widget/v1/assets/panel.0000000000.js",  # an old or made-up hash
    "/widget/v1/assets/panel.js",             # the logical name is not served
    "/widget/v1/assets/loader.js",            # the loader lives at its one URL only
    "/widget/v1/assets/manifest.json",
    "/widget/v1/assets/../build.py",
    "/widget/v1/assets/%2e%2e/assets.py",
])
def test_unknown_assets_are_json_404(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


# --------------------------------------------------------------------------------------------------
# What the sources must never use
# --------------------------------------------------------------------------------------------------

#: code from strings, or HTML from strings: either would let shopper text become markup or script
FORBIDDEN = {
    "eval": r"\beval\s*\(",
    "new Function": r"\bnew\s+Function\b|\bFunction\s*\(",
    "innerHTML": r"\binnerHTML\b",
    "outerHTML": r"\bouterHTML\b",
    "insertAdjacentHTML": r"\binsertAdjacentHTML\b",
    "document.write": r"\bdocument\s*\.\s*write(ln)?\b",
    "string timers": r"\bset(Timeout|Interval)\s*\(\s*['\"`]",
    "style attribute (blocked by a strict CSP)": r"setAttribute\(\s*['\"]style['\"]",
}
#: globals a storefront may have replaced before the widget runs (see the browser tests)
PAGE_OWNED = {
    "Array.prototype methods":
        r"\.(map|forEach|push|filter|reduce|indexOf|includes|join|some|every|find)\(",
    "JSON global": r"\bJSON\.",
    "Object.assign": r"\bObject\.assign\b",
    # the array iterator (rest parameters are fine: they build the array without it)
    "for...of or array spread": r"\bfor\s*\(\s*(const|let|var)\s+\w+\s+of\b|\[\s*\.\.\.",
}


def _scripts(built) -> dict[str, str]:
    """The minified scripts: what ships, without the comments that name what they avoid."""
    return {name: asset.body.decode() for name, asset in built.items() if name.endswith(".js")}


@pytest.mark.parametrize("label,pattern", list(FORBIDDEN.items()))
def test_sources_never_build_code_or_markup_from_strings(built, label, pattern):
    for name, code in _scripts(built).items():
        assert not re.search(pattern, code), f"{name} uses {label}"


@pytest.mark.parametrize("label,pattern", list(PAGE_OWNED.items()))
def test_sources_do_not_rely_on_what_the_page_may_replace(built, label, pattern):
    for name, code in _scripts(built).items():
        assert not re.search(pattern, code), f"{name} relies on {label}"
