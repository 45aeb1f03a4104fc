"""The subscriber site in the reader's language (issue 17): pages in the language a
visitor asks for (?lang=, else Accept-Language, else the publication's), pages behind a
reader's link in the reader's own, right to left for Dari and Pashto; the languages a
reader reads, chosen at sign-up and in preferences, given to `subscribers add
--language` and in a CSV file's language column. Over real HTTP (uvicorn on 127.0.0.1)
and a real SMTP server, on SQLite: what is stored is plain text the database does not
judge."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from mailer.errors import SubscriberError
from mailer.reader_languages import checked_languages
from mailer.settings import Settings
from mailer.subscriber_csv import export_csv, import_csv
from mailer.subscribers import add_subscriber, find_subscriber, list_subscribers
from mailer.testing import TEST_SECRET_KEY, RecordingHandler, run_mailer, served
from mailer.tokens import PREFERENCES, UNSUBSCRIBE, make_token

SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

LANGUAGES = ("en", "nb", "fa-AF", "ps")
HTML_TAG = re.compile(r"<html lang=\"([^\"]+)\" dir=\"(\w+)\">")


@pytest.fixture
def several(settings: Settings) -> Settings:
    return settings.replace(publication={"languages": LANGUAGES})


@pytest.fixture
def site(engine: Engine, several: Settings) -> Iterator[tuple[str, Settings]]:
    with served(several, engine) as running:
        yield running


def page(url: str, accept: str = "", **params: str) -> httpx.Response:
    headers = {"accept-language": accept} if accept else {}
    return httpx.get(url, headers=headers, params=params)


def html_language(response: httpx.Response) -> tuple[str, str]:
    found = HTML_TAG.search(response.text)
    assert found, response.text[:200]
    return found[1], found[2]


def checked_boxes(text: str) -> list[str]:
    return re.findall(r'name="languages" value="([^"]+)" checked', text)


@SQLITE
def test_the_sign_up_page_is_in_the_language_asked_for(site):
    """Accept-Language chooses (fa matches fa-AF), ?lang= overrides it, a language the
    publication does not publish in falls back to its own; Dari and Pashto right to
    left; the reader's languages offered, the page's ticked and chosen to write in."""
    url, _ = site
    dari = page(f"{url}/subscribe", "fa;q=0.9, en;q=0.5")
    assert html_language(dari) == ("fa-AF", "rtl")
    assert "آدرس ایمیل" in dari.text and "Email address" not in dari.text
    assert checked_boxes(dari.text) == ["fa-AF"]
    assert '<option value="fa-AF" lang="fa-AF" selected>' in dari.text
    assert 'action="/subscribe?lang=fa-AF"' in dari.text
    norwegian = page(f"{url}/subscribe", "fa-AF", lang="nb")
    assert html_language(norwegian) == ("nb", "ltr") and "E-postadresse" in norwegian.text
    pashto = page(f"{url}/subscribe", lang="ps")
    assert html_language(pashto) == ("ps", "rtl") and "د بریښنالیک پته" in pashto.text
    assert dari.headers["vary"] == "Accept-Language", "caches keep each language apart"
    german = page(f"{url}/subscribe", "de-DE, de;q=0.8", lang="xx")
    assert html_language(german) == ("en", "ltr") and "Email address" in german.text
    # the switcher: every language, named in itself
    for tag, name in (("en", "English"), ("nb", "Norsk bokmål"), ("fa-AF", "دری"), ("ps", "پښتو")):
        assert f'href="?lang={tag}" lang="{tag}"' in german.text and name in german.text


@SQLITE
def test_a_publication_in_one_language_shows_no_language_choice(engine, settings):
    with served(settings, engine) as (url, _):
        form = page(f"{url}/subscribe", "fa-AF")
    assert html_language(form) == ("en", "ltr")
    assert 'name="languages"' not in form.text and 'name="language"' not in form.text
    assert 'class="switcher"' not in form.text and 'action="/subscribe"' in form.text


def wait_for_reader(engine: Engine, address: str, smtp: RecordingHandler):  # type: ignore[no-untyped-def]
    smtp.wait_for(address)  # the sender made the sign-up and sent its link
    return next(s for s in list_subscribers(engine) if s.email == address)


@SQLITE
def test_a_sign_up_stores_the_languages_read_own_first(engine, site, smtp):
    """ "Write to me in" comes first, then the others ticked, spelt as the config does;
    the confirmation page is then in the reader's language, whatever the browser says."""
    url, running = site
    form = {"email": "maryam@example.org", "language": "fa-af", "languages": ["en", "fa-AF"]}
    answer = httpx.post(f"{url}/subscribe?lang=fa-AF", data=form)
    assert answer.status_code == 200 and "صندوق ایمیل خود را ببینید" in answer.text
    reader = wait_for_reader(engine, "maryam@example.org", smtp)
    assert reader.languages == "fa-AF,en"
    token = make_token(running.secret_key, "confirm", reader.public_id)
    confirm = page(f"{url}/confirm/{token}", "nb")
    assert html_language(confirm) == ("fa-AF", "rtl") and "اشتراک خود را تأیید کنید" in confirm.text


@SQLITE
def test_a_language_the_publication_does_not_offer_is_refused_in_the_page_language(
    engine, site, smtp
):
    url, _ = site
    form = {"email": "x@example.org", "language": "de", "languages": ["de", "en"]}
    refused = httpx.post(f"{url}/subscribe?lang=ps", data=form)
    assert refused.status_code == 400 and html_language(refused) == ("ps", "rtl")
    assert "مهرباني وکړئ له وړاندې شویو ژبو څخه وټاکئ" in refused.text
    assert 'value="x@example.org"' in refused.text, "the form kept"
    assert list(list_subscribers(engine)) == []


@SQLITE
def test_preferences_show_and_change_the_languages_in_the_readers_own(engine, site):
    url, running = site
    reader = add_subscriber(engine, "ola@example.org", confirmed=True, languages="nb,en")
    link = f"{url}/preferences/{make_token(running.secret_key, PREFERENCES, reader.public_id)}"
    shown = page(link, "fa-AF")
    assert html_language(shown) == ("nb", "ltr") and "Dine innstillinger" in shown.text
    assert checked_boxes(shown.text) == ["en", "nb"]
    assert '<option value="nb" lang="nb" selected>' in shown.text
    form = {"name": "Ola", "frequency": "every", "action": "save"}
    saved = httpx.post(link, data=form | {"language": "ps", "languages": ["ps", "nb"]})
    assert saved.status_code == 200 and html_language(saved) == ("ps", "rtl")
    assert find_subscriber(engine, reader.id).languages == "ps,nb"
    refused = httpx.post(link, data=form | {"language": "de"})
    assert refused.status_code == 400 and find_subscriber(engine, reader.id).languages == "ps,nb"
    leave = f"{url}/unsubscribe/{make_token(running.secret_key, UNSUBSCRIBE, reader.public_id)}"
    assert "لغوه" in page(leave, "en").text, "the unsubscribe page in Pashto too"


def test_languages_are_checked_against_the_publications():
    assert checked_languages("fa, EN", LANGUAGES) == "fa-AF,en"
    assert checked_languages("en", LANGUAGES) is None, "the publication's alone: NULL"
    assert checked_languages("", LANGUAGES) is None
    with pytest.raises(SubscriberError, match="does not publish in de; use one or more of en"):
        checked_languages("fa-AF,de", LANGUAGES)
    with pytest.raises(SubscriberError, match="not a language tag"):
        checked_languages("fa-AF,?!", LANGUAGES)


@SQLITE
def test_a_csv_language_column_comes_in_and_goes_out(engine, tmp_path: Path):
    listing = tmp_path / "readers.csv"
    listing.write_text(
        'email,language\nana@example.org,"fa-AF,en"\nbo@example.org,de\ncy@example.org,\n'
    )
    report = import_csv(engine, listing, languages=LANGUAGES)
    assert report.added == 2
    assert report.rejected == [(3, report.rejected[0][1])]
    assert "does not publish in de" in report.rejected[0][1]
    stored = {s.email: s.languages for s in list_subscribers(engine)}
    assert stored == {"ana@example.org": "fa-AF,en", "cy@example.org": None}
    out = tmp_path / "out.csv"
    with out.open("w", newline="") as handle:
        export_csv(engine, handle)
    lines = out.read_text().splitlines()
    assert lines[0].startswith("email,name,status,frequency,") and lines[0].endswith(",language")
    assert lines[1].startswith("ana@example.org,,active,every,")
    assert lines[1].endswith(',"fa-AF,en"') and lines[2].endswith(",")


@SQLITE
def test_subscribers_add_takes_the_languages_and_show_tells_them(engine, settings, tmp_path):
    def mailer(*args: str):  # type: ignore[no-untyped-def]
        return run_mailer(
            tmp_path,
            *args,
            MAILER_SECRET_KEY=TEST_SECRET_KEY,
            MAILER_DATABASE_URL=settings.database.url,
            MAILER_PUBLICATION_LANGUAGES=",".join(LANGUAGES),
        )

    added = mailer("subscribers", "add", "zia@example.org", "--language", "ps,fa-AF")
    assert added.returncode == 0, added.stderr
    shown = mailer("subscribers", "show", "zia@example.org")
    assert re.search(r"Languages:\s+ps, fa-AF", shown.stdout), shown.stdout
    wrong = mailer("subscribers", "add", "x@example.org", "--language", "fa-AF,sv")
    assert wrong.returncode != 0 and "does not publish in sv" in wrong.stderr + wrong.stdout


@SQLITE
def test_an_admin_adds_a_reader_with_their_languages_at_the_desk(engine, several):
    from deskclient import PASSWORD, Desk, csrf_of, sign_in
    from mailer import editors
    from mailer.models import EditorRole

    editors.add_editor(engine, "ann@newsroom.example", PASSWORD, EditorRole.ADMIN)
    with served(several, engine) as (url, running), Desk(url, running).client() as client:
        sign_in(client, "ann@newsroom.example")
        form = client.get("/desk/subscribers/add")
        assert 'name="languages"' in form.text and "Any of en, nb, fa-AF, ps" in form.text
        fields = {"csrf": csrf_of(form), "frequency": "every", "consent": "given"}
        added = client.post(
            "/desk/subscribers/add",
            data=fields | {"email": "gul@example.org", "languages": "ps, en"},
        )
        assert added.status_code == 303
        shown = client.get(added.headers["location"]).text
        assert "<dt>Languages</dt><dd>ps, en</dd>" in shown
        wrong = client.post(
            "/desk/subscribers/add", data=fields | {"email": "x@example.org", "languages": "sv"}
        )
        assert wrong.status_code == 422 and "does not publish in sv" in wrong.text
        assert 'value="sv"' in wrong.text, "the form as it was typed"
    stored = {s.email: s.languages for s in list_subscribers(engine)}
    assert stored == {"gul@example.org": "ps,en"}
