"""How fast an issue goes out: the sample article to N subscribers through a discarding
SMTP server in another process, on a throwaway SQLite file. Prints the figures.

    .venv/bin/python bench/send_throughput.py [N]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dkim as dkimpy

from mailer.articles import ingest_file
from mailer.catcher import free_port
from mailer.db import open_database
from mailer.delivery import deliver
from mailer.demo import SAMPLE_ARTICLE
from mailer.issues import article_issue
from mailer.messages import MessageBuilder, Recipient
from mailer.render import render_article_issue
from mailer.signing import SIGNED_HEADERS, generate_key
from mailer.subscriber_csv import import_csv
from mailer.testing import make_settings

SINK = """
import asyncio, sys
from aiosmtpd.controller import Controller
class Sink:
    async def handle_DATA(self, server, session, envelope):
        return "250 2.0.0 Ok: discarded"
controller = Controller(Sink(), hostname="127.0.0.1", port=int(sys.argv[1]))
controller.start()
print("ready", flush=True)
sys.stdin.read()
"""


def timed(label: str, count: int, work) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = work()
    seconds = time.perf_counter() - start
    print(f"{label:<38} {seconds * 1000 / count:9.3f} ms each  ({count} in {seconds:.2f} s)")
    return result


def dkimpy_sign(message: bytes, pem: bytes) -> bytes:
    """How mailer signed before its own signer: dkimpy, whose RSA is pure Python."""
    signature = dkimpy.sign(message, b"bench", b"dawatmedia.example", pem,
                            canonicalize=(b"relaxed", b"relaxed"),
                            include_headers=SIGNED_HEADERS)  # fmt: skip
    return signature + message


def main(count: int) -> None:
    port = free_port()
    sink = subprocess.Popen(
        [sys.executable, "-c", SINK, str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
    try:
        with tempfile.TemporaryDirectory() as folder:
            settings = make_settings(Path(folder), port)
            engine = open_database(settings.database.url)
            listing = Path(folder) / "readers.csv"
            listing.write_text("email\n" + "".join(f"r{i}@example.org\n" for i in range(count)))
            import_csv(engine, listing)
            article = ingest_file(engine, settings, SAMPLE_ARTICLE).article
            rendered = timed("render + inline (once per issue)", 1,
                             lambda: render_article_issue(settings, article))  # fmt: skip
            builder = MessageBuilder(settings, rendered)
            readers = [Recipient(i, f"r{i}@example.org") for i in range(200)]
            timed("build one message", 200, lambda: [builder.build(r) for r in readers])
            key = Path(folder) / "dkim.pem"
            generate_key(key, "bench", "dawatmedia.example")
            dkim = {
                "domain": "dawatmedia.example",
                "selector": "bench",
                "private_key_path": str(key),
            }
            signing = MessageBuilder(settings.replace(dkim=dkim), rendered)
            many = [Recipient(i, f"r{i}@example.org") for i in range(count)]
            pem = key.read_bytes()
            timed("build and DKIM-sign one message", count,
                  lambda: [signing.build(r) for r in many])  # fmt: skip
            timed("the same, signed by dkimpy (reference)", count,
                  lambda: [dkimpy_sign(builder.build(r).data, pem) for r in many])  # fmt: skip
            issue = article_issue(engine, settings, article)
            start = time.perf_counter()
            report = deliver(engine, settings, issue)
            seconds = time.perf_counter() - start
            print(f"send {report.sent} messages end to end: {seconds:.2f} s, "
                  f"{report.sent / seconds:.0f} messages/s")  # fmt: skip
    finally:
        sink.communicate("")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
