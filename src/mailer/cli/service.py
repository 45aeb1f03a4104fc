"""The service commands: the database (init, backup), the demo, the local catcher, the
subscriber site, the scheduled service, and DKIM keys."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from mailer.cli.app import settings_of
from mailer.cli.output import say


def init(ctx: typer.Context) -> None:
    """Create the database, or upgrade an older one in place."""
    from mailer.db import open_database
    from mailer.settings import masked_url

    settings = settings_of(ctx)
    open_database(settings.database.url)
    say(f"Database ready: {masked_url(settings.database.url)}")


def backup(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="Where to write the copy, e.g. backups/mailer.db."),
    force: bool = typer.Option(False, "--force", help="Replace FILE if it exists."),
) -> None:
    """Copy the SQLite database consistently, even while a send or the site is writing."""
    from mailer.backup import backup_database

    made = backup_database(settings_of(ctx).database.url, file, force=force)
    say(f"Backed up the database to {made.path} ({made.size:,} bytes, checked).")
    say(
        "To restore it: stop mailer, delete the database's -wal and -shm files, copy the "
        "backup over the database file, and run `mailer send --resume` to finish what was "
        "being sent."
    )


def demo(ctx: typer.Context) -> None:
    """Run the whole pipeline on the embedded default, with a local SMTP catcher."""
    from mailer.demo import run_demo

    run_demo(settings_of(ctx), say)


def catcher(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(1025, help="Port to listen on."),
    maildir: Path = typer.Option(Path("var/maildir"), help="Maildir to store messages in."),
) -> None:
    """A local SMTP server that stores every message it receives and delivers nothing."""
    from mailer.catcher import start_catcher

    controller = start_catcher(maildir, host, port, on_message=_announce)
    say(f"Catching mail on {host}:{port}, storing it in {maildir}/ (Ctrl-C to stop)")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        say("Stopped.")
    finally:
        controller.stop()


def _announce(recipients: list[str], content: bytes) -> None:
    from email import message_from_bytes, policy

    message = message_from_bytes(content, policy=policy.default)
    say(f"stored: to {', '.join(recipients)}: {message['Subject']}")


def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
) -> None:
    """The subscriber site: sign-up (it sends the confirmation emails itself, from a
    background thread), the unsubscribe pages (RFC 8058 one-click) and /healthz.
    Put it behind your web server at [publication] base_url."""
    import uvicorn

    from mailer.db import open_database
    from mailer.web import create_app

    settings = settings_of(ctx)
    web = create_app(settings, open_database(settings.database.url))
    say(f"Serving {settings.publication.name} on http://{host}:{port} (Ctrl-C to stop)")
    # The site reads X-Forwarded-For itself, from [web] trusted_proxies only; uvicorn's
    # own reading (on by default, trusting 127.0.0.1) would replace the peer before it.
    uvicorn.run(web, host=host, port=port, log_level="warning", proxy_headers=False)


def scheduler(ctx: typer.Context) -> None:
    """The scheduled service: the weekly digest at [schedule] digest_cron, issues
    scheduled with `send --at`, retries when due, and new articles from
    [schedule] watch_dir. Logs one line per event; SIGTERM or Ctrl-C stops it cleanly."""
    from mailer.db import open_database
    from mailer.events import log_to_stdout
    from mailer.scheduler import run_service

    settings = settings_of(ctx)
    engine = open_database(settings.database.url)
    log_to_stdout(settings.publication.timezone)
    run_service(settings, engine)


def dkim_keygen(
    ctx: typer.Context,
    selector: str = typer.Option(..., help="A name for this key, e.g. mail2026."),
    domain: str | None = typer.Option(None, help="Default: the sender address's domain."),
    out: Path | None = typer.Option(None, help="Default: var/dkim/SELECTOR.pem"),
) -> None:
    """Make a DKIM key pair and print the DNS record to publish."""
    from mailer.signing import generate_key

    settings = settings_of(ctx)
    domain = domain or settings.publication.from_address.rpartition("@")[2]
    path = out or Path("var/dkim") / f"{selector}.pem"
    record = generate_key(path, selector, domain)
    say(f"Private key: {path} (keep it secret, out of git, and backed up)")
    say("Publish this DNS TXT record:")
    say(f"  {record}")
    say("Then set, in config/mailer.toml (or as MAILER_DKIM_*):")
    say(
        f'  [dkim]\n  domain = "{domain}"\n  selector = "{selector}"\n'
        f'  private_key_path = "{path.resolve()}"'
    )
