"""ccms-addon: a headless customer-care add-on for e-commerce platforms.

Importing this package does no work: no connection is opened, no environment variable is read and
no plugin is loaded. Build the application with :func:`ccms_addon.app.create_app`.
"""

import pluggy

__version__ = "0.1.0"

#: Marker for hook implementations, used by built-in and third-party plugins alike.
hookimpl = pluggy.HookimplMarker("ccms_addon")

__all__ = ["__version__", "hookimpl"]
