"""Ingest, fetching: a feed or an article page over HTTP(S) with httpx. A time-out, a
size limit, at most 5 redirects (each connection checked by reach.py), a User-Agent
naming mailer, and conditional GET (ETag / Last-Modified from the previous fetch) so
that polling a feed is cheap. Every failure is one line naming the URL and the reason."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from email.message import Message

import httpx

from mailer import __version__
from mailer.errors import SourceError
from mailer.sources.reach import GuardedTransport, NonPublicAddress, Reach

MAX_BYTES = 5 * 1024 * 1024
MAX_REDIRECTS = 5
TIMEOUT_SECONDS = 20.0
USER_AGENT = f"mailer/{__version__} (newsletter and donation-appeal mailer)"
ACCEPT = (
    "application/rss+xml, application/atom+xml, application/xml;q=0.9, text/xml;q=0.9, "
    "text/html;q=0.8, */*;q=0.1"
)
# gzip only, inflated here rather than by httpx, which inflates a whole network read at
# once: a small hostile response could take a hundred megabytes before the limit is seen
WINDOW_BITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS}


@dataclass(frozen=True)
class Fetched:
    url: str  # where it was found, after redirects
    content: bytes | None  # None: not modified since the ETag / Last-Modified given
    content_type: str = ""
    charset: str | None = None
    etag: str | None = None
    last_modified: str | None = None


def fetch(
    url: str,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
    timeout: float = TIMEOUT_SECONDS,
    max_bytes: int = MAX_BYTES,
    reach: Reach | None = None,
) -> Fetched:
    """GET the URL, connecting only where `reach` allows (default: the URL's host, and
    public addresses after it when that host is public); raises SourceError("URL: reason")."""
    headers = {"User-Agent": USER_AGENT, "Accept": ACCEPT, "Accept-Encoding": "gzip"}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    transport = GuardedTransport(reach or Reach.of(url))
    try:
        with (
            httpx.Client(
                follow_redirects=True,
                max_redirects=MAX_REDIRECTS,
                timeout=timeout,
                transport=transport,
            ) as c,
            c.stream("GET", url, headers=headers) as response,
        ):
            return _read(url, response, max_bytes, etag, last_modified)
    except NonPublicAddress as exc:
        raise SourceError(f"{url}: {exc}") from None
    except httpx.TooManyRedirects:
        raise SourceError(f"{url}: more than {MAX_REDIRECTS} redirects") from None
    except httpx.TimeoutException:
        raise SourceError(f"{url}: no answer within {timeout:g} seconds") from None
    except httpx.InvalidURL as exc:
        raise SourceError(f"{url}: not a valid address ({exc})") from None
    except httpx.HTTPError as exc:
        raise SourceError(f"{url}: cannot be fetched ({exc or type(exc).__name__})") from None


def _read(
    url: str, response: httpx.Response, max_bytes: int, etag: str | None, modified: str | None
) -> Fetched:
    found = str(response.url)
    if response.status_code == 304:
        return Fetched(found, None, etag=etag, last_modified=modified)
    if response.status_code >= 400:
        raise SourceError(
            f"{url}: the server answered {response.status_code} {response.reason_phrase}"
        )
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise SourceError(f"{url}: {int(declared):,} bytes, more than the {max_bytes:,} allowed")
    content = _body(url, response, max_bytes)
    kind, charset = _content_type(response.headers.get("content-type", ""))
    return Fetched(
        found,
        content,
        kind,
        charset,
        response.headers.get("etag"),
        response.headers.get("last-modified"),
    )


def _body(url: str, response: httpx.Response, max_bytes: int) -> bytes:
    """The response's content, inflated, never holding much more than max_bytes."""
    coding = response.headers.get("content-encoding", "identity").strip().lower()
    if coding not in ("identity", *WINDOW_BITS):
        raise SourceError(f"{url}: sent in an encoding mailer does not read ({coding})")
    inflater = zlib.decompressobj(WINDOW_BITS[coding]) if coding in WINDOW_BITS else None
    content = bytearray()
    try:
        for chunk in response.iter_raw():
            room = max_bytes + 1 - len(content)
            content += chunk if inflater is None else _inflate(inflater, chunk, room)
            if len(content) > max_bytes:
                raise SourceError(f"{url}: more than the {max_bytes:,} bytes allowed")
        if inflater is not None and not inflater.eof:
            raise SourceError(f"{url}: the compressed content ends early")
    except zlib.error as exc:
        raise SourceError(f"{url}: the compressed content is damaged ({exc})") from None
    return bytes(content)


def _inflate(inflater: zlib._Decompress, data: bytes, room: int) -> bytes:
    """What `data` inflates to, stopping once there is more than `room` bytes of it."""
    out = bytearray()
    while len(out) < room:
        out += inflater.decompress(data, room - len(out))
        data = inflater.unconsumed_tail
        if not data:
            break
    return bytes(out)


def _content_type(header: str) -> tuple[str, str | None]:
    message = Message()
    message["content-type"] = header or "application/octet-stream"
    return message.get_content_type(), message.get_param("charset")  # type: ignore[return-value]
