"""Configuration: the shipped file is valid and holds the newsroom's details; the
environment overrides it; secrets never come from the file."""

from __future__ import annotations

import stat

import pytest

from mailer.errors import ConfigError
from mailer.settings import load_settings


def test_shipped_config_holds_the_newsrooms_details():
    settings = load_settings(environ={})
    assert settings.publication.name == "Dawat Media Center"
    donation = settings.donation
    assert (donation.bank_name, donation.account_number) == ("DNB Bank", "0530 2294668")
    assert donation.iban == "NO15 0530 2294 668"
    assert donation.vipps == "557320"
    assert (donation.bic, donation.account_holder) == ("DNBANOKKXXX", "Dawat Media Center")
    assert donation.reference_prefix == "DMC" and donation.vipps_link_warning is None
    assert settings.tracking.count_clicks == "appeal"
    assert donation.appeal.startswith("If there were ever a time to join us, it is now.")
    assert (settings.smtp.host, settings.smtp.port) == ("127.0.0.1", 1025)
    assert settings.database.url == "sqlite:///subscribers.db"


def test_environment_overrides_each_key_with_its_type():
    settings = load_settings(
        environ={
            "MAILER_SMTP_HOST": "relay.example.org",
            "MAILER_SMTP_PORT": "587",
            "MAILER_SMTP_SECURITY": "starttls",
            "MAILER_SMTP_PASSWORD": "s3cret",
            "MAILER_DONATION_IBAN": "no1505302294668",
            "MAILER_DATABASE_URL": "postgresql+psycopg://mailer@db/mailer",
        }
    )
    assert settings.smtp.port == 587 and settings.smtp.security == "starttls"
    assert settings.smtp.password == "s3cret"
    assert "s3cret" not in repr(settings)
    assert settings.donation.iban == "NO15 0530 2294 668", "grouped in fours"
    assert settings.database.url.startswith("postgresql")


def test_every_bad_value_is_named_at_once():
    with pytest.raises(ConfigError) as error:
        load_settings(
            environ={
                "MAILER_SMTP_SECURITY": "ssl",
                "MAILER_PUBLICATION_REPLY_TO": "editor at newsroom",
                "MAILER_PUBLICATION_TIMEZONE": "Oslo",
                "MAILER_DONATION_URL": "javascript:alert(1)",
            }
        )
    message = str(error.value)
    for key in ("smtp.security", "publication.reply_to", "publication.timezone", "donation.url"):
        assert key in message


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("MAILER_DONATION_ACCOUNT_NUMBER", "0530 2294669", "a Norwegian account number"),
        ("MAILER_DONATION_ACCOUNT_NUMBER", "0530 229466", "a Norwegian account number"),
        ("MAILER_DONATION_BIC", "DNBXNOKKXXX", "the BIC of the IBAN's bank"),
        ("MAILER_DONATION_BIC", "DNBANOKKXX", "a valid BIC"),
        ("MAILER_DONATION_IBAN", "NO16 0530 2294 668", "a valid IBAN"),
        ("MAILER_DONATION_VIPPS_LINK", "http://qr.vipps.no/donations/1", "donation.vipps_link"),
        ("MAILER_DONATION_REFERENCE_PREFIX", "dmc-", "donation.reference_prefix"),
        ("MAILER_DONATION_URL_REFERENCE_PARAMETER", "a b", "donation.url_reference_parameter"),
        ("MAILER_DONATION_SUGGESTED_AMOUNT_EUR", "-5", "donation.suggested_amount_eur"),
        ("MAILER_TRACKING_COUNT_CLICKS", "every", "tracking.count_clicks"),
    ],
)
def test_a_bad_payment_detail_stops_the_program_naming_the_key(variable, value, said):
    """The account number is checked with its mod 11 digit, the BIC and IBAN by schwifty."""
    with pytest.raises(ConfigError) as error:
        load_settings(environ={variable: value})
    key = variable.removeprefix("MAILER_").lower().replace("_", ".", 1)
    assert key in str(error.value) and said in str(error.value)


def test_an_epc_code_needs_both_the_bic_and_the_account_holder():
    with pytest.raises(ConfigError, match="expected both or neither"):
        load_settings(environ={"MAILER_DONATION_ACCOUNT_HOLDER": ""})
    unset = load_settings(environ={"MAILER_DONATION_ACCOUNT_HOLDER": "", "MAILER_DONATION_BIC": ""})
    assert unset.donation.bic == ""


def test_a_vipps_link_off_vipps_own_host_is_warned_about():
    elsewhere = {"MAILER_DONATION_VIPPS_LINK": "https://vipps.example/donations/557320"}
    warning = load_settings(environ=elsewhere).donation.vipps_link_warning
    assert warning and "vipps.example" in warning and "qr.vipps.no" in warning
    ours = {"MAILER_DONATION_VIPPS_LINK": "https://qr.vipps.no/donations/557320"}
    assert load_settings(environ=ours).donation.vipps_link_warning is None


def test_signing_key_is_generated_once_into_a_private_file(tmp_path):
    key_file = tmp_path / "var" / "secret_key"
    settings = load_settings(environ={"MAILER_SECURITY_SECRET_KEY_FILE": str(key_file)})
    first = settings.secret_key
    assert len(first) >= 32 and settings.secret_key == first
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    from_env = load_settings(environ={"MAILER_SECRET_KEY": "k" * 40})
    assert from_env.secret_key == "k" * 40


def test_a_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml", environ={})


def test_schema_revision_is_the_newest_migration(tmp_path):
    from mailer.db import SCHEMA_REVISION, current_revision, head_revision, open_database

    assert head_revision() == SCHEMA_REVISION
    engine = open_database(f"sqlite:///{tmp_path / 'new.db'}")
    assert current_revision(engine) == SCHEMA_REVISION
    open_database(f"sqlite:///{tmp_path / 'new.db'}")  # a second open changes nothing


def test_the_models_partial_index_has_its_where_on_each_database(engine):
    """Declared for the engine's dialect when it is made, not at import (which would load
    PostgreSQL's dialect on SQLite): DDL from the models builds the index the migration
    built, at most one open mail per subscriber and kind, not one for good."""
    from sqlalchemy.schema import CreateIndex

    from mailer.models import PARTIAL_INDEXES

    (index,) = PARTIAL_INDEXES
    ddl = str(CreateIndex(index).compile(engine))
    assert ddl.startswith("CREATE UNIQUE INDEX ux_transactional_mail_open")
    assert ddl.endswith("WHERE status IN ('queued', 'sending')")


def test_base_url_becomes_ascii_and_may_not_carry_a_query():
    settings = load_settings(
        environ={"MAILER_PUBLICATION_BASE_URL": "https://bücher.example/nyheter/"}
    )
    assert settings.publication.base_url == "https://xn--bcher-kva.example/nyheter"
    for bad in ("https://news.example/?utm=1", "https://news.example/#top", "ftp://news.example"):
        with pytest.raises(ConfigError, match=r"publication\.base_url"):
            load_settings(environ={"MAILER_PUBLICATION_BASE_URL": bad})


def test_a_lease_shorter_than_the_longest_send_is_refused():
    with pytest.raises(ConfigError, match=r"delivery\.lease_seconds = 60: expected more than 690"):
        load_settings(environ={"MAILER_DELIVERY_LEASE_SECONDS": "60"})
    assert load_settings(environ={}).delivery.lease_seconds > 690


def test_web_origins_and_proxies_are_checked_and_read_from_the_environment():
    settings = load_settings(
        environ={
            "MAILER_WEB_ALLOWED_ORIGINS": "https://News.example:443, http://embed.example:8080",
            "MAILER_WEB_TRUSTED_PROXIES": "127.0.0.1 10.0.0.0/8 ::1",
        }
    )
    assert settings.allowed_origins == (
        "https://dawatmedia.example",  # base_url's: the site's own pages, always
        "https://news.example",  # as browsers send it: lower case, no default port
        "http://embed.example:8080",
    )
    assert settings.web.trusted_proxies == ("127.0.0.1/32", "10.0.0.0/8", "::1/128")
    assert load_settings(environ={}).allowed_origins == ("https://dawatmedia.example",)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MAILER_WEB_ALLOWED_ORIGINS", "https://news.example/newsletter"),
        ("MAILER_WEB_ALLOWED_ORIGINS", "news.example"),
        ("MAILER_WEB_ALLOWED_ORIGINS", "ftp://news.example"),
        ("MAILER_WEB_TRUSTED_PROXIES", "10.0.0.300"),
        ("MAILER_WEB_TRUSTED_PROXIES", "proxy.internal"),
    ],
)
def test_a_bad_web_value_stops_the_program_naming_the_key(variable, value):
    with pytest.raises(ConfigError) as error:
        load_settings(environ={variable: value})
    key = variable.removeprefix("MAILER_").lower().replace("_", ".", 1)
    assert key in str(error.value) and value in str(error.value)
