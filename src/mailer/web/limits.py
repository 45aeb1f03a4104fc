"""The size limit on what a request may send: every form of the site fits in a few KB,
so a bigger body is refused with 413 before it is read, by its Content-Length, or, for a
body sent without one, as soon as the bytes read pass the limit. Nothing bigger than the
limit is ever held in memory, and nobody can keep a worker busy reading. The desk's
forms take uploads (an article file, a subscriber CSV), so paths under it get a wider
limit."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]

# The sign-up form: an address (254 characters), a name (100 characters, up to 12 bytes
# each once UTF-8 and percent-encoded), a choice and a hidden field.
FORM_BYTES = 4096
# An article's file or a newsroom's subscriber CSV (100,000 readers fit in about 5 MB).
DESK_FORM_BYTES = 16 * 1024 * 1024


class _TooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware answering 413 with `page` (HTML) for a body over `limit` bytes, or
    over the limit `wider` gives the first path prefix it names that the path starts with."""

    def __init__(
        self, app: ASGIApp, limit: int, page: bytes, wider: tuple[tuple[str, int], ...] = ()
    ):
        self.app, self.limit, self.page, self.wider = app, limit, page, wider

    def limit_for(self, path: str) -> int:
        return next((limit for prefix, limit in self.wider if path.startswith(prefix)), self.limit)

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await self._refuse(send)
            return
        seen, started = 0, False

        async def receive_within_limit() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge
            return message

        async def send_noting_start(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive_within_limit, send_noting_start)
        except _TooLarge:
            if started:
                raise
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        headers = [
            (b"content-type", b"text/html; charset=utf-8"),
            (b"content-length", str(len(self.page)).encode()),
            (b"connection", b"close"),  # what is left of the body is not read
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": self.page})
