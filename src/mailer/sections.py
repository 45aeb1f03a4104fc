"""The sections of config/mailer.toml as frozen, validated models, one class a section
(`[publication]`, `[smtp]`, ...): what each key may hold, and the error that says so.
Settings (mailer.settings) gathers them and loads them from the file and environment."""

from __future__ import annotations

import ipaddress
import re
import zoneinfo
from pathlib import Path
from typing import Literal
from urllib.parse import quote, urlsplit, urlunsplit

from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


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


# a BCP 47 language tag as mailer takes it: fa, fa-AF, nb, zh-Hant-TW
LANGUAGE_TAG = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


# RFC 3986 pchar and "/", and "%" so an address encoded already is not encoded twice
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"


class Publication(Section):
    name: str = Field(min_length=1)
    base_url: str = Field(pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$")
    from_address: str
    from_name: str = ""
    reply_to: str = ""
    postal_address: str = Field(min_length=1)
    language: str = Field(default="en", pattern=LANGUAGE_TAG.pattern)
    # the languages it publishes in, its own first (default: its language alone)
    languages: tuple[str, ...] = ()
    # "all": every article to every reader; "by-language": an article to those who read
    # its language. Either way each reader gets the chrome and appeal in their own.
    editions: Literal["all", "by-language"] = "all"
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

    @field_validator("languages", mode="before")
    @classmethod
    def _language_list(cls, value: object) -> object:
        return _listed(value)

    @model_validator(mode="after")
    def _own_language_first(self) -> Publication:
        wrong = [tag for tag in self.languages if not LANGUAGE_TAG.match(tag)]
        if wrong:
            raise ValueError(f"publication.languages: BCP 47 tags such as fa-AF, not {wrong}")
        others = [tag for tag in self.languages if tag.lower() != self.language.lower()]
        object.__setattr__(self, "languages", (self.language, *dict.fromkeys(others)))
        return self

    @property
    def sender_name(self) -> str:
        return self.from_name or self.name


class Database(Section):
    url: str = Field(default="sqlite:///subscribers.db", pattern=r"^[a-z0-9+]+://")


# The end of a message's DATA may take a server long to answer (RFC 5321 4.5.3.2: 10
# minutes); a message timed out there may still be delivered, so mailer waits that long.
SMTP_DATA_TIMEOUT = 600


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


class Tracking(Section):
    """Which links count their clicks, per issue and link (never per reader)."""

    # "appeal": the donation block's links; "all": every link of an issue; "off": none
    count_clicks: Literal["appeal", "all", "off"] = "appeal"


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
            from mailer.crontab import crontab_trigger  # imports the scheduler's library

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


class Desk(Section):
    """The editors' desk at /desk on `mailer serve`: who may sign in is `mailer editors`."""

    enabled: bool = True
    # a session unused this long is signed out (its next request asks for the password)
    idle_minutes: float = Field(default=60, gt=0)
    # admins must sign in with a second factor (TOTP): one without it is sent to set it
    # up and reaches nothing else at the desk until it is on
    require_2fa: bool = False


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
