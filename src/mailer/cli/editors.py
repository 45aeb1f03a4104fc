"""`mailer editors`: the accounts that sign in at the desk (/desk): add, list, remove,
and a new password."""

from __future__ import annotations

import sys

import typer

from mailer.cli.app import settings_of
from mailer.cli.output import say
from mailer.errors import EditorError

PASSWORD_STDIN = typer.Option(
    False, "--password-stdin", help="Read the password from standard input (for scripts)."
)


def _password(from_stdin: bool) -> str:
    """From stdin's first line, or asked for twice without showing it."""
    if from_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise EditorError("no password on standard input; pipe one line into the command")
        return line
    asked: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return asked


def editors_add(
    ctx: typer.Context,
    email: str,
    admin: bool = typer.Option(False, "--admin", help="Also subscribers' data and accounts."),
    password_stdin: bool = PASSWORD_STDIN,
) -> None:
    """Add an editor (or with --admin, an admin) who signs in at /desk."""
    from mailer import editors
    from mailer.db import open_database
    from mailer.models import EditorRole

    engine = open_database(settings_of(ctx).database.url)
    editors.editor_address(email)  # a bad address is refused before a password is asked
    role = EditorRole.ADMIN if admin else EditorRole.EDITOR
    editor = editors.add_editor(engine, email, _password(password_stdin), role)
    say(f"Added {editor.email} ({editor.role}); they sign in at /desk.")


def editors_list(ctx: typer.Context) -> None:
    """List the desk's accounts."""
    from mailer import editors
    from mailer.db import open_database

    engine = open_database(settings_of(ctx).database.url)
    found = editors.list_editors(engine)
    for editor in found:
        say(f"{editor.id:>4}  {editor.role:<7} {editor.email}")
    say(f"{len(found)} editor{'s' if len(found) != 1 else ''}")


def editors_remove(ctx: typer.Context, email: str) -> None:
    """Remove an account; anyone signed in with it is signed out at once."""
    from mailer import editors
    from mailer.db import open_database

    engine = open_database(settings_of(ctx).database.url)
    editor = editors.remove_editor(engine, email)
    say(f"Removed {editor.email}.")


def editors_reset(ctx: typer.Context, email: str, password_stdin: bool = PASSWORD_STDIN) -> None:
    """Give an account a new password and turn its second factor off (for an editor who
    lost their phone: they turn it on again at /desk/account); sessions with the old
    password end."""
    from mailer import editors
    from mailer.db import open_database

    engine = open_database(settings_of(ctx).database.url)
    editors.editor_address(email)
    editor = editors.reset_password(engine, email, _password(password_stdin))
    say(f"New password set for {editor.email}; their second factor is off.")
