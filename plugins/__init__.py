"""Built-in platform plugins, one package per platform, each registered through the ``ccms_addon``
entry-point group exactly as a third-party adapter would be (see setup.cfg)."""
