"""Putting the contact widget on a WooCommerce store: a small WordPress plugin, installed once.

WooCommerce's REST API cannot add a script to the storefront and cannot install a WordPress plugin,
so the add-on ships one (``wordpress/ccms-widget/``): a settings page (Settings > CCMS Widget) for
the widget key and the add-on URL, and the loader enqueued on every front-end page with the ``async``
strategy and the key as ``data-shop-key``. :func:`inject_widget` builds the plugin's zip and returns
the merchant's instructions in plain words.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from ccms_addon.platforms import PlatformError, ShopContext, WidgetInjection

#: the WordPress plugin's slug: its folder, its main file's name and the zip's name
PLUGIN_SLUG = "ccms-widget"
#: the plugin's source folder
PLUGIN_DIR = Path(__file__).resolve().parent / "wordpress" / PLUGIN_SLUG
#: the loader's path under the add-on URL (the plugin appends it to the URL the merchant enters)
LOADER_PATH = "/widget/v1/loader.js"
#: a fixed time for every zip entry, so the same plugin always makes the same bytes
ZIP_DATE_TIME = (2024, 1, 1, 0, 0, 0)
#: the shop setting naming where the zip is written (else the system's temporary folder)
DOWNLOAD_DIR_SETTING = "widget_download_dir"


def build_wordpress_plugin_zip(dest: str | os.PathLike[str]) -> Path:
    """Write the WordPress plugin as an installable zip and return its path.

    ``dest`` is a folder (the zip is ``ccms-widget.zip`` in it) or a path ending in ``.zip``. The zip
    holds ``ccms-widget/ccms-widget.php`` and ``ccms-widget/readme.txt``, the layout Plugins > Add New >
    Upload Plugin expects. The bytes are reproducible and the file is replaced atomically.
    """
    target = Path(dest)
    if target.suffix.lower() != ".zip":
        target = target / f"{PLUGIN_SLUG}.zip"
    target.parent.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in PLUGIN_DIR.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not any(p.name == f"{PLUGIN_SLUG}.php" for p in files):
        raise FileNotFoundError(f"the WordPress plugin is missing from {PLUGIN_DIR}")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{PLUGIN_SLUG}-", suffix=".zip", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in files:
                info = zipfile.ZipInfo(f"{PLUGIN_SLUG}/{path.relative_to(PLUGIN_DIR).as_posix()}",
                                       date_time=ZIP_DATE_TIME)
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, path.read_bytes())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target


def addon_url_of(loader_url: str) -> str:
    """The add-on URL a merchant enters in the plugin: the loader's URL without ``LOADER_PATH``."""
    parts = urlsplit(loader_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise PlatformError(f"the loader URL {loader_url!r} is not an http(s) URL")
    path = parts.path[: -len(LOADER_PATH)] if parts.path.endswith(LOADER_PATH) else ""
    return urlunsplit((parts.scheme, parts.netloc, path.rstrip("/"), "", ""))


def inject_widget(shop: ShopContext, loader_url: str, widget_key: str) -> WidgetInjection:
    """The zip and the merchant's three steps; nothing is called on the site."""
    if not widget_key or not loader_url:
        raise PlatformError("a widget key and a loader URL are needed to inject the widget")
    addon_url = addon_url_of(loader_url)
    dest = shop.settings.get(DOWNLOAD_DIR_SETTING) or Path(tempfile.gettempdir()) / "ccms-addon"
    archive = build_wordpress_plugin_zip(dest)
    return WidgetInjection(
        method="wordpress_plugin", reference=PLUGIN_SLUG,
        detail=("WooCommerce cannot receive the widget from outside, so install the small CCMS Widget "
                "plugin once. 1. Download the plugin: " + str(archive) + " . 2. In WordPress, go to "
                "Plugins > Add New > Upload Plugin, choose ccms-widget.zip, click Install Now, then "
                "Activate. 3. Go to Settings > CCMS Widget, enter the widget key " + widget_key +
                " and the add-on URL " + addon_url + " , and click Save Changes. The widget then "
                "appears on every page of your store."))
