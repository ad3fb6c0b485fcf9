"""The ``ccms-addon`` command."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import requests
from rich.console import Console

from ccms_addon.config import Settings

console = Console(stderr=True)


def _runtime(**kwargs):
    from ccms_addon.runtime import build_runtime
    return build_runtime(Settings.from_env(), **kwargs)


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log debug output.")
def main(verbose: bool) -> None:
    """ccms-addon: customer care for Shopify, Cafe24 and WooCommerce stores."""
    from ccms_addon.observability import configure_logging
    # text, or JSON lines with CCMS_LOG_FORMAT=json; e-mail addresses and phones are redacted
    configure_logging(level=logging.DEBUG if verbose else logging.INFO)


# ------------------------------------------------------------------------------------------------ db


@main.group()
def db() -> None:
    """The VOC store's schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Create or migrate the store's tables (Alembic)."""
    from ccms_addon.store.migrations import upgrade
    settings = Settings.from_env()
    upgrade(settings.database_url, revision)
    console.print(f"[green]store at revision {revision}[/green]")


@db.command("row-security")
@click.argument("mode", type=click.Choice(["status", "force", "no-force"]), default="status")
def db_row_security(mode: str) -> None:
    """PostgreSQL row-level security (``ccms_addon.store.tenancy``): ``force`` holds the tables'
    owner to the tenant policies too, ``no-force`` lets the owner (workers, migrations) bypass
    them again; prints the tables that are forced."""
    from ccms_addon.store import tenancy
    runtime = _runtime()
    if runtime.db.dialect != "postgresql":
        raise click.ClickException("row-level security needs PostgreSQL; SQLite has none")
    with runtime.db.engine.begin() as conn:
        if mode != "status":
            tenancy.set_force(conn, mode == "force")
        forced = tenancy.forced_tables(conn)
    click.echo(json.dumps({"forced": forced, "tables": len(tenancy.TENANT_TABLES)}))


# --------------------------------------------------------------------------------------------- shops


@main.group()
def shops() -> None:
    """Shops that send deliveries to this add-on."""


def _parse_pairs(pairs: tuple[str, ...], option: str) -> dict[str, str]:
    values = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint=option)
        values[key] = value
    return values


@shops.command("add")
@click.option("--platform", required=True, help="shopify, cafe24, woocommerce or a plugin's name")
@click.option("--domain", required=True,
              help="The shop's identity on its platform: name.myshopify.com, the Cafe24 mall id, "
                   "or the WooCommerce site URL.")
@click.option("--name", help="A display name (defaults to the domain).")
@click.option("--webhook-secret", help="Per-shop webhook secret (WooCommerce signs with it).")
@click.option("--credential", "credentials", multiple=True, metavar="KEY=VALUE",
              help="Admin API credentials, stored encrypted (e.g. access_token=…).")
@click.option("--setting", "shop_settings", multiple=True, metavar="KEY=VALUE",
              help="Per-shop adapter settings (e.g. api_base_url=…, shop_no=1).")
def shops_add(platform, domain, name, webhook_secret, credentials, shop_settings) -> None:
    """Register a shop; prints {"shop_id", "widget_key", "api_token"} as one JSON object.

    The API token is shown only here: the store keeps its digest.
    """
    from sqlalchemy.exc import IntegrityError

    from ccms_addon.store import repository
    runtime = _runtime()
    adapter = runtime.platforms.get(platform)
    if adapter is None:
        raise click.BadParameter(f"no platform named {platform!r}; installed: "
                                 f"{', '.join(sorted(runtime.platforms))}", param_hint="--platform")
    try:
        canonical = adapter.canonical_shop_domain(domain)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--domain") from None
    try:
        with runtime.db.session() as session:
            new = repository.create_shop(
                session, runtime.box, platform=platform, domain=canonical, name=name,
                webhook_secret=webhook_secret,
                credentials=_parse_pairs(credentials, "--credential") or None,
                settings=_parse_pairs(shop_settings, "--setting") or None)
            result = {"shop_id": new.shop.id, "widget_key": new.shop.widget_key,
                      "api_token": new.api_token}
    except IntegrityError:
        raise click.ClickException(f"a {platform} shop {canonical!r} is already registered") from None
    click.echo(json.dumps(result))


@shops.command("token")
@click.option("--shop", "shop_id", required=True, type=int, help="The shop's id.")
def shops_token(shop_id: int) -> None:
    """Issue a new merchant-API token for a shop; prints {"shop_id", "api_token"}.

    The previous token stops working at once. Shops installed from an app store get their first
    token here or on the dashboard's Settings > API access.
    """
    from ccms_addon.store import repository
    runtime = _runtime()
    with runtime.db.session() as session:
        shop = _shop_or_fail(session, shop_id)
        api_token = repository.issue_api_token(session, shop)
    click.echo(json.dumps({"shop_id": shop_id, "api_token": api_token}))


# ------------------------------------------------------------------------------------------ webhooks


@main.group()
def webhooks() -> None:
    """Webhook deliveries."""


@webhooks.command("replay")
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--url", required=True, help="The add-on's base URL, e.g. http://127.0.0.1:5000")
@click.option("--platform", required=True)
@click.option("--shop", "shop_domain", required=True, help="The shop's domain on its platform.")
@click.option("--topic", help="The topic header to send (Cafe24 bodies name their own event).")
@click.option("--secret", envvar="CCMS_REPLAY_SECRET",
              help="Signing secret: the app secret (Shopify), webhook secret (WooCommerce) or "
                   "webhook key (Cafe24). Defaults to the one configured for the platform.")
def webhooks_replay(files: tuple[Path, ...], url: str, platform: str, shop_domain: str,
                    topic: str | None, secret: str | None) -> None:
    """Sign stored payloads the way their platform would and POST them to a deployment.

    Prints one line per file: the HTTP status and the add-on's answer. Exits 1 if any was refused.
    """
    from rich.progress import track

    runtime = _runtime()
    adapter = runtime.platforms.get(platform)
    if adapter is None:
        raise click.BadParameter(f"no platform named {platform!r}", param_hint="--platform")
    if not secret:
        configured = adapter.webhook_secrets(runtime.settings.platform_settings(platform), None)
        if not configured:
            raise click.UsageError("no --secret given and none configured for this platform")
        secret = configured[0]
    endpoint = f"{url.rstrip('/')}/webhooks/{platform}"
    refused = 0
    with requests.Session() as http:
        for file in track(files, description="replaying", console=console,
                          disable=len(files) < 2):
            body = file.read_bytes()
            headers = adapter.delivery_headers(body, shop_domain=shop_domain, topic=topic,
                                               secret=secret)
            try:
                response = http.post(endpoint, data=body, headers=headers, timeout=10)
            except requests.RequestException as exc:
                raise click.ClickException(f"could not reach {url}: {exc}") from None
            refused += response.status_code >= 300
            click.echo(f"{response.status_code} {response.text.strip()}"
                       + (f"  {file.name}" if len(files) > 1 else ""))
    if refused:
        sys.exit(1)


def _load_json_file(file, schema, what: str) -> dict:
    """A JSON file validated by a marshmallow schema (the API's own); errors listed per field."""
    from marshmallow import ValidationError
    try:
        return schema.load(json.load(file))
    except json.JSONDecodeError as exc:
        raise click.ClickException(f"not JSON: {exc}") from None
    except ValidationError as exc:
        raise click.ClickException(f"invalid {what}: " + json.dumps(exc.messages,
                                                                     ensure_ascii=False)) from None


# ------------------------------------------------------------------------------------------- widget


@main.group()
def widget() -> None:
    """The contact widget on shops' storefronts."""


@widget.command("install")
@click.option("--shop", "shop_id", required=True, type=int, help="The shop's id.")
def widget_install(shop_id: int) -> None:
    """Put the widget on the shop's storefront (idempotent); prints what the merchant must do."""
    from ccms_addon.platforms import PlatformError
    from ccms_addon.widget_install import WidgetInstallError, install_widget
    runtime = _runtime()
    try:
        result = install_widget(runtime, shop_id)
    except (WidgetInstallError, PlatformError) as exc:
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from None
    finally:
        runtime.close()
    click.echo(json.dumps({"method": result.method, "reference": result.reference,
                           "detail": result.detail}))


@widget.command("configure")
@click.option("--shop", "shop_id", required=True, type=int, help="The shop's id.")
@click.argument("settings_file", type=click.File("r"))
def widget_configure(shop_id: int, settings_file) -> None:
    """Replace the shop's widget settings with a JSON file (``-`` reads standard input).

    The same schema as ``PUT /api/v1/widget/settings``; errors are listed per field.
    """
    from ccms_addon.store.models import Shop
    from ccms_addon.widgets.settings import WidgetSettingsSchema
    values = _load_json_file(settings_file, WidgetSettingsSchema(), "settings")
    runtime = _runtime()
    with runtime.db.session() as session:
        shop = session.get(Shop, shop_id)
        if shop is None:
            raise click.ClickException(f"no shop with id {shop_id}")
        shop.settings = {**(shop.settings or {}), "widget": WidgetSettingsSchema().dump(values)}
    click.echo(json.dumps({"shop_id": shop_id, "widget": WidgetSettingsSchema().dump(values)},
                          ensure_ascii=False))


# ----------------------------------------------------------------------------------------- programs


@main.group()
def programs() -> None:
    """After-sale programs: guarantees and follow-up sequences."""


def _shop_or_fail(session, shop_id: int):
    from ccms_addon.store.models import Shop
    shop = session.get(Shop, shop_id)
    if shop is None:
        raise click.ClickException(f"no shop with id {shop_id}")
    return shop


@programs.command("create")
@click.option("--shop", "shop_id", required=True, type=int, help="The shop's id.")
@click.argument("program_file", type=click.File("r"))
def programs_create(shop_id: int, program_file) -> None:
    """Create a program from a JSON file ({"kind", "name", "terms"}; ``-`` reads standard input).

    The same schema as ``POST /api/v1/programs``; errors are listed per field.
    """
    from ccms_addon.programs import service
    from ccms_addon.programs.schemas import ProgramCreateSchema
    data = _load_json_file(program_file, ProgramCreateSchema(), "program")
    runtime = _runtime()
    with runtime.db.session() as session:
        _shop_or_fail(session, shop_id)
        try:
            program = service.create_program(session, shop_id, kind=data["kind"],
                                             name=data["name"], terms=data["terms"],
                                             status=data["status"], actor="cli")
        except service.ProgramNameTakenError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(json.dumps({"program_id": program.id, "kind": program.kind.value,
                               "version": 1}))
    from ccms_addon.programs.collections import enqueue_refresh, named_collections
    if named_collections(data["terms"]) and enqueue_refresh(runtime, shop_id):
        console.print("A worker is reading the program's collections from the platform; "
                      f"`ccms-addon programs collections --shop {shop_id}` reads them now.")


@programs.command("list")
@click.option("--shop", "shop_id", required=True, type=int, help="The shop's id.")
def programs_list(shop_id: int) -> None:
    """The shop's programs, one JSON object per line."""
    from ccms_addon.programs import service
    runtime = _runtime()
    with runtime.db.session() as session:
        _shop_or_fail(session, shop_id)
        for program in service.list_programs(session, shop_id):
            version = service.current_terms(session, program)
            click.echo(json.dumps({"program_id": program.id, "kind": program.kind.value,
                                   "name": program.name, "status": program.status.value,
                                   "version": version.version}, ensure_ascii=False))


@programs.command("enroll")
@click.option("--shop", "shop_id", required=True, type=int, help="The shop's id.")
@click.option("--since", type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
              help="Only orders the platform updated on or after this date (UTC).")
def programs_enroll(shop_id: int, since) -> None:
    """Enroll past fulfilled orders in the shop's active programs; already enrolled ones are
    skipped, so running it again is harmless."""
    from datetime import timezone

    from rich.progress import Progress

    from ccms_addon.programs.enrollment import backfill, count_candidates
    runtime = _runtime()
    since = since.replace(tzinfo=timezone.utc) if since else None
    with runtime.db.session() as session:
        _shop_or_fail(session, shop_id)
        from ccms_addon.programs.enrollment import active_programs
        total = count_candidates(session, shop_id, since) * len(active_programs(session, shop_id))
        from ccms_addon.programs.collections import collection_states, program_collections
        unread = [c["id"] for c in collection_states(session, shop_id,
                                                      program_collections(session, shop_id))
                  if c["synced_at"] is None]
    if unread:  # a guarantee by collection covers nothing until its members are known
        _read_collections(runtime, shop_id, unread)
    with Progress(console=console, transient=False) as progress:
        task = progress.add_task("enrolling", total=total or None)
        enrolled = backfill(runtime.db, shop_id, since=since,
                            progress=lambda n: progress.advance(task, n))
        progress.update(task, completed=total)
    click.echo(json.dumps({"shop_id": shop_id, "enrolled": enrolled}))


@programs.command("collections")
@click.option("--shop", "shop_id", required=True, type=int, help="The shop's id.")
@click.option("--collection", "collection_ids", multiple=True,
              help="A collection (category) id; default: every one the active programs name.")
def programs_collections(shop_id: int, collection_ids: tuple[str, ...]) -> None:
    """Read now, from the platform, which products the collections of the shop's guarantees
    hold (a worker does it when a program is saved, and daily)."""
    from ccms_addon.programs.collections import program_collections
    runtime = _runtime()
    with runtime.db.session() as session:
        _shop_or_fail(session, shop_id)
        collection_ids = collection_ids or program_collections(session, shop_id)
    if not collection_ids:
        raise click.ClickException("the shop's active programs name no collection")
    results = _read_collections(runtime, shop_id, collection_ids)
    if any(r.outcome != "synced" for r in results):
        raise SystemExit(1)


def _read_collections(runtime, shop_id: int, collection_ids):
    """Read each collection with a progress bar; print what changed, one JSON line each."""
    from rich.progress import Progress

    from ccms_addon.programs.collections import sync_collection
    results = []
    with Progress(console=console, transient=False) as progress:
        for collection_id in collection_ids:
            task = progress.add_task(f"collection {collection_id}", total=None)
            result = sync_collection(runtime, shop_id, collection_id,
                                     progress=lambda n, t=task: progress.advance(t, n))
            progress.update(task, total=result.products or 1, completed=result.products or 1)
            results.append(result)
    for result in results:
        click.echo(json.dumps({"collection": result.collection_id, "outcome": result.outcome,
                               "title": result.title, "products": result.products,
                               "added": result.added, "removed": result.removed,
                               "detail": result.detail}, ensure_ascii=False))
    return results


# ---------------------------------------------------------------------------------------- processes


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
def serve(host: str, port: int) -> None:
    """Run the web app on the development server (use gunicorn in production, see README)."""
    from werkzeug.serving import run_simple

    from ccms_addon.app import create_app
    run_simple(host, port, create_app(), threaded=True, use_reloader=False)


@main.command()
@click.option("--burst", is_flag=True, help="Stop when the queues are empty.")
@click.option("--dispatcher/--no-dispatcher", default=True, show_default=True,
              help="Also run the inbox dispatcher (one per deployment is elected through Redis).")
def worker(burst: bool, dispatcher: bool) -> None:
    """Run an RQ worker (with RQ's scheduler) for the add-on's queues."""
    from rq import Worker

    from ccms_addon.queue import ALL_QUEUES, queue
    from ccms_addon.runtime import set_current
    runtime = _runtime()
    set_current(runtime)
    redis = runtime.redis
    os.environ.setdefault("CCMS_REDIS_URL", _redis_url(redis))
    # Imported once here, not in every forked work-horse (that import cost ~200 ms a job).
    import ccms_addon.jobs.notify  # noqa: F401
    import ccms_addon.jobs.pipeline  # noqa: F401
    import ccms_addon.outbox  # noqa: F401
    import ccms_addon.programs.claims  # noqa: F401
    import ccms_addon.voc.jobs  # noqa: F401
    import ccms_addon.voc.order_actions  # noqa: F401
    from ccms_addon.programs.followups import warm_up
    warm_up(runtime)
    from redis.exceptions import ConnectionError as RedisConnectionError
    child = None
    if dispatcher:
        child = subprocess.Popen([sys.executable, "-m", "ccms_addon.cli", "dispatcher"],
                                 env=os.environ.copy())
    try:
        queues = [queue(name, redis, runtime.settings) for name in ALL_QUEUES]
        while True:
            rq_worker = Worker(queues, connection=redis)
            try:
                rq_worker.work(burst=burst, with_scheduler=True)
            except RedisConnectionError:
                # Redis restarted or briefly unreachable: wait and start over, never exit
                console.print("[yellow]Redis unreachable; the worker retries in 2 s[/yellow]")
                time.sleep(2)
                continue
            break  # a stop was asked for (SIGTERM/SIGINT) or the burst is done
    finally:
        if child is not None:
            child.terminate()
            child.wait(timeout=10)


@main.command("dispatcher")
def dispatcher_command() -> None:
    """Run only the inbox dispatcher (hands stored deliveries to RQ, sweeps the inbox)."""
    from ccms_addon.jobs.dispatcher import Dispatcher
    loop = Dispatcher(_runtime())
    signal.signal(signal.SIGTERM, lambda *_: loop.stop())
    try:
        loop.run()
    except KeyboardInterrupt:
        loop.stop()


def _redis_url(client) -> str:
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    return f"redis://{kwargs.get('host', '127.0.0.1')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
def demo(host: str, port: int) -> None:
    """Everything on the embedded default: store, Redis, web, one worker, three demo shops."""
    from ccms_addon.demo import run_demo
    run_demo(host, port, console)


def _register_sync_commands() -> None:
    from ccms_addon.sync import sync_group
    main.add_command(sync_group)
    from ccms_addon.keys import keys_group
    main.add_command(keys_group)
    from ccms_addon.voc.mail_in import mail_in
    main.add_command(mail_in)
    from ccms_addon.voc.cli import reports
    main.add_command(reports)


_register_sync_commands()


if __name__ == "__main__":
    main()
