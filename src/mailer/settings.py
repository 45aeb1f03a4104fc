"""Configuration: config/mailer.toml, then MAILER_* environment variables, into one frozen,
validated Settings object. Loaded once at start; a bad value stops the program there.
Each section's model and checks are in mailer.sections; here they are gathered, read
from the file and the environment, and the signing keys found."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import tempfile
import tomllib
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator

from mailer.errors import ConfigError
from mailer.sections import (
    SMTP_DATA_TIMEOUT,
    Database,
    Delivery,
    Desk,
    Dkim,
    Publication,
    Schedule,
    Section,
    Smtp,
    Sources,
    Tracking,
    Web,
    web_origin,
)
from mailer.sections_donation import Donation, Donations, DonationTexts
from mailer.sections_readers import Bounces, Welcome

# The sections' models live in mailer.sections; they are named here too, where the
# code that reads settings has always found them.
__all__ = [
    "DEFAULT_CONFIG",
    "MIN_KEY_LENGTH",
    "SMTP_DATA_TIMEOUT",
    "Database",
    "Delivery",
    "Dkim",
    "Donation",
    "DonationTexts",
    "Donations",
    "Publication",
    "Schedule",
    "Section",
    "Security",
    "Settings",
    "Smtp",
    "Sources",
    "Tracking",
    "Web",
    "bundled_path",
    "key_from_file",
    "load_settings",
    "masked_url",
    "web_origin",
]

DEFAULT_CONFIG = Path("config/mailer.toml")


def masked_url(url: str) -> str:
    """A database URL fit to print: its password, if any, replaced by ***."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):  # not a URL SQLAlchemy reads: mask by its shape
        return re.sub(r"(://[^/@:]*:)[^/@]*@", r"\1***@", url)


# The shortest signing key accepted: what the generated key file is held to as well.
MIN_KEY_LENGTH = 32


class Security(Section):
    secret_key_file: str = "var/secret_key"
    # Only ever from the environment: MAILER_SECRET_KEY, and MAILER_SECRET_KEY_PREVIOUS
    # (keys retired by a change of key whose links still verify, comma-separated).
    secret_key: str = Field(default="", repr=False)
    secret_key_previous: tuple[str, ...] = Field(default=(), repr=False)
    # The key of the markers purged addresses leave behind; never changed (a new key
    # lets purged addresses be imported again). MAILER_PURGE_KEY, or this file.
    purge_key_file: str = "var/purge_key"
    purge_key: str = Field(default="", repr=False)

    @field_validator("secret_key_previous", mode="before")
    @classmethod
    def _key_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(key.strip() for key in value.split(",") if key.strip())
        return value

    @model_validator(mode="after")
    def _long_enough(self) -> Security:
        # said here, naming the variable, so the error never repeats the key itself
        if self.secret_key and len(self.secret_key) < MIN_KEY_LENGTH:
            raise ValueError(
                f"MAILER_SECRET_KEY is {len(self.secret_key)} characters long; a signing key "
                f"needs at least {MIN_KEY_LENGTH} random characters (make one with: "
                "python -c 'import secrets; print(secrets.token_urlsafe(48))')"
            )
        if self.purge_key and len(self.purge_key) < MIN_KEY_LENGTH:
            raise ValueError(
                f"MAILER_PURGE_KEY is {len(self.purge_key)} characters long; it needs at least "
                f"{MIN_KEY_LENGTH} (use the key you have always used: a new one lets purged "
                "addresses be imported again)"
            )
        if any(len(key) < MIN_KEY_LENGTH for key in self.secret_key_previous):
            raise ValueError(
                f"MAILER_SECRET_KEY_PREVIOUS: every previous key has at least {MIN_KEY_LENGTH} "
                "characters, as it had when it signed links (separate several with commas)"
            )
        return self


class Settings(Section):
    publication: Publication
    database: Database = Database()
    smtp: Smtp = Smtp()
    delivery: Delivery = Delivery()
    donation: Donation = Donation()
    donations: Donations = Donations()
    sources: Sources = Sources()
    schedule: Schedule = Schedule()
    dkim: Dkim = Dkim()
    web: Web = Web()
    desk: Desk = Desk()
    tracking: Tracking = Tracking()
    bounces: Bounces = Bounces()
    welcome: Welcome = Welcome()
    security: Security = Security()
    config_path: Path | None = None

    @model_validator(mode="after")
    def _lease_outlasts_a_send(self) -> Settings:
        # A claim must not run out while its message is still with the server, or
        # another sender could take it over and send it again.
        longest_send = self.smtp.longest_send
        if self.delivery.lease_seconds <= longest_send:
            raise ValueError(
                f"delivery.lease_seconds = {self.delivery.lease_seconds:g}: expected more than "
                f"{longest_send:g} (3 x smtp.timeout + {SMTP_DATA_TIMEOUT} s for the server "
                "to accept a message), or a slow server's message could go out twice"
            )
        return self

    @property
    def allowed_origins(self) -> tuple[str, ...]:
        """Origins whose forms the site takes: base_url's (its own pages), and
        [web] allowed_origins."""
        return (web_origin(self.publication.base_url), *self.web.allowed_origins)

    @cached_property
    def secret_key(self) -> str:
        """The key that signs links now: read (or created) once, then kept as a value."""
        return self.security.secret_key or _secret_from_file(Path(self.security.secret_key_file))

    @property
    def purge_key(self) -> str:
        """The key of erased addresses' markers: MAILER_PURGE_KEY, or the purge key file
        (created on first need)."""
        if self.security.purge_key:
            return self.security.purge_key
        path = Path(self.security.purge_key_file)
        key = key_from_file(path)
        if len(key) < MIN_KEY_LENGTH:
            raise ConfigError(
                f"{path}: the purge key is too short; restore it from your backup (a new key "
                "lets purged addresses be imported again)"
            )
        return key

    @property
    def signing_keys(self) -> list[str]:
        """Every key a link may be signed with: the previous ones, then the current one
        (itsdangerous's order: it tries the newest first)."""
        return [*self.security.secret_key_previous, self.secret_key]

    def replace(self, **sections: dict[str, Any]) -> Settings:
        """A copy with some keys of some sections changed, validated again."""
        data = self.model_dump()
        for name, values in sections.items():
            data[name] = {**data[name], **values}
        return _validate(data)


def load_settings(path: Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Read the config file (explicit path, $MAILER_CONFIG, ./config/mailer.toml, or the
    packaged default) and overlay MAILER_<SECTION>_<KEY> variables."""
    env = dict(os.environ if environ is None else environ)
    path = _find_config(path or (Path(env["MAILER_CONFIG"]) if env.get("MAILER_CONFIG") else None))
    data = _read_toml(path)
    if "password" in data.get("smtp", {}):
        raise ConfigError(
            f"{path}: [smtp] password must not be in the file; set MAILER_SMTP_PASSWORD instead"
        )
    if "imap_password" in data.get("bounces", {}):
        raise ConfigError(
            f"{path}: [bounces] imap_password must not be in the file; set "
            "MAILER_BOUNCES_IMAP_PASSWORD instead"
        )
    for key in ("secret_key", "secret_key_previous", "purge_key"):
        if key in data.get("security", {}):
            raise ConfigError(
                f"{path}: [security] {key} must not be in the file; set MAILER_{key.upper()} "
                "in the environment instead (or leave it to the key file)"
            )
    _overlay_environment(data, env)
    data["config_path"] = path
    return _validate(data)


def _find_config(path: Path | None) -> Path:
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        return path
    if DEFAULT_CONFIG.is_file():
        return DEFAULT_CONFIG
    return bundled_path("config") / "mailer.toml"


def bundled_path(name: str) -> Path:
    """A top-level folder of the project (config, templates): the source checkout's, or
    the copy a wheel installs inside the package."""
    checkout = Path(__file__).resolve().parents[2] / name
    return checkout if checkout.is_dir() else Path(__file__).resolve().parent / "bundled" / name


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None


def _section_keys() -> dict[str, set[str]]:
    return {
        name: set(field.annotation.model_fields)
        for name, field in Settings.model_fields.items()
        if isinstance(field.annotation, type) and issubclass(field.annotation, Section)
    }


def _overlay_environment(data: dict[str, Any], env: dict[str, str]) -> None:
    keys = _section_keys()
    for variable, value in env.items():
        if not variable.startswith("MAILER_") or variable == "MAILER_CONFIG":
            continue
        section, _, key = variable.removeprefix("MAILER_").lower().partition("_")
        if variable in ("MAILER_SECRET_KEY", "MAILER_SECRET_KEY_PREVIOUS", "MAILER_PURGE_KEY"):
            section, key = "security", variable.removeprefix("MAILER_").lower()
        elif key not in keys.get(section, ()):
            raise ConfigError(
                f"{variable}: unknown setting; expected MAILER_<SECTION>_<KEY> naming a key "
                "of config/mailer.toml, such as MAILER_SMTP_HOST"
            )
        data.setdefault(section, {})[key] = value


def _validate(data: dict[str, Any]) -> Settings:
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, data.get("config_path"))) from None


def _describe(exc: ValidationError, path: Path | None) -> str:
    lines = [f"invalid configuration in {path or 'settings'}:"]
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"])
        variable = "MAILER_" + "_".join(str(part) for part in error["loc"]).upper()
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown {'key' if '.' in key else 'section'}")
        elif error["type"] == "missing":
            lines.append(f"  {key}: missing (set it in the file or as {variable})")
        elif len(error["loc"]) < 2:  # a rule across keys: its message names them
            lines.append(f"  {message}")
        else:
            expected = message.removeprefix("Input should be ")
            given = error.get("input")
            if key == "database.url" and isinstance(given, str):
                given = masked_url(given)
            lines.append(f"  {key} = {given!r}: expected {expected} (file or {variable})")
    return "\n".join(lines)


def _secret_from_file(path: Path) -> str:
    """The signing key from its file, created with a fresh random key on first use."""
    key = key_from_file(path)
    if len(key) < MIN_KEY_LENGTH:
        raise ConfigError(f"{path}: the secret key is too short; delete the file to renew it")
    return key


def key_from_file(path: Path) -> str:
    """The key kept in `path`, created with a fresh random key on first use. Processes
    starting together (serve and scheduler) agree on one key: the file is written whole
    under a temporary name and linked into place, and a process that finds it there
    already reads the winner's key."""
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(secrets.token_urlsafe(48) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):  # another process's key stays
            os.link(temporary, path)
    finally:
        os.unlink(temporary)
    return path.read_text(encoding="utf-8").strip()
