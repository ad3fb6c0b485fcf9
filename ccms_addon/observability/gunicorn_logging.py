"""gunicorn's own lines in the add-on's JSON, from its master process too::

    CCMS_LOG_FORMAT=json gunicorn --logger-class ccms_addon.observability.gunicorn_logging.Logger \
        ccms_addon.wsgi:app

Without it the app switches gunicorn's loggers when a worker loads it, so only the master's few
lifecycle lines (starting, booting a worker) stay in gunicorn's text. Not ``logconfig_dict``: that
turns gunicorn's access log on, which formats a line for every webhook.
"""

from __future__ import annotations

from gunicorn.glogging import Logger as GunicornLogger

from ccms_addon.observability.logs import JSON, adopt_handler, log_format


class Logger(GunicornLogger):
    def setup(self, cfg) -> None:  # noqa: ANN001 — gunicorn's Config
        super().setup(cfg)
        if log_format() == JSON:
            for log in (self.error_log, self.access_log):
                for handler in log.handlers:
                    adopt_handler(handler)
