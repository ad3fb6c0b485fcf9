"""Key rotation for secrets at rest (``ccms-addon keys …``).

Rotating a key: put a new key first in ``CCMS_ENCRYPTION_KEYS`` (the old ones after it: they still
decrypt), run ``ccms-addon keys rotate`` — every stored secret is re-encrypted with the new key, in
batches, resumable — then drop the old key from the list. A secret no configured key opens stops
the run with its row named, before anything is half-done for that row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import click
from cryptography.fernet import Fernet
from sqlalchemy import func, select

from ccms_addon.outbox import ENCRYPTED_SUFFIX
from ccms_addon.runtime import Runtime
from ccms_addon.store.models import PrivacyRequest, Shop

BATCH = 200


@dataclass
class RotationReport:
    rows: int = 0
    secrets: int = 0


def _rotate_settings(box, value):
    """Shop settings carry encrypted values under keys ending in ``_encrypted`` (channel config)."""
    if isinstance(value, dict):
        rotated, count = {}, 0
        for key, inner in value.items():
            if key.endswith(ENCRYPTED_SUFFIX) and isinstance(inner, str) and inner:
                rotated[key], count = box.rotate(inner), count + 1
            else:
                rotated[key], more = _rotate_settings(box, inner)
                count += more
        return rotated, count
    return value, 0


def _batches(runtime: Runtime, model, after: int = 0) -> Iterator[list[int]]:
    while True:
        with runtime.db.session() as session:
            ids = session.scalars(select(model.id).where(model.id > after)
                                  .order_by(model.id).limit(BATCH)).all()
        if not ids:
            return
        yield ids
        after = ids[-1]


def rotate_all(runtime: Runtime, advance: Callable[[int], None] = lambda n: None) -> RotationReport:
    """Re-encrypt every secret with the first configured key; ``advance(rows)`` after each batch."""
    box, report = runtime.box, RotationReport()
    for ids in _batches(runtime, Shop):
        with runtime.db.session() as session:
            for shop in session.scalars(select(Shop).where(Shop.id.in_(ids))):
                try:
                    for column in ("webhook_secret_encrypted", "credentials_encrypted"):
                        if getattr(shop, column):
                            setattr(shop, column, box.rotate(getattr(shop, column)))
                            report.secrets += 1
                    settings, count = _rotate_settings(box, shop.settings or {})
                except ValueError as exc:
                    raise click.ClickException(f"shop {shop.id} ({shop.domain}): {exc}") from None
                if count:
                    shop.settings, report.secrets = settings, report.secrets + count
                report.rows += 1
        advance(len(ids))
    for ids in _batches(runtime, PrivacyRequest):
        with runtime.db.session() as session:
            for request in session.scalars(select(PrivacyRequest).where(
                    PrivacyRequest.id.in_(ids), PrivacyRequest.export_encrypted.is_not(None))):
                try:
                    request.export_encrypted = box.rotate(request.export_encrypted)
                except ValueError as exc:
                    raise click.ClickException(f"privacy request {request.id}: {exc}") from None
                report.secrets += 1
                report.rows += 1
        advance(len(ids))
    return report


@click.group("keys")
def keys_group() -> None:
    """Encryption keys of the secrets at rest."""


@keys_group.command("generate")
def keys_generate() -> None:
    """Print a new key to put first in CCMS_ENCRYPTION_KEYS."""
    click.echo(Fernet.generate_key().decode())


@keys_group.command("rotate")
def keys_rotate() -> None:
    """Re-encrypt every stored secret with the first key of CCMS_ENCRYPTION_KEYS."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from ccms_addon.runtime import build_runtime
    runtime = build_runtime()
    try:
        if not runtime.settings.encryption_keys:
            raise click.ClickException(
                "CCMS_ENCRYPTION_KEYS is not set, so there is no new key to rotate to. Make one "
                "with `ccms-addon keys generate`, put it first in CCMS_ENCRYPTION_KEYS (comma-"
                "separated, older keys after it), then run this again.")
        with runtime.db.session() as session:
            total = (session.scalar(select(func.count()).select_from(Shop)) or 0) + (
                session.scalar(select(func.count()).select_from(PrivacyRequest)) or 0)
        with Progress(TextColumn("re-encrypting secrets"), BarColumn(), MofNCompleteColumn()) as bar:
            task = bar.add_task("rotate", total=total)
            report = rotate_all(runtime, lambda n: bar.advance(task, n))
        click.echo(f"{report.secrets} secrets in {report.rows} rows re-encrypted with the first key. "
                   "Older keys may now be removed from CCMS_ENCRYPTION_KEYS.")
    finally:
        runtime.close()
