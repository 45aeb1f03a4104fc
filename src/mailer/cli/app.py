"""The command line's Typer apps, the settings every command reads, and the callback that
loads them."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from mailer.settings import Settings

app = typer.Typer(
    help="Newsletter and donation-appeal mailer.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # help texts name config keys as "[section] key": rich markup would eat the brackets
    rich_markup_mode=None,
)
subscribers_app = typer.Typer(
    help="Manage subscribers.", no_args_is_help=True, rich_markup_mode=None
)
articles_app = typer.Typer(
    help="Articles that have been ingested.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(subscribers_app, name="subscribers")
app.add_typer(articles_app, name="articles")
dkim_app = typer.Typer(help="DKIM signing keys.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(dkim_app, name="dkim")
editors_app = typer.Typer(
    help="The accounts that sign in at the desk (/desk).",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(editors_app, name="editors")
donations_app = typer.Typer(
    help="The gifts that arrived: import bank statements and Vipps reports, and report.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(donations_app, name="donations")
bounces_app = typer.Typer(
    help="Bounces and complaints that came back by mail after the relay took a message.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(bounces_app, name="bounces")


def pause_collector() -> None:
    """Start-up (the modules, the settings, the issue's render) makes over 100,000
    objects and no garbage to speak of, and Python's cycle collector walks them again and
    again meanwhile: a tenth of a one-reader send. main() pauses it until
    resume_collector, and turns it back on at the end whatever happened."""
    gc.disable()


def resume_collector() -> None:
    """The collector back on, for the command's own garbage, with what start-up made
    moved out of its sight for good (gc.freeze), so later collections do not walk it
    either. Every command but `send` has it back before it runs; `send` once its issue
    is rendered, before it sends. Nothing to do where main() did not pause it (an
    in-process CliRunner)."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def settings_of(ctx: typer.Context) -> Settings:
    settings: Settings = ctx.find_root().obj
    return settings


@app.callback()
def load(
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None, "--config", help="Config file (default: config/mailer.toml or $MAILER_CONFIG)."
    ),
) -> None:
    from mailer.donation import appeal_language_warning
    from mailer.settings import load_settings

    ctx.obj = settings = load_settings(config)
    if ctx.invoked_subcommand != "send":
        resume_collector()
    if settings.welcome.follow_ups:  # mailer.welcome loads the mail-building stack
        from mailer.welcome import check_follow_up_templates

        check_follow_up_templates(settings)  # where templates are known: a missing one stops
    warning = settings.donation.vipps_link_warning
    if warning:
        typer.echo(f"warning: {warning}", err=True)
    appeal = appeal_language_warning(settings)  # readers who would get an appeal in English
    if appeal:
        typer.echo(f"warning: {appeal}", err=True)
