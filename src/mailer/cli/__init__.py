"""The `mailer` command line: each command parses its input, calls a use case
(mailer.runs) or a pipeline function, and prints. Domain errors (MailerError) become a
message on stderr and exit status 1; bad usage exits 2.

The commands live by group in this package; they are registered here, in the order
`mailer --help` lists them.

Each command module imports its engine inside the command that runs it: `mailer send`
loads neither the web site, nor the sources, nor the scheduler."""

from __future__ import annotations

import gc
import sys

import typer

from mailer.cli import (
    articles,
    bounces,
    doctor,
    donations,
    editors,
    issues,
    sending,
    service,
    subscribers,
)
from mailer.cli.app import (
    app,
    articles_app,
    bounces_app,
    dkim_app,
    donations_app,
    editors_app,
    pause_collector,
    subscribers_app,
)
from mailer.errors import MailerError

__all__ = ["app", "main"]

for command in (
    service.init,
    service.backup,
    service.demo,
    service.catcher,
    service.serve,
    articles.ingest,
    articles.preview,
    sending.send,
    issues.digest,
    service.scheduler,
    issues.status,
    doctor.doctor,
):
    app.command()(command)
subscribers_app.command("add")(subscribers.subscribers_add)
subscribers_app.command("list")(subscribers.subscribers_list)
subscribers_app.command("remove")(subscribers.subscribers_remove)
subscribers_app.command("show")(subscribers.subscribers_show)
subscribers_app.command("reactivate")(subscribers.subscribers_reactivate)
subscribers_app.command("import")(subscribers.subscribers_import)
subscribers_app.command("export")(subscribers.subscribers_export)
subscribers_app.command("donor")(subscribers.subscribers_donor)
articles_app.command("list")(articles.articles_list)
dkim_app.command("keygen")(service.dkim_keygen)
editors_app.command("add")(editors.editors_add)
editors_app.command("list")(editors.editors_list)
editors_app.command("remove")(editors.editors_remove)
editors_app.command("reset")(editors.editors_reset)
donations_app.command("import")(donations.donations_import)
donations_app.command("report")(donations.donations_report)
bounces_app.command("process")(bounces.bounces_process)
bounces_app.command("fetch")(bounces.bounces_fetch)


def main() -> None:
    pause_collector()  # until the command's start-up is over (app.resume_collector)
    try:
        app()
    except KeyboardInterrupt:  # before or after a send: nothing is left half-done
        typer.echo("Stopped.", err=True)
        sys.exit(130)
    except MailerError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except OSError as exc:  # a file or folder the user named cannot be read or written
        typer.echo(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), err=True)
        sys.exit(1)
    except Exception as exc:
        said = _database_said(exc)
        if said is None:
            raise
        typer.echo(f"error: the database said: {said}", err=True)
        sys.exit(1)
    finally:  # a command that ended before its start-up was over (or main() in a test)
        gc.enable()


def _database_said(exc: Exception) -> object | None:
    """What the database driver said, for an error SQLAlchemy raised from it (locked,
    unreachable or not a mailer database); None for any other error. A command that
    never loaded SQLAlchemy cannot have had one, so `--help` does not load it either."""
    loaded = sys.modules.get("sqlalchemy.exc")
    if loaded is None or not isinstance(exc, loaded.DBAPIError):
        return None
    said: object = exc.orig
    return said
