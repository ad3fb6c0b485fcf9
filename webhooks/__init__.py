"""The platform-facing ingress: verify, de-duplicate, persist, answer. Nothing else on the request
path: jobs are handed to RQ by the dispatcher from the stored rows (``ccms_addon.jobs.dispatcher``)."""

from ccms_addon.webhooks.views import bp

__all__ = ["bp"]
