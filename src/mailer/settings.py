"""Configuration: config/mailer.toml, then MAILER_* environment variables, into one frozen,
validated Settings object. Loaded once at start; a bad value stops the program there."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import secrets
import tempfile
import tomllib
import zoneinfo
from functools import cached_property
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlsplit, urlunsplit

from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from schwifty import IBAN
from schwifty.exceptions import SchwiftyException

from mailer.errors import ConfigError

DEFAULT_CONFIG = Path("config/mailer.toml")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _address(value: str) -> str:
    """An address mail headers and SMTP take as it is: a domain in other letters is
    written in its ASCII form (IDNA), a name before the @ in other letters is refused."""
    try:
        checked = validate_email(value, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise ValueError(f"an email address in ASCII before the @ ({exc})") from None
    return checked.ascii_email or checked.normalized


# RFC 3986 pchar and "/", and "%" so an address encoded already is not encoded twice
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"


class Publication(Section):
    name: str = Field(min_length=1)
    base_url: str = Field(pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$")
    from_address: str
    from_name: str = ""
    reply_to: str = ""
    postal_address: str = Field(min_length=1)
    language: str = Field(default="en", pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
    timezone: str = "Europe/Oslo"

    @field_validator("from_address")
    @classmethod
    def _sender(cls, value: str) -> str:
        return _address(value)

    @field_validator("reply_to")
    @classmethod
    def _reply_to(cls, value: str) -> str:
        return _address(value) if value else ""

    @field_validator("base_url")
    @classmethod
    def _ascii_base(cls, value: str) -> str:
        """Links go into headers, which must be ASCII: an IDN host becomes punycode, and
        a path in other letters (/påmelding) is percent-encoded as UTF-8."""
        parts = urlsplit(value.rstrip("/"))
        try:
            host = parts.netloc.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValueError("an http(s) address with a valid host name") from None
        path = quote(parts.path, safe=_PATH_SAFE)  # what is encoded already stays as it is
        return urlunsplit(parts._replace(netloc=host, path=path))

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError("an IANA time zone such as Europe/Oslo") from None
        return value

    @property
    def sender_name(self) -> str:
        return self.from_name or self.name


def masked_url(url: str) -> str:
    """A database URL fit to print: its password, if any, replaced by ***."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):  # not a URL SQLAlchemy reads: mask by its shape
        return re.sub(r"(://[^/@:]*:)[^/@]*@", r"\1***@", url)


class Database(Section):
    url: str = Field(default="sqlite:///subscribers.db", pattern=r"^[a-z0-9+]+://")


class Smtp(Section):
    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=1025, ge=1, le=65535)
    security: Literal["none", "starttls", "tls"] = "none"
    username: str = ""
    timeout: float = Field(default=30, gt=0)
    max_rate_per_second: float = Field(default=0, ge=0)
    max_per_hour: int = Field(default=0, ge=0)
    max_connections: int = Field(default=4, ge=1, le=100)
    max_messages_per_connection: int = Field(default=100, ge=1)

    @property
    def longest_send(self) -> float:
        """The longest a server may take over one message: connect, MAIL, RCPT, DATA."""
        return 3 * self.timeout + SMTP_DATA_TIMEOUT

    # Only ever from MAILER_SMTP_PASSWORD; the loader refuses it in the file.
    password: str = Field(default="", repr=False)


class Delivery(Section):
    max_attempts: int = Field(default=5, ge=1)
    retry_hours: float = Field(default=24, ge=0)
    retry_base_seconds: float = Field(default=300, ge=1)
    lease_seconds: float = Field(default=900, gt=0)
    processes: int = Field(default=0, ge=0, le=64)


class Donation(Section):
    heading: str = ""
    appeal: str = ""
    bank_name: str = ""
    account_number: str = ""
    iban: str = ""
    vipps: str = Field(default="", pattern=r"^[0-9 ]*$")
    url: str = Field(default="", pattern=r"^(https?://\S+)?$")

    @field_validator("iban")
    @classmethod
    def _iban(cls, value: str) -> str:
        if not value:
            return ""
        try:
            return IBAN(value).formatted
        except SchwiftyException as exc:
            raise ValueError(f"a valid IBAN ({exc})") from None


class Sources(Section):
    boilerplate_patterns: tuple[str, ...] = ()
    # a feed that carries excerpts only: read each entry's page for the whole article
    fetch_full_text: bool = False
    # let a redirect or a feed entry's page lead from a public site to a private address
    allow_private_addresses: bool = False

    @field_validator("boilerplate_patterns")
    @classmethod
    def _regexes(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"regular expressions ({pattern!r}: {exc})") from None
        return patterns


class Schedule(Section):
    """What `mailer scheduler` does by itself (and `mailer digest` by hand or from cron)."""

    # crontab's five fields, in the publication's time zone; empty: no digest by itself
    digest_cron: str = "0 8 * * mon"
    # a service that was down at digest time still sends it if back within this long
    misfire_grace_minutes: float = Field(default=60, ge=0)
    watch_dir: str = ""
    feed_url: str = Field(default="", pattern=r"^(https?://\S+)?$")
    feed_poll_minutes: float = Field(default=10, gt=0)
    auto_send_new_articles: bool = False

    @field_validator("digest_cron")
    @classmethod
    def _crontab(cls, value: str) -> str:
        value = " ".join(value.split())
        if value:
            from mailer.digest import crontab_trigger  # imports the scheduler's library

            try:
                crontab_trigger(value, "UTC")
            except ValueError as exc:
                raise ValueError(
                    f'a crontab schedule: minute hour day month weekday, such as "0 8 * * mon" '
                    f"({exc})"
                ) from None
        return value


class Dkim(Section):
    domain: str = Field(default="", pattern=r"^([A-Za-z0-9-]+\.)*[A-Za-z0-9-]*$")
    selector: str = Field(default="", pattern=r"^[A-Za-z0-9._-]*$")
    private_key_path: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.domain)

    @model_validator(mode="after")
    def _complete(self) -> Dkim:
        if not (self.domain or self.selector or self.private_key_path):
            return self
        if not (self.domain and self.selector and self.private_key_path):
            raise ValueError(
                "dkim: set domain, selector and private_key_path together (or none of them); "
                "`mailer dkim keygen --selector NAME` makes a key"
            )
        key = Path(self.private_key_path)
        if not key.is_file() or b"PRIVATE KEY-----" not in key.read_bytes()[:100]:
            raise ValueError(
                f"dkim.private_key_path = {self.private_key_path!r}: expected a PEM private "
                "key file; `mailer dkim keygen --selector NAME` makes one"
            )
        return self


def _listed(value: object) -> object:
    """A list from the environment comes as one string: split it at commas and spaces."""
    return tuple(value.replace(",", " ").split()) if isinstance(value, str) else value


def web_origin(url: str) -> str:
    """`scheme://host[:port]` of an http(s) address, as a browser's Origin header puts it:
    lower case, an IDN host in punycode, the scheme's default port left out; ValueError
    for anything else (a path, a query, a user name)."""
    parts = urlsplit(url.strip())
    try:
        port = parts.port
        host = (parts.hostname or "").encode("idna").decode("ascii").lower()
    except (ValueError, UnicodeError):
        raise ValueError(f"{url!r} is not an http(s) origin") from None
    if parts.scheme.lower() not in ("http", "https") or not host or parts.username:
        raise ValueError(f"{url!r} is not an http(s) origin")
    if host.count(":"):  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    scheme = parts.scheme.lower()
    default = {"http": 80, "https": 443}[scheme]
    return f"{scheme}://{host}" + (f":{port}" if port and port != default else "")


class Web(Section):
    """The subscriber site (mailer serve): whose forms it takes, and which proxies it
    believes about the client's address."""

    # Other sites whose pages' forms may post to the site (a newsroom's own site
    # embedding the sign-up form), besides the site's own ([publication] base_url).
    allowed_origins: tuple[str, ...] = ()
    # Addresses (or networks) of reverse proxies in front of the site; only a request
    # from one of them has its X-Forwarded-For read. Empty: none is believed.
    trusted_proxies: tuple[str, ...] = ()

    @field_validator("allowed_origins", "trusted_proxies", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return _listed(value)

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        origins = []
        for value in values:
            parts = urlsplit(value.strip())
            if parts.path not in ("", "/") or parts.query or parts.fragment:
                raise ValueError(f"origins as scheme://host[:port], without a path ({value!r})")
            try:
                origins.append(web_origin(value))
            except ValueError:
                raise ValueError(f"origins as scheme://host[:port] ({value!r})") from None
        return tuple(origins)

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        networks = []
        for value in values:
            try:
                networks.append(str(ipaddress.ip_network(value.strip(), strict=False)))
            except ValueError:
                raise ValueError(f"IP addresses or CIDR networks ({value!r})") from None
        return tuple(networks)


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


# The end of a message's DATA may take a server long to answer (RFC 5321 4.5.3.2: 10
# minutes); a message timed out there may still be delivered, so mailer waits that long.
SMTP_DATA_TIMEOUT = 600


class Settings(Section):
    publication: Publication
    database: Database = Database()
    smtp: Smtp = Smtp()
    delivery: Delivery = Delivery()
    donation: Donation = Donation()
    sources: Sources = Sources()
    schedule: Schedule = Schedule()
    dkim: Dkim = Dkim()
    web: Web = Web()
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
