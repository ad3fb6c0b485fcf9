"""Builds the pluggy plugin manager and the platform registry.

Built-in adapters are registered exactly like third-party ones: through the ``ccms_addon`` entry-point
group. A plugin that fails to import (an optional dependency missing) is skipped with a log line,
not a crash; two adapters claiming the same name stop start-up.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Iterable

import pluggy

from ccms_addon import hookspecs
from ccms_addon.platforms import PlatformAdapter

log = logging.getLogger(__name__)

#: the pluggy project name, marker name and entry-point group
PROJECT = "ccms_addon"


class DuplicatePlatformError(RuntimeError):
    """Two plugins registered an adapter under the same name."""


def get_plugin_manager(extra_plugins: Iterable[object] = (), *, load_entry_points: bool = True
                       ) -> pluggy.PluginManager:
    """A fresh plugin manager with every installed plugin (and ``extra_plugins``) registered."""
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    if load_entry_points:
        for entry_point in importlib.metadata.entry_points(group=PROJECT):
            try:
                plugin = entry_point.load()
            except ImportError as exc:
                log.warning("plugin %s skipped: %s", entry_point.name, exc)
                continue
            if pm.is_registered(plugin):
                continue
            pm.register(plugin, name=entry_point.name)
    for plugin in extra_plugins:
        pm.register(plugin)
    pm.check_pending()
    return pm


#: what an adapter must provide (the Protocol's members)
_ADAPTER_MEMBERS = sorted(m for m in dir(PlatformAdapter)
                          if not m.startswith("_") and m not in dir(object)) + ["name"]


def platform_registry(pm: pluggy.PluginManager) -> dict[str, PlatformAdapter]:
    """Every adapter by name. Raises :class:`DuplicatePlatformError` on a name clash."""
    registry: dict[str, PlatformAdapter] = {}
    for adapters in pm.hook.register_platforms():
        for adapter in adapters or ():
            missing = [m for m in _ADAPTER_MEMBERS if not hasattr(adapter, m)]
            if missing:
                raise TypeError(f"{type(adapter).__name__} does not implement PlatformAdapter: "
                                f"missing {', '.join(missing)}")
            if adapter.name in registry:
                raise DuplicatePlatformError(f"two adapters are named {adapter.name!r}")
            registry[adapter.name] = adapter
    return registry
