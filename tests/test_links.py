"""Every link an email carries is answered by the subscriber site: real messages (an
article issue for a real subscriber, and a confirmation mail from the transactional
queue through a real SMTP server), their links requested over real HTTP from the site
served by uvicorn. And the links and the site's routes come from the same constants in
links.py, so renaming a route moves both."""

from __future__ import annotations

import email
import email.policy
import html
import json
import os
import re
import shutil
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx

from mailer import links
from mailer.articles import ingest_file
from mailer.db import open_database
from mailer.delivery import deliver
from mailer.demo import SAMPLE_ARTICLE
from mailer.issues import article_issue, as_rendered
from mailer.messages import MessageBuilder, Recipient
from mailer.subscribers import add_subscriber
from mailer.testing import RecordingHandler, make_settings, served, smtp_server
from mailer.web import create_app
from mailer.web.headers import TOKEN_PATHS

URL = re.compile(r"""https?://[^\s"'<>()]+""")
ONE_CLICK = "List-Unsubscribe=One-Click"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def carried_links(message: EmailMessage, base_url: str) -> set[str]:
    """Every URL under base_url in the message's List-Unsubscribe header and its parts,
    base_url itself (the masthead's link to the site's home) included."""
    found = set(re.findall(r"<([^>]+)>", message["List-Unsubscribe"] or ""))
    for part in message.walk():
        if part.get_content_maintype() == "text":
            content = part.get_content()
            found |= {html.unescape(url).rstrip(".,;:") for url in URL.findall(content)}
    return {url for url in found if url == base_url or url.startswith(base_url + "/")}


def links_answered(directory: Path) -> dict[str, Any]:
    """Sends an article issue to a reader and a confirmation link to a new address, with
    the site served and base_url pointing at it, then requests every link the messages
    carry: what each path answered, and what the List-Unsubscribe link answers to a mail
    client's one-click POST. Runs in this process or, with links.py changed, in another."""
    handler = RecordingHandler()
    with smtp_server(handler):
        settings = make_settings(directory, handler.port)
        engine = open_database(settings.database.url)
        try:
            with served(settings, engine) as (url, running):
                reader = add_subscriber(engine, "ana@example.org", "Ana", confirmed=True)
                article = ingest_file(engine, running, SAMPLE_ARTICLE).article
                issue = article_issue(engine, running, article)
                assert reader.id is not None and deliver(engine, running, issue).sent == 1
                built = MessageBuilder(running, as_rendered(issue), issue_id=issue.id).build(
                    Recipient(reader.id, reader.email, reader.name, reader.public_id)
                )
                answer = httpx.post(url + links.SUBSCRIBE_PATH, data={"email": "new@example.org"})
                assert answer.status_code == 200
                messages = [
                    handler.wait_for("ana@example.org")[0],
                    email.message_from_bytes(built.data, policy=email.policy.default),
                    handler.wait_for("new@example.org")[0],  # from the transactional queue
                ]
                carried = set().union(*(carried_links(m, url) for m in messages))
                answered = {
                    link.removeprefix(url): httpx.get(link).status_code for link in sorted(carried)
                }
                unsubscribe = messages[0]["List-Unsubscribe"].strip("<>")
                one_click = httpx.post(unsubscribe, content=ONE_CLICK, headers=FORM)
        finally:
            engine.dispose()
    return {"answered": answered, "one_click": [one_click.status_code, one_click.text]}


def kinds(paths: dict[str, int]) -> set[str]:
    """Which of the site's routes the paths are addresses of ("" is base_url itself, the
    home page, which a browser asks for as "/")."""
    routes = [links.UNSUBSCRIBE_PATH, links.PREFERENCES_PATH, links.CONFIRM_PATH, links.ISSUE_PATH]
    found = {route for route in routes for path in paths if path.startswith(links.prefix(route))}
    return found | ({links.HOME_PATH} & {path or "/" for path in paths})


def test_every_link_an_email_carries_is_answered_by_the_site(tmp_path):
    """The masthead's link home, List-Unsubscribe, the footer's unsubscribe and
    preferences links, "view online", and the confirmation link: each answers with its
    page (200), none 404 or 400."""
    result = links_answered(tmp_path)
    answered = result["answered"]
    assert answered and set(answered.values()) == {200}, answered
    assert kinds(answered) == {
        links.HOME_PATH,
        links.UNSUBSCRIBE_PATH,
        links.PREFERENCES_PATH,
        links.CONFIRM_PATH,
        links.ISSUE_PATH,
    }
    assert result["one_click"] == [200, "Unsubscribed."]


def test_the_links_and_the_routes_are_made_from_the_same_paths(tmp_path):
    settings = make_settings(tmp_path)
    engine = open_database(settings.database.url)
    try:
        app = create_app(settings, engine)
    finally:
        engine.dispose()
    routes = set(app.openapi()["paths"])  # every route the app serves, as declared
    # every desk path links.py names is served, and the desk serves no other
    desk_paths = {
        value
        for name, value in vars(links).items()
        if name.startswith("DESK_") and name.endswith("_PATH")
    }
    assert (
        routes
        == {
            links.HOME_PATH,
            links.SUBSCRIBE_PATH,
            links.CONFIRM_PATH,
            links.PREFERENCES_PATH,
            links.UNSUBSCRIBE_PATH,
            links.ISSUE_PATH,
            links.ISSUE_IMAGE_PATH,
            links.ARCHIVE_PATH,  # issue 17: archive
            links.ARCHIVE_FEED_PATH,
            links.HEALTH_PATH,
            links.CLICK_PATH,
        }
        | desk_paths
    )
    assert set(TOKEN_PATHS) == {links.prefix(route) for route in links.TOKEN_PURPOSES}
    base = settings.publication.base_url
    assert links.unsubscribe_links(settings)("abc").startswith(base + "/unsubscribe/")
    assert links.preferences_links(settings)("abc").startswith(base + "/preferences/")
    assert links.confirm_url(settings, "abc").startswith(base + "/confirm/")
    assert links.home_url(settings) == base, "the masthead's link, as mail already sent has it"
    assert links.issue_url(base, "digest:2026-W49") == base + "/issues/digest-2026-W49"
    assert links.issue_key(links.issue_slug("digest:2026-W49")) == "digest:2026-W49"


RENAMED = {
    "HOME_PATH": "/front",
    "SUBSCRIBE_PATH": "/join",
    "CONFIRM_PATH": "/yes/{token}",
    "PREFERENCES_PATH": "/choices/{token}",
    "UNSUBSCRIBE_PATH": "/leave/{token}",
    "ISSUE_PATH": "/archive/{slug}",
}


def test_renaming_a_route_in_links_py_moves_the_links_and_the_routes(tmp_path):
    """A copy of the package with links.py's paths renamed, run in a fresh interpreter:
    the emails' links carry the new paths and the site answers every one of them."""
    source = Path(__file__).resolve().parents[1]
    copy = tmp_path / "copy"
    shutil.copytree(source / "src" / "mailer", copy / "src" / "mailer",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    for folder in ("templates", "config"):
        (copy / folder).symlink_to(source / folder)
    module = copy / "src" / "mailer" / "links.py"
    text = module.read_text()
    for name, renamed in RENAMED.items():
        text, found = re.subn(rf'^{name} = ".*"$', f'{name} = "{renamed}"', text, flags=re.M)
        assert found == 1, name
    module.write_text(text)
    work = tmp_path / "work"
    work.mkdir()
    script = (
        "import json, sys; from pathlib import Path; sys.path.insert(1, sys.argv[1]);"
        "import mailer; assert mailer.__file__.startswith(sys.argv[2]), mailer.__file__;"
        "from test_links import links_answered;"
        "print(json.dumps(links_answered(Path(sys.argv[3]))))"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
    done = subprocess.run(
        [sys.executable, "-c", script, str(Path(__file__).parent), str(copy), str(work)],
        env={**clean, "PYTHONPATH": str(copy / "src")},
        cwd=work,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    answered = result["answered"]
    assert answered and set(answered.values()) == {200}, answered
    assert {path.split("/")[1] for path in answered} == {
        "front",
        "leave",
        "choices",
        "yes",
        "archive",
    }
    assert result["one_click"] == [200, "Unsubscribed."]
