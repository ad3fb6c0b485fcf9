"""The core reaches platforms only through hooks, and the built-in adapters are found exactly as a
third-party adapter would be: through the ``ccms_addon`` entry-point group."""

import ast
import importlib.metadata
from pathlib import Path

import pytest

from ccms_addon.plugin_manager import DuplicatePlatformError, get_plugin_manager, platform_registry
from tests.samples import REPO_ROOT

CORE_DIRS = ("ccms_addon", "webhooks", "widgets")
BUILT_IN = {"shopify", "cafe24", "woocommerce"}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


@pytest.mark.parametrize("folder", CORE_DIRS)
def test_core_never_imports_a_platform_plugin(folder):
    offenders = [f"{path.relative_to(REPO_ROOT)}: {name}"
                 for path in (REPO_ROOT / folder).rglob("*.py")
                 for name in _imports(path)
                 if name == "ccms_addon.plugins" or name.startswith("ccms_addon.plugins.")]
    assert offenders == []


def test_entry_points_resolve_to_the_built_in_plugins():
    points = {ep.name: ep for ep in importlib.metadata.entry_points(group="ccms_addon")}
    assert BUILT_IN <= set(points)
    for name in BUILT_IN:
        module = points[name].load()
        assert module.__name__ == f"ccms_addon.plugins.{name}"


def test_registry_is_built_from_entry_points():
    registry = platform_registry(get_plugin_manager())
    assert BUILT_IN <= set(registry)
    for name, adapter in registry.items():
        assert adapter.name == name


def test_two_adapters_with_one_name_stop_start_up():
    from ccms_addon import hookimpl

    class Impostor:
        @hookimpl
        def register_platforms(self):
            registry = platform_registry(get_plugin_manager())
            return [registry["shopify"]]

    with pytest.raises(DuplicatePlatformError):
        platform_registry(get_plugin_manager([Impostor()]))


def test_adapter_missing_a_method_is_refused():
    from ccms_addon import hookimpl

    class Half:
        name = "half"

    class Plugin:
        @hookimpl
        def register_platforms(self):
            return [Half()]

    with pytest.raises(TypeError, match="missing"):
        platform_registry(get_plugin_manager([Plugin()], load_entry_points=False))
