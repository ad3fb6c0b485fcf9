"""The shopper-facing contact widget: the loader and panel assets (``assets.py``), the public widget
API under ``/widget/v1/<widget_key>/`` (``views.py``), its schemas and the merchant's widget settings
(``schemas.py``), front-end sources in ``src/``, built assets in ``static/``, strings in ``i18n/``."""
