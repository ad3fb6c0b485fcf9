"""Build the widget's static assets: ``python -m ccms_addon.widgets.build``.

Minifies ``src/`` (rjsmin, rcssmin) and ``i18n/``, content-hashes the panel's files
(``panel.<hash>.js``, ``panel.<hash>.css``, ``<lang>.<hash>.json``), writes into the loader the
names it must fetch, and writes everything to ``static/`` with ``.gz`` and ``.br`` siblings plus
``static/manifest.json`` (logical name → file, sizes, digest). The output is checked in; a test
fails when it is stale, so run this after editing anything in ``src/`` or ``i18n/``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import brotli
import rcssmin
import rjsmin

from ccms_addon.widgets.settings import LOCALES

HERE = Path(__file__).parent
SRC = HERE / "src"
I18N = HERE / "i18n"
STATIC = HERE / "static"
MANIFEST = "manifest.json"
#: the token in loader.js that the build replaces with the panel's file names
ASSETS_TOKEN = "'__CCMS_ASSETS__'"
#: hex digits of the content hash in file names
HASH_LENGTH = 10

#: the budget, gzipped bytes (issue 3, DESIGN.md §7)
LOADER_BUDGET = 3 * 1024
PANEL_BUDGET = 20 * 1024


@dataclass(frozen=True)
class Asset:
    """One built file: its logical name (``panel.js``), file name on disk and minified bytes."""

    name: str
    file: str
    body: bytes

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.body).hexdigest()

    @property
    def gzipped(self) -> bytes:
        # mtime=0: the same input always gives the same bytes
        return gzip.compress(self.body, compresslevel=9, mtime=0)

    @property
    def brotli(self) -> bytes:
        return brotli.compress(self.body, quality=11)


def _hashed(name: str, body: bytes) -> Asset:
    stem, ext = name.rsplit(".", 1)
    return Asset(name, f"{stem}.{hashlib.sha256(body).hexdigest()[:HASH_LENGTH]}.{ext}", body)


def build_assets() -> dict[str, Asset]:
    """Every asset, built in memory from the sources: logical name → Asset."""
    script = rjsmin.jsmin((SRC / "panel.js").read_text("utf-8"))
    style = rcssmin.cssmin((SRC / "panel.css").read_text("utf-8"))
    assets = {"panel.js": _hashed("panel.js", script.encode()),
              "panel.css": _hashed("panel.css", style.encode())}
    for lang in LOCALES:
        strings = json.loads((I18N / f"{lang}.json").read_text("utf-8"))
        body = json.dumps(strings, ensure_ascii=False, separators=(",", ":")).encode()
        assets[f"{lang}.json"] = _hashed(f"{lang}.json", body)

    names = {"js": assets["panel.js"].file, "css": assets["panel.css"].file}
    names.update({lang: assets[f"{lang}.json"].file for lang in LOCALES})
    loader = (SRC / "loader.js").read_text("utf-8")
    if loader.count(ASSETS_TOKEN) != 1:
        raise ValueError(f"loader.js must contain {ASSETS_TOKEN} exactly once")
    loader = loader.replace(ASSETS_TOKEN, json.dumps(names, separators=(",", ":")))
    # the loader's URL is the one merchants embed, so it keeps its name
    assets["loader.js"] = Asset("loader.js", "loader.js", rjsmin.jsmin(loader).encode())
    return assets


def manifest(assets: dict[str, Asset]) -> dict:
    return {name: {"file": a.file, "bytes": len(a.body), "gzip": len(a.gzipped),
                   "br": len(a.brotli), "sha256": a.digest}
            for name, a in sorted(assets.items())}


def write(assets: dict[str, Asset], target: Path = STATIC) -> None:
    """Write the assets and their compressed siblings; remove files of earlier builds."""
    target.mkdir(parents=True, exist_ok=True)
    wanted = {MANIFEST}
    for asset in assets.values():
        for suffix, body in (("", asset.body), (".gz", asset.gzipped), (".br", asset.brotli)):
            (target / (asset.file + suffix)).write_bytes(body)
            wanted.add(asset.file + suffix)
    (target / MANIFEST).write_text(json.dumps(manifest(assets), indent=2) + "\n", "utf-8")
    for old in target.iterdir():
        if old.is_file() and old.name not in wanted:
            old.unlink()


def budget_report(assets: dict[str, Asset] | None = None) -> dict[str, int]:
    """Gzipped sizes in bytes. A shopper gets one language, so the panel counts the largest."""
    assets = assets or build_assets()
    gz = {name: len(asset.gzipped) for name, asset in assets.items()}
    strings = max(gz[f"{lang}.json"] for lang in LOCALES)
    panel = gz["panel.js"] + gz["panel.css"] + strings
    return {
        "loader": gz["loader.js"],
        "before_interaction": gz["loader.js"],  # the loader is the only script on the critical path
        "panel_js": gz["panel.js"],
        "panel_css": gz["panel.css"],
        "strings": strings,
        "panel_total": panel,
        "widget_total": gz["loader.js"] + panel,
    }


def main() -> None:
    assets = build_assets()
    write(assets)
    report = budget_report(assets)
    print(f"wrote {len(assets)} assets to {STATIC}")
    for name, size in report.items():
        print(f"  {name:<20} {size:>6} bytes gzipped")
    if report["loader"] > LOADER_BUDGET or report["widget_total"] > PANEL_BUDGET:
        raise SystemExit("over the widget budget (loader ≤ 3 KB, widget ≤ 20 KB gzipped)")


if __name__ == "__main__":
    main()
